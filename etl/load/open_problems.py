"""The quarantined problems still OPEN after a batch: one implementation for the validation
report's trend, the steward queue and the dashboard.

A full load checks every row, so the problems open after it are its own quarantine. A delta
(etl/extract/delta.py) checks only its new, changed and dependent rows: the problems open after
it are its own quarantine plus those open after its base (recursively back to a full load)
whose rows it neither processed again nor saw deleted at source. Their source rows are
unchanged, so still broken and still not in the core. Each open problem keeps the batch that
quarantined it (``quarantined_in``) and that batch's ``quarantine_id``s, so a steward's decision
attaches to the original quarantine record.

What a delta processed is read from its landing manifest and ``<dataset>.delta.parquet`` files.
:func:`open_problems` raises :class:`TrendUnavailableError` when they are gone (the report then
shows no trend); :func:`open_problems_fail_closed` instead keeps every earlier problem open and
says why, for the worklists that must never drop a broken row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from etl.batch import BatchPaths
from etl.core.tables import load_batch, promotion, quarantine
from etl.extract.delta import CHANGE, DELETED, PROCESSED, delta_file
from etl.extract.landing import DELTA, FULL, SOURCE_KEY, read_manifest
from etl.settings import Settings
from etl.validate.checks import source_check

LOADED_STATUSES = ("loaded", "unreconciled")

# What became of a problem open before a batch that the batch did not quarantine.
Fate = Literal["resolved", "deleted_at_source", "carried_over"]
RESOLVED: Fate = "resolved"
DELETED_AT_SOURCE: Fate = "deleted_at_source"
CARRIED_OVER: Fate = "carried_over"

# A problem is identified by (dataset, key, check): ``key`` is the row's source key, or
# "#row <n>" for a row without one. The table of problems (``PROBLEMS``), one row per problem in
# the order a walk meets them, holds what a page may show of each and the ``quarantine_ids`` of
# the records behind it; everything is computed in Arrow, never a Python loop per problem (a
# backlog can hold hundreds of thousands, and the steward queue walks them on every request).
IDENTITY = ("dataset", "key", "check")
PROBLEMS = pa.schema(
    [
        ("dataset", pa.string()),
        ("key", pa.string()),
        ("check", pa.string()),
        ("entity", pa.string()),
        ("source_key", pa.string()),
        ("row_number", pa.int64()),
        ("quarantine_ids", pa.list_(pa.string())),
        ("quarantined_in", pa.string()),
    ]
)
# The quarantine records a problem is made of, as read from table ``quarantine``.
RECORDS = pa.schema(
    [
        ("quarantine_id", pa.string()),
        ("dataset", pa.string()),
        ("entity", pa.string()),
        ("source_key", pa.string()),
        ("row_number", pa.int64()),
        ("check_name", pa.string()),
        ("reason", pa.string()),
    ]
)
_READ_ROWS = 50_000  # quarantine records read at a time

# A delta's processed or deleted keys: (dataset, key).
KEYS = pa.schema([("dataset", pa.string()), ("key", pa.string())])

# A delta's open problems come from its base's, and so on back to a full load: a longer chain than
# this is refused rather than followed (a cycle in broken ledgers, or an unbounded walk).
MAX_DELTA_CHAIN = 1000


class TrendUnavailableError(LookupError):
    """What a batch processed (or the problems open before it) can no longer be known."""


@dataclass(frozen=True)
class Scope:
    """Which rows a batch checked: every row (a full load), or a delta's processed keys."""

    base_batch_id: str | None  # a delta's base (None: a full load)
    processed: pa.Table = field(default_factory=KEYS.empty_table)  # keys a delta checked again
    deleted: pa.Table = field(default_factory=KEYS.empty_table)  # keys a delta lists as deleted
    # Fail-closed walks only: nothing is known to be checked again, every earlier problem stays.
    is_unknown: bool = False

    @property
    def is_delta(self) -> bool:
        return self.base_batch_id is not None


FULL_SCOPE = Scope(None)


def scope(settings: Settings, connection: sa.Connection, system: str, batch_id: str) -> Scope:
    """What ``batch_id`` checked, from its landing manifest and ``<dataset>.delta.parquet`` files
    (a full load: everything). Without them (retention removed the landing folder) only a batch
    the promotion ledger records as full is known; anything else raises."""
    try:
        manifest = read_manifest(settings, batch_id, system)
    except FileNotFoundError:
        kind = connection.execute(
            sa.select(promotion.c.kind).where(promotion.c.batch_id == batch_id)
        ).scalar_one_or_none()
        if kind == FULL:
            return FULL_SCOPE
        raise TrendUnavailableError(
            f"the landing files of batch {batch_id} are gone, so which rows it checked again is "
            "not known"
        ) from None
    except (OSError, ValueError) as unreadable:  # cut off, not JSON, not a manifest
        raise TrendUnavailableError(
            f"the landing manifest of batch {batch_id} cannot be read "
            f"({type(unreadable).__name__}), so which rows it checked again is not known"
        ) from None
    if manifest.kind != DELTA:
        return FULL_SCOPE
    if manifest.base_batch_id is None:
        raise TrendUnavailableError(f"delta batch {batch_id} does not name its base batch")
    paths = BatchPaths.of(settings, batch_id, system)
    processed: list[pa.Table] = []
    deleted: list[pa.Table] = []
    for dataset in manifest.datasets:
        path = delta_file(paths, dataset)
        if not path.exists():
            raise TrendUnavailableError(
                f"the delta files of batch {batch_id} are gone, so which rows it checked again "
                "is not known"
            )
        try:
            listed = pq.read_table(path, columns=[SOURCE_KEY, CHANGE])
        except (OSError, ValueError) as unreadable:  # cut off, or not Parquet
            raise TrendUnavailableError(
                f"the delta files of batch {batch_id} cannot be read "
                f"({type(unreadable).__name__}), so which rows it checked again is not known"
            ) from None
        # Keyless rows are compared by content: no key to follow.
        keyed = listed.filter(pc.is_valid(listed[SOURCE_KEY]))
        for change_set, found in ((PROCESSED, processed), ((DELETED,), deleted)):
            chosen = keyed.filter(pc.is_in(keyed[CHANGE], value_set=pa.array(change_set)))
            if chosen.num_rows:
                found.append(_keys(dataset, chosen[SOURCE_KEY]))
    return Scope(manifest.base_batch_id, _stacked(processed, KEYS), _stacked(deleted, KEYS))


def _keys(dataset: str, keys: pa.ChunkedArray) -> pa.Table:
    keys = pc.cast(keys, pa.string())
    return pa.table([pa.repeat(dataset, len(keys)).cast(pa.string()), keys], schema=KEYS)


def _stacked(tables: Sequence[pa.Table], schema: pa.Schema) -> pa.Table:
    return pa.concat_tables(tables) if tables else schema.empty_table()


def encoded(*columns: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """One text per row that two rows share exactly when each of ``columns`` is equal: each
    value prefixed by its length, so no value can mimic a boundary (``is_in`` on it stands in for
    a join on the columns, in the rows' own order, which Arrow's joins do not keep)."""
    parts: list[Any] = []
    for column in columns:
        parts += [pc.cast(pc.binary_length(column), pa.string()), ":", column]
    return pc.binary_join_element_wise(*parts, "")


def records_of(rows: Sequence[Sequence[Any]]) -> pa.Table:
    """Quarantine records (``RECORDS``' columns, in that order) as one Arrow table."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(RECORDS)
    return pa.table(
        [
            pa.array(values, type=column.type)
            for values, column in zip(columns, RECORDS, strict=True)
        ],
        schema=RECORDS,
    )


def problems_of(records: pa.Table, batch_id: str) -> pa.Table:
    """The problems of one batch's quarantine ``records``, in the order each first appears, each
    with what its first record shows and every record's ``quarantine_id``."""
    if not records.num_rows:
        return PROBLEMS.empty_table()
    check_name, entity = records["check_name"], records["entity"]
    # Same rule as the gate: suite checks carry their id (``<entity>.<check>``), transform
    # problems source.<reason>. Per entity (a handful), not per row.
    is_suite_check = pa.repeat(False, records.num_rows)
    for name in pc.unique(entity).to_pylist():
        own = pc.and_(pc.equal(entity, name), pc.starts_with(check_name, f"{name}."))
        is_suite_check = pc.or_(is_suite_check, pc.fill_null(own, False))
    reasons = pc.unique(records["reason"])
    source_checks = pa.array([source_check(r) for r in reasons.to_pylist()], pa.string())
    check = pc.if_else(
        is_suite_check,
        check_name,
        pc.take(source_checks, pc.index_in(records["reason"], value_set=reasons)),
    )
    # Without a source key the row number is the best identity a row has across extracts.
    key = pc.coalesce(
        records["source_key"],
        pc.binary_join_element_wise("#row ", pc.cast(records["row_number"], pa.string()), ""),
    )
    first = pc.ScalarAggregateOptions(skip_nulls=False)
    grouped = (
        pa.table(
            {
                "dataset": records["dataset"],
                "key": key,
                "check": check,
                "entity": entity,
                "source_key": records["source_key"],
                "row_number": records["row_number"],
                "quarantine_id": records["quarantine_id"],
                "position": pa.array(range(records.num_rows), pa.int64()),
            }
        )
        .group_by(list(IDENTITY), use_threads=False)  # ordered: "first" and "list" in row order
        .aggregate(
            [
                ("position", "min"),
                ("entity", "first", first),
                ("source_key", "first", first),
                ("row_number", "first", first),
                ("quarantine_id", "list"),
            ]
        )
        .sort_by("position_min")  # each problem where its first record was
    )
    return pa.table(
        [
            grouped["dataset"],
            grouped["key"],
            grouped["check"],
            grouped["entity_first"],
            grouped["source_key_first"],
            grouped["row_number_first"],
            grouped["quarantine_id_list"],
            pa.repeat(batch_id, grouped.num_rows).cast(pa.string()),
        ],
        schema=PROBLEMS,
    )


def problem_keys(connection: sa.Connection, system: str, batch_id: str) -> pa.Table:
    """A batch's quarantined problems (``PROBLEMS``), read from table ``quarantine``."""
    query = sa.select(
        quarantine.c.quarantine_id,
        quarantine.c.dataset,
        quarantine.c.entity,
        quarantine.c.source_key,
        quarantine.c.row_number,
        quarantine.c.check_name,
        quarantine.c.reason,
    ).where((quarantine.c.batch_id == batch_id) & (quarantine.c.source_system == system))
    result = connection.execute(query)
    # Read a slice of rows at a time into Arrow: never a Python tuple per record for all of them.
    records = [records_of(rows) for rows in result.partitions(_READ_ROWS)]
    return problems_of(_stacked(records, RECORDS), batch_id)


def fates(batch_scope: Scope, problems: pa.Table) -> pa.Array:
    """What became of each of ``problems`` (open before ``batch_scope``'s batch, which did not
    quarantine them): resolved (its row checked again, passing), deleted at source, or carried
    over (not checked again: a delta's unchanged row, a keyless row a delta cannot follow, or
    any row of a batch whose scope is unknown)."""
    count = problems.num_rows
    if batch_scope.is_unknown:
        return pa.repeat(CARRIED_OVER, count).cast(pa.string())
    if not batch_scope.is_delta:
        return pa.repeat(RESOLVED, count).cast(pa.string())
    pair = encoded(problems["dataset"], problems["key"])
    deleted = _among(pair, batch_scope.deleted)
    processed = _among(pair, batch_scope.processed)
    return pc.if_else(
        deleted, DELETED_AT_SOURCE, pc.if_else(processed, RESOLVED, CARRIED_OVER)
    ).combine_chunks()


def _among(pair: Any, keys: pa.Table) -> Any:
    return pc.is_in(pair, value_set=encoded(keys["dataset"], keys["key"]).combine_chunks())


def identities(problems: pa.Table) -> Any:
    """Each problem's identity (dataset, key, check) as one comparable text (``encoded``)."""
    return encoded(*(problems[name] for name in IDENTITY))


def forward(chain: list[tuple[str, Scope]], problems_in: Callable[[str], pa.Table]) -> pa.Table:
    """The open problems after the chain's first batch, walking from its oldest batch forward:
    each batch's own problems, then those open before it that it did not quarantine again and
    whose fate under its scope is carried over (in the order they were open)."""
    problems = PROBLEMS.empty_table()
    for batch, batch_scope in reversed(chain):  # the full load first
        own = problems_in(batch)
        if problems.num_rows:
            again = pc.is_in(identities(problems), value_set=identities(own).combine_chunks())
            kept = pc.and_(pc.invert(again), pc.equal(fates(batch_scope, problems), CARRIED_OVER))
            problems = pa.concat_tables([own, problems.filter(kept)])
        else:
            problems = own
    return problems


def _forward(connection: sa.Connection, system: str, chain: list[tuple[str, Scope]]) -> pa.Table:
    return forward(chain, lambda batch: problem_keys(connection, system, batch))


def _check_chain(chain: list[tuple[str, Scope]], batch: str, batch_id: str) -> None:
    if len(chain) > MAX_DELTA_CHAIN or any(batch == seen for seen, _ in chain):
        raise TrendUnavailableError(
            f"the chain of deltas before batch {batch_id} is longer than {MAX_DELTA_CHAIN} "
            "batches or loops"
        )


def open_problems(
    settings: Settings, connection: sa.Connection, system: str, batch_id: str
) -> pa.Table:
    """The quarantined problems still open once ``batch_id`` was loaded (``PROBLEMS``): its own
    quarantine, and for a delta also the problems open after its base whose rows it did not
    process again (nor saw deleted). Each problem's ``quarantined_in`` is the batch that
    quarantined it (its row number's and ``quarantine_ids``'). Raises
    :class:`TrendUnavailableError` when what a batch of the chain processed is no longer known.

    Walks from ``batch_id`` back through the bases to a full load, then forward again."""
    chain: list[tuple[str, Scope]] = []
    batch: str | None = batch_id
    while batch is not None:
        _check_chain(chain, batch, batch_id)
        batch_scope = scope(settings, connection, system, batch)
        chain.append((batch, batch_scope))
        batch = batch_scope.base_batch_id
    return _forward(connection, system, chain)


@dataclass
class OpenProblems:
    """The open problems of a system after a batch, and why the walk kept more than it knows."""

    problems: pa.Table
    notes: list[str] = field(default_factory=list)

    @property
    def quarantine_ids(self) -> list[str]:
        ids: list[str] = pc.list_flatten(self.problems["quarantine_ids"]).to_pylist()
        return ids

    def carried_quarantine_ids(self, batch_id: str) -> list[str]:
        """The open problems' quarantine ids but those ``batch_id`` itself quarantined (the
        batch the walk started from: every problem of its own quarantine is open)."""
        carried = self.problems.filter(pc.not_equal(self.problems["quarantined_in"], batch_id))
        ids: list[str] = pc.list_flatten(carried["quarantine_ids"]).to_pylist()
        return ids


def _previous_loaded(connection: sa.Connection, system: str, batch_id: str) -> str | None:
    """The system's last loaded batch started before ``batch_id``."""
    started = (
        sa.select(load_batch.c.started_at)
        .where(load_batch.c.batch_id == batch_id)
        .scalar_subquery()
    )
    return last_loaded_before(connection, system, batch_id, started)


def last_loaded_before(
    connection: sa.Connection, system: str, batch_id: str, before: Any
) -> str | None:
    """The system's last loaded batch (not a dry run, not ``batch_id``) started before ``before``
    (a time, or a scalar subquery giving one)."""
    query = (
        sa.select(load_batch.c.batch_id)
        .where(
            (load_batch.c.source_system == system)
            & (load_batch.c.batch_id != batch_id)
            & load_batch.c.is_dry_run.is_(False)
            & load_batch.c.status.in_(LOADED_STATUSES)
            & (load_batch.c.started_at < before)
        )
        .order_by(load_batch.c.started_at.desc())
        .limit(1)
    )
    return connection.execute(query).scalar_one_or_none()


def open_problems_fail_closed(
    settings: Settings, connection: sa.Connection, system: str, batch_id: str
) -> OpenProblems:
    """As :func:`open_problems`, but never drops a problem it cannot prove resolved: a batch of
    the chain that was not loaded (stopped by the gate, rolled back), or whose delta files or
    manifest are gone, is taken to have checked nothing again, and the walk goes on from the
    system's previous loaded batch (its base when known). The notes say which and why."""
    notes: list[str] = []
    chain: list[tuple[str, Scope]] = []
    batch: str | None = batch_id
    while batch is not None:
        try:
            _check_chain(chain, batch, batch_id)
        except TrendUnavailableError as refused:
            notes.append(f"{refused}; the walk stopped there, older problems are not listed")
            break
        status = connection.execute(
            sa.select(load_batch.c.status).where(load_batch.c.batch_id == batch)
        ).scalar_one_or_none()
        try:
            batch_scope = scope(settings, connection, system, batch)
        except TrendUnavailableError as unknown:
            notes.append(
                f"{system}: {unknown}; every problem still open before it is shown as open"
            )
            batch_scope = Scope(_previous_loaded(connection, system, batch), is_unknown=True)
        if status not in LOADED_STATUSES and not batch_scope.is_unknown:
            notes.append(
                f"{system}: batch {batch} is {status or 'not recorded'}, not loaded, so it "
                "resolved nothing; every problem still open before it is shown as open"
            )
            base = batch_scope.base_batch_id or _previous_loaded(connection, system, batch)
            batch_scope = Scope(base, is_unknown=True)
        chain.append((batch, batch_scope))
        batch = batch_scope.base_batch_id
    return OpenProblems(_forward(connection, system, chain), notes)
