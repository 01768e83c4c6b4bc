"""The freeze window's reconciliation through hash aggregates, on SQLite and PostgreSQL.

Per database, once (module scope): a wave of ELVIS and Melior loaded from a copy of the small
estate, a week of legacy activity on the copy (new, changed and deleted rows), the freeze, the
final delta. The aggregates the final delta's promotion kept must equal a full recount of the
source through the mapping; ``verify`` must pass on them without reading the source again; and a
core row changed behind the pipeline's back must still fail verification, narrowed to its bucket
and then to the row by the full comparison.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import threading

import pytest
import sqlalchemy as sa
import yaml

from etl import pipeline
from etl.batch import BatchPaths
from etl.core.database import core_engine
from etl.core.tables import ENTITY_TABLES, wave_reconciliation
from etl.cutover import ledger, waves
from etl.cutover.plan import one_wave_plan
from etl.cutover.reconcile import _entities
from etl.estate.activity import simulate_activity
from etl.load import hash_aggregates
from etl.settings import PROJECT_ROOT, Settings
from tests.cores import BOTH_CORES
from tests.reports_off import without_batch_reports

pytestmark = pytest.mark.integration

SYSTEMS = ["elvis", "melior"]
FULL_AS_OF = dt.date(2026, 7, 1)
DELTA_AS_OF = dt.date(2026, 7, 15)


def _plan() -> dict:
    return one_wave_plan(
        "t1",
        SYSTEMS,
        {"project_lead": {"airflow_users": ["anna"]}},
        title="freeze window",
        site="SU",
        min_rehearsals=0,
    )


@pytest.fixture(scope="module", params=BOTH_CORES)
def frozen(request, small_estate, tmp_path_factory, core_of):
    root = tmp_path_factory.mktemp(f"freeze-{request.param}")
    estate = root / "estate"
    shutil.copytree(small_estate, estate)  # the shared estate stays read-only
    mappings = root / "mappings"
    shutil.copytree(PROJECT_ROOT / "mappings", mappings)
    (mappings / "waves.yaml").write_text(yaml.safe_dump(_plan()), encoding="utf-8")
    with core_of(request.param, root) as core_url, pytest.MonkeyPatch.context() as patch:
        patch.setenv("VARDFLYTT_HOME", str(root / "home"))
        patch.setenv("VARDFLYTT_ESTATE_DIR", str(estate))
        patch.setenv("VARDFLYTT_CORE_URL", core_url)
        patch.setenv("VARDFLYTT_MAPPINGS_DIR", str(mappings))
        for name in ("VARDFLYTT_LANDING_DIR", "VARDFLYTT_SOURCE_ELVIS_URL"):
            patch.delenv(name, raising=False)
        without_batch_reports(patch)  # nothing here reads a batch's validation report
        settings = Settings()
        waves.load_wave(settings, "t1", "initial", FULL_AS_OF, actor="ivar")
        simulate_activity(estate, seed=11)
        waves.freeze(settings, "t1", actor="ivar")
        waves.load_wave(settings, "t1", "final", DELTA_AS_OF, actor="ivar")
        yield settings


def _finals(settings: Settings) -> dict[str, str]:
    with core_engine(settings.resolved_core_url).connect() as connection:
        return waves.final_delta_batches(connection, "t1")


def _newest_reconciliation(settings: Settings, system: str, entity: str) -> sa.Row:
    with core_engine(settings.resolved_core_url).connect() as connection:
        rows = connection.execute(
            sa.select(wave_reconciliation)
            .where(
                (wave_reconciliation.c.source_system == system)
                & (wave_reconciliation.c.entity == entity)
            )
            .order_by(wave_reconciliation.c.checked_at.desc())
        ).all()
    return rows[0]


def test_the_final_deltas_aggregates_equal_a_full_recount_of_the_source(frozen):
    """Initial load's aggregates (from its files), updated by the delta's changed rows only,
    equal the aggregates of the whole source read again through the mapping now."""
    finals = _finals(frozen)
    assert set(finals) == set(SYSTEMS)
    engine = core_engine(frozen.resolved_core_url)
    changed = 0
    for system in SYSTEMS:
        with engine.connect() as connection:
            kept = hash_aggregates.recorded(connection, finals[system])
            row = connection.execute(
                sa.text(
                    "SELECT rows_inserted + rows_updated + rows_deleted FROM promotion "
                    "WHERE batch_id = :b"
                ),
                {"b": finals[system]},
            ).scalar_one()
            changed += row
        assert kept is not None, system
        recount = f"recount-{system}"
        pipeline.extract(system, recount, DELTA_AS_OF, frozen, clean_abandoned=False)
        pipeline.transform_and_validate(system, recount, frozen)
        pipeline.release_system(system, recount, frozen)
        paths = BatchPaths.of(frozen, recount, system)
        for entity in _entities(pipeline.catalog(frozen), system):
            buckets, sums = hash_aggregates.file_aggregates(
                paths.stage_file("validated", entity), entity, frozen.chunk_rows
            )
            assert hash_aggregates.differing_buckets(kept[entity][0], buckets) == [], entity
            assert hash_aggregates.differing_columns(kept[entity][1], sums) == [], entity
            assert int(kept[entity][0]["row_count"].sum()) == int(buckets["row_count"].sum())
        shutil.rmtree(paths.root.parent, ignore_errors=True)
    assert changed > 0  # the week of activity did change the core: the update was exercised


def test_verify_in_the_freeze_window_passes_on_the_aggregates_alone(frozen, monkeypatch):
    from etl.cutover import reconcile

    def no_source_read(*_args, **_kwargs):
        raise AssertionError("the source was read again although nothing differed")

    monkeypatch.setattr(reconcile, "_measure", no_source_read)
    results = waves.verify(frozen, "t1", DELTA_AS_OF, actor="ivar")
    assert all(c.passed for c in results), [c.as_dict() for c in results]
    row = _newest_reconciliation(frozen, "melior", "observation")
    assert row.is_reconciled and json.loads(row.aggregates)["method"] == "hash aggregates"
    assert row.expected_rows == row.core_rows > 0


@pytest.mark.parametrize(
    "change", ["content hash", "malformed content hash", "numeric column only", "row deleted"]
)
def test_a_core_row_changed_behind_the_pipelines_back_fails_verification(
    frozen, change, monkeypatch
):
    reconciled: list[list[dict]] = []  # what each reconciliation of the wave returned
    reconcile_wave = waves.reconcile_wave

    def kept(*arguments, **options):
        reconciled.append(reconcile_wave(*arguments, **options))
        return reconciled[-1]

    monkeypatch.setattr(waves, "reconcile_wave", kept)
    engine = core_engine(frozen.resolved_core_url)
    table = ENTITY_TABLES["observation"]
    with engine.connect() as connection:
        victim = connection.execute(
            sa.select(table)
            .where((table.c.source_system == "melior") & table.c.value_numeric.is_not(None))
            .order_by(table.c.observation_id)
            .limit(1)
        ).one()
    key = table.c.observation_id == victim.observation_id
    with engine.begin() as connection:  # behind the pipeline's back: no batch, no history
        if change == "content hash":
            connection.execute(
                table.update()
                .where(key)
                .values(value_numeric=victim.value_numeric + 1, content_hash="0123456789abcdef")
            )
        elif change == "malformed content hash":
            connection.execute(table.update().where(key).values(content_hash="edited by hand"))
        elif change == "numeric column only":
            connection.execute(
                table.update().where(key).values(value_numeric=victim.value_numeric + 1)
            )
        else:
            connection.execute(table.delete().where(key))
    try:
        with pytest.raises(
            ledger.LedgerError, match="reconciliation exact: mismatch: melior/observation"
        ):
            waves.verify(frozen, "t1", DELTA_AS_OF, actor="ivar")
        row = _newest_reconciliation(frozen, "melior", "observation")
        evidence = json.loads(row.aggregates)
        # The aggregates differed, so the source was read again and the rows compared.
        assert not row.is_reconciled and evidence["method"] == "full re-read"
        if change != "numeric column only":
            # narrowed to the victim's bucket, then to the victim
            assert evidence["differing_buckets"] == [victim.observation_id[:2]]
        if change in ("content hash", "malformed content hash"):
            assert row.content_mismatches == 1
        elif change == "row deleted":
            assert row.missing_in_core == 1
        else:
            assert "value_numeric.sum" in evidence["mismatches"]
        if change != "numeric column only":
            # the rows the verification's own full comparison listed
            [results] = reconciled
            found = next(
                r for r in results if (r["source_system"], r["entity"]) == ("melior", "observation")
            )
            listed = found["examples"]["content_mismatches"] + found["examples"]["missing_in_core"]
            assert listed == [victim.observation_id]
    finally:
        with engine.begin() as connection:
            connection.execute(table.delete().where(key))
            connection.execute(table.insert().values(**victim._mapping))
    assert all(c.passed for c in waves.verify(frozen, "t1", DELTA_AS_OF, actor="ivar"))


def test_the_cores_aggregates_are_queried_at_once_on_postgresql_in_turn_on_sqlite(
    frozen, monkeypatch
):
    """The verification waits on the database: on PostgreSQL its grouped queries run
    ``PARALLEL_QUERIES`` at a time, each on a connection of its own, with the same results; on
    SQLite (one writer, a file) one after the other on the caller's connection."""
    from etl.cutover import reconcile

    engine = core_engine(frozen.resolved_core_url)
    if engine.dialect.name != "postgresql":
        used: list[object] = []
        query = hash_aggregates.core_aggregates

        def recorded(connection, entity, system):
            used.append(connection)
            return query(connection, entity, system)

        monkeypatch.setattr(hash_aggregates, "core_aggregates", recorded)
        entities = _entities(pipeline.catalog(frozen), "melior")
        with engine.connect() as connection:
            one_by_one = reconcile.core_hash_aggregates(connection, "melior", entities)
        assert used and all(c is connection for c in used)
        assert list(one_by_one) == entities
        return
    entities = _entities(pipeline.catalog(frozen), "melior")
    query = hash_aggregates.core_aggregates
    first = threading.Barrier(reconcile.PARALLEL_QUERIES, timeout=10)
    connections: list[int] = []
    lock = threading.Lock()

    def meeting(connection, entity, system):
        with lock:
            connections.append(id(connection))
            is_first = len(connections) <= reconcile.PARALLEL_QUERIES
        if is_first:
            first.wait()  # broken (an error) if the first queries ran one after the other
        return query(connection, entity, system)

    monkeypatch.setattr(hash_aggregates, "core_aggregates", meeting)
    with engine.connect() as connection:
        at_once = reconcile.core_hash_aggregates(connection, "melior", entities)
    monkeypatch.undo()
    assert len(set(connections[: reconcile.PARALLEL_QUERIES])) == reconcile.PARALLEL_QUERIES
    assert list(at_once) == entities
    with engine.connect() as connection:
        for entity in entities:
            buckets, sums = hash_aggregates.core_aggregates(connection, entity, "melior")
            assert at_once[entity][0].equals(buckets), entity
            assert at_once[entity][1] == sums, entity
