"""The pool of migrated PostgreSQL schemas the tests share (tests/postgres_pool.py): a schema
handed on must be indistinguishable from a freshly migrated one, or not handed on at all."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.postgres_pool import SchemaPool

pytestmark = [pytest.mark.unit, pytest.mark.postgres]


@pytest.fixture
def pool():
    from tests.conftest import _server_url

    pool = SchemaPool(_server_url("VARDFLYTT_TEST_POSTGRES_URL"))
    try:
        yield pool
    finally:
        pool.close()


def _counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            tables = connection.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            ).scalars()
            return {
                t: connection.exec_driver_sql(f'SELECT count(*) FROM "{t}"').scalar()
                for t in list(tables)
            }
    finally:
        engine.dispose()


def _head(url: str):
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.exec_driver_sql("SELECT * FROM access_log_head").all()
    finally:
        engine.dispose()


def test_rows_a_test_wrote_are_gone_for_the_next_and_seeded_rows_are_back(pool):
    from etl.core.audit import record_access_on
    from etl.core.database import core_engine

    with pool.migrated() as url:
        fresh_counts, fresh_head = _counts(url), _head(url)
        assert fresh_counts["alembic_version"] == 1 and fresh_counts["access_log_head"] == 1
        # The product's own writes: an append-only access-log entry, which moves the chain's
        # seeded head, and a changed seeded row.
        with core_engine(url).begin() as connection:
            record_access_on(connection, "extract", "elvis", "b1", 3)
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'changed'")
        written = _counts(url)
        assert written["access_log"] == 1 and _head(url) != fresh_head
        first = url
    with pool.migrated() as url:
        assert url != first  # nothing cached by URL outlives a test
        assert _counts(url) == fresh_counts
        assert _head(url) == fresh_head
        assert len(pool.owned) == 1  # the same schema, reset


def test_a_schema_whose_structure_a_test_changed_is_dropped_not_handed_on(pool):
    with pool.migrated() as url:
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE INDEX ix_extra ON access_log (action)")
        engine.dispose()
        changed = sa.make_url(url).query["options"]
    assert pool.owned == set() and pool.idle == []
    with pool.migrated() as url:
        assert sa.make_url(url).query["options"] != changed


@pytest.mark.parametrize(
    "change",
    [
        "COMMENT ON INDEX ix_diagnosis_batch IS 'kept'",
        "COMMENT ON TABLE diagnosis IS 'kept'",
        "CLUSTER diagnosis USING ix_diagnosis_batch",
        "ALTER TABLE diagnosis REPLICA IDENTITY FULL",
    ],
)
def test_a_comment_or_mark_a_test_left_is_a_changed_structure(pool, change):
    """What the empty-table promotion reads off an index (etl/load/direct.py): a schema left
    with it would send later tests down another path."""
    with pool.migrated() as url:
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.exec_driver_sql(change)
        engine.dispose()
    assert pool.owned == set() and pool.idle == []


def test_schemas_derived_from_a_test_schema_are_dropped(pool):
    with pool.migrated() as url:
        schema = sa.make_url(url).query["options"].split("search_path=")[1]
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.exec_driver_sql(f"CREATE SCHEMA {schema}_rehearsal_w1_001")
        engine.dispose()
    with pool.engine.connect() as connection:
        left = connection.exec_driver_sql(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s",
            (f"{schema}_rehearsal_w1_001",),
        ).scalar()
    assert left == 0


def test_an_empty_schema_is_not_migrated(pool):
    with pool.empty() as url:
        assert _counts(url) == {}
