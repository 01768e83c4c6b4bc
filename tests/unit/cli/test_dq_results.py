"""`vardflytt dq results`: each system's latest batch by default, a batch column always."""

from __future__ import annotations

import datetime as dt

import pytest
from typer.testing import CliRunner

from etl.cli import app
from etl.core.database import core_engine
from etl.core.tables import dq_result

pytestmark = pytest.mark.unit

DAY = dt.datetime(2026, 7, 1, 8, 0, tzinfo=dt.UTC)


def _result(batch: str, system: str, failed: int, hours: int) -> dict:
    return {
        "batch_id": batch,
        "source_system": system,
        "entity": "patient",
        "check_name": "valid_identity_number",
        "run_id": None,
        "dimension": "validity",
        "severity": "error",
        "rows_evaluated": 100,
        "rows_failed": failed,
        "rows_waived": 0,
        "max_failure_rate": 0.05,
        "is_breached": failed > 5,
        "thresholds_digest": "d",
        "mapping_version": "v",
        "evaluated_at": DAY + dt.timedelta(hours=hours),
    }


@pytest.fixture
def results(sqlite_core, tmp_path, monkeypatch):
    url = sqlite_core(tmp_path)
    monkeypatch.setenv("VARDFLYTT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VARDFLYTT_CORE_URL", url)
    with core_engine(url).begin() as connection:
        connection.execute(
            dq_result.insert(),
            [
                _result("elvis-old", "elvis", 9, 0),
                _result("elvis-new", "elvis", 1, 5),
                _result("melior-only", "melior", 2, 2),
                _result("melior-older", "melior", 7, 1),
            ],
        )


def _batches(output: str) -> set[str]:
    names = ("elvis-old", "elvis-new", "melior-only", "melior-older")
    return {name for name in names if name in output}


def test_by_default_each_systems_latest_batch_with_its_batch_column(results):
    shown = CliRunner().invoke(app, ["dq", "results", "--all"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "batch" in shown.output and "latest batch per system" in shown.output
    assert _batches(shown.output) == {"elvis-new", "melior-only"}
    assert "2 check results, 0 over threshold" in shown.output


def test_history_and_batch_show_what_they_ask_for(results):
    every = CliRunner().invoke(app, ["dq", "results", "--all", "--history"], env={"COLUMNS": "200"})
    assert _batches(every.output) == {"elvis-old", "elvis-new", "melior-only", "melior-older"}
    assert "4 check results, 2 over threshold" in every.output
    one = CliRunner().invoke(app, ["dq", "results", "--batch", "elvis-old"], env={"COLUMNS": "200"})
    assert _batches(one.output) == {"elvis-old"} and "BREACH" in one.output
