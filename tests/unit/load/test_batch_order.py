"""Batch ids, the core schema's migrations, the per-system lease, promotion order and the
superseding of abandoned batches (etl.batch, etl.core.database, etl.core.lease,
etl.load.promote, etl.load.loader), on SQLite."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa

from etl.batch import BatchPaths, new_batch_id, safe_batch_id
from etl.core import lease
from etl.core.batch_states import PROMOTED, SUPERSEDED
from etl.core.database import HEAD_REVISION, MIGRATIONS, core_engine, schema_revision
from etl.core.tables import (
    ENTITY_TABLES,
    load_batch,
    metadata,
    promotion,
    staged_deletion,
    system_lease,
)
from etl.load.promote import PromotionError, promote, promotion_row, record_staged

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 7, 1, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def engine(sqlite_core, tmp_path):
    return core_engine(sqlite_core(tmp_path))


# --- batch ids --------------------------------------------------------------------------------


def test_two_batch_ids_in_the_same_instant_differ_and_are_safe_folder_names(monkeypatch):
    monkeypatch.setattr("etl.batch.utc_now", lambda: T0)  # the same second, the same microsecond
    ids = {new_batch_id("melior", "cli") for _ in range(200)}
    assert len(ids) == 200
    for batch_id in ids:
        assert batch_id == safe_batch_id(batch_id)
        assert batch_id.startswith("melior__cli__20260701T080000000000_")


# --- migrations -------------------------------------------------------------------------------


def test_the_head_revision_the_code_knows_is_the_newest_migration():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def test_first_use_creates_the_whole_schema_at_head(engine):
    assert schema_revision(engine) == HEAD_REVISION
    tables = set(sa.inspect(engine).get_table_names())
    assert set(metadata.tables) <= tables


def test_a_database_made_before_migrations_is_upgraded_in_place(tmp_path):
    """The old ``create_all`` made ``promotion`` without the batch-order columns: they are added,
    the rows kept."""
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    plain = sa.create_engine(url)
    old = sa.MetaData()
    sa.Table(
        "promotion",
        old,
        *(
            sa.Column(c.name, c.type, primary_key=c.primary_key)
            for c in promotion.columns
            if c.name not in {"extracted_at", "superseded_by", "note"}
        ),
    )
    identifiers = ENTITY_TABLES["patient_identifier"]
    sa.Table(
        identifiers.name,
        old,
        *(
            sa.Column(c.name, c.type, primary_key=c.primary_key)
            for c in identifiers.columns
            if c.name != "issuer_country"
        ),
    )
    old.create_all(plain)
    with plain.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO promotion (batch_id, source_system, kind, state, rows_inserted, "
                "rows_updated, rows_deleted) VALUES ('b1', 'melior', 'full', 'promoted', 0, 0, 0)"
            )
        )
    plain.dispose()
    engine = core_engine(url)
    assert schema_revision(engine) == HEAD_REVISION
    columns = {c["name"] for c in sa.inspect(engine).get_columns("promotion")}
    assert {"extracted_at", "superseded_by", "note"} <= columns
    columns = {c["name"] for c in sa.inspect(engine).get_columns(identifiers.name)}
    assert "issuer_country" in columns
    with engine.connect() as connection:
        assert promotion_row(connection, "b1")["state"] == PROMOTED


# --- the per-system lease ---------------------------------------------------------------------


def test_a_second_run_of_a_system_is_refused_naming_the_holder_and_how_to_release(engine):
    held = lease.acquire(engine, lease.SYSTEM, "melior", "melior__run_a")
    assert held.is_taken
    with pytest.raises(lease.SystemLeasedError) as refused:
        lease.acquire(engine, lease.SYSTEM, "melior", "melior__run_b")
    message = str(refused.value)
    assert "system melior is held by melior__run_a by" in message
    assert "vardflytt batches unlock melior" in message
    # Another system is free; the same run re-enters and renews its heartbeat.
    assert lease.acquire(engine, lease.SYSTEM, "elvis", "elvis__run_c").is_taken
    again = lease.acquire(engine, lease.SYSTEM, "melior", "melior__run_a")
    assert not again.is_taken and again.holder == held.holder
    assert lease.release(engine, lease.SYSTEM, "melior", run_id="melior__run_b") is False
    assert lease.release(engine, lease.SYSTEM, "melior", run_id="melior__run_a") is True
    assert lease.acquire(engine, lease.SYSTEM, "melior", "melior__run_b").is_taken


def test_a_dead_runs_lease_is_taken_over_with_a_message(engine, monkeypatch):
    monkeypatch.setattr("etl.core.lease.utc_now", lambda: T0)
    lease.acquire(engine, lease.SYSTEM, "melior", "melior__dead")
    later = T0 + lease.SYSTEM_LEASE_DURATION - dt.timedelta(minutes=1)
    monkeypatch.setattr("etl.core.lease.utc_now", lambda: later)
    with pytest.raises(lease.SystemLeasedError, match="lapses at 2026-07-01 10:00"):
        lease.acquire(engine, lease.SYSTEM, "melior", "melior__next")
    monkeypatch.setattr("etl.core.lease.utc_now", lambda: later + dt.timedelta(minutes=2))
    took = lease.acquire(engine, lease.SYSTEM, "melior", "melior__next")
    assert took.is_taken
    assert "took over the lease of melior__dead by" in took.replaced
    assert lease.holder_of(engine, lease.SYSTEM, "melior").run_id == "melior__next"


def test_many_threads_racing_for_one_system_lease_give_exactly_one_holder(engine):
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def race(number: int) -> None:
        barrier.wait()
        try:
            lease.acquire(engine, lease.SYSTEM, "melior", f"melior__run_{number}")
            outcomes.append("taken")
        except lease.SystemLeasedError as error:
            assert "is held by melior__run_" in str(error)
            outcomes.append("refused")

    threads = [threading.Thread(target=race, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused"] * 5 + ["taken"]
    with engine.connect() as connection:
        assert (
            connection.execute(sa.select(sa.func.count()).select_from(system_lease)).scalar() == 1
        )


# --- promotion order and superseding ----------------------------------------------------------


def _stage_by_hand(engine, batch_id: str, extracted_at: dt.datetime) -> None:
    with engine.begin() as connection:
        record_staged(connection, batch_id, "melior", "full", None, None, extracted_at)
        connection.execute(
            load_batch.insert().values(
                batch_id=batch_id, source_system="melior", status="staged", is_dry_run=False
            )
        )


def test_an_older_extraction_is_never_promoted_over_a_newer_one(engine):
    # Ids chosen so that their text sorts the other way round from their extraction times.
    _stage_by_hand(engine, "melior__zz_old", T0)
    _stage_by_hand(engine, "melior__aa_new", T0 + dt.timedelta(seconds=1))
    with pytest.raises(PromotionError) as refused, engine.begin() as connection:
        promote(connection, "melior__zz_old", [])
    message = str(refused.value)
    assert "batch melior__zz_old (extracted 2026-07-01 08:00:00" in message
    assert "is older than melior__aa_new (staged" in message
    with engine.begin() as connection:
        assert promote(connection, "melior__aa_new", []).state == PROMOTED
    newer = "older than melior__aa_new \\(promoted"
    with pytest.raises(PromotionError, match=newer), engine.begin() as connection:
        promote(connection, "melior__zz_old", [])
    with engine.connect() as connection:
        assert promotion_row(connection, "melior__zz_old")["state"] == "staged"


def test_abandoned_batches_are_superseded_and_their_leftovers_cleaned(
    engine, tmp_path, monkeypatch
):
    from etl.load.loader import batch_states, supersede_abandoned
    from etl.settings import Settings

    monkeypatch.setenv("VARDFLYTT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VARDFLYTT_CORE_URL", str(engine.url))
    settings = Settings()
    _stage_by_hand(engine, "melior__promoted", T0)
    with engine.begin() as connection:
        promote(connection, "melior__promoted", [])
    _stage_by_hand(engine, "melior__killed", T0 + dt.timedelta(hours=1))
    with engine.begin() as connection:
        connection.execute(
            staged_deletion.insert().values(
                batch_id="melior__killed", entity="diagnosis", row_id="d1", source_system="melior"
            )
        )
    for batch_id in ("melior__promoted", "melior__killed", "melior__never_staged", "melior__now"):
        folder = BatchPaths.of(settings, batch_id, "melior").landed
        folder.mkdir(parents=True)
        (folder / "_manifest.json").write_text("{}")
    other_system = BatchPaths.of(settings, "melior__killed", "elvis").landed
    other_system.mkdir(parents=True)

    cleaned = supersede_abandoned(settings, "melior", "melior__now")

    assert {(c.batch_id, c.was, c.removed_landing) for c in cleaned} == {
        ("melior__killed", "staged", True),
        ("melior__never_staged", "landed", True),
    }
    with engine.connect() as connection:
        killed = promotion_row(connection, "melior__killed")
        assert (killed["state"], killed["superseded_by"]) == (SUPERSEDED, "melior__now")
        left = sa.select(sa.func.count()).select_from(staged_deletion)
        assert connection.execute(left).scalar() == 0
    states = {row["batch_id"]: row["state"] or row["status"] for row in batch_states(settings)}
    assert states["melior__killed"] == SUPERSEDED
    assert states["melior__never_staged"] == SUPERSEDED
    assert states["melior__promoted"] == PROMOTED
    assert BatchPaths.of(settings, "melior__promoted", "melior").root.exists()
    assert BatchPaths.of(settings, "melior__now", "melior").root.exists()
    assert not BatchPaths.of(settings, "melior__killed", "melior").root.exists()
    assert other_system.exists(), "another system's files in the same batch folder stay"
    superseded = "superseded by batch melior__now"
    with pytest.raises(PromotionError, match=superseded), engine.begin() as connection:
        promote(connection, "melior__killed", [])
    assert supersede_abandoned(settings, "melior", "melior__now") == []
