"""Every batch gets its validation report from the run itself: loaded or stopped by the quality
gate, keyed by its batch id, written again whole; a batch that stopped before its gate stored
anything has none, and the reason it stopped is what the run raises."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from etl import pipeline
from etl.cli import app
from etl.extract.readers import SchemaDriftError
from etl.report.validation import batch_report_folder
from etl.validate.gate import DataQualityGateError

pytestmark = pytest.mark.integration

AS_OF = dt.date(2026, 7, 1)


def _strict_expectations(tmp_path: Path) -> Path:
    """The repository's expectations with one threshold the small estate breaches."""
    from etl.settings import PROJECT_ROOT

    folder = tmp_path / "expectations"
    shutil.copytree(PROJECT_ROOT / "expectations", folder)
    path = folder / "thresholds.yaml"
    content = yaml.safe_load(path.read_text("utf-8"))
    content["checks"]["source.unparseable_date"]["max_failure_rate"] = 0.001
    path.write_text(yaml.safe_dump(content, allow_unicode=True), encoding="utf-8")
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_a_batch_the_gate_stops_gets_its_report_and_the_run_still_says_why(
    sqlite_core, small_estate, settings_for, tmp_path
):
    settings = settings_for(
        small_estate,
        sqlite_core(tmp_path),
        expectations_dir=_strict_expectations(tmp_path),
    )
    with pytest.raises(DataQualityGateError) as stopped:
        pipeline.run_system("melior", "melior-stopped", AS_OF, settings=settings)
    assert "melior batch melior-stopped is not promoted" in str(stopped.value)

    folder = batch_report_folder(settings, "melior-stopped")
    assert folder == settings.home / "reports" / "validation" / "batches" / "melior-stopped"
    summary = json.loads((folder / "summary.json").read_text("utf-8"))
    assert summary["batch_id"] == "melior-stopped"
    [system] = summary["systems"]
    assert (system["system"], system["gate"]) == ("melior", "breach")
    assert system["status"] == "not promoted: stopped by the quality gate"
    breached = [(c["entity"], c["check_name"]) for c in system["checks"] if c["is_breached"]]
    assert breached == [("diagnosis", "source.unparseable_date")]
    page = (folder / "summary.html").read_text("utf-8")
    assert "batch <code>melior-stopped</code>" in page and "stopped by the quality gate" in page
    docs = (folder / "data_docs" / "index.html").read_text("utf-8")
    assert "diagnosis" in docs


def test_writing_a_batch_report_again_replaces_it_whole(
    sqlite_core, small_estate, settings_for, tmp_path
):
    settings = settings_for(small_estate, sqlite_core(tmp_path))
    pipeline.run_system("elvis", "elvis-twice", AS_OF, settings=settings)
    folder = batch_report_folder(settings, "elvis-twice")
    first = _files(folder)
    assert {"summary.html", "summary.md", "summary.json", "data_docs/index.html"} <= set(first)
    (folder / "data_docs" / "left_from_an_older_build.html").write_text("old", "utf-8")

    written = pipeline.report("elvis", "elvis-twice", settings)

    assert written == {
        "batch_id": "elvis-twice",
        # keys relative to the storage root (here VARDFLYTT_HOME), never a worker's path
        "summary": "reports/validation/batches/elvis-twice/summary.html",
        "data_docs": "reports/validation/batches/elvis-twice/data_docs/index.html",
    }
    second = _files(folder)
    assert set(second) == set(first), "the same files: nothing stale, no scratch folder left"
    for name in ("summary.json", "summary.md", "summary.html"):
        assert second[name] == first[name], name
    # The report sits beside the others, never instead of them.
    assert [p.name for p in folder.parent.iterdir()] == ["elvis-twice"]

    # The command line writes it again the same way, and asks for one selection at a time.
    runner = CliRunner()
    again = runner.invoke(app, ["dq", "report", "--batch", "elvis-twice"])
    assert again.exit_code == 0, again.output
    assert str(folder / "summary.html") in again.output.replace("\n", "")
    assert _files(folder)["summary.json"] == first["summary.json"]
    both = runner.invoke(app, ["dq", "report", "--batch", "elvis-twice", "--run", "x"])
    assert both.exit_code == 2 and "not both" in both.output


def test_a_batch_stopped_before_its_gate_has_no_report_and_the_run_raises_its_own_error(
    sqlite_core, small_estate, settings_for, tmp_path
):
    empty_estate = tmp_path / "estate"
    (empty_estate / "melior").mkdir(parents=True)  # Melior's files are missing
    settings = settings_for(empty_estate, sqlite_core(tmp_path))
    with pytest.raises(SchemaDriftError, match=r"melior file .*PATREG\.DAT: the file is missing"):
        pipeline.run_system("melior", "melior-no-files", AS_OF, settings=settings)
    assert not batch_report_folder(settings, "melior-no-files").exists()
    assert pipeline.report("melior", "melior-no-files", settings)["summary"] is None
