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

# A problem: (dataset, source key or "#row <n>", check id), and what a page may show of it.
Identity = tuple[str, str, str]
Problems = dict[Identity, dict[str, Any]]

# What became of a problem open before a batch that the batch did not quarantine.
Fate = Literal["resolved", "deleted_at_source", "carried_over"]

# A delta's open problems come from its base's, and so on back to a full load: a longer chain than
# this is refused rather than followed (a cycle in broken ledgers, or an unbounded walk).
MAX_DELTA_CHAIN = 1000


class TrendUnavailableError(LookupError):
    """What a batch processed (or the problems open before it) can no longer be known."""


@dataclass(frozen=True)
class Scope:
    """Which rows a batch checked: every row (a full load), or a delta's processed keys."""

    base_batch_id: str | None  # a delta's base (None: a full load)
    processed: dict[str, set[str]]  # per dataset, the keys a delta mapped and checked again
    deleted: dict[str, set[str]]  # per dataset, the keys a delta lists as deleted at source
    # Fail-closed walks only: nothing is known to be checked again, every earlier problem stays.
    is_unknown: bool = False

    @property
    def is_delta(self) -> bool:
        return self.base_batch_id is not None


FULL_SCOPE = Scope(None, {}, {})


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
    processed: dict[str, set[str]] = {}
    deleted: dict[str, set[str]] = {}
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
                found[dataset] = set(chosen[SOURCE_KEY].to_pylist())
    return Scope(manifest.base_batch_id, processed, deleted)


def problem_keys(connection: sa.Connection, system: str, batch_id: str) -> Problems:
    """Quarantined (dataset, source key, check) of a batch, with what a report may show and the
    ``quarantine_ids`` of the records behind each."""
    query = sa.select(
        quarantine.c.quarantine_id,
        quarantine.c.dataset,
        quarantine.c.entity,
        quarantine.c.source_key,
        quarantine.c.row_number,
        quarantine.c.check_name,
        quarantine.c.reason,
    ).where((quarantine.c.batch_id == batch_id) & (quarantine.c.source_system == system))
    problems: Problems = {}
    for row in connection.execute(query):
        # Same rule as the gate: suite checks carry their id, transform problems source.<reason>.
        is_suite_check = row.check_name.startswith(f"{row.entity}.")
        check = row.check_name if is_suite_check else source_check(row.reason)
        # Without a source key the row number is the best identity a row has across extracts.
        identity = row.source_key if row.source_key is not None else f"#row {row.row_number}"
        info = problems.setdefault(
            (row.dataset, identity, check),
            {
                "entity": row.entity,
                "source_key": row.source_key,
                "row_number": int(row.row_number),
                "quarantine_ids": [],
            },
        )
        info["quarantine_ids"].append(row.quarantine_id)
    return problems


def fate(batch_scope: Scope, identity: Identity) -> Fate:
    """What became of a problem open before ``batch_scope``'s batch that the batch did not
    quarantine: resolved (its row checked again, passing), deleted at source, or carried over
    (not checked again: a delta's unchanged row, a keyless row a delta cannot follow, or any row
    of a batch whose scope is unknown)."""
    if batch_scope.is_unknown:
        return "carried_over"
    if not batch_scope.is_delta:
        return "resolved"
    dataset, key, _check = identity
    if key in batch_scope.deleted.get(dataset, ()):
        return "deleted_at_source"
    if key in batch_scope.processed.get(dataset, ()):
        return "resolved"
    return "carried_over"


def _forward(connection: sa.Connection, system: str, chain: list[tuple[str, Scope]]) -> Problems:
    """The open problems after the chain's first batch, walking from its oldest batch forward."""
    problems: Problems = {}
    for batch, batch_scope in reversed(chain):  # the full load first
        own = {
            identity: info | {"quarantined_in": batch}
            for identity, info in problem_keys(connection, system, batch).items()
        }
        for identity, info in problems.items():
            if identity not in own and fate(batch_scope, identity) == "carried_over":
                own[identity] = info
        problems = own
    return problems


def _check_chain(chain: list[tuple[str, Scope]], batch: str, batch_id: str) -> None:
    if len(chain) > MAX_DELTA_CHAIN or any(batch == seen for seen, _ in chain):
        raise TrendUnavailableError(
            f"the chain of deltas before batch {batch_id} is longer than {MAX_DELTA_CHAIN} "
            "batches or loops"
        )


def open_problems(
    settings: Settings, connection: sa.Connection, system: str, batch_id: str
) -> Problems:
    """The quarantined problems still open once ``batch_id`` was loaded: its own quarantine, and
    for a delta also the problems open after its base whose rows it did not process again (nor
    saw deleted). Each problem's ``quarantined_in`` is the batch that quarantined it (its row
    number's and ``quarantine_ids``'). Raises :class:`TrendUnavailableError` when what a batch of
    the chain processed is no longer known.

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

    problems: Problems
    notes: list[str] = field(default_factory=list)

    @property
    def quarantine_ids(self) -> list[str]:
        return [qid for info in self.problems.values() for qid in info["quarantine_ids"]]

    def carried_quarantine_ids(self, batch_id: str) -> list[str]:
        """The open problems' quarantine ids but those ``batch_id`` itself quarantined (the
        batch the walk started from: every problem of its own quarantine is open)."""
        return [
            qid
            for info in self.problems.values()
            if info["quarantined_in"] != batch_id
            for qid in info["quarantine_ids"]
        ]


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
            batch_scope = Scope(_previous_loaded(connection, system, batch), {}, {}, True)
        if status not in LOADED_STATUSES and not batch_scope.is_unknown:
            notes.append(
                f"{system}: batch {batch} is {status or 'not recorded'}, not loaded, so it "
                "resolved nothing; every problem still open before it is shown as open"
            )
            base = batch_scope.base_batch_id or _previous_loaded(connection, system, batch)
            batch_scope = Scope(base, {}, {}, True)
        chain.append((batch, batch_scope))
        batch = batch_scope.base_batch_id
    return OpenProblems(_forward(connection, system, chain), notes)
