"""`vardflytt codes unmapped`: the listing on the terminal, the template, and coverage's link."""

from __future__ import annotations

import csv

import pytest

from tests.unit.report.test_report_codes import BATCH, _write_fixture

pytestmark = pytest.mark.unit


@pytest.fixture
def environment(sqlite_core, tmp_path, monkeypatch):
    settings, _catalog = _write_fixture(tmp_path)
    monkeypatch.setenv("VARDFLYTT_HOME", str(settings.home))
    monkeypatch.setenv("VARDFLYTT_MAPPINGS_DIR", str(settings.mappings_dir))
    monkeypatch.setenv("VARDFLYTT_CORE_URL", sqlite_core(tmp_path))
    monkeypatch.setenv("VARDFLYTT_CHUNK_ROWS", "4")
    monkeypatch.setenv("COLUMNS", "250")
    return settings


def test_lists_codes_and_writes_the_template(cli, environment, tmp_path):
    template = environment.home / "codes" / "template.csv"
    shown = cli("codes", "unmapped", "--system", "kod", "--template", str(template))
    assert "X-NEW" in shown.output and "Y-OLD" in shown.output and "kod_lab.csv" in shown.output
    assert f"kod ({BATCH}): 8 rows with an unmapped or unapproved code" in shown.output
    assert "hemolyserat" not in shown.output and "19121212" not in shown.output
    assert "(2 codes to map)" in shown.output
    with template.open(encoding="utf-8", newline="") as handle:
        assert [row["source_code"] for row in csv.DictReader(handle)] == ["X-NEW", "Y-OLD"]


def test_an_unknown_system_is_a_mapping_error(cli, environment):
    shown = cli("codes", "unmapped", "--system", "nope", expect=None)
    assert shown.exit_code != 0
    assert "no source system 'nope'" in str(shown.exception) + shown.output


def test_coverage_points_to_the_listing(cli, environment):
    shown = cli("coverage", "--batch", BATCH, "--out", str(environment.home / "cov.json"))
    assert "vardflytt codes unmapped" in shown.output
