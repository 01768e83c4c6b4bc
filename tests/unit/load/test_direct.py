"""Promotion straight from the validated files (etl.load.direct), on SQLite and PostgreSQL.

The rows are made here, not by the pipeline: new rows are written once and verified by
set-based aggregates, rows already in the core take the upsert with history, and every way the
files or the written rows can disagree with what staging recorded fails the promotion.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.core.arrow import entity_schema
from etl.core.database import core_engine
from etl.core.tables import ENTITY_TABLES, HISTORY_TABLES
from etl.load import direct, hash_aggregates
from etl.load.promote import PromotionError, core_checksums, promote, record_staged, rollback

pytestmark = pytest.mark.unit

ENTITY = "diagnosis"


def _hex(text: str, digits: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:digits]


def _rows(batch_id: str, keys: Sequence[int], code: str = "J45.9") -> pa.Table:
    n = len(keys)
    columns = {
        "diagnosis_id": [_hex(f"id{k}", 32) for k in keys],
        "patient_id": [_hex(f"p{k % 7}", 32) for k in keys],
        "encounter_id": [None] * n,
        "icd10_code": [code] * n,
        # The code as the source wrote it (dotless) and its system: the columns issue 17 added.
        "icd10_code_source_code": [code.replace(".", "")] * n,
        "icd10_code_source_system": ["urn:oid:1.2.752.116.1.1.1.1.3"] * n,
        "diagnosis_text": [None] * n,
        "diagnosis_date": [dt.date(2020, 1, 1) + dt.timedelta(days=k) for k in keys],
        "is_primary_diagnosis": [k % 2 == 0 for k in keys],
        "practitioner_hsa_id": [None] * n,
        "is_blocked": [False] * n,
        "source_system": ["melior"] * n,
        "source_key": [f"K{k}" for k in keys],
        "batch_id": [batch_id] * n,
        "content_hash": [_hex(f"{code}{k}", 16) for k in keys],
    }
    return pa.table(columns, schema=entity_schema(ENTITY))


def _stage(engine, tmp_path, batch_id: str, table: pa.Table):
    path = tmp_path / f"{batch_id}.parquet"
    pq.write_table(table, path)
    sources = {ENTITY: path}
    with engine.begin() as connection:
        record_staged(
            connection, batch_id, "melior", "full", None, None,
            staged_files=direct.staged_files_record(sources),
        )  # fmt: skip
    return sources


def _core_rows(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(
            sa.select(sa.func.count()).select_from(ENTITY_TABLES[ENTITY])
        ).scalar_one()


def test_new_rows_are_written_once_verified_and_undone_by_their_batch_id(core_url, tmp_path):
    engine = core_engine(core_url)
    with engine.connect() as connection:
        empty = core_checksums(connection, [ENTITY])
    sources = _stage(engine, tmp_path, "b1", _rows("b1", range(250)))
    with engine.begin() as connection:
        report = promote(connection, "b1", [ENTITY], sources, chunk_rows=100)
    counts = report.entities[ENTITY]
    assert (counts.staged, counts.inserted, counts.updated, counts.verified) == (250, 250, 0, 250)
    assert _core_rows(engine) == 250
    with engine.connect() as connection:  # no history row: the batch id undoes them
        assert (
            connection.execute(
                sa.select(sa.func.count()).select_from(HISTORY_TABLES[ENTITY])
            ).scalar_one()
            == 0
        )
    with engine.begin() as connection:
        rollback(connection, "b1")
    with engine.connect() as connection:
        assert core_checksums(connection, [ENTITY]) == empty


def test_rows_already_in_the_core_take_the_upsert_with_history(core_url, tmp_path):
    engine = core_engine(core_url)
    sources = _stage(engine, tmp_path, "b1", _rows("b1", range(100)))
    with engine.begin() as connection:
        promote(connection, "b1", [ENTITY], sources, chunk_rows=40)
    with engine.connect() as connection:
        after_first = core_checksums(connection, [ENTITY])
    # Rows 50-149: 50 overwrite rows of b1 with new content, 50 are new.
    changed = _stage(engine, tmp_path, "b2", _rows("b2", range(50, 150), code="I10"))
    with engine.begin() as connection:
        counts = promote(connection, "b2", [ENTITY], changed, chunk_rows=40).entities[ENTITY]
    assert counts.staged == 100 and counts.updated == 50 and counts.inserted == 50
    assert counts.verified == 100
    assert _core_rows(engine) == 150
    with engine.begin() as connection:
        rollback(connection, "b2")
    with engine.connect() as connection:
        assert core_checksums(connection, [ENTITY]) == after_first


def test_a_chunk_meeting_an_existing_row_at_its_end_is_undone_whole_and_upserted(
    core_url, tmp_path
):
    engine = core_engine(core_url)
    sources = _stage(engine, tmp_path, "b1", _rows("b1", range(40)))
    with engine.begin() as connection:
        promote(connection, "b1", [ENTITY], sources)
    # 39 new rows, then one row of b1 with new content, in one chunk; then 20 new rows.
    keys = [*range(100, 139), 5, *range(200, 220)]
    changed = _stage(engine, tmp_path, "b2", _rows("b2", keys, code="I10"))
    with engine.begin() as connection:
        counts = promote(connection, "b2", [ENTITY], changed, chunk_rows=40).entities[ENTITY]
    assert (counts.staged, counts.inserted, counts.updated, counts.verified) == (60, 59, 1, 60)
    assert _core_rows(engine) == 99
    with engine.connect() as connection:
        assert (
            connection.execute(
                sa.select(sa.func.count()).select_from(HISTORY_TABLES[ENTITY])
            ).scalar_one()
            == 1
        )


def test_a_file_changed_after_staging_is_refused_and_nothing_is_written(core_url, tmp_path):
    engine = core_engine(core_url)
    sources = _stage(engine, tmp_path, "b1", _rows("b1", range(30)))
    pq.write_table(_rows("b1", range(29)), sources[ENTITY])  # one row lost after staging
    with pytest.raises(PromotionError, match="changed after staging"), engine.begin() as c:
        promote(c, "b1", [ENTITY], sources)
    assert _core_rows(engine) == 0
    with pytest.raises(PromotionError, match="staged by reference"), engine.begin() as c:
        promote(c, "b1", [ENTITY])  # without the files: never promote nothing as if all


def test_rows_of_another_batch_in_the_file_are_refused(core_url, tmp_path):
    engine = core_engine(core_url)
    sources = _stage(engine, tmp_path, "b1", _rows("other", range(10)))
    with pytest.raises(PromotionError, match="rows of another batch"), engine.begin() as c:
        promote(c, "b1", [ENTITY], sources)
    assert _core_rows(engine) == 0


def test_the_aggregate_verification_catches_a_row_the_write_lost_or_changed(
    core_url, tmp_path, monkeypatch
):
    """The check does not trust the write: a COPY that lost one row, or wrote one row's content
    hash wrong, leaves verified short, so the batch's accounting fails."""
    engine = core_engine(core_url)
    real = direct.bulk_insert

    def lossy(connection, table, data):
        real(connection, table, data.slice(1) if table == ENTITY else data)

    sources = _stage(engine, tmp_path, "b1", _rows("b1", range(20)))
    monkeypatch.setattr(direct, "bulk_insert", lossy)
    with engine.begin() as connection:
        assert (
            promote(connection, "b1", [ENTITY], sources, chunk_rows=7).entities[ENTITY].verified
            == 0
        )
        connection.rollback()

    def tampered(connection, table, data):
        hashes = data.column("content_hash").to_pylist()
        hashes[3] = "0" * 16
        position = data.schema.get_field_index("content_hash")
        real(connection, table, data.set_column(position, "content_hash", pa.array(hashes)))

    monkeypatch.setattr(direct, "bulk_insert", tampered)
    with engine.begin() as connection:
        assert (
            promote(connection, "b1", [ENTITY], sources, chunk_rows=7).entities[ENTITY].verified
            == 0
        )
        connection.rollback()


def test_staged_files_record_counts_and_digests(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(_rows("b", range(7)), path)
    record = json.loads(direct.staged_files_record({ENTITY: path}))
    assert record == {ENTITY: {"rows": 7, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}}


HEX = st.text(alphabet="0123456789abcdefABCDEF", min_size=15, max_size=40)


@settings(max_examples=200, deadline=None)
@given(st.lists(HEX, max_size=60))
def test_hex_sum_is_the_sum_of_the_leading_15_hex_digits_mod_2_64(values):
    expected = sum(int(v[:15], 16) for v in values) % 2**64
    assert direct.hex_sum(pa.array(values, pa.string())) == expected
    assert direct.hex_sum(pa.chunked_array([pa.array(values, pa.string())])) == expected
    if len(values) > 2:  # a sliced array (non-zero offset) gives the sum of its own values
        tail = pa.array(values, pa.string()).slice(2)
        assert direct.hex_sum(tail) == sum(int(v[:15], 16) for v in values[2:]) % 2**64


@pytest.mark.parametrize("bad", ["0123456789abcdZ", "short", None])
def test_hex_sum_refuses_what_is_not_15_hex_digits(bad):
    with pytest.raises(direct.StagedFileError):
        direct.hex_sum(pa.array(["0" * 16, bad], pa.string()))


@pytest.mark.postgres
def test_postgres_computes_the_same_sum(postgres_url):
    values = [_hex(f"v{i}", 32) for i in range(500)] + ["f" * 32] * 40
    engine = core_engine(postgres_url)
    with engine.connect() as connection:
        total = connection.execute(
            sa.text(
                "SELECT sum(('x' || substr(v, 1, 15))::bit(60)::bigint) "
                "FROM unnest(CAST(:v AS text[])) AS v"
            ),
            {"v": values},
        ).scalar_one()
    assert int(total) % 2**64 == direct.hex_sum(pa.array(values, pa.string()))


def _indexes(engine) -> dict[str, tuple[int, str]]:
    """The core table's indexes: name -> (oid, definition)."""
    with engine.connect() as connection:
        return {
            row.name: (row.oid, row.definition)
            for row in connection.execute(
                sa.text(
                    "SELECT c.relname AS name, c.oid, pg_get_indexdef(c.oid) AS definition "
                    "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "WHERE i.indrelid = CAST(:t AS regclass)"
                ),
                {"t": ENTITY},
            )
        }


def _definitions(indexes: dict[str, tuple[int, str]]) -> dict[str, str]:
    return {name: definition for name, (_oid, definition) in indexes.items()}


@pytest.mark.postgres
def test_an_empty_table_takes_the_file_with_its_indexes_rebuilt_after(
    postgres_url, tmp_path, monkeypatch
):
    """PostgreSQL, a table with no rows: its indexes and primary key are dropped, the file
    written, then rebuilt exactly (same names and definitions, new index objects); the rows are
    verified and undone by their batch id as on the chunk-by-chunk path."""
    monkeypatch.setattr(direct, "DEFER_INDEXES_FROM_ROWS", 10)
    engine = core_engine(postgres_url)
    with engine.connect() as connection:
        empty = core_checksums(connection, [ENTITY])
    before = _indexes(engine)
    assert len(before) >= 3  # the primary key, the batch and source-key indexes
    sources = _stage(engine, tmp_path, "b1", _rows("b1", range(250)))
    with engine.begin() as connection:
        counts = promote(connection, "b1", [ENTITY], sources, chunk_rows=100).entities[ENTITY]
    assert (counts.staged, counts.inserted, counts.updated, counts.verified) == (250, 250, 0, 250)
    assert _core_rows(engine) == 250
    after = _indexes(engine)
    assert _definitions(after) == _definitions(before)
    assert all(after[name][0] != oid for name, (oid, _d) in before.items())  # rebuilt
    with engine.begin() as connection:
        rollback(connection, "b1")
    with engine.connect() as connection:
        assert core_checksums(connection, [ENTITY]) == empty
    # The table has rows now: a second batch keeps its indexes (and meets them chunk by chunk).
    again = _stage(engine, tmp_path, "b0", _rows("b0", range(250)))
    with engine.begin() as connection:
        promote(connection, "b0", [ENTITY], again, chunk_rows=100)
    kept = _indexes(engine)
    more = _stage(engine, tmp_path, "b2", _rows("b2", range(200, 400), code="I10"))
    with engine.begin() as connection:
        counts = promote(connection, "b2", [ENTITY], more, chunk_rows=100).entities[ENTITY]
    assert (counts.staged, counts.inserted, counts.updated, counts.verified) == (200, 150, 50, 200)
    assert _indexes(engine) == kept


@pytest.mark.postgres
def test_a_duplicate_id_on_the_empty_table_path_fails_as_before_and_leaves_the_indexes(
    postgres_url, tmp_path, monkeypatch
):
    """Rebuilding the primary key refuses a file holding one id twice: the savepoint undoes the
    rows and the dropped indexes, and the chunk-by-chunk path fails the promotion as it always
    did; nothing is written and the indexes are the ones there were."""
    monkeypatch.setattr(direct, "DEFER_INDEXES_FROM_ROWS", 10)
    engine = core_engine(postgres_url)
    before = _indexes(engine)
    sources = _stage(engine, tmp_path, "b1", _rows("b1", [*range(30), 7]))
    import psycopg

    with pytest.raises(psycopg.errors.UniqueViolation), engine.begin() as connection:
        promote(connection, "b1", [ENTITY], sources, chunk_rows=100)
    assert _core_rows(engine) == 0
    assert _indexes(engine) == before


@pytest.mark.postgres
def test_an_empty_table_another_session_holds_is_written_chunk_by_chunk(
    postgres_url, tmp_path, monkeypatch
):
    """The exclusive lock is never waited for: a reader holding the table (here, in an open
    transaction) leaves its indexes alone, and the promotion goes on beside it."""
    monkeypatch.setattr(direct, "DEFER_INDEXES_FROM_ROWS", 10)
    engine = core_engine(postgres_url)
    before = _indexes(engine)
    sources = _stage(engine, tmp_path, "b1", _rows("b1", range(50)))
    reader = sa.create_engine(postgres_url)
    try:
        with reader.connect() as holding:
            holding.execute(sa.select(sa.func.count()).select_from(ENTITY_TABLES[ENTITY]))
            with engine.begin() as connection:
                counts = promote(connection, "b1", [ENTITY], sources, chunk_rows=20)
            assert counts.entities[ENTITY].verified == 50
    finally:
        reader.dispose()
    assert _indexes(engine) == before


def test_promotion_reads_each_file_once_and_records_its_hash_aggregates(
    core_url, tmp_path, monkeypatch
):
    """A full batch's hash aggregates are summed from the chunks promotion writes, not from a
    second read of the file; they are the file's own."""
    _aggregates_are_summed_while_writing(core_engine(core_url), tmp_path, monkeypatch)


def _aggregates_are_summed_while_writing(engine, tmp_path, monkeypatch) -> None:
    sources = _stage(engine, tmp_path, "b1", _rows("b1", range(250)))
    expected_buckets, expected_sums = hash_aggregates.file_aggregates(sources[ENTITY], ENTITY, 100)

    def no_second_read(*_args, **_kwargs):
        raise AssertionError("the file was read again for its hash aggregates")

    monkeypatch.setattr(hash_aggregates, "file_aggregates", no_second_read)
    with engine.begin() as connection:
        promote(connection, "b1", [ENTITY], sources, chunk_rows=100)
    with engine.connect() as connection:
        buckets, sums = hash_aggregates.recorded(connection, "b1")[ENTITY]
    assert buckets.equals(expected_buckets)
    assert sums == expected_sums


@pytest.mark.postgres
def test_an_index_carrying_more_than_its_definition_is_never_dropped(
    postgres_url, tmp_path, monkeypatch
):
    """A comment on an index (like CLUSTER or a replica identity) would not survive a rebuild
    from its definition: such a table is written chunk by chunk, its indexes untouched."""
    monkeypatch.setattr(direct, "DEFER_INDEXES_FROM_ROWS", 10)
    engine = core_engine(postgres_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("COMMENT ON INDEX ix_diagnosis_batch IS 'kept'")
    before = _indexes(engine)
    sources = _stage(engine, tmp_path, "b1", _rows("b1", range(50)))
    with engine.begin() as connection:
        assert (
            promote(connection, "b1", [ENTITY], sources, chunk_rows=20).entities[ENTITY].verified
            == 50
        )
    assert _indexes(engine) == before


@pytest.mark.postgres
def test_an_empty_table_is_sent_in_pieces_each_checked_before_it_is_written(
    postgres_url, tmp_path, monkeypatch
):
    """The empty table's file goes in one COPY of pieces encoded ahead in a background thread:
    a row of another batch in the last piece still refuses the whole file, with nothing written
    and the dropped indexes back as they were."""
    monkeypatch.setattr(direct, "DEFER_INDEXES_FROM_ROWS", 10)
    engine = core_engine(postgres_url)
    before = _indexes(engine)
    rows = pa.concat_tables([_rows("b1", range(240)), _rows("other", range(240, 250))])
    sources = _stage(engine, tmp_path, "b1", rows)
    with pytest.raises(PromotionError, match="rows of another batch"), engine.begin() as c:
        promote(c, "b1", [ENTITY], sources, chunk_rows=100)  # pieces of 25: the last is bad
    assert _core_rows(engine) == 0
    assert _indexes(engine) == before


@pytest.mark.postgres
def test_a_piece_that_cannot_go_binary_sends_the_file_chunk_by_chunk(
    postgres_url, tmp_path, monkeypatch
):
    """A stream cannot change format half-way: when a later piece's types do not pair up for
    the binary format, the stream's rows are undone with the savepoint and the file takes the
    chunk-by-chunk path (each chunk in the format it pairs with): the same rows, verified."""
    from etl.load import bulk

    monkeypatch.setattr(direct, "DEFER_INDEXES_FROM_ROWS", 10)
    engine = core_engine(postgres_url)
    before = _indexes(engine)
    real = bulk.binary_copy_rows
    calls = []

    def third_is_not_binary(data, types):
        calls.append(data.num_rows)
        return None if len(calls) == 3 else real(data, types)

    monkeypatch.setattr(bulk, "binary_copy_rows", third_is_not_binary)
    sources = _stage(engine, tmp_path, "b1", _rows("b1", range(250)))
    with engine.begin() as connection:
        counts = promote(connection, "b1", [ENTITY], sources, chunk_rows=100).entities[ENTITY]
    assert (counts.staged, counts.inserted, counts.verified) == (250, 250, 250)
    assert calls[:3] == [25, 25, 25]  # the stream's pieces, then the chunks of the other path
    assert _indexes(engine) == before  # kept: the chunk-by-chunk path never drops them
    with engine.connect() as connection:
        keys = connection.execute(sa.text(f"SELECT source_key FROM {ENTITY}")).scalars().all()
    assert sorted(keys) == sorted(f"K{k}" for k in range(250))


@pytest.mark.postgres
def test_the_aggregate_verification_catches_a_piece_the_stream_lost(
    postgres_url, tmp_path, monkeypatch
):
    """The empty table's path is verified like the other: a stream that lost one piece leaves
    verified short, so the batch's accounting fails."""
    monkeypatch.setattr(direct, "DEFER_INDEXES_FROM_ROWS", 10)
    engine = core_engine(postgres_url)
    real = direct.copy_binary_stream

    def lossy(connection, table, columns, payloads):
        real(connection, table, columns, (p for i, p in enumerate(payloads) if i != 1))

    monkeypatch.setattr(direct, "copy_binary_stream", lossy)
    sources = _stage(engine, tmp_path, "b1", _rows("b1", range(250)))
    with engine.begin() as connection:
        counts = promote(connection, "b1", [ENTITY], sources, chunk_rows=100).entities[ENTITY]
        assert (counts.staged, counts.verified) == (250, 0)
        connection.rollback()


@pytest.mark.postgres
def test_the_hash_aggregates_summed_piece_by_piece_are_the_files_own(
    postgres_url, tmp_path, monkeypatch
):
    """The empty table's path sums the hash aggregates over its pieces (a quarter chunk each,
    in the background thread), without reading the file again: they equal the whole file's."""
    monkeypatch.setattr(direct, "DEFER_INDEXES_FROM_ROWS", 10)
    _aggregates_are_summed_while_writing(core_engine(postgres_url), tmp_path, monkeypatch)
