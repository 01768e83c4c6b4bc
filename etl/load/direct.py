"""Promotion straight from the batch's validated files: rows new to the core are written once.

Staging records a batch by reference: per entity, the validated Parquet file's row count and
SHA-256 (``promotion.staged_files``), instead of copying every row into ``staged_<entity>``.
Promotion then reads each file in chunks, inside its transaction:

- a chunk none of whose ids is in the core yet (every chunk of an initial load) is written
  straight into the core table (``COPY`` on PostgreSQL). Such rows carry the batch id, which is
  their undo information, exactly as rows the set-based upsert inserts;
- a chunk with an id already in the core goes to ``staged_<entity>`` and takes the set-based
  path (history of overwritten rows, upsert of changed rows only), as hand-staged rows do.

On PostgreSQL, a core table with no rows at all (an initial load, or a system's own table after
its batch was rolled back) takes the whole file with its indexes and primary key dropped, then
rebuilt from the written rows, all inside the promotion's transaction: one sort per index
instead of one random B-tree insertion per row and index. The file goes as one binary ``COPY``
of quarter-chunk pieces; a background thread checks, sums and encodes each piece while the one
before it is sent and written (etl/core/prefetch.py), so the client's work and the server's
overlap instead of taking turns; a piece whose types do not pair up for the binary format sends
the file down the chunk-by-chunk path. Rebuilding the primary key is the duplicate check
there; if any of it fails, a savepoint undoes it all (indexes included) and the file takes the
chunk-by-chunk path above. The table is locked exclusively first (without
waiting: if another session holds it, the chunk-by-chunk path is taken), so readers of that
empty table wait for the promotion's commit, and a killed promotion leaves the indexes as they
were (DDL is transactional on PostgreSQL). A table with an index carrying more than its
definition (a comment, CLUSTER, a replica identity) always takes the chunk-by-chunk path.

Fail closed: a file whose digest differs from the one staging recorded, a row whose batch id is
not the batch's, or core rows of the batch whose count, id sum or content-hash sum differ from
the file's (checked by set-based aggregates after the writes) stop or fail the promotion.

The file's hash aggregates (etl/load/hash_aggregates.py) are summed from the same chunks as
they are written, so promotion reads each file once (after its digest check).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from etl.core.arrow import entity_schema, open_parquet
from etl.core.files import sha256_of as file_digest
from etl.core.model import ENTITIES
from etl.core.prefetch import in_background
from etl.core.tables import STAGED_TABLES
from etl.load.bulk import (
    NotBinary,
    binary_copy_payload,
    bulk_insert,
    column_types,
    copy_binary_stream,
)
from etl.load.hash_aggregates import (
    Buckets,
    ColumnSums,
    add_rows,
    empty_aggregates,
    numeric_columns,
)

# Leading hex digits of an id or content hash summed by the verification (60 bits: a bigint).
_HEX_DIGITS = 15
_HEX_VALUE = np.full(256, 255, dtype=np.uint64)  # 255: not a hex digit
for _value, _digit in enumerate("0123456789abcdef"):
    _HEX_VALUE[ord(_digit)] = _HEX_VALUE[ord(_digit.upper())] = _value
_PLACES = np.array([16**p for p in range(_HEX_DIGITS - 1, -1, -1)], dtype=np.uint64)
_MOD = 2**64
# Files with fewer rows than this keep their table's indexes: dropping and rebuilding them would
# cost more statements than the insertions it saves.
DEFER_INDEXES_FROM_ROWS = 10_000
# An empty table's file is sent in pieces of a quarter chunk: while one is written, the next is
# encoded, so even a file of one chunk overlaps the client's work with the server's.
_PIECES_PER_CHUNK = 4


def _piece_rows(chunk_rows: int) -> int:
    return max(1, chunk_rows // _PIECES_PER_CHUNK)


class StagedFileError(RuntimeError):
    """A batch staged by reference whose files cannot be promoted as they are."""


def staged_files_record(sources: dict[str, Path]) -> str:
    """What staging records for a batch staged by reference: per entity, rows and SHA-256."""
    return json.dumps(
        {
            entity: {"rows": pq.ParquetFile(path).metadata.num_rows, "sha256": file_digest(path)}
            for entity, path in sources.items()
        },
        sort_keys=True,
    )


def check_staged_files(
    batch_id: str, record: str, sources: dict[str, Path] | None
) -> dict[str, dict[str, Any]]:
    """The recorded files, each checked against what is on disk now (fail closed)."""
    staged: dict[str, dict[str, Any]] = json.loads(record)
    if sources is None:
        raise StagedFileError(
            f"batch {batch_id} was staged by reference to its validated files; promote it with "
            f"`vardflytt` (pipeline.promote), which reads them"
        )
    for entity, expected in staged.items():
        path = sources.get(entity)
        if path is None or not path.exists():
            raise StagedFileError(
                f"batch {batch_id}: the validated file of {entity} staged for promotion is gone "
                f"({path}); re-run the batch's load to stage it again"
            )
        if file_digest(path) != expected["sha256"]:
            raise StagedFileError(
                f"batch {batch_id}: the validated file of {entity} changed after staging "
                "(SHA-256 differs); nothing was promoted. Re-run the batch's load to stage the "
                "file as it is now"
            )
    return staged


def hex_sum(values: pa.Array | pa.ChunkedArray) -> int:
    """Sum (mod 2**64) of the leading 15 hex digits of each value, vectorised.

    The same figure PostgreSQL computes with ``('x' || substr(v, 1, 15))::bit(60)::bigint``."""
    array = pc.utf8_slice_codeunits(values, 0, _HEX_DIGITS)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if len(array) == 0:
        return 0
    if array.null_count or pc.min(pc.utf8_length(array)).as_py() != _HEX_DIGITS:
        raise StagedFileError("an id or content hash is shorter than 15 hex digits or missing")
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + 2]
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8)
    start = int(offsets[0])
    digits = _HEX_VALUE[data[start : start + _HEX_DIGITS * len(array)]].reshape(-1, _HEX_DIGITS)
    if (digits == 255).any():
        raise StagedFileError("an id or content hash is not hexadecimal")
    # uint64 arithmetic wraps around: the sum comes out mod 2**64, as compared.
    return int((digits @ _PLACES).sum(dtype=np.uint64))


@dataclass
class DirectWrite:
    rows: int = 0  # written straight into the core
    fallback: int = 0  # sent to staged_<entity> for the set-based path
    id_sum: int = 0
    hash_sum: int = 0
    # The hash aggregates of every row of the file (both paths), for record_promotion.
    aggregates: tuple[Buckets, ColumnSums] | None = None
    indexes_rebuilt: bool = False  # the empty table's path (module docstring)

    def add_chunk(self, entity: str, chunk: pa.Table, numeric: list[str]) -> None:
        so_far = self.aggregates or empty_aggregates(numeric)
        self.aggregates = add_rows(so_far, chunk, ENTITIES[entity].id_field(), numeric)

    def add_direct(self, entity: str, chunk: pa.Table) -> None:
        self.rows += chunk.num_rows
        self.id_sum = (self.id_sum + hex_sum(chunk.column(ENTITIES[entity].id_field()))) % _MOD
        self.hash_sum = (self.hash_sum + hex_sum(chunk.column("content_hash"))) % _MOD


def _any_in_core(connection: sa.Connection, entity: str, ids: pa.Array) -> bool:
    """SQLite: is any of ``ids`` in the core table already? (PostgreSQL lets the key decide.)"""
    key = ENTITIES[entity].id_field()
    quote = connection.dialect.identifier_preparer.quote
    connection.exec_driver_sql("CREATE TEMP TABLE IF NOT EXISTS direct_ids (id TEXT)")
    connection.exec_driver_sql("DELETE FROM direct_ids")
    connection.exec_driver_sql("INSERT INTO direct_ids (id) VALUES (?)", list(zip(ids.to_pylist())))
    found = connection.exec_driver_sql(
        f"SELECT EXISTS (SELECT 1 FROM direct_ids d JOIN {quote(entity)} t "
        f"ON t.{quote(key)} = d.id)"
    ).scalar()
    connection.exec_driver_sql("DELETE FROM direct_ids")
    return bool(found)


def _copied_if_new(connection: sa.Connection, entity: str, chunk: pa.Table) -> bool:
    """Write the chunk into the core if none of its ids is there yet; False (nothing written)
    otherwise. On PostgreSQL the ``COPY`` itself is the check: the primary key refuses a row
    already in the core, and the savepoint undoes the chunk."""
    if connection.dialect.name != "postgresql":
        if _any_in_core(connection, entity, chunk.column(ENTITIES[entity].id_field())):
            return False
        bulk_insert(connection, entity, chunk)
        return True
    import psycopg.errors

    savepoint = connection.begin_nested()
    try:
        bulk_insert(connection, entity, chunk)
    except psycopg.errors.UniqueViolation:
        savepoint.rollback()
        return False
    savepoint.commit()
    return True


def _check_batch(chunk: pa.Table, entity: str, batch_id: str) -> None:
    batch_ids = pc.unique(chunk.column("batch_id"))
    if batch_ids.null_count or batch_ids.to_pylist() != [batch_id]:
        raise StagedFileError(
            f"batch {batch_id}: the validated file of {entity} holds rows of another batch; "
            "nothing was promoted. Re-run the batch's transform and load"
        )


def _drop_indexes(connection: sa.Connection, table: str) -> list[str] | None:
    """Drop the table's indexes (its primary key and unique constraints too); returns the
    statements that rebuild them exactly (same names and definitions), constraints first. None,
    with nothing dropped, if an index carries what its definition does not (a comment, CLUSTER,
    replica identity): the chunk-by-chunk path keeps those."""
    rows = connection.execute(
        sa.text(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), c.conname, "
            "pg_get_constraintdef(c.oid), i.indisclustered OR i.indisreplident "
            "OR obj_description(i.indexrelid, 'pg_class') IS NOT NULL "
            "OR obj_description(c.oid, 'pg_constraint') IS NOT NULL "
            "FROM pg_index i LEFT JOIN pg_constraint c "
            "ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid "
            "AND c.contype IN ('p', 'u', 'x') "
            "WHERE i.indrelid = CAST(:table AS regclass) ORDER BY c.conname IS NULL, 1"
        ),
        {"table": table},
    ).all()
    if any(row[4] for row in rows):
        return None
    rebuild = []
    for index, index_definition, constraint, constraint_definition, _kept in rows:
        if constraint is not None:
            name = connection.dialect.identifier_preparer.quote(constraint)
            connection.exec_driver_sql(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
            rebuild.append(f"ALTER TABLE {table} ADD CONSTRAINT {name} {constraint_definition}")
        else:
            connection.exec_driver_sql(f"DROP INDEX {index}")
            rebuild.append(index_definition)
    return rebuild


def _into_empty_table(
    connection: sa.Connection,
    entity: str,
    batch_id: str,
    source: pq.ParquetFile,
    chunk_rows: int,
) -> DirectWrite | None:
    """PostgreSQL: the whole file into the core table if it has no rows, its indexes dropped
    and rebuilt after (see the module docstring). None, with nothing written, if the table has
    rows or anything of it fails (then the caller takes the chunk-by-chunk path)."""
    import psycopg

    table = connection.dialect.identifier_preparer.quote(entity)
    numeric = numeric_columns(entity)
    savepoint = connection.begin_nested()
    try:
        # Exclusive until the promotion commits (DROP INDEX needs it anyway), taken first so the
        # table stays empty; never waited for: if anyone holds the table, the chunk-by-chunk
        # path writes beside them as before.
        connection.exec_driver_sql(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE NOWAIT")
        if connection.exec_driver_sql(f"SELECT EXISTS (SELECT 1 FROM {table})").scalar():
            savepoint.rollback()
            return None
        rebuild = _drop_indexes(connection, table)
        if rebuild is None:
            savepoint.rollback()
            return None
        written = DirectWrite(indexes_rebuilt=True)
        columns = entity_schema(entity).names
        types = column_types(connection, entity)

        def encoded() -> Iterator[pa.Buffer]:
            """Each piece checked, summed and encoded: all of it the client's work, done in a
            background thread while the piece before it is sent and written."""
            for batch in source.iter_batches(batch_size=_piece_rows(chunk_rows), columns=columns):
                chunk = pa.Table.from_batches([batch])
                _check_batch(chunk, entity, batch_id)
                written.add_direct(entity, chunk)
                written.add_chunk(entity, chunk, numeric)
                yield binary_copy_payload(chunk, types)

        with closing(in_background(encoded())) as payloads:
            copy_binary_stream(connection, entity, columns, payloads)
        for statement in rebuild:  # the primary key first: it refuses a duplicate id
            connection.exec_driver_sql(statement)
    except (psycopg.Error, sa.exc.DBAPIError, NotBinary):
        savepoint.rollback()
        return None
    except BaseException:
        savepoint.rollback()
        raise
    savepoint.commit()
    return written


def write_direct(
    connection: sa.Connection,
    entity: str,
    batch_id: str,
    source: Path,
    chunk_rows: int,
    *,
    aggregate: bool = True,
) -> DirectWrite:
    """Write the file's chunks of new rows into the core, the others into staging.

    ``aggregate``: also sum the file's hash aggregates (``DirectWrite.aggregates``, None without);
    a delta's come from its base and its changes instead (etl/load/hash_aggregates.py)."""
    parquet = open_parquet(source)
    if (
        connection.dialect.name == "postgresql"
        and parquet.metadata.num_rows >= DEFER_INDEXES_FROM_ROWS
    ):
        into_empty = _into_empty_table(connection, entity, batch_id, parquet, chunk_rows)
        if into_empty is not None:
            return into_empty
    columns = entity_schema(entity).names
    numeric = numeric_columns(entity)
    written = DirectWrite()
    conflicted = False
    for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns):
        chunk = pa.Table.from_batches([batch])
        _check_batch(chunk, entity, batch_id)
        if aggregate:
            written.add_chunk(entity, chunk, numeric)
        # Once one chunk meets rows already in the core, the rest take the set-based path too
        # (a delta): trying each chunk first is only worth it while chunks are new.
        conflicted = conflicted or not _copied_if_new(connection, entity, chunk)
        if conflicted:
            bulk_insert(connection, STAGED_TABLES[entity].name, chunk)
            written.fallback += chunk.num_rows
            continue
        written.add_direct(entity, chunk)
    return written


def verified_direct(
    connection: sa.Connection,
    entity: str,
    batch_id: str,
    wrote: DirectWrite,
    chunk_rows: int = 50_000,
) -> int:
    """The directly written rows, if the core's rows of the batch add up to exactly them (count,
    id sum, content-hash sum, set-based); otherwise 0, which leaves the batch unaccounted."""
    if not wrote.rows:
        return 0
    key = ENTITIES[entity].id_field()
    quote = connection.dialect.identifier_preparer.quote
    if connection.dialect.name == "postgresql":

        def leading(column: str) -> str:
            return f"coalesce(sum(('x' || substr({column}, 1, {_HEX_DIGITS}))::bit(60)::bigint), 0)"

        count, ids, hashes = connection.execute(
            sa.text(
                f"SELECT count(*), {leading(quote(key))}, {leading('content_hash')} "
                f"FROM {quote(entity)} WHERE batch_id = :b"
            ),
            {"b": batch_id},
        ).one()
        ids, hashes = int(ids) % _MOD, int(hashes) % _MOD
    else:
        # Streamed in chunks, so memory stays bounded by the chunk, not the batch.
        result = connection.execute(
            sa.text(f"SELECT {quote(key)}, content_hash FROM {quote(entity)} WHERE batch_id = :b"),
            {"b": batch_id},
        )
        count = ids = hashes = 0
        while rows := result.fetchmany(chunk_rows):
            key_values, hash_values = zip(*rows, strict=True)
            count += len(rows)
            ids = (ids + hex_sum(pa.array(key_values, pa.string()))) % _MOD
            hashes = (hashes + hex_sum(pa.array(hash_values, pa.string()))) % _MOD
    if (count, ids, hashes) != (wrote.rows, wrote.id_sum, wrote.hash_sum):
        return 0
    return wrote.rows
