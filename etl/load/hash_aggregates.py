"""Hash aggregates of the rows a system should have in the core, kept at promotion.

Each promoted batch records, per entity and per bucket of core row ids, what its system's core
rows must add up to once it is promoted: the row count and the sums of the high and low 32 bits
of each row's content hash (order-independent, so a bucket's figures need no sorting and combine
by addition and subtraction). The bucket is the row id's first two hex digits: 256 buckets, and
a row id is a hash, so they fill evenly. Bucket ``*`` holds the entity's totals and, for every
numeric column that is not sensitive, its non-null count and sum: the per-column aggregates of
the full reconciliation that add up (a minimum or maximum does not).

- A ``full`` batch's aggregates are computed from its validated files (what the source gives,
  through the mapping): every row of the system must be one of them.
- A ``delta`` batch's are its base's (the system's batch promoted just before it) less the
  previous versions of the rows it overwrote or deleted (its history rows) plus the rows it
  wrote (the core rows carrying its id): set-based, over the changed rows only. Without a base
  that has aggregates, the batch records none and verification reads everything again.

A wave's verification (etl/cutover/reconcile.py) compares the system's latest promoted batch's
aggregates with the same aggregates of the core, one grouped query per table: a row changed,
added or removed behind the pipeline's back moves its bucket's count or sums. A rollback needs
nothing here: the batch promoted before becomes the latest again, with its own aggregates.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from etl.core.arrow import one_array, open_parquet
from etl.core.batch_states import PROMOTED
from etl.core.model import ENTITIES
from etl.core.tables import ENTITY_TABLES, HISTORY_TABLES, promotion, reconciliation_bucket
from etl.load.bulk import bulk_insert

BUCKET_DIGITS = 2
TOTAL = "*"
MEASURES = ("row_count", "hash_high_sum", "hash_low_sum")
_HEX_DIGITS = 16  # content hashes are 64-bit, written as 16 hex digits (etl.core.ids)
_SQLITE_FUNCTION = "vardflytt_hex"
_HEX_CHARACTERS = frozenset("0123456789abcdefABCDEF")

Buckets = pd.DataFrame  # index: bucket; columns: MEASURES (int64)
ColumnSums = dict[str, dict[str, float]]  # column -> {"count": n, "sum": x}


class HashAggregateError(ValueError):
    """A content hash or row id the aggregates cannot read (never expected: fail closed)."""


def numeric_columns(entity: str) -> list[str]:
    """The entity's numeric core columns that are not sensitive (their sums are kept)."""
    sensitive = set(ENTITIES[entity].sensitive_fields())
    return [
        c.name
        for c in ENTITY_TABLES[entity].columns
        if isinstance(c.type, sa.Float | sa.BigInteger | sa.Integer) and c.name not in sensitive
    ]


def empty_buckets() -> Buckets:
    return pd.DataFrame({m: pd.Series(dtype="int64") for m in MEASURES}).rename_axis("bucket")


_NIBBLE = np.full(256, 255, dtype=np.uint8)
for _position, _digit in enumerate("0123456789abcdef"):
    _NIBBLE[ord(_digit)] = _NIBBLE[ord(_digit.upper())] = _position


def _fixed_width_bytes(values: pa.ChunkedArray | pa.Array, width: int, what: str) -> np.ndarray:
    """The strings as an (n, width) uint8 matrix; every string must have exactly ``width`` bytes."""
    array = one_array(values)
    array = pc.cast(array, pa.large_string())
    wrong_width = len(array) and pc.any(pc.not_equal(pc.utf8_length(array), width)).as_py()
    if array.null_count or wrong_width:
        raise HashAggregateError(f"every {what} must be {width} characters and present")
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset : array.offset + 1]
    start = int(offsets[0]) if len(offsets) else 0
    if not len(array):
        return np.empty((0, width), np.uint8)
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8)
    return data[start : start + width * len(array)].reshape(len(array), width)


def _hex_halves(content_hashes: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """High and low 32 bits of each 16-hex-digit content hash, vectorised."""
    nibbles = _NIBBLE[_fixed_width_bytes(content_hashes, _HEX_DIGITS, "content hash")]
    if (nibbles == 255).any():
        raise HashAggregateError("a content hash is not hexadecimal")
    # two hex digits per byte, eight bytes per hash: its halves as big-endian 32-bit words
    words = np.ascontiguousarray((nibbles[:, 0::2] << 4) | nibbles[:, 1::2]).view(">u4")
    return words[:, 0].astype(np.int64), words[:, 1].astype(np.int64)


def _group_sums(codes: np.ndarray, values: np.ndarray, groups: int) -> np.ndarray:
    """Exact int64 sums of ``values`` (each in [0, 2**32)) per group code: two float64 bincounts
    over the 16-bit halves, each exact while a group holds fewer than 2**37 rows."""
    high = np.bincount(codes, weights=values >> 16, minlength=groups)
    low = np.bincount(codes, weights=values & 0xFFFF, minlength=groups)
    return (high.astype(np.int64) << 16) + low.astype(np.int64)


def buckets_of(row_ids: pa.ChunkedArray | pa.Array, content_hashes: Any) -> Buckets:
    """Count and hash sums per bucket of these rows (Arrow in, NumPy bincounts over the buckets'
    dictionary codes; buckets in code point order, a row without an id in none)."""
    if len(row_ids) == 0:
        return empty_buckets()
    high, low = _hex_halves(content_hashes)
    bucket = pc.utf8_slice_codeunits(row_ids, 0, BUCKET_DIGITS)
    if isinstance(bucket, pa.ChunkedArray):
        bucket = bucket.combine_chunks()
    if bucket.null_count:
        present = pc.is_valid(bucket).to_numpy(zero_copy_only=False)
        bucket, high, low = bucket.filter(present), high[present], low[present]
        if not len(bucket):
            return empty_buckets().set_axis(pd.Index([], dtype=object, name="bucket"))
    encoded = pc.dictionary_encode(bucket)
    codes = encoded.indices.to_numpy().astype(np.intp)
    labels = encoded.dictionary
    groups = len(labels)
    order = pc.sort_indices(labels).to_numpy()
    return pd.DataFrame(
        {
            "row_count": np.bincount(codes, minlength=groups).astype(np.int64)[order],
            "hash_high_sum": _group_sums(codes, high, groups)[order],
            "hash_low_sum": _group_sums(codes, low, groups)[order],
        },
        index=pd.Index(labels.take(order).to_pylist(), name="bucket"),
    )


def column_sums_of(table: pa.Table, columns: list[str]) -> ColumnSums:
    sums: ColumnSums = {}
    for column in columns:
        values = table.column(column) if column in table.column_names else pa.array([], pa.int64())
        total = pc.sum(values).as_py() if len(values) - values.null_count else 0
        sums[column] = {"count": len(values) - values.null_count, "sum": float(total or 0)}
    return sums


def file_aggregates(path: Path | None, entity: str, chunk_rows: int) -> tuple[Buckets, ColumnSums]:
    """The aggregates of a validated file's rows (none: an entity without a file has no rows)."""
    key = ENTITIES[entity].id_field()
    numeric = numeric_columns(entity)
    aggregates = empty_aggregates(numeric)
    if path is None or not path.exists():
        return aggregates
    source = open_parquet(path)
    present = set(source.schema_arrow.names)
    wanted = [key, "content_hash", *[c for c in numeric if c in present]]
    for batch in source.iter_batches(batch_size=chunk_rows, columns=wanted):
        aggregates = add_rows(aggregates, pa.Table.from_batches([batch]), key, numeric)
    return aggregates


def empty_aggregates(numeric: list[str]) -> tuple[Buckets, ColumnSums]:
    """The aggregates of no rows."""
    return empty_buckets(), column_sums_of(pa.table({}), numeric)


def add_rows(
    aggregates: tuple[Buckets, ColumnSums], table: pa.Table, key: str, numeric: list[str]
) -> tuple[Buckets, ColumnSums]:
    """``aggregates`` with the rows of ``table`` added (``key``: its id column)."""
    buckets, sums = aggregates
    return (
        add(buckets, buckets_of(table.column(key), table.column("content_hash"))),
        add_sums(sums, column_sums_of(table, numeric)),
    )


def add(left: Buckets, right: Buckets, sign: int = 1) -> Buckets:
    combined = left.add(right * sign, fill_value=0).astype("int64")
    return combined[(combined != 0).any(axis=1)]


def _changed(
    buckets: Buckets, changes: tuple[tuple[int, dict[str, tuple[int, int, int]]], ...]
) -> Buckets:
    """``add`` of each change (sign, figures per bucket) to ``buckets``, in Python integers: a
    delta changes a handful of buckets of its base's 256, and one frame built at the end costs a
    fraction of pandas' alignment per change. The same buckets, order and figures as ``add``."""
    if not any(figures for _, figures in changes):
        return add(buckets, empty_buckets())
    totals: dict[Any, list[int]] = {
        label: list(values)
        for label, values in zip(
            buckets.index.tolist(), buckets[list(MEASURES)].to_numpy(np.int64).tolist(), strict=True
        )
    }
    for sign, figures in changes:
        for label, measures in figures.items():
            current = totals.setdefault(label, [0] * len(MEASURES))
            for position, value in enumerate(measures):
                current[position] += sign * value
    kept = sorted(label for label, values in totals.items() if any(values))
    if not kept:
        return add(buckets, buckets, -1)  # nothing left: an empty frame, as add gives it
    return pd.DataFrame(
        np.array([totals[label] for label in kept], np.int64).reshape(-1, len(MEASURES)),
        index=pd.Index(kept, name="bucket"),
        columns=list(MEASURES),
    )


def add_sums(left: ColumnSums, right: ColumnSums, sign: int = 1) -> ColumnSums:
    return {
        column: {
            measure: left.get(column, {}).get(measure, 0) + sign * figures[measure]
            for measure in ("count", "sum")
        }
        for column, figures in right.items()
    }


def _register_sqlite(connection: sa.Connection) -> None:
    """SQLite has no hex-to-integer function: the aggregates' own, on this connection."""
    if connection.dialect.name != "sqlite":
        return

    def half(value: str | None, high: int) -> int | None:
        # the hashes PostgreSQL reads (16 ASCII hex digits): int() alone would also take
        # surrounding blanks, '_' and other scripts' digits
        if value is None or len(value) != _HEX_DIGITS or not _HEX_CHARACTERS.issuperset(value):
            return None  # counted apart: a malformed hash makes its bucket differ
        return int(value[:8] if high else value[8:], 16)

    driver = connection.connection.driver_connection
    driver.create_function(_SQLITE_FUNCTION, 2, half, deterministic=True)  # type: ignore[union-attr]


def _halves_sql(connection: sa.Connection, column: str) -> tuple[str, str]:
    """SQLite: the high and low halves of ``column``, each NULL for a hash they cannot read."""
    if connection.dialect.name == "sqlite":
        return f"{_SQLITE_FUNCTION}({column}, 1)", f"{_SQLITE_FUNCTION}({column}, 0)"
    raise HashAggregateError(f"no hash aggregates on {connection.dialect.name}")


# PostgreSQL: a hash is readable when it is 16 bytes none of which is outside the hex digits
# (exactly the strings '^[0-9a-fA-F]{16}$' matches, a NULL not: a hex digit is one byte, and '$'
# matches only at the very end), tested once per row in a subquery that the planner keeps apart
# (OFFSET 0: not pulled up, so the test and the cast are not repeated for each half), then read
# as one 64-bit integer whose halves are two bit operations. About 3x cheaper for the server than
# a regular expression and a 32-bit cast per half, with the same figures
# (tests/integration/test_hash_aggregate_sql.py).
#
# The query first runs with the length test alone (``_PG_SIXTEEN_BYTES``): the cast itself refuses
# any character that is not a hex digit, so a 16-byte hash it reads is exactly a readable one, and
# one it cannot read fails the query instead of counting -1. Only then, in a savepoint, does the
# query with the full test run. The cast pads or cuts a hash of another length without a word, so
# the length is always tested. For the server, the regular expression was ~45% of the query
# (466,000 rows: 0.27-0.30 s with it, 0.16-0.17 without).
_PG_READABLE = "octet_length({c}) = 16 AND {c} !~ '[^0-9a-fA-F]'"
_PG_SIXTEEN_BYTES = "octet_length({c}) = 16"
_PG_HASH = "CASE WHEN {readable} THEN ('x' || {c})::bit(64)::bigint END"
_PG_HIGH = "(({h} >> 32) & 4294967295)"
_PG_LOW = "({h} & 4294967295)"


def _aggregate_sql(
    connection: sa.Connection,
    table: str,
    key: str,
    numeric: list[str],
    where: str,
    *,
    trusting_the_cast: bool = False,
) -> str:
    """The grouped query: per bucket the row count, the two hash sums (a hash the halves cannot
    read counts as -1: its bucket cannot match) and each numeric column's count and sum.
    ``trusting_the_cast`` (PostgreSQL): the length test alone, see ``_PG_SIXTEEN_BYTES``."""
    quote = connection.dialect.identifier_preparer.quote
    measures = "".join(f", count({quote(c)}), sum({quote(c)})" for c in numeric)
    if connection.dialect.name == "postgresql":
        hashed = "vardflytt_hash"
        test = _PG_SIXTEEN_BYTES if trusting_the_cast else _PG_READABLE
        readable = test.format(c="content_hash")
        hash_sql = _PG_HASH.format(readable=readable, c="content_hash")
        carried = "".join(f", {quote(c)}" for c in numeric)
        return (
            f"SELECT vardflytt_bucket, count(*), "
            f"sum(coalesce({_PG_HIGH.format(h=hashed)}, -1)), "
            f"sum(coalesce({_PG_LOW.format(h=hashed)}, -1)){measures} "
            f"FROM (SELECT substr({key}, 1, {BUCKET_DIGITS}) AS vardflytt_bucket, "
            f"{hash_sql} AS {hashed}{carried} FROM {quote(table)} WHERE {where} OFFSET 0) "
            "AS readable_rows GROUP BY vardflytt_bucket"
        )
    high, low = _halves_sql(connection, "content_hash")
    return (
        f"SELECT substr({key}, 1, {BUCKET_DIGITS}) AS bucket, count(*), "
        f"sum(coalesce({high}, -1)), sum(coalesce({low}, -1)){measures} "
        f"FROM {quote(table)} WHERE {where} GROUP BY substr({key}, 1, {BUCKET_DIGITS})"
    )


def query_aggregates(
    connection: sa.Connection,
    entity: str,
    table: str,
    where: str,
    params: dict[str, Any],
) -> tuple[Buckets, ColumnSums]:
    """Count, hash sums per bucket and column sums of the rows of ``table`` (the entity's core or
    history table) that ``where`` selects: one grouped query, in the database."""
    figures, sums = _query_figures(connection, entity, table, where, params)
    buckets = pd.DataFrame(
        [(bucket, *measures) for bucket, measures in figures.items()],
        columns=["bucket", *MEASURES],
    ).set_index("bucket")
    return (buckets.astype("int64") if len(buckets) else empty_buckets()), sums


def _query_figures(
    connection: sa.Connection,
    entity: str,
    table: str,
    where: str,
    params: dict[str, Any],
) -> tuple[dict[str, tuple[int, int, int]], ColumnSums]:
    """:func:`query_aggregates` as plain integers per bucket (in the query's order)."""
    _register_sqlite(connection)
    quote = connection.dialect.identifier_preparer.quote
    key = quote(ENTITIES[entity].id_field())
    numeric = numeric_columns(entity)
    rows: Sequence[Any]
    if connection.dialect.name == "postgresql":
        rows = _postgres_figures(connection, table, key, numeric, where, params)
    else:
        rows = connection.execute(
            sa.text(_aggregate_sql(connection, table, key, numeric, where)), params
        ).all()
    figures = {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}
    sums: ColumnSums = {c: {"count": 0, "sum": 0.0} for c in numeric}
    for row in rows:
        for position, column in enumerate(numeric):
            sums[column]["count"] += int(row[4 + 2 * position])
            sums[column]["sum"] += float(row[5 + 2 * position] or 0)
    return figures, sums


def _postgres_figures(
    connection: sa.Connection,
    table: str,
    key: str,
    numeric: list[str],
    where: str,
    params: dict[str, Any],
) -> Sequence[Any]:
    """The grouped query's rows, with the length test alone first; if a 16-byte hash is not all
    hex digits (the cast refuses it), again with the full test. In a savepoint: the caller's
    transaction (a promotion's) carries on either way."""
    savepoint = connection.begin_nested()
    try:
        rows = connection.execute(
            sa.text(_aggregate_sql(connection, table, key, numeric, where, trusting_the_cast=True)),
            params,
        ).all()
    except sa.exc.DataError:
        savepoint.rollback()
    else:
        savepoint.commit()
        return rows
    return connection.execute(
        sa.text(_aggregate_sql(connection, table, key, numeric, where)), params
    ).all()


def core_aggregates(
    connection: sa.Connection, entity: str, system: str
) -> tuple[Buckets, ColumnSums]:
    """The aggregates of the system's rows in the core table now."""
    return query_aggregates(connection, entity, entity, "source_system = :s", {"s": system})


def base_batch(connection: sa.Connection, system: str, batch_id: str) -> str | None:
    """The system's latest promoted batch other than ``batch_id``: what a delta builds on."""
    found = connection.execute(
        sa.select(promotion.c.batch_id)
        .where(
            (promotion.c.source_system == system)
            & (promotion.c.state == PROMOTED)
            & (promotion.c.batch_id != batch_id)
        )
        .order_by(promotion.c.seq.desc())
        .limit(1)
    ).scalar()
    return str(found) if found is not None else None


def recorded(
    connection: sa.Connection, batch_id: str
) -> dict[str, tuple[Buckets, ColumnSums]] | None:
    """A batch's recorded aggregates per entity, or None if it has none."""
    rows = connection.execute(
        sa.select(reconciliation_bucket).where(reconciliation_bucket.c.batch_id == batch_id)
    ).all()
    if not rows:
        return None
    by_entity: dict[str, list[sa.Row[Any]]] = {}
    for row in rows:
        by_entity.setdefault(row.entity, []).append(row)
    found: dict[str, tuple[Buckets, ColumnSums]] = {}
    for entity in sorted(by_entity):
        mine = by_entity[entity]
        total = next((r for r in mine if r.bucket == TOTAL), None)
        if total is None:
            return None  # incomplete: fail closed
        # in bucket order, as buckets_of gives them: the table's own row order is no order
        ordered = sorted((r for r in mine if r.bucket != TOTAL), key=lambda r: str(r.bucket))
        buckets = (
            pd.DataFrame(
                {m: np.array([getattr(r, m) for r in ordered], np.int64) for m in MEASURES},
                index=pd.Index([r.bucket for r in ordered], name="bucket"),
            )
            if ordered
            else empty_buckets()
        )
        found[entity] = (buckets, json.loads(total.column_sums or "{}"))
    return found


def _store(
    connection: sa.Connection,
    batch_id: str,
    system: str,
    aggregates: dict[str, tuple[Buckets, ColumnSums]],
) -> None:
    """The batch's rows of ``reconciliation_bucket``, written in one bulk write (COPY on
    PostgreSQL): per entity its totals (bucket ``*``, with the column sums) and its buckets."""
    entities: list[str] = []
    labels: list[str] = []
    measures: dict[str, list[int]] = {m: [] for m in MEASURES}
    column_sums: list[str | None] = []
    for entity, (buckets, sums) in aggregates.items():
        totals = buckets.sum()
        entities += [entity] * (len(buckets) + 1)
        labels += [TOTAL, *(str(bucket) for bucket in buckets.index)]
        for measure in MEASURES:
            measures[measure] += [int(totals.get(measure, 0)), *buckets[measure].astype("int64")]
        column_sums += [json.dumps(sums, sort_keys=True), *([None] * len(buckets))]
    connection.execute(
        reconciliation_bucket.delete().where(reconciliation_bucket.c.batch_id == batch_id)
    )
    rows = len(labels)
    bulk_insert(
        connection,
        reconciliation_bucket.name,
        pa.table(
            {
                "batch_id": pa.array([batch_id] * rows, pa.string()),
                "entity": pa.array(entities, pa.string()),
                "bucket": pa.array(labels, pa.string()),
                "source_system": pa.array([system] * rows, pa.string()),
                **{m: pa.array(values, pa.int64()) for m, values in measures.items()},
                "column_sums": pa.array(column_sums, pa.string()),
            }
        ),
    )


def record_promotion(
    connection: sa.Connection,
    batch_id: str,
    system: str,
    kind: str,
    entities: Iterable[str],
    sources: dict[str, Path] | None,
    chunk_rows: int,
    read: dict[str, tuple[Buckets, ColumnSums]] | None = None,
) -> bool:
    """Record the batch's aggregates, inside its promotion's transaction, after its rows are
    written (see the module docstring). False when a delta has no base to build on.

    ``read``: the aggregates of files the promotion already read whole (entity -> aggregates,
    etl.load.direct), so a full batch's files are not read again."""
    entities = list(entities)
    aggregates: dict[str, tuple[Buckets, ColumnSums]] = {}
    if kind != "delta":
        for entity in entities:
            path = (sources or {}).get(entity)
            if path is None:
                # staged in staged_<entity> rather than by reference: no file to count from
                connection.execute(
                    reconciliation_bucket.delete().where(
                        reconciliation_bucket.c.batch_id == batch_id
                    )
                )
                return False
            known = (read or {}).get(entity)
            aggregates[entity] = known or file_aggregates(path, entity, chunk_rows)
        _store(connection, batch_id, system, aggregates)
        return True
    base_id = base_batch(connection, system, batch_id)
    base = recorded(connection, base_id) if base_id else None
    if base is None or not set(entities) <= set(base):
        return False
    for entity in entities:
        buckets, sums = base[entity]
        history = HISTORY_TABLES[entity].name
        before = _query_figures(
            connection,
            entity,
            history,
            "history_batch_id = :b AND history_op IN ('update', 'delete')",
            {"b": batch_id},
        )
        written = _query_figures(connection, entity, entity, "batch_id = :b", {"b": batch_id})
        buckets = _changed(buckets, ((-1, before[0]), (1, written[0])))
        sums = add_sums(add_sums(sums, before[1], -1), written[1])
        aggregates[entity] = (buckets, sums)
    _store(connection, batch_id, system, aggregates)
    return True


def differing_buckets(expected: Buckets, actual: Buckets) -> list[str]:
    """The buckets whose count or hash sums differ (sorted)."""
    joined = expected.reindex(expected.index.union(actual.index), fill_value=0)
    other = actual.reindex(joined.index, fill_value=0)
    return sorted(str(b) for b in joined.index[(joined != other).any(axis=1)])


def differing_columns(expected: ColumnSums, actual: ColumnSums) -> list[str]:
    """``column.count`` / ``column.sum`` figures that differ (sums of floats within 1e-9)."""
    found = []
    for column in sorted(set(expected) | set(actual)):
        left, right = expected.get(column, {}), actual.get(column, {})
        if left.get("count", 0) != right.get("count", 0):
            found.append(f"{column}.count")
        if not math.isclose(
            float(left.get("sum", 0)), float(right.get("sum", 0)), rel_tol=1e-9, abs_tol=1e-6
        ):
            found.append(f"{column}.sum")
    return found
