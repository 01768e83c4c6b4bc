"""Stage, promote, roll back (etl.load.promote), on SQLite and on the real PostgreSQL.

After a rollback the core tables are identical, by checksum over every column of every row, to
their state before the batch; a batch whose rows a later batch changed is refused (or rolled back
after it with cascade); promoting or rolling back twice changes nothing.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from etl import pipeline
from etl.core.database import core_engine
from etl.core.tables import ENTITY_TABLES, HISTORY_TABLES, STAGED_TABLES, promotion, staged_deletion
from etl.load.promote import (
    PromotionError,
    promote,
    promotion_row,
    record_staged,
    rollback,
)
from etl.settings import Settings
from tests.core_fingerprint import core_fingerprint
from tests.core_snapshot import restore_core, save_core

pytestmark = pytest.mark.integration

AS_OF = dt.date(2026, 7, 1)
ORDER = ["diagnosis"]


@pytest.fixture
def migrated(small_estate, settings_for, core_url, tmp_path, request):
    """Melior fully loaded as batch ``full``; returns the settings, the engine and the empty
    core's checksums: a copy of the module's loaded core and home (the same rows a load here
    would leave): on SQLite its file (``migrated_sqlite``), on PostgreSQL its rows, restored into
    this test's fresh schema (``migrated_postgres``, tests/core_snapshot.py)."""
    settings = settings_for(small_estate, core_url)
    if core_url == f"sqlite:///{tmp_path / 'core.sqlite'}":
        template, empty = request.getfixturevalue("migrated_sqlite")
        for database in template.glob("core.sqlite*"):
            shutil.copyfile(database, tmp_path / database.name)
    else:
        template, empty = request.getfixturevalue("migrated_postgres")
        restore_core(template / "core", core_url)
    shutil.copytree(template / "home", settings.home, dirs_exist_ok=True)
    return settings, core_engine(settings.resolved_core_url), empty


def _load_template(template: Path, estate: Path, url: str) -> dict[str, str]:
    """Melior loaded as batch ``full`` into ``url`` with its home in ``template``; returns the
    empty core's checksums."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VARDFLYTT_HOME", str(template / "home"))
        patch.setenv("VARDFLYTT_ESTATE_DIR", str(estate))
        patch.setenv("VARDFLYTT_CORE_URL", url)
        empty = _sums(core_engine(url))
        pipeline.run_system("melior", "full", AS_OF, settings=Settings())
    core_engine(url).dispose()  # every connection closed: a SQLite file is whole
    return empty


@pytest.fixture(scope="module")
def migrated_sqlite(small_estate, tmp_path_factory):
    """Melior loaded as batch ``full`` once for the module into a SQLite core and a home (the
    tests change theirs: each gets a copy); with the empty core's checksums."""
    template = tmp_path_factory.mktemp("promotion_template")
    return template, _load_template(template, small_estate, f"sqlite:///{template / 'core.sqlite'}")


@pytest.fixture(scope="module")
def migrated_postgres(small_estate, tmp_path_factory, postgres_schema):
    """The same once for the module into a PostgreSQL schema, whose rows each test restores."""
    template = tmp_path_factory.mktemp("promotion_template_pg")
    with postgres_schema() as url:
        empty = _load_template(template, small_estate, url)
        save_core(url, template / "core")
    return template, empty


def _sums(engine) -> dict[str, str]:
    with engine.connect() as connection:
        return core_fingerprint(connection)


def _stage_change(engine, batch_id: str, update_ids: list[str], new: int, delete_ids: list[str]):
    """Stage a batch by hand: some diagnoses changed, some new, some deleted in the source."""
    staged = STAGED_TABLES["diagnosis"]
    with engine.begin() as connection:
        rows = [
            dict(r._mapping)
            for r in connection.execute(
                sa.select(ENTITY_TABLES["diagnosis"]).where(
                    ENTITY_TABLES["diagnosis"].c.diagnosis_id.in_(update_ids)
                )
            )
        ]
        template = dict(rows[0])
        changed = [
            {**row, "icd10_code": "Z00.0", "content_hash": f"{batch_id}-{i}", "batch_id": batch_id}
            for i, row in enumerate(rows)
        ]
        added = [
            {
                **template,
                "diagnosis_id": f"{batch_id}-new-{i:03d}",
                "source_key": f"NEW{i}",
                "content_hash": f"{batch_id}-new-{i}",
                "batch_id": batch_id,
            }
            for i in range(new)
        ]
        connection.execute(staged.insert(), changed + added)
        if delete_ids:
            connection.execute(
                staged_deletion.insert(),
                [
                    {
                        "batch_id": batch_id,
                        "entity": "diagnosis",
                        "row_id": i,
                        "source_system": "melior",
                    }
                    for i in delete_ids
                ],
            )
        record_staged(connection, batch_id, "melior", "delta", "w-test", None)


def _diagnosis_ids(engine, count: int, offset: int = 0) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.text(
                    "SELECT diagnosis_id FROM diagnosis ORDER BY diagnosis_id "
                    f"LIMIT {count} OFFSET {offset}"
                )
            ).scalars()
        )


def test_rollback_restores_the_core_exactly_and_both_are_idempotent(migrated):
    _settings, engine, _empty = migrated
    before = _sums(engine)
    _stage_change(
        engine, "d1", _diagnosis_ids(engine, 10), new=5, delete_ids=_diagnosis_ids(engine, 3, 50)
    )
    with engine.begin() as connection:
        report = promote(connection, "d1", ORDER)
    counts = report.entities["diagnosis"]
    assert (counts.updated, counts.inserted, counts.deleted) == (10, 5, 3)
    assert counts.verified == 15
    after = _sums(engine)
    assert after["diagnosis"] != before["diagnosis"]
    assert after["patient"] == before["patient"]
    with engine.begin() as connection:
        assert promote(connection, "d1", ORDER).already_done
    assert _sums(engine) == after

    with engine.begin() as connection:
        rollback(connection, "d1")
    assert _sums(engine) == before
    with engine.begin() as connection:
        assert rollback(connection, "d1")[0].already_done
        assert promotion_row(connection, "d1")["state"] == "rolled_back"
        leftover = connection.execute(
            sa.select(sa.func.count())
            .select_from(HISTORY_TABLES["diagnosis"])
            .where(HISTORY_TABLES["diagnosis"].c.history_batch_id == "d1")
        ).scalar_one()
        assert leftover == 0
    assert _sums(engine) == before


def test_a_batch_changed_again_later_is_refused_alone_and_cascades_in_order(migrated):
    _settings, engine, _empty = migrated
    before = _sums(engine)
    ids = _diagnosis_ids(engine, 10)
    _stage_change(engine, "d1", ids, new=2, delete_ids=[])
    with engine.begin() as connection:
        promote(connection, "d1", ORDER)
    after_d1 = _sums(engine)
    # d2 changes two rows d1 changed, and one d1 did not touch.
    _stage_change(engine, "d2", [*ids[:2], *_diagnosis_ids(engine, 1, 40)], new=0, delete_ids=[])
    with engine.begin() as connection:
        promote(connection, "d2", ORDER)

    with pytest.raises(PromotionError) as excinfo, engine.begin() as connection:
        rollback(connection, "d1")
    message = str(excinfo.value)
    assert "cannot roll back d1 alone" in message
    assert "d2 (melior, wave w-test, 2 shared rows)" in message
    assert "--cascade" in message

    with engine.begin() as connection:
        undone = rollback(connection, "d1", cascade=True)
    assert [r.batch_id for r in undone] == ["d2", "d1"]
    assert _sums(engine) == before

    # Rolled back in the right order by hand gives the same result.
    _stage_change(engine, "d3", ids, new=2, delete_ids=[])
    with engine.begin() as connection:
        promote(connection, "d3", ORDER)
    _stage_change(engine, "d4", ids[:2], new=0, delete_ids=[])
    with engine.begin() as connection:
        promote(connection, "d4", ORDER)
    with engine.begin() as connection:
        rollback(connection, "d4")
    with engine.begin() as connection:
        rollback(connection, "d3")
    assert _sums(engine) == before
    assert after_d1 != before


def test_rolling_back_the_full_load_empties_the_core_and_the_sequence_records_order(migrated):
    settings, engine, empty = migrated
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(promotion.c.batch_id, promotion.c.state, promotion.c.seq)
        ).all()
    assert [(r.batch_id, r.state, r.seq) for r in rows] == [("full", "promoted", 1)]
    with engine.begin() as connection:
        rollback(connection, "full")
    assert _sums(engine) == empty
    # The batch can be staged and promoted again: same core as the first time.
    report = pipeline.run_system("melior", "full", AS_OF, settings=settings)
    assert report.is_reconciled
    assert _sums(engine) != empty


def test_a_staged_batch_waits_for_promotion(small_estate, settings_for, core_url):
    settings = settings_for(small_estate, core_url)
    engine = core_engine(settings.resolved_core_url)
    empty = _sums(engine)
    pipeline.extract("melior", "w", AS_OF, settings)
    pipeline.transform_and_validate("melior", "w", settings)
    pipeline.gate("melior", "w", settings=settings)
    staged = pipeline.load("melior", "w", settings=settings, promote_now=False)
    assert not any(row["is_verified"] for row in staged["accounting"])
    assert _sums(engine) == empty, "staging must not touch the core tables"
    promoted = pipeline.promote("melior", "w", settings=settings)
    assert all(row["is_verified"] for row in promoted["accounting"])
    again = pipeline.promote("melior", "w", settings=settings)
    assert again["accounting"] == promoted["accounting"]


def _history_ops(engine, batch_id: str) -> list[str]:
    history = HISTORY_TABLES["diagnosis"]
    with engine.connect() as connection:
        return sorted(
            connection.execute(
                sa.select(history.c.history_op).where(history.c.history_batch_id == batch_id)
            ).scalars()
        )


def test_rows_a_batch_inserts_are_undone_by_their_batch_id_without_history_rows(migrated):
    _settings, engine, _empty = migrated
    before = _sums(engine)
    _stage_change(engine, "d1", _diagnosis_ids(engine, 2), new=4, delete_ids=[])
    with engine.begin() as connection:
        counts = promote(connection, "d1", ORDER).entities["diagnosis"]
    assert (counts.updated, counts.inserted, counts.verified) == (2, 4, 6)
    assert _history_ops(engine, "d1") == ["update", "update"]
    with engine.connect() as connection:
        carried = connection.execute(
            sa.text("SELECT count(*) FROM diagnosis WHERE batch_id = 'd1'")
        ).scalar_one()
    assert carried == 6
    with engine.begin() as connection:
        undone = rollback(connection, "d1")[0].entities["diagnosis"]
    assert (undone.deleted, undone.updated) == (6, 2)
    assert _sums(engine) == before


def test_rows_a_batch_inserted_then_changed_or_deleted_later_block_its_rollback(migrated):
    _settings, engine, _empty = migrated
    before = _sums(engine)
    _stage_change(engine, "d1", _diagnosis_ids(engine, 1), new=3, delete_ids=[])
    with engine.begin() as connection:
        promote(connection, "d1", ORDER)
    # d2 overwrites two rows d1 inserted; d3 deletes the third (and changes an unrelated row).
    _stage_change(engine, "d2", ["d1-new-000", "d1-new-001"], new=0, delete_ids=[])
    with engine.begin() as connection:
        promote(connection, "d2", ORDER)
    _stage_change(engine, "d3", _diagnosis_ids(engine, 1, 60), new=0, delete_ids=["d1-new-002"])
    with engine.begin() as connection:
        assert promote(connection, "d3", ORDER).entities["diagnosis"].deleted == 1

    with pytest.raises(PromotionError) as excinfo, engine.begin() as connection:
        rollback(connection, "d1")
    message = str(excinfo.value)
    assert "d3 (melior, wave w-test, 1 shared rows)" in message
    assert "d2 (melior, wave w-test, 2 shared rows)" in message

    with engine.begin() as connection:
        undone = rollback(connection, "d1", cascade=True)
    assert [r.batch_id for r in undone] == ["d3", "d2", "d1"]
    assert _sums(engine) == before


def test_insert_history_rows_of_earlier_versions_are_still_rolled_back(migrated):
    """Batches promoted before the batch id became the undo information kept an 'insert' row."""
    _settings, engine, _empty = migrated
    before = _sums(engine)
    _stage_change(engine, "d1", _diagnosis_ids(engine, 1), new=2, delete_ids=[])
    with engine.begin() as connection:
        promote(connection, "d1", ORDER)
        connection.execute(
            HISTORY_TABLES["diagnosis"].insert(),
            [
                {
                    "history_batch_id": "d1",
                    "history_op": "insert",
                    "diagnosis_id": f"d1-new-{i:03d}",
                }
                for i in range(2)
            ],
        )
    with engine.begin() as connection:
        rollback(connection, "d1")
    assert _sums(engine) == before
    assert _history_ops(engine, "d1") == []


def test_a_row_a_batch_inserts_and_deletes_is_not_restored_by_its_rollback(migrated):
    """The deleted row's undo is its batch id (it did not exist before): no 'delete' history."""
    _settings, engine, _empty = migrated
    before = _sums(engine)
    _stage_change(engine, "d1", _diagnosis_ids(engine, 1), new=1, delete_ids=["d1-new-000"])
    with engine.begin() as connection:
        counts = promote(connection, "d1", ORDER).entities["diagnosis"]
    assert (counts.inserted, counts.deleted) == (1, 1)
    assert _history_ops(engine, "d1") == ["update"]
    with engine.begin() as connection:
        rollback(connection, "d1")
    assert _sums(engine) == before
