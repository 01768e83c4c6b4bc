"""The data steward's loop on a migrated ELVIS, on SQLite and PostgreSQL: list the quarantine,
decide (waive, fix at source, re-inject), re-run, and see what became of each row.

One migration per database (module scope); every test decides on its own rows and re-runs in its
own batch, so the tests do not depend on each other's order. ELVIS is read from a copy of the
small estate's database, so one test can correct a row at source.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from etl import pipeline
from etl.cli import app
from etl.core.audit import current_user
from etl.core.database import core_engine
from etl.settings import Settings
from etl.steward import actions
from etl.steward.queue import QueueFilter, ReviewStatus, list_queue, summary
from tests.cores import BOTH_CORES

pytestmark = pytest.mark.integration

AS_OF = dt.date(2026, 7, 1)
SYSTEM = "elvis"
BATCH = "elvis-steward"
WAIVABLE = "appointment.scheduled_at.not_null"  # error, waivable in thresholds.yaml
NOT_WAIVABLE = "source.invalid_identity_number"
UNPARSEABLE = "source.unparseable_date"
JUSTIFICATION = "Booking time never recorded in ELVIS; the clinic confirms the visit took place"


@dataclass(frozen=True)
class Migrated:
    settings: Settings
    source: Path  # the copy of ELVIS this module reads


@pytest.fixture(scope="module", params=BOTH_CORES)
def migrated(request, small_estate, tmp_path_factory, core_of):
    root = tmp_path_factory.mktemp(f"steward-{request.param}")
    source = root / "elvis.sqlite"
    shutil.copyfile(small_estate / "elvis" / "elvis.sqlite", source)
    with core_of(request.param, root) as core_url, pytest.MonkeyPatch.context() as patch:
        patch.setenv("VARDFLYTT_HOME", str(root / "home"))
        patch.setenv("VARDFLYTT_ESTATE_DIR", str(small_estate))
        patch.setenv("VARDFLYTT_CORE_URL", core_url)
        patch.setenv("VARDFLYTT_SOURCE_ELVIS_URL", f"sqlite:///{source}")
        patch.setenv("VARDFLYTT_PSEUDONYM_KEY", "steward-test-key-0123456789")
        patch.setenv("LOGNAME", "test.steward")
        patch.delenv("AIRFLOW_CTX_DAG_OWNER", raising=False)
        settings = Settings()
        pipeline.run_system(SYSTEM, BATCH, AS_OF, settings=settings)
        yield Migrated(settings, source)


def _rows(settings: Settings, check: str, batch_id: str = BATCH):
    return list_queue(settings, QueueFilter(check=check, batch_id=batch_id, limit=None)).rows


def _read(settings: Settings, sql: str, **parameters) -> pd.DataFrame:
    with core_engine(settings.resolved_core_url).connect() as connection:
        return pd.read_sql(sa.text(sql), connection, params=parameters)


def _utc(moment: dt.datetime) -> dt.datetime:
    """SQLite hands timestamps back naive (stored as UTC); PostgreSQL hands them back aware."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _source_key(settings: Settings, handle: str) -> str:
    """The raw key behind a handle: the test may look, the steward views may not."""
    frame = _read(settings, "SELECT source_key FROM quarantine WHERE quarantine_id = :h", h=handle)
    return frame["source_key"].iloc[0]


def test_the_queue_lists_every_quarantined_row_and_filters_it(migrated):
    settings = migrated.settings
    page = list_queue(settings, QueueFilter(batch_id=BATCH, limit=None))

    # Which rows the pipeline quarantines is tests/integration/test_pipeline.py's business; the
    # queue must show every one of them, once.
    quarantined = _read(
        settings, "SELECT dataset, row_number, reason FROM quarantine WHERE batch_id = :b", b=BATCH
    )
    expected = {
        (d, int(n), r)
        for d, n, r in zip(
            quarantined["dataset"], quarantined["row_number"], quarantined["reason"], strict=True
        )
    }
    assert len(expected) == len(quarantined) > 10
    assert {(r.dataset, r.row_number, r.reason) for r in page.rows} == expected
    assert page.total == len(page.rows) == len(expected)
    assert {r.batch_id for r in page.rows} == {BATCH}
    latest = _read(settings, "SELECT batch_id FROM load_batch ORDER BY started_at DESC LIMIT 1")[
        "batch_id"
    ].iloc[0]
    by_default = list_queue(settings, QueueFilter(limit=None)).rows  # each system's latest batch
    assert by_default and {r.batch_id for r in by_default} == {latest}
    assert all(r.pseudonym and r.pseudonym.startswith("ps_") for r in page.rows)

    waivable = _rows(settings, WAIVABLE)
    assert waivable and {(r.entity, r.reason, r.field) for r in waivable} == {
        ("appointment", "missing_value", "bokad_tid")
    }
    unparseable = list_queue(
        settings, QueueFilter(reason="unparseable_date", batch_id=BATCH, limit=None)
    ).rows
    assert unparseable and {r.check for r in unparseable} == {UNPARSEABLE}
    assert {r.entity for r in list_queue(settings, QueueFilter(entity="patient")).rows} == {
        "patient"
    }
    limited = list_queue(settings, QueueFilter(batch_id=BATCH, limit=2))
    assert len(limited.rows) == 2 and limited.total == len(expected)
    assert list_queue(settings, QueueFilter(system="melior")).total == 0
    open_rows = list_queue(settings, QueueFilter(batch_id=BATCH, status=ReviewStatus.OPEN))
    decided = [
        list_queue(settings, QueueFilter(batch_id=BATCH, status=status)).total
        for status in (ReviewStatus.FIXED_AT_SOURCE, ReviewStatus.WAIVED, ReviewStatus.REINJECT)
    ]
    assert open_rows.total + sum(decided) == len(expected)

    counts = {(row.system, row.check): row for row in summary(settings, BATCH)}
    assert counts[(SYSTEM, WAIVABLE)].quarantined == len(waivable)
    assert sum(row.quarantined for row in counts.values()) == len(expected)


def test_waiving_needs_a_waivable_check_and_a_real_justification(migrated):
    settings = migrated.settings
    unwaivable = _rows(settings, NOT_WAIVABLE)[0].handle
    waivable = _rows(settings, WAIVABLE)[-1].handle

    with pytest.raises(actions.StewardError, match=r"thresholds\.yaml does not allow"):
        actions.waive(settings, [unwaivable, waivable], JUSTIFICATION)
    for thin in ("", "ok", "fine by me"):
        with pytest.raises(actions.StewardError, match="justification"):
            actions.waive(settings, [waivable], thin)
    with pytest.raises(actions.StewardError, match="looks like an identity number"):
        actions.waive(settings, [waivable], "patient 19121212-1212 confirmed by the clinic")
    key = _source_key(settings, waivable)
    with pytest.raises(actions.StewardError, match="source keys"):
        actions.waive(settings, [waivable], f"booking {key} confirmed by the clinic on paper")

    assert actions.history(settings, unwaivable) == []
    assert actions.history(settings, waivable) == []  # nothing was recorded


def test_a_waived_row_loads_flagged_on_the_rerun_and_every_row_is_accounted_for(migrated):
    settings = migrated.settings
    row = _rows(settings, WAIVABLE)[0]
    before = _read(
        settings,
        "SELECT quarantined FROM batch_accounting WHERE batch_id = :b AND entity = 'appointment'",
        b=BATCH,
    )["quarantined"].iloc[0]

    logged_before = len(_read(settings, "SELECT * FROM access_log WHERE action = 'steward_waived'"))

    [decision] = actions.waive(settings, [row.handle[:10]], JUSTIFICATION, by="anna.steward")
    assert (decision.decision, decision.decided_by, decision.is_recorded) == (
        "waived",
        "anna.steward",
        True,
    )
    report = actions.rerun(settings, [row.handle], "waive_test")

    [outcome] = report.outcomes
    assert (outcome.outcome, outcome.decision, outcome.pseudonym) == (
        "waived",
        "waived",
        row.pseudonym,
    )
    new_batch = report.batches[SYSTEM]
    assert report.is_reconciled == {SYSTEM: True} and not report.problems
    # (Rows pointing at a patient quarantined in the batch load flagged too, under their own
    # reference check: etl/validate/references.py.)
    flagged = list_queue(
        settings, QueueFilter(batch_id=new_batch, check=WAIVABLE, is_flagged=True)
    ).rows
    assert [(f.pseudonym, f.reason, f.decision, f.decided_by) for f in flagged] == [
        (row.pseudonym, "waived:missing_value", "waived", "anna.steward")
    ]
    loaded = _read(
        settings,
        "SELECT batch_id FROM appointment WHERE source_system = :s AND source_key = :k",
        s=SYSTEM,
        k=_source_key(settings, row.handle),
    )
    assert list(loaded["batch_id"]) == [new_batch]

    accounting = _read(settings, "SELECT * FROM batch_accounting WHERE batch_id = :b", b=new_batch)
    assert (
        accounting["extracted"]
        == accounting["loaded"]
        + accounting["quarantined"]
        + accounting["excluded"]
        + accounting["merged"]
    ).all()
    assert accounting["is_verified"].all()
    after = accounting.loc[accounting["entity"] == "appointment", "quarantined"].iloc[0]
    assert after == before - 1

    log = _read(
        settings, "SELECT * FROM access_log WHERE action = 'steward_waived' ORDER BY accessed_at"
    )
    assert len(log) == logged_before + 1  # Patientdatalagen: the decision is a logged access
    entry = log.iloc[-1]
    assert (entry["batch_id"], entry["entity"], entry["rows"]) == (BATCH, "appointment", 1)
    # Who: the account that ran the command (--by is a claim, kept in the detail); the pseudonym
    # of the row decided on, never its key.
    assert entry["user_name"] == current_user()
    assert json.loads(entry["detail"])["decided_by"] == "anna.steward"
    assert json.loads(entry["subjects"]) == [row.pseudonym]


def test_fixed_at_source_rows_load_once_the_source_is_fixed_and_persist_until_then(migrated):
    settings = migrated.settings
    corrected, still_wrong = _rows(settings, UNPARSEABLE)[:2]
    corrected_key = int(_source_key(settings, corrected.handle))

    decisions = actions.fix_at_source(settings, [corrected.handle, still_wrong.handle], by="bo")
    assert {(d.decision, d.decided_by) for d in decisions} == {("fixed_at_source", "bo")}
    loaded = _read(settings, "SELECT source_key FROM encounter WHERE batch_id = :b", b=BATCH)
    with sqlite3.connect(migrated.source) as source:  # the legacy system is corrected:
        # the contact gets the start time of one of the same patient's contacts that loaded.
        [(patient_id,)] = source.execute(
            "SELECT patient_id FROM vardkontakt WHERE kontakt_id = ?", (corrected_key,)
        ).fetchall()
        start_times = dict(
            source.execute(
                "SELECT kontakt_id, start_tid FROM vardkontakt WHERE patient_id = ?", (patient_id,)
            ).fetchall()
        )
        good = next(t for k, t in start_times.items() if str(k) in set(loaded["source_key"]))
        source.execute(
            "UPDATE vardkontakt SET start_tid = ? WHERE kontakt_id = ?", (good, corrected_key)
        )
    report = actions.rerun(settings, [corrected.handle, still_wrong.handle], "fix_test")

    outcomes = {o.handle: o for o in report.outcomes}
    assert outcomes[corrected.handle].outcome == "resolved"
    assert outcomes[still_wrong.handle].outcome == "persisting"
    assert "unparseable_date" in outcomes[still_wrong.handle].detail
    persisting = list_queue(
        settings,
        QueueFilter(batch_id=report.batches[SYSTEM], status=ReviewStatus.FIXED_AT_SOURCE),
    ).rows
    assert [(r.pseudonym, r.decision, r.decided_by) for r in persisting] == [
        (still_wrong.pseudonym, "fixed_at_source", "bo")
    ]


def test_fix_all_rows_of_a_check_at_once_and_again_changes_nothing(migrated):
    settings = migrated.settings
    handles = actions.handles_for_check(settings, SYSTEM, NOT_WAIVABLE, BATCH)
    assert len(handles) == len(_rows(settings, NOT_WAIVABLE))

    first = actions.fix_at_source(settings, handles, by="bo")
    again = actions.fix_at_source(settings, handles, by="bo")

    assert all(d.is_recorded for d in first) and not any(d.is_recorded for d in again)
    # An unchanged decision reports the one already recorded: same steward, same time.
    assert [(d.decided_by, _utc(d.decided_at)) for d in again] == [
        (d.decided_by, _utc(d.decided_at)) for d in first
    ]
    with pytest.raises(actions.StewardError, match="no quarantined row"):
        actions.handles_for_check(settings, SYSTEM, "patient.no_such.check", BATCH)


def test_reinject_supersedes_the_waiver_and_the_trail_shows_who_and_when(migrated):
    settings = migrated.settings
    row = _rows(settings, WAIVABLE)[1]
    waived_at = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC)

    actions.waive(settings, [row.handle], JUSTIFICATION, by="anna.steward", decided_at=waived_at)
    [reinjected] = actions.reinject(settings, [row.handle])  # by: the OS account (LOGNAME)
    report = actions.rerun(settings, [row.handle], "reinject_test")

    assert reinjected.superseded == "waived" and "supersedes a waiver" in reinjected.note
    assert [(o.outcome, o.decision) for o in report.outcomes] == [("persisting", "reinject")]
    trail = actions.history(settings, row.handle)
    assert [(e.decision, e.decided_by, e.is_current) for e in trail] == [
        ("waived", "anna.steward", False),
        ("reinject", "test.steward", True),
    ]
    assert _utc(trail[0].decided_at) == waived_at
    assert trail[0].justification == JUSTIFICATION
    assert {e.pseudonym for e in trail} == {row.pseudonym}
    # The row's handle in the re-run batch finds the same trail: decisions outlive batches.
    [again] = [
        r for r in _rows(settings, WAIVABLE, report.batches[SYSTEM]) if r.pseudonym == row.pseudonym
    ]
    assert again.handle != row.handle
    assert [e.decision_id for e in actions.history(settings, again.handle)] == [
        e.decision_id for e in trail
    ]


def _tokens(text: str) -> set[str]:
    return set(re.findall(r"[0-9A-Za-zÅÄÖåäöÉé+-]+", text))


def test_steward_views_show_no_source_key_identity_number_or_name(migrated):
    settings = migrated.settings
    runner = CliRunner()
    handle = _rows(settings, NOT_WAIVABLE)[0].handle
    outputs = []
    for arguments in (
        ["steward", "list", "--limit", "0"],
        ["steward", "list", "--flagged", "--batch", f"{SYSTEM}__waive_test"],
        ["steward", "list", "--status", "fixed_at_source"],
        ["steward", "summary"],
        ["steward", "history", "--limit", "0"],
        ["steward", "history", handle],
    ):
        result = runner.invoke(app, arguments)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    output = "\n".join(outputs)
    assert handle in output and "ps_" in output  # the views are not empty

    keys = _read(settings, "SELECT source_key FROM quarantine UNION SELECT source_key FROM dq_flag")
    with sqlite3.connect(migrated.source) as source:
        people = pd.read_sql("SELECT pnr, reservnr, fornamn, efternamn FROM patient", source)
    identity_numbers = pd.concat([people["pnr"], people["reservnr"]]).dropna()
    secrets = (
        set(keys["source_key"].dropna())
        | set(identity_numbers)
        | {re.sub(r"\D", "", number) for number in identity_numbers}
        | {part for name in people["efternamn"].dropna() for part in name.split()}
    )
    assert len(keys) > 20 and len(identity_numbers) > 300  # the check has something to find
    leaked = _tokens(output) & secrets
    assert not leaked, f"steward views show raw values: {sorted(leaked)[:5]}"


def test_the_command_line_refuses_clearly_and_records_nothing(migrated):
    settings = migrated.settings
    runner = CliRunner()
    handle = _rows(settings, NOT_WAIVABLE)[1].handle
    before = actions.history(settings, handle)

    result = runner.invoke(app, ["steward", "waive", handle, "--justification", JUSTIFICATION])

    assert result.exit_code == 1
    assert "thresholds.yaml does not allow" in " ".join(result.output.split())
    assert actions.history(settings, handle) == before
    result = runner.invoke(app, ["steward", "fix", "--all", "--system", SYSTEM])
    assert result.exit_code == 2 and "--check" in result.output
