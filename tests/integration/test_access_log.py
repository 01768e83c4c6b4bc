"""The access log on real core databases (SQLite and PostgreSQL): the chain holds under two
writing processes and shows tampering, the export round-trips, a purge keeps it verifiable,
and identity resolution, the steward queue and a killed extract leave entries that name
patients by pseudonym only."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from etl import pipeline
from etl.cli import app
from etl.core.audit import current_user, drop_guard, record_access
from etl.core.audit_review import verify_chain
from etl.core.database import core_engine
from etl.core.pseudonym import pseudonym, pseudonym_key
from etl.core.tables import access_log, quarantine
from etl.identity import runs
from etl.steward.queue import QueueFilter, list_queue, summary
from tests.cores import BOTH_CORES
from tests.integration.test_identity_runs import NUMBERS, PNR_A, a_conflict

pytestmark = pytest.mark.integration


def as_database_owner(connection) -> None:
    """What only the database's owner can do: drop the append-only triggers (to tamper)."""
    for name in ("access_log_no_update", "access_log_no_delete", "access_log_no_truncate"):
        drop_guard(connection, name)


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=BOTH_CORES)
def settings(sqlite_core, request, tmp_path, settings_for, monkeypatch):
    for name in ("AIRFLOW_CTX_DAG_RUN_ID", "AIRFLOW_CTX_DAG_OWNER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VARDFLYTT_PSEUDONYM_KEY", "access-log-test-key-0123456789")
    if request.param == "sqlite":
        return settings_for(core_url=sqlite_core(tmp_path))
    return settings_for(core_url=request.getfixturevalue("postgres_url"))


def _engine(settings):
    return core_engine(settings.resolved_core_url)


def _verify(settings):
    with _engine(settings).connect() as connection:
        return verify_chain(connection)


def _log(settings) -> list[dict]:
    with _engine(settings).connect() as connection:
        return [
            dict(row)
            for row in connection.execute(
                sa.select(access_log).order_by(access_log.c.sequence)
            ).mappings()
        ]


def _as_text(entries: list[dict]) -> str:
    return json.dumps(entries, default=str)


def test_two_processes_appending_at_once_keep_one_chain(settings):
    record_access(settings, "read_source", "melior", "b0", 1)  # schema made before the race
    script = (
        "import sys\n"
        "from etl.settings import get_settings\n"
        "from etl.core.audit import record_access\n"
        "for n in range(40):\n"
        "    record_access(get_settings(), 'read_source', 'melior', sys.argv[1], n)\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [
        subprocess.Popen([sys.executable, "-c", script, f"b{n}"], env=environment) for n in (1, 2)
    ]
    assert [writer.wait(timeout=300) for writer in writers] == [0, 0]
    report = _verify(settings)
    assert report.is_intact, report.problem
    assert (report.entries, report.last_sequence) == (81, 81)
    batches = [entry["batch_id"] for entry in _log(settings)]
    assert batches.count("b1") == batches.count("b2") == 40


def test_an_edited_or_deleted_entry_is_named_by_verify(settings):
    for n in range(4):
        record_access(settings, "read_source", "melior", "b1", n)
    runner = CliRunner()
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 0
    with _engine(settings).begin() as connection:
        as_database_owner(connection)
        connection.execute(access_log.update().where(access_log.c.sequence == 2).values(rows=999))
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 1 and "entry 2" in result.output
    with _engine(settings).begin() as connection:
        as_database_owner(connection)
        connection.execute(access_log.delete().where(access_log.c.sequence == 2))
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 1 and "entry 2 is missing" in result.output


def test_export_by_date_round_trips_and_the_excerpt_verifies(settings, tmp_path):
    for n in range(3):
        record_access(settings, "steward_list", "melior", "b1", 1, subjects=[f"ps_{n:016x}"])
    with _engine(settings).begin() as connection:  # one entry from long ago, chained as written
        as_database_owner(connection)
        connection.execute(
            access_log.update()
            .where(access_log.c.sequence == 1)
            .values(accessed_at=dt.datetime(2020, 5, 1, tzinfo=dt.UTC))
        )
    today = dt.datetime.now(dt.UTC).date().isoformat()
    runner = CliRunner()
    out = tmp_path / "excerpt.jsonl"
    result = runner.invoke(app, ["audit", "export", "--from", today, "--to", today, "--out", out])
    assert result.exit_code == 0, result.output
    exported = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert [e["sequence"] for e in exported] == [2, 3]
    assert exported[0]["subjects"] == '["ps_0000000000000001"]'
    assert runner.invoke(app, ["audit", "check-export", str(out)]).exit_code == 0
    old = tmp_path / "old.jsonl"
    runner.invoke(
        app, ["audit", "export", "--from", "2020-05-01", "--to", "2020-05-01", "--out", old]
    )
    [entry] = [json.loads(line) for line in old.read_text("utf-8").splitlines()]
    assert entry["sequence"] == 1
    # The back-dated entry no longer matches its hash: the excerpt says so.
    assert runner.invoke(app, ["audit", "check-export", str(old)]).exit_code == 1
    assert _log(settings)[-1]["action"] == "audit_export"  # exporting is logged too


def test_a_purge_past_retention_keeps_the_chain_verifiable(settings, monkeypatch):
    from etl.core.audit_review import purge

    for n in range(4):
        record_access(settings, "read_source", "melior", "b1", n)
    with _engine(settings).begin() as connection:
        purged = purge(connection, 30, dt.datetime.now(dt.UTC) + dt.timedelta(days=31))
    assert purged.purged == 4
    report = _verify(settings)
    assert report.is_intact and report.anchor_sequence == 4 and report.first_sequence == 5
    monkeypatch.setenv("VARDFLYTT_AUDIT_RETENTION_DAYS", "30")
    result = CliRunner().invoke(app, ["audit", "purge", "--yes"])
    assert result.exit_code == 0 and "nothing older" in result.output
    record_access(settings, "read_source", "melior", "b2", 1)
    assert _verify(settings).is_intact


def test_identity_resolution_logs_every_step_with_pseudonyms_never_numbers(settings):
    a_conflict(settings)
    runs.resolve("run-1", settings)
    [review] = runs.list_open_reviews(settings)
    runs.decide_review(review.review_id, "keep_apart", "lena", None, "decide-1", settings)
    entries = _log(settings)
    actions = [entry["action"] for entry in entries]
    assert actions == [
        "identity_resolve",
        "identity_review_list",
        "identity_decide",
        "identity_resolve",
    ]
    resolved = entries[0]
    assert (resolved["subject_scope"], resolved["subject_count"]) == ("all", 5)
    key = pseudonym_key(settings)
    conflicted = sorted(
        pseudonym(key, s, k) for s, k in (("elvis", "key-e1"), ("melior", "key-m1"))
    )
    for entry in entries[1:3]:
        assert json.loads(entry["subjects"]) == conflicted
    assert all(entry["user_name"] == current_user() for entry in entries)
    assert not any(number in _as_text(entries) for number in NUMBERS)


def test_who_looked_at_a_patient_from_a_typed_number_that_is_never_logged(settings):
    a_conflict(settings)
    runs.resolve("run-1", settings)
    runs.list_open_reviews(settings)
    result = CliRunner().invoke(app, ["audit", "patient"], input=f"{PNR_A}\n")
    assert result.exit_code == 0, result.output
    assert "identity_review_list" in result.output  # e1/m1 were listed to a steward
    assert "identity_resolve" in result.output  # and read by every resolution run
    assert PNR_A not in result.output
    entries = _log(settings)
    assert entries[-1]["action"] == "audit_patient_lookup"
    assert not any(number in _as_text(entries) for number in NUMBERS)


def _quarantined(settings, keys: list[str]) -> None:
    with _engine(settings).begin() as connection:
        connection.execute(
            quarantine.insert(),
            [
                {
                    "quarantine_id": f"q{n:015x}",
                    "batch_id": "melior-b1",
                    "source_system": "melior",
                    "dataset": "PATREG",
                    "entity": "patient",
                    "source_key": source_key,
                    "row_number": n + 1,
                    "check_name": "transform:normalise_personnummer",
                    "severity": "error",
                    "field": "PNR",
                    "reason": "invalid_identity_number",
                    "quarantined_at": dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
                }
                for n, source_key in enumerate(keys)
            ],
        )


def test_steward_list_and_summary_are_logged_with_the_rows_pseudonyms(settings):
    keys = ["189001019802", "189001029819"]  # source keys that are identity numbers
    _quarantined(settings, keys)
    page = list_queue(settings, QueueFilter(batch_id="melior-b1"))
    summary(settings, "melior-b1")
    listed, summed = _log(settings)
    assert (listed["action"], listed["source_system"], listed["batch_id"]) == (
        "steward_list",
        "melior",
        "melior-b1",
    )
    assert json.loads(listed["subjects"]) == sorted(row.pseudonym for row in page.rows)
    assert listed["purpose"] == "data quality review" and listed["rows"] == 2
    assert (summed["action"], summed["subject_scope"], summed["rows"]) == (
        "steward_summary",
        "batch",
        2,
    )
    assert not any(key in _as_text([listed, summed]) for key in keys)


def test_an_extract_killed_half_way_has_its_entry(settings, monkeypatch):
    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt  # the reader dies after the first records

    monkeypatch.setattr(pipeline, "extract_system", killed)
    with pytest.raises(KeyboardInterrupt):
        pipeline.extract("melior", "melior-killed", "2026-07-01", settings)
    [entry] = _log(settings)
    assert (entry["action"], entry["source_system"], entry["batch_id"]) == (
        "extract_started",
        "melior",
        "melior-killed",
    )
    assert entry["subject_scope"] == "batch" and entry["user_name"] == current_user()
    assert _verify(settings).is_intact
