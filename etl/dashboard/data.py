"""The dashboard's read model: what the pages show, computed from the core's own tables (the
waves' ledger in etl/dashboard/wave_ledger.py, built on this).

Everything here is counts, codes, states, timestamps and row handles; never a source key, an
identity number, a name or free text, but for approvers' notes on their go/no-go (their own words
about the decision, with identity numbers withheld: ``etl.cutover.ledger.screened_note``).
Each function runs a handful of grouped queries (one per table, filtered by batch) and merges
them here, so a page costs the same on SQLite and PostgreSQL and stays fast with a long history
(see the dashboard section of ``make bench``).

Terms, as the pages use them:

* **batch**: one source system's run (``load_batch``, or only ``dq_result`` when the quality gate
  stopped it before loading);
* **run**: the batches sharing an Airflow run id (a rehearsal, a delta load, a re-run);
* **DQ pass rate**: rows passing their checks, ``1 - rows_failed / rows_evaluated`` summed over
  every stored check result of the batch;
* **duration**: from the batch's first access-log entry (the extract's read of the source) to the
  end of its load; **throughput**: source rows extracted per second of that duration.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import overload

import sqlalchemy as sa

from etl.core.tables import (
    access_log,
    batch_accounting,
    cutover_transition,
    dq_result,
    load_batch,
    promotion,
)

GATE_STOPPED = "stopped_at_gate"
COUNT_FIELDS = ("extracted", "loaded", "quarantined", "excluded", "merged", "residue")
# Batch ids per IN list: far below every supported database's limit on bound parameters.
_IN_CHUNK = 900


@overload
def _utc(value: dt.datetime) -> dt.datetime: ...
@overload
def _utc(value: None) -> None: ...
def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """Timestamps as aware UTC (SQLite hands them back naive; they were written in UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


@dataclass
class SystemBatch:
    """One batch of one source system, with everything a wave or run page says about it."""

    batch_id: str
    system: str
    run_id: str | None = None
    status: str | None = None
    is_dry_run: bool = False
    mapping_version: str | None = None
    first_access_at: dt.datetime | None = None
    load_started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    extracted: int = 0
    loaded: int = 0
    quarantined: int = 0
    excluded: int = 0
    merged: int = 0
    residue: int = 0
    entities: int = 0
    unverified_entities: int = 0
    checks: int = 0
    checks_breached: int = 0
    rows_evaluated: int = 0
    rows_failed: int = 0
    wave: str | None = None
    kind: str | None = None
    promotion_state: str | None = None
    promoted_at: dt.datetime | None = None
    # What its promotion changed in the core (0 until promoted; kept after a rollback).
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_deleted: int = 0
    run_label: str | None = None  # its run by DAG and phase (see ``label_runs``)

    @property
    def started_at(self) -> dt.datetime | None:
        candidates = [t for t in (self.first_access_at, self.load_started_at) if t is not None]
        return min(candidates) if candidates else None

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return max((self.finished_at - self.started_at).total_seconds(), 0.0)

    @property
    def rows_per_second(self) -> float | None:
        seconds = self.duration_seconds
        return self.extracted / seconds if seconds else None

    @property
    def dq_pass_rate(self) -> float | None:
        rate = _ratio(self.rows_failed, self.rows_evaluated)
        return None if rate is None else 1.0 - rate

    @property
    def quarantine_rate(self) -> float | None:
        return _ratio(self.quarantined, self.extracted)

    @property
    def is_loaded(self) -> bool:
        return self.status is not None and self.status != GATE_STOPPED

    @property
    def is_accounted(self) -> bool:
        """Every extracted row is loaded, quarantined, excluded or merged: nothing unexplained."""
        return (
            self.is_loaded
            and self.entities > 0
            and self.unverified_entities == 0
            and self.residue == 0
        )


@dataclass
class RunSummary:
    """The batches of one run, added up (a rehearsal or delta load as a whole)."""

    run_id: str
    batches: list[SystemBatch] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The run by DAG and phase (``vardflytt_cutover_w1_skaraborg · final``)."""
        return next((b.run_label for b in self.batches if b.run_label), self.run_id)

    def total(self, name: str) -> int:
        return sum(getattr(batch, name) for batch in self.batches)

    @property
    def systems(self) -> list[str]:
        return sorted({batch.system for batch in self.batches})

    @property
    def started_at(self) -> dt.datetime | None:
        times = [b.started_at for b in self.batches if b.started_at is not None]
        return min(times) if times else None

    @property
    def finished_at(self) -> dt.datetime | None:
        times = [b.finished_at for b in self.batches if b.finished_at is not None]
        return max(times) if times else None

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return max((self.finished_at - self.started_at).total_seconds(), 0.0)

    @property
    def rows_per_second(self) -> float | None:
        seconds = self.duration_seconds
        return self.total("extracted") / seconds if seconds else None

    @property
    def dq_pass_rate(self) -> float | None:
        rate = _ratio(self.total("rows_failed"), self.total("rows_evaluated"))
        return None if rate is None else 1.0 - rate

    @property
    def quarantine_rate(self) -> float | None:
        return _ratio(self.total("quarantined"), self.total("extracted"))

    @property
    def stopped_at_gate(self) -> int:
        return sum(1 for batch in self.batches if batch.status == GATE_STOPPED)

    @property
    def is_accounted(self) -> bool:
        loaded = [b for b in self.batches if b.is_loaded]
        return bool(loaded) and all(b.is_accounted for b in loaded)

    @property
    def kinds(self) -> list[str]:
        return sorted({b.kind for b in self.batches if b.kind})

    @property
    def waves(self) -> list[str]:
        return sorted({b.wave for b in self.batches if b.wave})


@dataclass
class CheckRow:
    """One stored check result (per batch, system, entity and check): counts only."""

    batch_id: str
    system: str
    entity: str
    check: str
    dimension: str | None
    severity: str
    rows_evaluated: int
    rows_failed: int
    rows_waived: int
    max_failure_rate: float | None
    is_breached: bool

    @property
    def failure_rate(self) -> float | None:
        return _ratio(self.rows_failed, self.rows_evaluated)


# --------------------------------------------------------------------------- batches and runs


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _rows(connection: sa.Connection, query: sa.Select, column, batch_ids: Sequence[str] | None):
    """Run a query for all batches (None) or only the named ones, in bounded IN lists."""
    if batch_ids is None:
        yield from connection.execute(query)
        return
    for chunk in _chunks(list(batch_ids)):
        yield from connection.execute(query.where(column.in_(chunk)))


def batch_figures(
    connection: sa.Connection, batch_ids: Sequence[str] | None = None
) -> list[SystemBatch]:
    """Every batch (or the named ones) with accounting, DQ, timing and promotion figures."""
    batches: dict[tuple[str, str], SystemBatch] = {}

    def batch(batch_id: str, system: str) -> SystemBatch:
        key = (batch_id, system)
        if key not in batches:
            batches[key] = SystemBatch(batch_id=batch_id, system=system)
        return batches[key]

    base = sa.select(
        load_batch.c.batch_id,
        load_batch.c.source_system,
        load_batch.c.run_id,
        load_batch.c.status,
        load_batch.c.is_dry_run,
        load_batch.c.mapping_version,
        load_batch.c.started_at,
        load_batch.c.finished_at,
    )
    for row in _rows(connection, base, load_batch.c.batch_id, batch_ids):
        item = batch(row.batch_id, row.source_system)
        item.run_id, item.status = row.run_id, row.status
        item.is_dry_run, item.mapping_version = bool(row.is_dry_run), row.mapping_version
        item.load_started_at, item.finished_at = _utc(row.started_at), _utc(row.finished_at)

    table = batch_accounting
    accounting = sa.select(
        table.c.batch_id,
        table.c.source_system,
        *(sa.func.sum(table.c[name]).label(name) for name in COUNT_FIELDS),
        sa.func.count().label("entities"),
        sa.func.sum(sa.case((table.c.is_verified, 0), else_=1)).label("unverified"),
    ).group_by(table.c.batch_id, table.c.source_system)
    for row in _rows(connection, accounting, table.c.batch_id, batch_ids):
        item = batch(row.batch_id, row.source_system)
        for name in COUNT_FIELDS:
            setattr(item, name, int(getattr(row, name) or 0))
        item.entities, item.unverified_entities = int(row.entities), int(row.unverified or 0)

    _add_checks(connection, batch, batch_ids)
    table = access_log
    first_access = sa.select(
        table.c.batch_id, sa.func.min(table.c.accessed_at).label("first_access_at")
    ).group_by(table.c.batch_id)
    by_batch: dict[str, list[SystemBatch]] = {}
    for (batch_id, _system), item in batches.items():
        by_batch.setdefault(batch_id, []).append(item)
    for row in _rows(connection, first_access, table.c.batch_id, batch_ids):
        for item in by_batch.get(row.batch_id, []):
            item.first_access_at = _utc(row.first_access_at)

    _add_promotions(connection, batches, batch_ids)
    label_runs(connection, list(batches.values()))
    return sorted(batches.values(), key=lambda b: (b.started_at or _EPOCH, b.system))


def _add_checks(
    connection: sa.Connection,
    batch: Callable[[str, str], SystemBatch],
    batch_ids: Sequence[str] | None,
) -> None:
    """DQ figures per batch; a batch the gate stopped has no load_batch row, only these."""
    table = dq_result
    checks = sa.select(
        table.c.batch_id,
        table.c.source_system,
        sa.func.max(table.c.run_id).label("run_id"),
        sa.func.count().label("checks"),
        sa.func.sum(sa.case((table.c.is_breached, 1), else_=0)).label("breached"),
        sa.func.sum(table.c.rows_evaluated).label("rows_evaluated"),
        sa.func.sum(table.c.rows_failed).label("rows_failed"),
        sa.func.min(table.c.evaluated_at).label("evaluated_at"),
    ).group_by(table.c.batch_id, table.c.source_system)
    for row in _rows(connection, checks, table.c.batch_id, batch_ids):
        item = batch(row.batch_id, row.source_system)
        item.checks, item.checks_breached = int(row.checks), int(row.breached or 0)
        item.rows_evaluated = int(row.rows_evaluated or 0)
        item.rows_failed = int(row.rows_failed or 0)
        if item.status is None:  # the gate stopped it: no load_batch row
            item.status, item.run_id = GATE_STOPPED, row.run_id
            item.finished_at = _utc(row.evaluated_at)


def _add_promotions(
    connection: sa.Connection,
    batches: dict[tuple[str, str], SystemBatch],
    batch_ids: Sequence[str] | None,
) -> None:
    """The promotion of each batch that has one (wave, kind, state, rows changed)."""
    table = promotion
    promoted = sa.select(
        table.c.batch_id,
        table.c.source_system,
        table.c.wave,
        table.c.kind,
        table.c.state,
        table.c.promoted_at,
        table.c.rows_inserted,
        table.c.rows_updated,
        table.c.rows_deleted,
    )
    for row in _rows(connection, promoted, table.c.batch_id, batch_ids):
        key = (row.batch_id, row.source_system)
        if key in batches:
            item = batches[key]
            item.wave, item.kind = row.wave, row.kind
            item.promotion_state, item.promoted_at = row.state, _utc(row.promoted_at)
            item.rows_inserted = int(row.rows_inserted or 0)
            item.rows_updated = int(row.rows_updated or 0)
            item.rows_deleted = int(row.rows_deleted or 0)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def latest_batch_ids(connection: sa.Connection) -> list[str]:
    """Each system's most recently started batch that loaded (dry runs excluded)."""
    ranked = (
        sa.select(
            load_batch.c.batch_id,
            sa.func.row_number()
            .over(
                partition_by=load_batch.c.source_system,
                order_by=(load_batch.c.started_at.desc(), load_batch.c.batch_id.desc()),
            )
            .label("rank"),
        )
        .where(sa.not_(load_batch.c.is_dry_run))
        .subquery()
    )
    return list(
        connection.execute(sa.select(ranked.c.batch_id).where(ranked.c.rank == 1)).scalars()
    )


def run_batch_ids(connection: sa.Connection, run_id: str) -> list[str]:
    """The batches of one run: loaded ones and ones the quality gate stopped."""
    loaded = sa.select(load_batch.c.batch_id).where(load_batch.c.run_id == run_id)
    checked = sa.select(dq_result.c.batch_id).where(dq_result.c.run_id == run_id)
    return sorted(
        set(connection.execute(loaded).scalars()) | set(connection.execute(checked).scalars())
    )


def runs(connection: sa.Connection, batches: list[SystemBatch] | None = None) -> list[RunSummary]:
    """Every run, oldest first; a batch without a run id is a run of its own."""
    grouped: dict[str, RunSummary] = {}
    for item in batches if batches is not None else batch_figures(connection):
        run_id = item.run_id or item.batch_id
        grouped.setdefault(run_id, RunSummary(run_id=run_id)).batches.append(item)
    return sorted(grouped.values(), key=lambda r: (r.started_at or _EPOCH, r.run_id))


def check_rows(
    connection: sa.Connection, batch_ids: Sequence[str], only_failing: bool = True
) -> list[CheckRow]:
    """Stored check results of the batches; by default only those with failing rows."""
    table = dq_result
    query = sa.select(table).order_by(
        table.c.source_system, table.c.entity, table.c.check_name, table.c.batch_id
    )
    if only_failing:
        query = query.where((table.c.rows_failed > 0) | table.c.is_breached)
    return [
        CheckRow(
            batch_id=row.batch_id,
            system=row.source_system,
            entity=row.entity,
            check=row.check_name,
            dimension=row.dimension,
            severity=row.severity,
            rows_evaluated=int(row.rows_evaluated),
            rows_failed=int(row.rows_failed),
            rows_waived=int(row.rows_waived),
            max_failure_rate=row.max_failure_rate,
            is_breached=bool(row.is_breached),
        )
        for row in _rows(connection, query, table.c.batch_id, batch_ids)
    ]


def totals(batches: Iterable[SystemBatch]) -> dict[str, int]:
    items = list(batches)
    return {
        name: sum(getattr(b, name) for b in items)
        for name in (*COUNT_FIELDS, "rows_evaluated", "rows_failed", "checks", "checks_breached")
    }


# --------------------------------------------------------------------------- the ledger's states


# The ledger's states (etl/cutover/ledger.py), named here so the read model imports no writer.
PLANNED, REHEARSAL, CUT_OVER, ROLLED_BACK = "planned", "rehearsal", "cut_over", "rolled_back"
TERMINAL_STATES = {CUT_OVER, ROLLED_BACK}


# --------------------------------------------------------------------------- runs by DAG and phase

# Airflow's run ids start with the run type (``manual__2026-12-04T07:00:00+00:00``); the command
# line passes none (``vardflytt run``, ``vardflytt cutover load``) or one of its own.
AIRFLOW_RUN_ID = re.compile(
    r"^(manual|scheduled|backfill|asset_triggered|dataset_triggered|asset_materialization"
    r"|operator_triggered)__"
)
COMMAND_LINE = "command line"
# The cutover's phase of a ledger state, and of a cutover batch id
# (``<system>__<wave>__<phase>__<stamp>``, etl/cutover/waves.py).
PHASE_OF_STATE = {
    "rehearsal": "rehearsal",
    "initial_load": "initial",
    "delta_load": "delta",
    "final_delta": "final",
}
_CUTOVER_BATCH = re.compile(
    r"^(?P<system>.+?)__(?P<wave>.+)__(?P<phase>rehearsal|initial|delta|final)__\d{8}T\d+$"
)


@dataclass(frozen=True)
class RunLabel:
    """Which DAG ran a batch (None: the command line), in which wave and cutover phase."""

    dag_id: str | None
    wave: str | None = None
    phase: str | None = None

    @property
    def text(self) -> str:
        parts = [self.dag_id or COMMAND_LINE]
        if self.dag_id is None and self.wave:
            parts.append(f"cutover {self.wave}")
        if self.phase:
            parts.append(self.phase)
        return " · ".join(parts)


def derive_run_label(
    run_id: str | None,
    systems: Iterable[str],
    waves_of_run: Iterable[str | None],
    phases: Iterable[str | None],
    dag_id: str | None = None,
) -> RunLabel:
    """A run's DAG and phase from what the core stores.

    The DAG is the one recorded on the run's batches (``load_batch.dag_id``, since core
    revision 0006). A run without it (recorded earlier, or stopped by the gate before any batch
    was loaded) is read from its shape: a batch of a wave comes from ``vardflytt_cutover_<wave>``
    (or ``vardflytt cutover``); an Airflow run of several systems outside a wave from
    ``vardflytt_migrate``; one system's from ``vardflytt_<system>``.
    """
    wave = next((w for w in sorted({w for w in waves_of_run if w})), None)
    phase = next((p for p in phases if p), None)
    names = sorted(set(systems))
    if not (run_id and AIRFLOW_RUN_ID.match(run_id)):
        return RunLabel(None, wave, phase)
    if dag_id:
        return RunLabel(dag_id, wave, phase)
    if wave:
        from etl.dag_names import cutover_dag_id

        return RunLabel(cutover_dag_id(wave), wave, phase)
    if len(names) == 1:
        return RunLabel(f"vardflytt_{names[0]}", None, phase)
    return RunLabel("vardflytt_migrate", None, phase)


def label_runs(connection: sa.Connection, batches: list[SystemBatch]) -> None:
    """Set each batch's ``run_label``: its run's systems (load_batch, dq_result) and cutover
    phase (the ledger transition the run recorded, else the cutover batch id)."""
    run_ids = sorted({b.run_id for b in batches if b.run_id})
    systems: dict[str, set[str]] = {run_id: set() for run_id in run_ids}
    dag_ids: dict[str, str] = {}
    states: dict[str, list[tuple[str, str]]] = {}
    for table in (load_batch, dq_result):
        query = sa.select(table.c.run_id, table.c.source_system).distinct()
        for row in _rows(connection, query, table.c.run_id, run_ids):
            systems[row.run_id].add(row.source_system)
    query = sa.select(load_batch.c.run_id, load_batch.c.dag_id).where(
        load_batch.c.dag_id.is_not(None)
    )
    for row in _rows(connection, query.distinct(), load_batch.c.run_id, run_ids):
        dag_ids[row.run_id] = min(row.dag_id, dag_ids.get(row.run_id, row.dag_id))
    query = sa.select(
        cutover_transition.c.run_id, cutover_transition.c.wave, cutover_transition.c.to_state
    )
    for row in _rows(connection, query, cutover_transition.c.run_id, run_ids):
        states.setdefault(row.run_id, []).append((row.wave, row.to_state))
    by_run: dict[str, list[SystemBatch]] = {}
    for item in batches:
        by_run.setdefault(item.run_id or f"\0{item.batch_id}", []).append(item)
    for items in by_run.values():
        run_id = items[0].run_id
        parsed = [_CUTOVER_BATCH.match(b.batch_id) for b in items]
        recorded = states.get(run_id or "", [])
        label = derive_run_label(
            run_id,
            systems.get(run_id or "", set()) | {b.system for b in items},
            [b.wave for b in items]
            + [w for w, _ in recorded]
            + [m.group("wave") for m in parsed if m],
            [PHASE_OF_STATE.get(s) for _, s in recorded] + [m.group("phase") for m in parsed if m],
            dag_ids.get(run_id or ""),
        )
        for item in items:
            item.run_label = label.text


# --------------------------------------------------------------------------- the core as it is now

# How a source system stands in the core (``SystemInCore.state``). Only the first three have rows
# in the core; every other state has none.
LOADED_BY_WAVE = "loaded by its wave"
LOADED_OUTSIDE_WAVE = "in the core, not yet loaded by its wave"
IN_CORE = "in the core"
NOT_LOADED = "not loaded"
ALL_ROLLED_BACK = "rolled back"
STOPPED_AT_GATE = "stopped at the quality gate"
NOT_PROMOTED = "not promoted"
PROMOTED = "promoted"


@dataclass
class SystemInCore:
    """One source system as the core holds it now: the one answer every page gives.

    ``rows_in_core`` is what its promoted batches left in the core tables: rows inserted minus
    rows deleted, over every batch still promoted (a rolled-back batch counts nothing). ``wave``
    is the system's wave in the plan (else the wave its batches were tagged with)."""

    system: str
    wave: str | None = None
    is_planned: bool = False
    rows_in_core: int = 0
    promoted_batches: int = 0
    wave_batches: int = 0  # promoted batches its own wave's cutover loaded
    rolled_back_batches: int = 0
    last_promoted: SystemBatch | None = None
    latest: SystemBatch | None = None  # its newest batch, whatever became of it
    in_latest_run: SystemBatch | None = None  # its batch in the core's latest run, if any

    @property
    def is_in_core(self) -> bool:
        return self.promoted_batches > 0

    @property
    def state(self) -> str:
        if self.is_in_core:
            if self.wave is None:
                return IN_CORE
            return LOADED_BY_WAVE if self.wave_batches else LOADED_OUTSIDE_WAVE
        if self.rolled_back_batches:
            return ALL_ROLLED_BACK
        if self.latest is not None and self.latest.checks_breached and not self.latest.is_loaded:
            return STOPPED_AT_GATE
        if self.latest is not None and self.latest.status:
            return NOT_PROMOTED
        return NOT_LOADED

    def changed(self, name: str) -> int:
        """Rows inserted, updated or deleted (``name``) by the latest run, if it promoted them."""
        batch = self.in_latest_run
        if batch is None or batch.promotion_state != PROMOTED:
            return 0
        return getattr(batch, f"rows_{name}")

    @property
    def latest_run_inserted(self) -> int:
        return self.changed("inserted")

    @property
    def latest_run_updated(self) -> int:
        return self.changed("updated")

    @property
    def latest_run_deleted(self) -> int:
        return self.changed("deleted")

    @property
    def quarantined_by_latest_run(self) -> int:
        return self.in_latest_run.quarantined if self.in_latest_run else 0


@dataclass
class CoreNow:
    """What is in the core right now, per source system and per wave, and what the latest run
    changed. Every headline figure is a sum over ``systems``: the pages add nothing of their own."""

    systems: list[SystemInCore] = field(default_factory=list)
    latest_run: RunSummary | None = None

    @property
    def rows_in_core(self) -> int:
        return sum(s.rows_in_core for s in self.systems)

    @property
    def systems_in_core(self) -> list[SystemInCore]:
        return [s for s in self.systems if s.is_in_core]

    def changed(self, name: str) -> int:
        return sum(s.changed(name) for s in self.systems)

    @property
    def quarantined_by_latest_run(self) -> int:
        return sum(s.quarantined_by_latest_run for s in self.systems)

    def for_wave(self, wave: str | None) -> list[SystemInCore]:
        return [s for s in self.systems if s.wave == wave]

    def rows_in_wave(self, wave: str | None) -> int:
        return sum(s.rows_in_core for s in self.for_wave(wave))

    @property
    def latest_run_outcome(self) -> str:
        """What became of the latest run, in words (its figures are in ``changed``)."""
        run = self.latest_run
        if run is None:
            return "no run yet"
        states = [s.in_latest_run for s in self.systems if s.in_latest_run is not None]
        promoted = sum(1 for s in states if s.promotion_state == PROMOTED)
        stopped = sum(1 for s in states if s.checks_breached and not s.is_loaded)
        rolled_back = sum(1 for s in states if s.promotion_state == ROLLED_BACK)
        parts = [f"{promoted} of {len(states)} systems promoted"]
        if stopped:
            parts.append(f"{stopped} stopped at the quality gate")
        if rolled_back:
            parts.append(f"{rolled_back} rolled back since")
        return ", ".join(parts)


def _newest_batches(connection: sa.Connection) -> tuple[dict[str, str], str | None]:
    """Each system's newest batch (loaded or not, dry runs aside) and the newest of all."""
    moments: list[tuple[dt.datetime, str, str]] = []
    loaded = set()
    for row in connection.execute(
        sa.select(
            load_batch.c.batch_id,
            load_batch.c.source_system,
            load_batch.c.started_at,
            load_batch.c.is_dry_run,
        )
    ):
        loaded.add(row.batch_id)
        if not row.is_dry_run:
            moments.append((_utc(row.started_at) or _EPOCH, row.batch_id, row.source_system))
    checked = sa.select(
        dq_result.c.batch_id,
        dq_result.c.source_system,
        sa.func.min(dq_result.c.evaluated_at).label("at"),
    ).group_by(dq_result.c.batch_id, dq_result.c.source_system)
    for checked_row in connection.execute(checked):
        if checked_row.batch_id not in loaded:  # the gate stopped it (or a dry run): no load row
            moments.append(
                (_utc(checked_row.at) or _EPOCH, checked_row.batch_id, checked_row.source_system)
            )
    newest: dict[str, str] = {}
    for _at, batch_id, system in sorted(moments):
        newest[system] = batch_id
    return newest, (max(moments)[1] if moments else None)


def _add_promotion_ledger(
    connection: sa.Connection,
    system: Callable[[str], SystemInCore],
    wave_of: dict[str, str],
) -> tuple[dict[str, str], dict[str, str]]:
    """Each system's promoted and rolled-back batches and rows in the core, from the promotion
    ledger; returns each system's last promoted batch and the last wave its batches were
    tagged with."""
    last_promoted: dict[str, str] = {}
    tagged: dict[str, str] = {}
    for row in connection.execute(
        sa.select(
            promotion.c.batch_id,
            promotion.c.source_system,
            promotion.c.wave,
            promotion.c.state,
            promotion.c.rows_inserted,
            promotion.c.rows_deleted,
        ).order_by(promotion.c.seq.is_(None), promotion.c.seq, promotion.c.batch_id)
    ):
        item = system(row.source_system)
        if row.wave:
            tagged[row.source_system] = row.wave
        if row.state == PROMOTED:
            item.promoted_batches += 1
            item.rows_in_core += int(row.rows_inserted or 0) - int(row.rows_deleted or 0)
            last_promoted[row.source_system] = row.batch_id
            if row.wave and row.wave == (wave_of.get(row.source_system) or row.wave):
                item.wave_batches += 1
        elif row.state == ROLLED_BACK:
            item.rolled_back_batches += 1
    return last_promoted, tagged


def _latest_run(
    connection: sa.Connection, newest_of_all: str | None
) -> tuple[str | None, list[str]]:
    """The run of the newest batch of all (a batch loaded without a run id is a run of its
    own) and its batches; none when there is no batch."""
    run_ids: list[str] = []
    latest_run_id: str | None = None
    if newest_of_all is not None:
        run_of = connection.execute(
            sa.select(load_batch.c.run_id).where(load_batch.c.batch_id == newest_of_all)
        ).scalar()
        if run_of is None:
            run_of = connection.execute(
                sa.select(sa.func.max(dq_result.c.run_id)).where(
                    dq_result.c.batch_id == newest_of_all
                )
            ).scalar()
        latest_run_id = run_of or newest_of_all
        run_ids = run_batch_ids(connection, run_of) if run_of else [newest_of_all]
    return latest_run_id, run_ids


def core_now(connection: sa.Connection, plan: dict[str, dict] | None = None) -> CoreNow:
    """Per source system (every system of the plan, and every system with a batch): its rows in
    the core from the promotion ledger, its batches, its newest batch and the latest run's."""
    plan = plan or {}
    wave_of = {system: name for name, item in plan.items() for system in item.get("systems") or []}
    found: dict[str, SystemInCore] = {
        name: SystemInCore(system=name, wave=wave, is_planned=True)
        for name, wave in wave_of.items()
    }

    def system(name: str) -> SystemInCore:
        if name not in found:
            found[name] = SystemInCore(system=name)
        return found[name]

    last_promoted, tagged = _add_promotion_ledger(connection, system, wave_of)
    newest, newest_of_all = _newest_batches(connection)
    for name in newest:
        system(name)
    for item in found.values():
        if not item.is_planned:
            item.wave = tagged.get(item.system)
    latest_run_id, run_ids = _latest_run(connection, newest_of_all)
    wanted = {*last_promoted.values(), *newest.values(), *run_ids}
    figures = {(b.batch_id, b.system): b for b in batch_figures(connection, sorted(wanted))}
    for name, batch_id in last_promoted.items():
        found[name].last_promoted = figures.get((batch_id, name))
    for name, batch_id in newest.items():
        found[name].latest = figures.get((batch_id, name))
    latest_run = None
    if latest_run_id is not None:
        in_run = [b for (batch_id, _s), b in figures.items() if batch_id in set(run_ids)]
        latest_run = RunSummary(latest_run_id, sorted(in_run, key=lambda b: b.system))
        for batch in latest_run.batches:
            system(batch.system).in_latest_run = batch
    order = {name: index for index, name in enumerate(plan)}
    systems = sorted(
        found.values(),
        key=lambda s: (s.wave is None, order.get(s.wave or "", len(order)), s.wave or "", s.system),
    )
    return CoreNow(systems=systems, latest_run=latest_run)
