"""The validation report's trend for deltas, on SQLite and on the real PostgreSQL.

A delta checks only its new, changed and dependent rows, so a problem of an earlier batch whose
row it did not process is still open (carried over), never "resolved". ELVIS is fully loaded
from a copy of the small estate; five bookings are quarantined there for a missing time
(``appointment.scheduled_at.not_null``). Then the legacy system changes and deltas follow:

1. one quarantined booking left alone (a), one fixed (b), one deleted (d), one changed but still
   without a time (e), and a good booking broken (c);
2. a delta of that delta: (a) fixed, everything else left alone;
3. after rolling delta 2 back, delta 3, whose base is delta 1 again;
4. a full load again, after the deltas.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from etl import pipeline
from etl.batch import BatchPaths
from etl.cli import app
from etl.core.database import core_engine
from etl.core.pseudonym import pseudonym, pseudonym_key
from etl.core.tables import dq_flag, quarantine
from etl.extract.delta import delta_file
from etl.load.loader import rewind_watermarks
from etl.load.promote import rollback
from etl.report.validation import SystemSummary, summarise
from etl.settings import Settings
from tests.cores import BOTH_CORES
from tests.integration.defects import estate_copy_home

pytestmark = pytest.mark.integration

SYSTEM = "elvis"
CHECK = "appointment.scheduled_at.not_null"
FULL, DELTA_1, DELTA_2, DELTA_3 = "trend-full", "trend-delta-1", "trend-delta-2", "trend-delta-3"
FULL_2 = "trend-full-2"
FULL_AS_OF = dt.date(2026, 7, 1)


@dataclass(frozen=True)
class Estate:
    settings: Settings
    keys: dict[str, str]  # role (a to e, plus the untouched quarantined one) -> bokning_id
    reports: dict[str, SystemSummary]  # batch -> its report, written right after it loaded

    def pseudonym(self, role: str) -> str:
        return pseudonym(pseudonym_key(self.settings), SYSTEM, self.keys[role])


def _elvis(estate: Path) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{estate / 'elvis' / 'elvis.sqlite'}")


def _set_time(estate: Path, bokning_id: str, value: str | None) -> None:
    engine = _elvis(estate)
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE bokning SET bokad_tid = :value WHERE bokning_id = :key"),
            {"value": value, "key": int(bokning_id)},
        )
    engine.dispose()


def _report(settings: Settings, batch_id: str) -> SystemSummary:
    summary, _ = summarise(settings, batch_id=batch_id)
    [system] = summary.systems
    return system


def _statuses(system: SystemSummary) -> dict[str, tuple[str, str]]:
    """Per pseudonym, the status of its row for CHECK and the batch that quarantined it."""
    rows = [row for row in system.trend.rows if row.check_name == CHECK]
    found = {row.pseudonym: (row.status, row.quarantined_in) for row in rows}
    assert len(found) == len(rows)
    return found


@pytest.fixture(scope="module", params=BOTH_CORES)
def estate(request, small_estate, tmp_path_factory, core_of):
    root = tmp_path_factory.mktemp(f"delta-trend-{request.param}")
    with estate_copy_home(request.param, small_estate, root, core_of) as settings:
        source = settings.resolved_estate_dir
        pipeline.run_system(SYSTEM, FULL, FULL_AS_OF, settings=settings)
        reports = {FULL: _report(settings, FULL)}
        with core_engine(settings.resolved_core_url).connect() as connection:
            problems = {
                table.name: set(
                    connection.execute(
                        sa.select(table.c.source_key).where(table.c.dataset == "bokning")
                    ).scalars()
                )
                for table in (quarantine, dq_flag)
            }
            broken = sorted(
                connection.execute(
                    sa.select(quarantine.c.source_key).where(
                        (quarantine.c.dataset == "bokning") & (quarantine.c.check_name == CHECK)
                    )
                ).scalars()
            )
        assert len(broken) >= 5, broken
        engine = _elvis(source)
        with engine.connect() as connection:
            timed = connection.execute(
                sa.text(
                    "SELECT bokning_id, bokad_tid FROM bokning "
                    "WHERE bokad_tid IS NOT NULL ORDER BY bokning_id"
                )
            ).all()
        engine.dispose()
        good, good_time = next(
            (str(key), time)
            for key, time in timed
            if str(key) not in problems["quarantine"] | problems["dq_flag"]
        )
        keys = {
            "a": broken[0],
            "b": broken[1],
            "d": broken[2],
            "e": broken[3],
            "untouched": broken[4],
            "c": good,
        }

        # Delta 1.
        _set_time(source, keys["b"], good_time)  # fixed
        _set_time(source, keys["c"], None)  # broken
        engine = _elvis(source)
        with engine.begin() as connection:
            connection.execute(
                sa.text("DELETE FROM bokning WHERE bokning_id = :key"), {"key": int(keys["d"])}
            )
            connection.execute(  # changed, still without a time
                sa.text("UPDATE bokning SET langd_min = '45' WHERE bokning_id = :key"),
                {"key": int(keys["e"])},
            )
        engine.dispose()
        run = pipeline.run_system
        run(SYSTEM, DELTA_1, FULL_AS_OF + dt.timedelta(days=7), settings=settings, kind="delta")
        reports[DELTA_1] = _report(settings, DELTA_1)

        # Delta 2, of delta 1: (a) fixed.
        _set_time(source, keys["a"], good_time)
        run(SYSTEM, DELTA_2, FULL_AS_OF + dt.timedelta(days=14), settings=settings, kind="delta")
        reports[DELTA_2] = _report(settings, DELTA_2)

        # Delta 2 rolled back: delta 3's base is delta 1 again.
        with core_engine(settings.resolved_core_url).begin() as connection:
            rollback(connection, DELTA_2)
            assert rewind_watermarks(connection, SYSTEM, settings) == DELTA_1
        run(SYSTEM, DELTA_3, FULL_AS_OF + dt.timedelta(days=21), settings=settings, kind="delta")
        reports[DELTA_3] = _report(settings, DELTA_3)

        run(SYSTEM, FULL_2, FULL_AS_OF + dt.timedelta(days=28), settings=settings)
        reports[FULL_2] = _report(settings, FULL_2)
        yield Estate(settings=settings, keys=keys, reports=reports)


def test_the_full_load_counts_every_quarantined_booking_as_new(estate):
    statuses = _statuses(estate.reports[FULL])
    for role in ("a", "b", "d", "e", "untouched"):
        assert statuses[estate.pseudonym(role)] == ("new", FULL), role
    assert estate.pseudonym("c") not in statuses


def test_a_delta_resolves_only_the_rows_it_processed(estate):
    trend = estate.reports[DELTA_1].trend
    assert _statuses(estate.reports[DELTA_1]) == {
        estate.pseudonym("a"): ("carried_over", FULL),  # unchanged at source: still broken
        estate.pseudonym("untouched"): ("carried_over", FULL),
        estate.pseudonym("b"): ("resolved", FULL),  # fixed at source, checked again
        estate.pseudonym("c"): ("new", DELTA_1),  # a good row broken
        estate.pseudonym("d"): ("deleted_at_source", FULL),
        estate.pseudonym("e"): ("persisting", DELTA_1),  # changed, still without a time
    }
    assert trend.is_available and trend.is_delta and trend.previous_batch_id == FULL
    line = next(line for line in trend.lines if line.check_name == CHECK)
    assert (line.new, line.persisting, line.resolved) == ("<5", "<5", "<5")
    assert (line.deleted_at_source, line.carried_over) == ("<5", "<5")
    # No other check's problems of the full load are resolved by a delta that never saw them.
    assert {row.status for row in trend.rows if row.quarantined_in == FULL} <= {
        "carried_over",
        "resolved",
        "deleted_at_source",
    }
    resolved = {row.pseudonym for row in trend.rows if row.status == "resolved"}
    assert resolved == {estate.pseudonym("b")}


def _after_a_fixed(estate: Estate) -> dict[str, tuple[str, str]]:
    """The statuses of a delta of delta 1 that fixed (a) and changed nothing else."""
    return {
        estate.pseudonym("a"): ("resolved", FULL),
        estate.pseudonym("untouched"): ("carried_over", FULL),
        estate.pseudonym("c"): ("carried_over", DELTA_1),  # quarantined by delta 1
        estate.pseudonym("e"): ("carried_over", DELTA_1),
    }


def test_a_delta_of_a_delta_carries_over_the_problems_of_both(estate):
    trend = estate.reports[DELTA_2].trend
    assert _statuses(estate.reports[DELTA_2]) == _after_a_fixed(estate)
    assert trend.is_available and trend.previous_batch_id == DELTA_1


def test_after_a_rollback_the_trend_is_against_the_batch_still_promoted(estate):
    trend = estate.reports[DELTA_3].trend
    assert _statuses(estate.reports[DELTA_3]) == _after_a_fixed(estate)
    assert trend.is_available and trend.previous_batch_id == DELTA_1


def test_a_full_load_after_deltas_compares_with_every_problem_still_open(estate):
    trend = estate.reports[FULL_2].trend
    assert _statuses(estate.reports[FULL_2]) == {
        estate.pseudonym("untouched"): ("persisting", FULL_2),  # quarantined in the first full
        estate.pseudonym("c"): ("persisting", FULL_2),  # quarantined in delta 1
        estate.pseudonym("e"): ("persisting", FULL_2),
    }
    assert trend.is_available and not trend.is_delta and trend.previous_batch_id == DELTA_3


def test_status_says_a_deltas_quarantine_is_not_every_open_problem(estate):
    runner = CliRunner()
    for batch, is_delta in ((DELTA_1, True), (FULL, False)):
        result = runner.invoke(app, ["status", "--batch", batch])
        assert result.exit_code == 0, result.output
        output = " ".join(result.output.split())
        assert ("still open" in output) == is_delta, batch
        assert (f"delta batch(es) {batch}:" in output) == is_delta, batch


def test_no_trend_when_an_earlier_deltas_files_are_gone(estate):
    """Last in the module: it removes delta 1's delta files (as retention would)."""
    settings = estate.settings
    for path in BatchPaths.of(settings, DELTA_1, SYSTEM).landed.glob("*.delta.parquet"):
        path.unlink()
    assert not delta_file(BatchPaths.of(settings, DELTA_1, SYSTEM), "bokning").exists()
    for batch in (DELTA_1, DELTA_3, FULL_2):
        trend = _report(settings, batch).trend
        assert not trend.is_available and trend.rows == [], batch
        assert f"delta files of batch {DELTA_1} are gone" in trend.note
        assert trend.resolved == 0 and trend.carried_over == 0
    # The full load's own report does not depend on them.
    assert _report(settings, FULL).trend.is_available
