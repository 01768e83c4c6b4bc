"""Reconciliation of a system, source against core, through the mapping, to the last row.

The source is read again (read-only) and taken through the same mapping and checks into a
scratch batch that is never loaded; what should be in the core is then compared with what is:
row counts, per-column aggregates (count, min, max, sum of non-identifying columns) and, row by
row, the content hash. Rows missing from the core, rows the core has but the source no longer
gives, and rows whose content differs are counted and listed by core row id (an opaque hash).

In the freeze window (``verify`` after a wave's final delta) the source is frozen and the final
delta has just read all of it, compared it with the previous load and promoted what changed; the
promotion kept hash aggregates of what each system's core rows must add up to
(etl/load/hash_aggregates.py). There, reconciliation first compares those with the core, per
entity and bucket of row ids, in one grouped query per table (two at once on PostgreSQL), and
reads the source again only if a bucket or column sum differs (or the batch has no aggregates):
the full comparison then lists the rows, and the differing buckets are recorded beside it.
Unchanged rows cost one pass of the database over the table, never a re-read of the source.

A rehearsal does the same with each system's rehearsal batch: it read the whole source into a
core that started empty just before, and its promotion kept the aggregates of the validated files
it loaded. A system split by care unit (a wave's slice) is always read again in full.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from etl.batch import BatchPaths, utc_now
from etl.catalog import Catalog
from etl.core.arrow import open_parquet
from etl.core.batch_states import PROMOTED
from etl.core.database import core_engine
from etl.core.model import ENTITIES
from etl.core.tables import ENTITY_TABLES, batch_accounting, promotion, wave_reconciliation
from etl.load import hash_aggregates
from etl.load.bulk import bulk_insert
from etl.settings import Settings

EXAMPLES = 20
PARALLEL_QUERIES = 2  # the core's aggregates queried at once (PostgreSQL)
_AGGREGATABLE = (pa.types.is_integer, pa.types.is_floating, pa.types.is_temporal)


@dataclass
class EntityReconciliation:
    source_system: str
    entity: str
    expected_rows: int
    core_rows: int
    missing_in_core: int
    unexpected_in_core: int
    content_mismatches: int
    aggregates: dict[str, Any] = field(default_factory=dict[str, Any])
    aggregate_mismatches: list[str] = field(default_factory=list)
    examples: dict[str, list[str]] = field(default_factory=dict)
    method: str = "full re-read"  # or "hash aggregates" (the freeze window, nothing differs)
    differing_buckets: list[str] = field(default_factory=list)

    @property
    def is_reconciled(self) -> bool:
        return (
            self.expected_rows == self.core_rows
            and not (self.missing_in_core or self.unexpected_in_core or self.content_mismatches)
            and not self.aggregate_mismatches
        )

    def summary(self) -> dict[str, Any]:
        return {
            "source_system": self.source_system,
            "entity": self.entity,
            "expected_rows": self.expected_rows,
            "core_rows": self.core_rows,
            "missing_in_core": self.missing_in_core,
            "unexpected_in_core": self.unexpected_in_core,
            "content_mismatches": self.content_mismatches,
            "aggregate_mismatches": self.aggregate_mismatches,
            "examples": self.examples,
            "method": self.method,
            "differing_buckets": self.differing_buckets,
            "is_reconciled": self.is_reconciled,
        }


def _aggregate_columns(entity: str, schema: pa.Schema) -> list[str]:
    sensitive = set(ENTITIES[entity].sensitive_fields())
    core_columns = set(ENTITY_TABLES[entity].c.keys())
    return [
        f.name
        for f in schema
        if f.name in core_columns
        and f.name not in sensitive
        and any(check(f.type) for check in _AGGREGATABLE)
    ]


def _expected_aggregates(
    path: Path, columns: list[str], chunk_rows: int
) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {
        c: {"count": 0, "min": None, "max": None, "sum": 0.0} for c in columns
    }
    if not columns:
        return result
    for batch in open_parquet(path).iter_batches(batch_size=chunk_rows, columns=columns):
        for column in columns:
            values = batch.column(column)
            entry = result[column]
            entry["count"] += len(values) - values.null_count
            if len(values) == values.null_count:
                continue
            low, high = pc.min_max(values).values()
            low, high = low.as_py(), high.as_py()
            entry["min"] = low if entry["min"] is None else min(entry["min"], low)
            entry["max"] = high if entry["max"] is None else max(entry["max"], high)
            if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
                entry["sum"] += pc.sum(values).as_py() or 0
    return result


def _within(batches: list[str] | None) -> str:
    return " AND batch_id IN :batches" if batches is not None else ""


def _core_filter(table: sa.Table, system: str, batches: list[str] | None) -> sa.ColumnElement[bool]:
    condition = table.c.source_system == system
    if batches is not None:
        condition = condition & table.c.batch_id.in_(batches)
    return condition


def _core_aggregates(
    connection: sa.Connection,
    entity: str,
    system: str,
    columns: list[str],
    batches: list[str] | None = None,
) -> dict[str, Any]:
    """count, min, max (and sum of numbers) of every column, in one query over the system's rows."""
    if not columns:
        return {}
    table = ENTITY_TABLES[entity]
    numeric = {
        c for c in columns if isinstance(table.c[c].type, sa.Float | sa.BigInteger | sa.Integer)
    }
    measures = []
    for column in columns:
        col = table.c[column]
        measures += [sa.func.count(col), sa.func.min(col), sa.func.max(col)]
        if column in numeric:
            measures.append(sa.func.sum(col))
    row = iter(
        connection.execute(sa.select(*measures).where(_core_filter(table, system, batches))).one()
    )
    result = {}
    for column in columns:
        count, low, high = next(row), next(row), next(row)
        total = (next(row) or 0) if column in numeric else 0
        result[column] = {"count": count, "min": low, "max": high, "sum": total}
    return result


def _same(expected: Any, actual: Any) -> bool:
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, float) or isinstance(actual, float):
        return math.isclose(float(expected), float(actual), rel_tol=1e-9, abs_tol=1e-6)
    if isinstance(expected, dt.datetime) and isinstance(actual, dt.datetime | str):
        actual = dt.datetime.fromisoformat(str(actual)) if isinstance(actual, str) else actual
        return bool(expected.replace(tzinfo=None) == actual.replace(tzinfo=None))
    if isinstance(expected, dt.date) and isinstance(actual, str):
        return expected.isoformat() == actual[:10]
    return bool(expected == actual)


def _wave_batches(connection: sa.Connection, system: str, wave: str | None) -> list[str]:
    """The system's batches the wave promoted: the core rows of its slice carry their ids."""
    return [
        str(b)
        for b in connection.execute(
            sa.select(promotion.c.batch_id).where(
                (promotion.c.source_system == system)
                & (promotion.c.wave == wave)
                & (promotion.c.state == PROMOTED)
            )
        ).scalars()
    ]


def reconcile_entity(
    connection: sa.Connection,
    paths: BatchPaths,
    system: str,
    entity: str,
    chunk_rows: int,
    batches: list[str] | None = None,
) -> EntityReconciliation:
    """Compare the scratch batch's validated rows of one entity with the core's rows (with
    ``batches``: only the core rows those batches wrote, a wave's slice)."""
    table = ENTITY_TABLES[entity]
    key = ENTITIES[entity].id_field()
    quote = connection.dialect.identifier_preparer.quote
    expected_path = paths.stage_file("validated", entity)
    scratch = f"recon_{uuid.uuid4().hex[:10]}"
    expected_rows = _expected_ids(connection, scratch, expected_path, key, chunk_rows)
    within = _within(batches)
    core = (
        f"(SELECT {quote(key)} AS row_id, content_hash FROM {quote(entity)} "
        f"WHERE source_system = :s{within})"
    )
    bound = {"s": system, **({"batches": batches} if batches is not None else {})}

    def ids(sql: str) -> tuple[int, list[str]]:
        return _counted_ids(connection, sql, bound, batches)

    missing, missing_ids = ids(
        f"SELECT e.row_id FROM {scratch} e LEFT JOIN {core} c ON c.row_id = e.row_id "
        "WHERE c.row_id IS NULL"
    )
    unexpected, unexpected_ids = ids(
        f"SELECT c.row_id FROM {core} c LEFT JOIN {scratch} e ON e.row_id = c.row_id "
        "WHERE e.row_id IS NULL"
    )
    changed, changed_ids = ids(
        f"SELECT e.row_id FROM {scratch} e JOIN {core} c ON c.row_id = e.row_id "
        "WHERE c.content_hash <> e.content_hash"
    )
    core_rows = int(
        connection.execute(
            sa.select(sa.func.count()).where(_core_filter(table, system, batches))
        ).scalar_one()
    )
    connection.exec_driver_sql(f"DROP TABLE {scratch}")
    columns = _aggregate_columns(entity, pq.read_schema(expected_path))
    expected_aggregates = _expected_aggregates(expected_path, columns, chunk_rows)
    core_aggregates = _core_aggregates(connection, entity, system, columns, batches)
    mismatched = [
        f"{column}.{measure}"
        for column in columns
        for measure in ("count", "min", "max", "sum")
        if not _same(expected_aggregates[column][measure], core_aggregates[column][measure])
    ]
    return EntityReconciliation(
        source_system=system,
        entity=entity,
        expected_rows=expected_rows,
        core_rows=core_rows,
        missing_in_core=missing,
        unexpected_in_core=unexpected,
        content_mismatches=changed,
        aggregates={
            column: {
                "source": {k: _plain(v) for k, v in expected_aggregates[column].items()},
                "core": {k: _plain(v) for k, v in core_aggregates[column].items()},
            }
            for column in columns
        },
        aggregate_mismatches=mismatched,
        examples={
            "missing_in_core": missing_ids,
            "unexpected_in_core": unexpected_ids,
            "content_mismatches": changed_ids,
        },
    )


def _expected_ids(
    connection: sa.Connection, scratch: str, expected_path: Path, key: str, chunk_rows: int
) -> int:
    """The expected rows' ids and content hashes in a new temporary table ``scratch``, a chunk
    at a time; returns how many there are."""
    connection.exec_driver_sql(
        f"CREATE TEMP TABLE {scratch} (row_id TEXT PRIMARY KEY, content_hash TEXT NOT NULL)"
    )
    expected_rows = 0
    for batch in open_parquet(expected_path).iter_batches(
        batch_size=chunk_rows, columns=[key, "content_hash"]
    ):
        bulk_insert(
            connection,
            scratch,
            pa.table({"row_id": batch.column(key), "content_hash": batch.column("content_hash")}),
        )
        expected_rows += batch.num_rows
    return expected_rows


def _counted_ids(
    connection: sa.Connection, sql: str, bound: dict[str, Any], batches: list[str] | None
) -> tuple[int, list[str]]:
    """How many ``row_id``s the query gives, and the first ``EXAMPLES`` of them in order."""

    def run(query: str) -> sa.CursorResult[Any]:
        statement = sa.text(query)
        if batches is not None:
            statement = statement.bindparams(sa.bindparam("batches", expanding=True))
        return connection.execute(statement, bound)

    count = run(f"SELECT count(*) FROM ({sql}) x")
    sample = run(f"SELECT row_id FROM ({sql}) x ORDER BY row_id LIMIT {EXAMPLES}")
    return int(count.scalar_one()), list(sample.scalars())


# Decimals of a real number kept in the evidence (sums of reals; compared unrounded).
EVIDENCE_DECIMALS = 6


def _plain(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def _rounded(value: Any) -> Any:
    """``value`` (aggregates, nested) with every real number to ``EVIDENCE_DECIMALS``: a sum of
    reals differs in its last bits with the order of addition (source 133538.95 came out as
    133538.94999999998, the core as ...84; both methods compare unrounded, with a tolerance).
    The noise is no evidence, and ``1234.0000000001`` reads as a personnummer to a leak scan of
    the pack."""
    if isinstance(value, float):
        return round(value, EVIDENCE_DECIMALS)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(item) for item in value]
    return value


def _entities(catalog: Catalog, system: str) -> list[str]:
    entities = [e for e in ENTITIES if e in catalog.system(system).entities]
    if "patient" in entities:
        entities.insert(entities.index("patient") + 1, "patient_identifier")
    return entities


def core_hash_aggregates(
    connection: sa.Connection, system: str, entities: list[str]
) -> dict[str, tuple[hash_aggregates.Buckets, hash_aggregates.ColumnSums]]:
    """Each entity's aggregates in the core now, computed by the database (one grouped query per
    table). On PostgreSQL ``PARALLEL_QUERIES`` run at once, each on a connection of its own: the
    verification only waits for them, the server can use more than one core."""
    if connection.dialect.name != "postgresql" or len(entities) < 2:
        return {e: hash_aggregates.core_aggregates(connection, e, system) for e in entities}
    engine = connection.engine

    def one(entity: str) -> tuple[hash_aggregates.Buckets, hash_aggregates.ColumnSums]:
        with engine.connect() as own:
            return hash_aggregates.core_aggregates(own, entity, system)

    with ThreadPoolExecutor(max_workers=PARALLEL_QUERIES) as pool:
        return dict(zip(entities, pool.map(one, entities), strict=True))


def reconcile_from_aggregates(
    connection: sa.Connection, system: str, entities: list[str], batch_id: str
) -> tuple[list[EntityReconciliation], bool]:
    """Compare the hash aggregates ``batch_id`` kept at promotion with the system's core rows.

    ``batch_id`` must be the system's latest promoted batch: its aggregates are what the core
    must add up to now. Returns one result per entity and whether every one matched; with no
    usable aggregates (another batch promoted since, a batch from before them, a delta without
    a base), nothing matched and the caller reads the source again."""
    latest = hash_aggregates.base_batch(connection, system, "")
    kept = hash_aggregates.recorded(connection, batch_id) if latest == batch_id else None
    if kept is None or not set(entities) <= set(kept):
        return [], False
    results = []
    in_core = core_hash_aggregates(connection, system, entities)
    for entity in entities:
        expected, expected_sums = kept[entity]
        actual, actual_sums = in_core[entity]
        buckets = hash_aggregates.differing_buckets(expected, actual)
        columns = hash_aggregates.differing_columns(expected_sums, actual_sums)
        results.append(
            EntityReconciliation(
                source_system=system,
                entity=entity,
                expected_rows=int(expected["row_count"].sum()),
                core_rows=int(actual["row_count"].sum()),
                missing_in_core=0,
                unexpected_in_core=0,
                content_mismatches=0,
                aggregates={
                    column: {"source": expected_sums.get(column), "core": actual_sums.get(column)}
                    for column in sorted(set(expected_sums) | set(actual_sums))
                },
                aggregate_mismatches=columns + [f"bucket {b}" for b in buckets],
                method="hash aggregates",
                differing_buckets=buckets,
            )
        )
    return results, all(r.is_reconciled for r in results)


def reconcile_system(
    catalog: Catalog,
    system: str,
    settings: Settings,
    as_of_date: dt.date,
    wave: str | None = None,
    label: str | None = None,
    slicer: Callable[[str, str, Settings], dict[str, Any]] | None = None,
    aggregates_of: str | None = None,
) -> list[EntityReconciliation]:
    """Read the source again through the mapping and compare it with the core, per entity.

    With ``slicer`` (a wave's slice of a system split by care unit) the measured rows are cut
    to the wave's, and compared with the core rows the wave's own batches wrote.

    With ``aggregates_of`` (the batch that last read the system's whole source: its final delta
    in the freeze window, or its rehearsal batch; not with ``slicer``), the hash aggregates that
    batch kept are compared with the core first, and the source is read again only if they
    differ anywhere or the batch is not the system's latest promoted one (module docstring)."""
    from etl import pipeline

    narrowed: dict[str, list[str]] = {}
    if aggregates_of is not None and slicer is None:
        engine = core_engine(settings.resolved_core_url)
        with engine.begin() as connection:
            results, matched = reconcile_from_aggregates(
                connection, system, _entities(catalog, system), aggregates_of
            )
            if matched:
                if wave:
                    _record(connection, wave, aggregates_of, results)
                return results
        narrowed = {r.entity: r.differing_buckets for r in results if r.differing_buckets}
    scratch_batch = f"reconcile__{system}__{label or uuid.uuid4().hex[:8]}"
    # With an URL storage root the measuring batch stays in this task's scratch copy: it is
    # written, read and dropped here, never uploaded (etl/core/storage.py).
    with pipeline.on_storage(settings, system, scratch_batch) as local:
        return _measure(catalog, system, local, as_of_date, wave, scratch_batch, slicer, narrowed)


def _measure(
    catalog: Catalog,
    system: str,
    settings: Settings,
    as_of_date: dt.date,
    wave: str | None,
    scratch_batch: str,
    slicer: Callable[[str, str, Settings], dict[str, Any]] | None = None,
    narrowed: dict[str, list[str]] | None = None,
) -> list[EntityReconciliation]:
    from etl import pipeline

    # A measurement, not a run: it holds the system's lease while it reads (no run may write
    # meanwhile), supersedes nothing, and lets go as soon as the source is read.
    try:
        pipeline.extract(system, scratch_batch, as_of_date, settings, clean_abandoned=False)
        pipeline.transform_and_validate(system, scratch_batch, settings)
        if slicer is not None:
            slicer(system, scratch_batch, settings)
    finally:
        pipeline.release_system(system, scratch_batch, settings)
    paths = BatchPaths.of(settings, scratch_batch, system)
    entities = _entities(catalog, system)
    results = []
    engine = core_engine(settings.resolved_core_url)
    with engine.begin() as connection:
        batches = _wave_batches(connection, system, wave) if slicer is not None else None
        for entity in entities:
            result = reconcile_entity(
                connection, paths, system, entity, settings.chunk_rows, batches
            )
            # The hash aggregates' differing buckets, where the full comparison's rows are.
            result.differing_buckets = (narrowed or {}).get(entity, [])
            results.append(result)
        if wave:
            _record(connection, wave, scratch_batch, results)
    # The scratch batch was only a measuring device: drop its landed and staged files.
    shutil.rmtree(paths.root.parent, ignore_errors=True)
    return results


def _record(
    connection: sa.Connection, wave: str, batch_id: str, results: list[EntityReconciliation]
) -> None:
    now = utc_now()
    connection.execute(
        wave_reconciliation.insert(),
        [
            {
                "reconciliation_id": uuid.uuid4().hex,
                "wave": wave,
                "source_system": r.source_system,
                "entity": r.entity,
                "batch_id": batch_id,
                "expected_rows": r.expected_rows,
                "core_rows": r.core_rows,
                "missing_in_core": r.missing_in_core,
                "unexpected_in_core": r.unexpected_in_core,
                "content_mismatches": r.content_mismatches,
                "aggregates": json.dumps(
                    {
                        "aggregates": _rounded(r.aggregates),
                        "mismatches": r.aggregate_mismatches,
                        "method": r.method,
                        "differing_buckets": r.differing_buckets,
                    },
                    default=str,
                ),
                "is_reconciled": r.is_reconciled,
                "checked_at": now,
            }
            for r in results
        ],
    )


def accounting_residue(connection: sa.Connection, batch_ids: list[str]) -> list[dict[str, Any]]:
    """Accounting rows of these batches that do not balance (residue or unverified)."""
    if not batch_ids:
        return []
    rows = connection.execute(
        sa.select(batch_accounting).where(
            batch_accounting.c.batch_id.in_(batch_ids)
            & ((batch_accounting.c.residue != 0) | ~batch_accounting.c.is_verified)
        )
    )
    return [dict(row._mapping) for row in rows]
