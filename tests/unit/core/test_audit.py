"""The access log's pure parts on an embedded core: who acts, the chain, export, retention."""

from __future__ import annotations

import datetime as dt
import io
import json
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from etl.core import audit
from etl.core.audit import (
    acting_as,
    current_user,
    drop_guard,
    record_access,
    subject_fields,
    triggering_user,
)
from etl.core.audit_review import (
    entries_between,
    purge,
    retention_days,
    verify_chain,
    verify_excerpt,
    write_export,
)
from etl.core.database import core_engine
from etl.core.tables import access_log

pytestmark = pytest.mark.unit


def as_database_owner(connection) -> None:
    """What only the database's owner can do: drop the append-only triggers (to tamper)."""
    for name in ("access_log_no_update", "access_log_no_delete", "access_log_no_truncate"):
        drop_guard(connection, name)


@pytest.fixture
def settings(settings_for, sqlite_core, tmp_path, monkeypatch):
    for name in ("AIRFLOW_CTX_DAG_RUN_ID", "AIRFLOW_CTX_DAG_OWNER"):
        monkeypatch.delenv(name, raising=False)
    return settings_for(core_url=sqlite_core(tmp_path))


def _engine(settings):
    return core_engine(settings.resolved_core_url)


def _write(settings, count: int = 5) -> None:
    for number in range(count):
        record_access(
            settings, "steward_list", "melior", "b1", 1, "patient", subjects=[f"ps_{number:016x}"]
        )


def _verify(settings):
    with _engine(settings).connect() as connection:
        return verify_chain(connection)


# --- who ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("triggering", "run_type", "expected"),
    [
        ("lena.lind", "manual", "lena.lind"),
        (None, "scheduled", "airflow:scheduled"),
        (None, "asset_triggered", "airflow:asset_triggered"),
        ("", "backfill", "airflow:backfill"),
    ],
    ids=["manual", "scheduled", "asset", "backfill-without-user"],
)
def test_an_airflow_run_is_attributed_to_who_triggered_it_never_the_dag_owner(
    triggering, run_type, expected
):
    run = SimpleNamespace(triggering_user_name=triggering, run_type=SimpleNamespace(value=run_type))
    assert triggering_user(run) == expected


def test_airflow_dags_test_is_the_person_running_the_command():
    run = SimpleNamespace(triggering_user_name="dag_test", run_type="manual")
    assert triggering_user(run) == audit.os_user()


def test_inside_a_task_the_entry_names_the_triggering_user(settings, monkeypatch):
    import airflow.sdk

    run = SimpleNamespace(triggering_user_name="lena.lind", run_type="manual")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "manual__2026-12-04")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_OWNER", "airflow")
    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: {"dag_run": run})
    entry = record_access(settings, "read_source", "melior", "b1", 3)
    assert (entry["user_name"], entry["process"]) == ("lena.lind", "airflow:read_source")
    assert entry["run_id"] == "manual__2026-12-04"


def test_a_dashboard_request_acts_as_its_viewer_and_the_command_line_as_the_os_user(settings):
    assert current_user() == audit.os_user()
    with acting_as("anna.steward"):
        assert current_user() == "anna.steward"
        entry = record_access(settings, "dashboard_view", "", "", 0)
    assert (entry["user_name"], entry["process"]) == ("anna.steward", "dashboard:dashboard_view")
    assert current_user() == audit.os_user()


def test_the_ledger_actor_follows_the_same_rule(monkeypatch):
    import airflow.sdk

    from etl.core.lease import current_actor

    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "r")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_OWNER", "airflow")
    run = SimpleNamespace(triggering_user_name="per.persson", run_type="manual")
    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: {"dag_run": run})
    assert current_actor() == "per.persson"


# --- subjects -------------------------------------------------------------------------------------


def test_subjects_are_pseudonyms_listed_up_to_a_bound_then_by_scope():
    assert subject_fields(["ps_b", "ps_a", "ps_a", None]) == {
        "subject_scope": "listed",
        "subject_count": 2,
        "subjects": '["ps_a","ps_b"]',
    }
    many = [f"ps_{n:016x}" for n in range(audit.MAX_LISTED_SUBJECTS + 1)]
    assert subject_fields(many) == {
        "subject_scope": "batch",
        "subject_count": audit.MAX_LISTED_SUBJECTS + 1,
        "subjects": None,
    }
    with pytest.raises(ValueError, match="pseudonyms"):
        subject_fields(["198001011234"])


# --- chain ----------------------------------------------------------------------------------------


def test_a_written_log_verifies(settings):
    _write(settings)
    report = _verify(settings)
    assert report.is_intact and (report.entries, report.first_sequence) == (5, 1)


def test_an_edited_entry_is_named(settings):
    _write(settings)
    with _engine(settings).begin() as connection:
        as_database_owner(connection)
        connection.execute(
            access_log.update().where(access_log.c.sequence == 3).values(user_name="someone.else")
        )
    report = _verify(settings)
    assert (report.is_intact, report.broken_at) == (False, 3)
    assert "changed" in report.problem


@pytest.mark.parametrize(("deleted", "named"), [(2, 2), (5, 5)], ids=["middle", "newest"])
def test_a_deleted_entry_is_named(settings, deleted, named):
    _write(settings)
    with _engine(settings).begin() as connection:
        as_database_owner(connection)
        connection.execute(access_log.delete().where(access_log.c.sequence == deleted))
    report = _verify(settings)
    assert (report.is_intact, report.broken_at) == (False, named)


def test_reordered_entries_are_named(settings):
    _write(settings)
    with _engine(settings).begin() as connection:
        as_database_owner(connection)
        # Swap the sequence numbers of entries 2 and 3 (through a free number).
        for old, new in ((2, 99), (3, 2), (99, 3)):
            connection.execute(
                access_log.update().where(access_log.c.sequence == old).values(sequence=new)
            )
    report = _verify(settings)
    assert (report.is_intact, report.broken_at) == (False, 2)


# --- export ---------------------------------------------------------------------------------------


def _stamp(settings, sequence: int, moment: dt.datetime) -> None:
    """Back-date entries as if written then: re-chain so the log stays verifiable."""
    with _engine(settings).begin() as connection:
        as_database_owner(connection)
        connection.execute(
            access_log.update().where(access_log.c.sequence == sequence).values(accessed_at=moment)
        )
        rows = connection.execute(sa.select(access_log).order_by(access_log.c.sequence)).mappings()
        previous = "0" * 64
        for row in list(rows):
            digest = audit.entry_hash(previous, dict(row))
            connection.execute(
                access_log.update()
                .where(access_log.c.sequence == row["sequence"])
                .values(previous_hash=previous, entry_hash=digest)
            )
            previous = digest
        connection.execute(sa.text("UPDATE access_log_head SET entry_hash = :h"), {"h": previous})


def test_export_filters_by_time_and_an_excerpt_verifies_on_its_own(settings):
    _write(settings, 4)
    old = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    _stamp(settings, 1, old)
    assert _verify(settings).is_intact
    with _engine(settings).connect() as connection:
        recent = list(entries_between(connection, dt.datetime(2021, 1, 1, tzinfo=dt.UTC), None))
        early = list(entries_between(connection, None, dt.datetime(2021, 1, 1, tzinfo=dt.UTC)))
    assert [e["sequence"] for e in recent] == [2, 3, 4]
    assert [e["sequence"] for e in early] == [1]
    for form in ("jsonl", "csv"):
        out = io.StringIO()
        assert write_export(iter(recent), out, form) == 3
    lines = io.StringIO()
    write_export(iter(recent), lines, "jsonl")
    read_back = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert read_back == recent and verify_excerpt(read_back) is None
    read_back[1]["user_name"] = "someone.else"
    assert "3" in verify_excerpt(read_back)


def test_a_csv_export_verifies_too(settings):
    import csv

    _write(settings, 3)
    record_access(settings, "dashboard_view", "", "", 0, detail={"path": "/"})
    with _engine(settings).connect() as connection:
        out = io.StringIO()
        write_export(entries_between(connection, None, None), out, "csv")
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == 4 and verify_excerpt(rows) is None


# --- retention ------------------------------------------------------------------------------------


def test_a_purge_removes_old_entries_and_the_rest_still_verifies(settings, monkeypatch):
    _write(settings, 5)
    for sequence in (1, 2):
        _stamp(settings, sequence, dt.datetime(2015, 1, sequence, tzinfo=dt.UTC))
    monkeypatch.setenv("VARDFLYTT_AUDIT_RETENTION_DAYS", "365")
    with _engine(settings).begin() as connection:
        report = purge(connection, retention_days(), dt.datetime.now(dt.UTC))
    assert (report.purged, report.purged_through_sequence, report.checkpoint_sequence) == (2, 2, 6)
    verified = _verify(settings)
    assert verified.is_intact and (verified.first_sequence, verified.anchor_sequence) == (3, 2)
    _write(settings, 1)  # appends carry on after a purge
    assert _verify(settings).is_intact
    # Deleting the next-oldest entry after a purge is still caught.
    with _engine(settings).begin() as connection:
        as_database_owner(connection)
        connection.execute(access_log.delete().where(access_log.c.sequence == 3))
    assert _verify(settings).broken_at == 3


def test_retention_defaults_to_ten_years_and_refuses_nonsense(monkeypatch):
    from etl.core.audit_review import AuditError

    monkeypatch.delenv("VARDFLYTT_AUDIT_RETENTION_DAYS", raising=False)
    assert retention_days() == 3_653
    for bad in ("0", "-5", "ten"):
        monkeypatch.setenv("VARDFLYTT_AUDIT_RETENTION_DAYS", bad)
        with pytest.raises(AuditError):
            retention_days()


# --- schema ---------------------------------------------------------------------------------------


def test_an_access_log_made_before_0005_is_chained_in_place(tmp_path):
    """A core at 0003 with entries: migration 0005 adds the columns and chains them, oldest
    first, so the old entries verify and new ones follow them."""
    from alembic import command
    from alembic.config import Config

    from etl.core.database import MIGRATIONS, new_engine

    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = new_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE access_log (access_id TEXT PRIMARY KEY, accessed_at DATETIME NOT NULL, "
            "user_name TEXT NOT NULL, process TEXT NOT NULL, action TEXT NOT NULL, "
            "source_system TEXT NOT NULL, entity TEXT, batch_id TEXT NOT NULL, run_id TEXT, "
            "rows BIGINT NOT NULL)"
        )
        for number, day in ((1, 3), (2, 1), (3, 2)):
            connection.exec_driver_sql(
                "INSERT INTO access_log VALUES (?, ?, 'airflow', 'vardflytt:read_source', "
                "'read_source', 'melior', NULL, 'b1', NULL, 10)",
                (f"old-{number}", f"2026-11-0{day} 10:00:00.000000"),
            )
        config.attributes["connection"] = connection
        command.stamp(config, "0003")
    engine.dispose()
    upgraded = core_engine(url)
    with upgraded.connect() as connection:
        assert verify_chain(connection).is_intact
        order = connection.execute(
            sa.select(access_log.c.access_id).order_by(access_log.c.sequence)
        ).scalars()
        assert list(order) == ["old-2", "old-3", "old-1"]  # by time
    settings = SimpleNamespace(resolved_core_url=url, resolved_audit_url=url)
    record_access(settings, "read_source", "melior", "b2", 1)
    with upgraded.connect() as connection:
        assert verify_chain(connection).entries == 4


def test_a_rehearsal_logs_in_the_regions_core_not_in_its_own(settings):
    from etl.cutover.rehearsal import rehearsal_settings

    rehearsal = rehearsal_settings(settings, "w1_skaraborg", 1)
    assert rehearsal.resolved_core_url != settings.resolved_core_url
    assert rehearsal.resolved_audit_url == settings.resolved_core_url
    record_access(rehearsal, "read_source", "melior", "rehearsal-b1", 1)
    assert _verify(settings).entries == 1
