"""The steward queue and the dashboard's steward page list every problem still OPEN, on SQLite
and on the real PostgreSQL.

A delta checks only its new, changed and dependent rows, so after one the problems of earlier
batches whose rows it did not process are still open (the source rows are unchanged, still
broken, still not in the core). ELVIS is fully loaded from a copy of the small estate, then two
deltas follow (as in test_delta_trend.py): delta 1 fixes (b), breaks a good booking (c), deletes
(d) and changes (e) without fixing it; delta 2 fixes (a); delta 3 changes nothing. After delta 3
the bookings still failing ``appointment.scheduled_at.not_null`` are (untouched) of the full load
and (c), (e) of delta 1; deltas 2 and 3 quarantined none of them.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from etl import pipeline
from etl.batch import BatchPaths
from etl.core.database import core_engine
from etl.core.decisions import ReviewStatus
from etl.core.tables import dq_flag, quarantine, quarantine_decision
from etl.dashboard.app import create_app
from etl.dashboard.auth import DashboardUser, Role, TokenAuthenticator, token_digest
from etl.extract import retention
from etl.extract.delta import delta_file
from etl.report.validation import summarise
from etl.settings import Settings
from etl.steward.actions import decide
from etl.steward.queue import QueueFilter, list_queue, open_scope, summary
from tests.cores import BOTH_CORES
from tests.integration.defects import estate_copy_home
from tests.integration.test_delta_trend import CHECK, FULL_AS_OF, SYSTEM, _elvis, _set_time

pytestmark = pytest.mark.integration

FULL, DELTA_1, DELTA_2, DELTA_3 = "open-full", "open-delta-1", "open-delta-2", "open-delta-3"
STEWARD_TOKEN = "steward-token-0123456789abcdef"
IDENTITY_NUMBER = re.compile(r"\b(?:19|20)?\d{6}[-+]?\d{4}\b|\b\d{8}[KMX]\d{3}\b")


@dataclass(frozen=True)
class Estate:
    settings: Settings
    handles: dict[str, str]  # role -> quarantine_id of the batch that quarantined it


@pytest.fixture(scope="module", params=BOTH_CORES)
def estate(request, small_estate, tmp_path_factory, core_of):
    root = tmp_path_factory.mktemp(f"open-problems-{request.param}")
    with estate_copy_home(request.param, small_estate, root, core_of) as settings:
        source = settings.resolved_estate_dir
        pipeline.run_system(SYSTEM, FULL, FULL_AS_OF, settings=settings)
        engine = core_engine(settings.resolved_core_url)
        with engine.connect() as connection:
            problems = set(
                connection.execute(
                    sa.select(quarantine.c.source_key).union(sa.select(dq_flag.c.source_key))
                ).scalars()
            )
            broken = sorted(
                connection.execute(
                    sa.select(quarantine.c.source_key).where(
                        (quarantine.c.dataset == "bokning") & (quarantine.c.check_name == CHECK)
                    )
                ).scalars()
            )
        elvis = _elvis(source)
        with elvis.connect() as connection:
            timed = connection.execute(
                sa.text("SELECT bokning_id, bokad_tid FROM bokning WHERE bokad_tid IS NOT NULL")
            ).all()
        good, good_time = next((str(k), t) for k, t in timed if str(k) not in problems)
        keys = dict(zip(("a", "b", "d", "e", "untouched"), broken, strict=False)) | {"c": good}
        _set_time(source, keys["b"], good_time)
        _set_time(source, keys["c"], None)
        with elvis.begin() as connection:
            connection.execute(
                sa.text("DELETE FROM bokning WHERE bokning_id = :key"), {"key": int(keys["d"])}
            )
            connection.execute(
                sa.text("UPDATE bokning SET langd_min = '45' WHERE bokning_id = :key"),
                {"key": int(keys["e"])},
            )
        elvis.dispose()
        run = pipeline.run_system
        run(SYSTEM, DELTA_1, FULL_AS_OF + dt.timedelta(days=7), settings=settings, kind="delta")
        _set_time(source, keys["a"], good_time)
        run(SYSTEM, DELTA_2, FULL_AS_OF + dt.timedelta(days=14), settings=settings, kind="delta")
        run(SYSTEM, DELTA_3, FULL_AS_OF + dt.timedelta(days=21), settings=settings, kind="delta")
        with engine.connect() as connection:
            handles = {
                role: connection.execute(
                    sa.select(quarantine.c.quarantine_id).where(
                        (quarantine.c.source_key == keys[role])
                        & (quarantine.c.check_name == CHECK)
                        & (quarantine.c.batch_id == batch)
                    )
                ).scalar_one()
                for role, batch in (("untouched", FULL), ("c", DELTA_1), ("e", DELTA_1))
            }
        yield Estate(settings=settings, handles=handles)


def _queue(settings: Settings, **filters) -> dict[str, str]:
    """The default view's rows failing CHECK: handle -> the batch that quarantined it."""
    query_filter = {"system": SYSTEM, "check": CHECK, "status": ReviewStatus.ALL, "limit": None}
    page = list_queue(settings, QueueFilter(**(query_filter | filters)))
    assert page.total == len(page.rows)
    return {row.handle: row.batch_id for row in page.rows}


def test_the_default_queue_lists_the_problems_carried_over_from_earlier_batches(estate):
    h = estate.handles
    assert _queue(estate.settings) == {h["untouched"]: FULL, h["c"]: DELTA_1, h["e"]: DELTA_1}
    # The latest batches alone quarantined none of them: naming one still shows its own only.
    assert _queue(estate.settings, batch_id=DELTA_3) == {}
    assert _queue(estate.settings, batch_id=DELTA_2) == {}


def test_the_open_counts_include_carried_over_problems(estate):
    [line] = [row for row in summary(estate.settings, system=SYSTEM) if row.check == CHECK]
    assert (line.quarantined, line.open) == (3, 3)


def test_the_queue_and_the_validation_report_agree_on_what_is_open(estate):
    """One implementation: every problem the report of delta 3 still counts open, and no other."""
    report, _ = summarise(estate.settings, batch_id=DELTA_3)
    [system] = report.systems
    still_open = {"new", "persisting", "carried_over"}
    in_report = sorted(
        (row.quarantined_in, row.pseudonym, row.check_name)
        for row in system.trend.rows
        if row.status in still_open
    )
    page = list_queue(
        estate.settings, QueueFilter(system=SYSTEM, status=ReviewStatus.ALL, limit=None)
    )
    in_queue = sorted((row.batch_id, row.pseudonym, row.check) for row in page.rows)
    assert in_queue == in_report and len(in_queue) > 3


def test_only_carried_over_problems_are_named_by_id_in_the_default_view(estate):
    """The latest batch's own quarantine is open as a whole, so it is chosen by its batch id: a
    full load's thousands of problems never become a list of ids in the statement."""
    with core_engine(estate.settings.resolved_core_url).connect() as connection:
        scope = open_scope(estate.settings, connection, SYSTEM)
        carried_in = set(
            connection.execute(
                sa.select(quarantine.c.batch_id).where(
                    quarantine.c.quarantine_id.in_(scope.carried_ids)
                )
            ).scalars()
        )
    assert scope.own_batch_ids == [DELTA_3]
    assert scope.carried_ids and DELTA_3 not in carried_in
    assert {estate.handles["untouched"], estate.handles["c"]} <= set(scope.carried_ids)


def _client(settings: Settings) -> TestClient:
    def authenticator(_settings: Settings) -> TokenAuthenticator:
        user = DashboardUser("steward", Role.STEWARD, token_digest(STEWARD_TOKEN))
        return TokenAuthenticator([user], b"a test secret of enough length")

    return TestClient(create_app(settings, authenticator=authenticator))


def _page(settings: Settings) -> str:
    response = _client(settings).get(
        f"/steward?system={SYSTEM}&check={CHECK}&status=open",
        headers={"Authorization": f"Bearer {STEWARD_TOKEN}"},
    )
    assert response.status_code == 200
    return response.text


def test_the_dashboards_steward_page_shows_carried_over_problems_and_their_batch(estate):
    page = _page(estate.settings)
    shown = dict(
        re.findall(
            r'<tr data-handle="([0-9a-f]+)">.*?data-field="quarantined-in"><code>([^<]+)</code>',
            page,
            re.S,
        )
    )
    h = estate.handles
    assert shown == {h["untouched"]: FULL, h["c"]: DELTA_1, h["e"]: DELTA_1}
    assert re.search(r'id="queue-count">3 of 3 rows shown', page)
    assert 'id="queue-notes"' not in page
    assert not IDENTITY_NUMBER.search(page)


def test_a_decision_on_a_carried_over_problem_attaches_to_its_original_record(estate):
    handle = estate.handles["untouched"]
    [_outcome] = decide(estate.settings, [handle[:12]], "fixed_at_source", by="steward")
    with core_engine(estate.settings.resolved_core_url).connect() as connection:
        recorded = connection.execute(
            sa.select(quarantine_decision.c.batch_id, quarantine_decision.c.quarantine_id).where(
                quarantine_decision.c.is_current & (quarantine_decision.c.check_name == CHECK)
            )
        ).all()
    assert [tuple(row) for row in recorded] == [(FULL, handle)]
    assert _queue(estate.settings, status=ReviewStatus.OPEN) == {
        estate.handles["c"]: DELTA_1,
        estate.handles["e"]: DELTA_1,
    }
    [line] = [row for row in summary(estate.settings, system=SYSTEM) if row.check == CHECK]
    assert (line.quarantined, line.open, line.fixed_at_source) == (3, 2, 1)


def test_landing_retention_keeps_the_delta_lists_of_the_chain(estate):
    """Delta 3 (latest promoted) and its base delta 2 are kept whole; further back, delta 1 and
    the full load lose their landed snapshots but keep their manifest and delta lists, so the
    open problems are still known after the purge."""
    settings = estate.settings.model_copy(update={"landing_retention_days": 1})
    now = dt.datetime.now(dt.UTC) + dt.timedelta(days=400)
    catalog = pipeline.catalog(settings)
    purged = {batch.batch_id: batch for batch in retention.purge(catalog, settings, now)}
    assert set(purged) == {FULL, DELTA_1}
    for batch_id in (FULL, DELTA_1):
        paths = BatchPaths.of(settings, batch_id, SYSTEM)
        assert paths.manifest_file.exists() and not paths.landed_file("bokning").exists()
    assert delta_file(BatchPaths.of(settings, DELTA_1, SYSTEM), "bokning").exists()
    assert {Path(f.path).name for f in purged[DELTA_1].kept} >= {
        "_manifest.json",
        "bokning.delta.parquet",
    }
    assert BatchPaths.of(settings, DELTA_2, SYSTEM).landed_file("bokning").exists()
    assert retention.purge(catalog, settings, now) == []  # the kept files are not purged again
    h = estate.handles
    assert _queue(settings) == {h["untouched"]: FULL, h["c"]: DELTA_1, h["e"]: DELTA_1}
    assert list_queue(settings, QueueFilter(system=SYSTEM)).notes == []
    report, _ = summarise(settings, batch_id=DELTA_3)
    assert report.systems[0].trend.is_available


def test_fails_closed_when_an_earlier_deltas_files_are_corrupt(estate, tmp_path):
    """A delta list cut off mid-file (a full disk, a bad copy) is not known either: the queue
    keeps every problem open before that delta and says why, and the report shows no trend,
    instead of a crash or a problem dropped. The files are put back afterwards."""
    settings = estate.settings
    landed = BatchPaths.of(settings, DELTA_1, SYSTEM).landed
    kept = {path: path.read_bytes() for path in landed.glob("*.delta.parquet")}
    try:
        for path, data in kept.items():
            path.write_bytes(data[: len(data) // 2])
        listed = _queue(settings)
        assert set(estate.handles.values()) <= set(listed)
        assert sorted(listed.values()).count(FULL) == 3  # (b) and (d) kept open
        page = list_queue(settings, QueueFilter(system=SYSTEM, limit=None))
        assert any(f"delta files of batch {DELTA_1}" in note for note in page.notes)
        report, _ = summarise(settings, batch_id=DELTA_2)
        assert not report.systems[0].trend.is_available
        for path, data in kept.items():
            path.write_bytes(data)
        manifest = BatchPaths.of(settings, DELTA_1, SYSTEM).manifest_file
        kept[manifest] = manifest.read_bytes()
        manifest.write_bytes(kept[manifest][:20])
        assert sorted(_queue(settings).values()).count(FULL) == 3
        page = list_queue(settings, QueueFilter(system=SYSTEM, limit=None))
        assert any(f"landing manifest of batch {DELTA_1} cannot be read" in n for n in page.notes)
    finally:
        for path, data in kept.items():
            path.write_bytes(data)


def test_fails_closed_when_an_earlier_deltas_files_are_gone(estate):
    """Last in the module: it removes delta 1's delta files (as retention would). Which rows
    delta 1 checked is no longer known, so every problem open before it stays open: (b), fixed
    by delta 1, and (d), deleted, are listed again rather than anything dropped; (a), fixed by
    delta 2 whose files remain, is still resolved."""
    settings = estate.settings
    for path in BatchPaths.of(settings, DELTA_1, SYSTEM).landed.glob("*.delta.parquet"):
        path.unlink()
    listed = _queue(settings)
    assert set(estate.handles.values()) <= set(listed)
    assert sorted(listed.values()).count(FULL) == 3  # untouched, plus (b) and (d) kept open
    page = list_queue(settings, QueueFilter(system=SYSTEM, limit=None))
    assert any(f"delta files of batch {DELTA_1} are gone" in note for note in page.notes)
    html = _page(settings)
    assert 'id="queue-notes"' in html and f"delta files of batch {DELTA_1} are gone" in html
