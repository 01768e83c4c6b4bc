"""What the batch reports reuse within a process (``etl.report.data_docs``, ``mapping_docs_index``):
the same pages as building them again, and a changed input gives a new page."""

from __future__ import annotations

import itertools
import json
import shutil
import uuid
from pathlib import Path

import pytest

from etl.report import data_docs
from etl.report.data_docs import make_offline
from etl.report.validation import mapping_docs_index
from etl.settings import PROJECT_ROOT, Settings
from tests.unit.report.test_report_validation_data_docs import _build_site, _site_files

pytestmark = pytest.mark.unit


@pytest.fixture
def numbered_uuids(monkeypatch):
    """GX gives collapsible blocks random ids, once per compiled template: number them."""
    from great_expectations.render.view import view

    def number() -> None:
        counter = itertools.count()
        monkeypatch.setattr(view, "uuid4", lambda: uuid.UUID(int=next(counter)))

    return number


def _clear_memos() -> None:
    data_docs.suite_pages.clear()
    data_docs.offline_pages.clear()
    data_docs.page_references.clear()


def test_a_site_built_from_remembered_pages_is_the_site_built_afresh(
    tmp_path, monkeypatch, numbered_uuids
):
    from great_expectations.render.renderer import ExpectationSuitePageRenderer

    rendered = []
    render = ExpectationSuitePageRenderer.render

    def counted(self, *args, **kwargs):
        rendered.append(1)
        return render(self, *args, **kwargs)

    monkeypatch.setattr(ExpectationSuitePageRenderer, "render", counted)
    # Templates compiled per view: each build then draws its own uuids, numbered from 0.
    monkeypatch.setattr(data_docs, "compiled_templates", None)
    settings = Settings(home=tmp_path)
    _clear_memos()
    numbered_uuids()
    afresh = _site_files(_build_site(settings, tmp_path / "afresh").parent)
    assert rendered and len(data_docs.suite_pages) == 1  # the patient suite's page, rendered
    rendered.clear()
    numbered_uuids()
    again = _site_files(_build_site(settings, tmp_path / "again").parent)
    assert again == afresh
    assert rendered == []  # the suite page was not rendered again


def test_a_suite_changed_in_place_gets_a_new_page(tmp_path):
    expectations = tmp_path / "expectations"
    shutil.copytree(PROJECT_ROOT / "expectations", expectations)
    settings = Settings(home=tmp_path, expectations_dir=expectations)
    before = _build_site(settings, tmp_path / "before").parent / "expectations" / "patient.html"
    assert "unknown" in before.read_text("utf-8")
    assert "added_in_place" not in before.read_text("utf-8")

    suite = json.loads((expectations / "patient.json").read_text("utf-8"))
    (sex,) = (
        e for e in suite["expectations"] if e["meta"]["check"] == "patient.sex.allowed_values"
    )
    sex["kwargs"]["value_set"].append("added_in_place")
    (expectations / "patient.json").write_text(json.dumps(suite), "utf-8")
    after = _build_site(settings, tmp_path / "after").parent / "expectations" / "patient.html"
    assert "added_in_place" in after.read_text("utf-8")


def test_a_page_rewritten_offline_again_follows_the_files_the_site_has(tmp_path):
    page = (
        '<html><head><link rel="stylesheet" href="static/styles/extra.css" /></head>'
        "<body>page</body></html>"
    )
    with_file, without = tmp_path / "with", tmp_path / "without"
    for site in (with_file, without):
        site.mkdir()
        (site / "index.html").write_text(page, "utf-8")
    (with_file / "static" / "styles").mkdir(parents=True)
    (with_file / "static" / "styles" / "extra.css").write_text("p { color: red; }", "utf-8")
    make_offline(with_file)
    make_offline(without)
    assert "extra.css" in (with_file / "index.html").read_text("utf-8")
    assert "extra.css" not in (without / "index.html").read_text("utf-8")


def test_a_mapping_changed_in_place_gets_new_mapping_docs(tmp_path):
    mappings = tmp_path / "mappings"
    shutil.copytree(PROJECT_ROOT / "mappings", mappings)
    first = mapping_docs_index(Settings(home=tmp_path / "first", mappings_dir=mappings))
    again = mapping_docs_index(Settings(home=tmp_path / "again", mappings_dir=mappings))
    assert _folder(first.parent) == _folder(again.parent)  # the same pages, written again

    patient = mappings / "elvis" / "patient.yaml"
    text = patient.read_text("utf-8")
    assert "ELVIS test patients (testpatient = J) are not migrated." in text
    patient.write_text(text.replace("are not migrated.", "are never migrated, changed."), "utf-8")
    changed = mapping_docs_index(Settings(home=tmp_path / "changed", mappings_dir=mappings))
    assert "are never migrated, changed." in (changed.parent / "elvis.html").read_text("utf-8")
    assert _folder(changed.parent) != _folder(first.parent)


def _folder(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))}
