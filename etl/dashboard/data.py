"""The dashboard's read model: what the pages show, computed from the core's own tables.

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
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from etl.core.tables import (
    access_log,
    batch_accounting,
    cutover_approval,
    cutover_transition,
    cutover_wave,
    dq_result,
    load_batch,
    promotion,
    wave_reconciliation,
)
from etl.cutover.ledger import screened_note

GATE_STOPPED = "stopped_at_gate"
COUNT_FIELDS = ("extracted", "loaded", "quarantined", "excluded", "merged", "residue")
# Batch ids per IN list: far below every supported database's limit on bound parameters.
_IN_CHUNK = 900


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

    table = promotion
    promoted = sa.select(
        table.c.batch_id,
        table.c.source_system,
        table.c.wave,
        table.c.kind,
        table.c.state,
        table.c.promoted_at,
    )
    for row in _rows(connection, promoted, table.c.batch_id, batch_ids):
        key = (row.batch_id, row.source_system)
        if key in batches:
            item = batches[key]
            item.wave, item.kind = row.wave, row.kind
            item.promotion_state, item.promoted_at = row.state, _utc(row.promoted_at)
    return sorted(batches.values(), key=lambda b: (b.started_at or _EPOCH, b.system))


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


# --------------------------------------------------------------------------- waves (the ledger)


# The ledger's states (etl/cutover/ledger.py), named here so the read model imports no writer.
PLANNED, REHEARSAL, CUT_OVER, ROLLED_BACK = "planned", "rehearsal", "cut_over", "rolled_back"
TERMINAL_STATES = {CUT_OVER, ROLLED_BACK}


@dataclass
class Transition:
    wave: str
    from_state: str
    to_state: str
    actor: str
    at: dt.datetime
    run_id: str | None
    mapping_version: str | None
    evidence: dict

    @property
    def is_rollback(self) -> bool:
        return self.to_state == ROLLED_BACK


@dataclass
class Approval:
    role: str
    approver: str
    decision: str  # approve | reject
    channel: str
    run_id: str | None
    at: dt.datetime
    is_current: bool
    note: str | None = None  # the approver's own words: identity numbers withheld


@dataclass
class Criterion:
    """One go/no-go criterion: its name, whether it passed, and why (counts, never rows)."""

    name: str
    is_passed: bool
    reason: str


@dataclass
class Reconciliation:
    system: str
    entity: str
    batch_id: str | None
    expected_rows: int
    core_rows: int
    missing_in_core: int
    unexpected_in_core: int
    content_mismatches: int
    is_reconciled: bool
    checked_at: dt.datetime


@dataclass
class Wave:
    name: str
    title: str = ""
    site: str = ""
    state: str = PLANNED
    updated_at: dt.datetime | None = None
    planned_start: dt.date | None = None
    planned_end: dt.date | None = None
    planned_systems: list[str] = field(default_factory=list)
    plan_criteria: dict = field(default_factory=dict)
    transitions: list[Transition] = field(default_factory=list)
    approvals: list[Approval] = field(default_factory=list)
    criteria: list[Criterion] = field(default_factory=list)
    criteria_source: str | None = None  # ledger (recorded with a transition) | dashboard
    batches: list[SystemBatch] = field(default_factory=list)
    latest: list[SystemBatch] = field(default_factory=list)
    reconciliation: list[Reconciliation] = field(default_factory=list)

    @property
    def actual_start(self) -> dt.datetime | None:
        return self.transitions[0].at if self.transitions else None

    @property
    def actual_end(self) -> dt.datetime | None:
        if self.state in TERMINAL_STATES and self.transitions:
            return self.transitions[-1].at
        return None

    @property
    def current_approvals(self) -> list[Approval]:
        return [a for a in self.approvals if a.is_current]

    @property
    def rollbacks(self) -> list[Transition]:
        return [t for t in self.transitions if t.is_rollback]

    @property
    def rolled_back_batches(self) -> list[SystemBatch]:
        return [b for b in self.batches if b.promotion_state == ROLLED_BACK]

    @property
    def rehearsals(self) -> int:
        return sum(1 for t in self.transitions if t.to_state == REHEARSAL)

    @property
    def is_go(self) -> bool | None:
        if not self.criteria:
            return None
        return all(c.is_passed for c in self.criteria)

    @property
    def is_reconciled(self) -> bool | None:
        if not self.reconciliation:
            return None
        return all(r.is_reconciled for r in self.reconciliation)


def _evidence(raw: str | None) -> dict:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def criteria_from_evidence(evidence: dict) -> list[Criterion]:
    """Go/no-go criteria recorded with a transition (``verify`` records
    ``{"criteria": [{"criterion", "passed", "detail"}]}``)."""
    found = evidence.get("criteria") or []
    if isinstance(found, dict):
        found = [
            {"name": name, **value} for name, value in found.items() if isinstance(value, dict)
        ]
    criteria = []
    for item in found if isinstance(found, list) else []:
        name = item.get("name") or item.get("criterion") if isinstance(item, dict) else None
        if not name:
            continue
        passed = item.get("is_passed", item.get("passed", item.get("ok")))
        criteria.append(
            Criterion(
                name=str(name),
                is_passed=bool(passed),
                reason=str(item.get("reason") or item.get("detail") or ""),
            )
        )
    return criteria


def load_wave_plan(mappings_dir) -> tuple[dict[str, dict], str | None]:
    """The wave plan by wave name, and a problem message if it cannot be read."""
    from etl.cutover.plan import PlanError, load_plan

    try:
        plan = load_plan(mappings_dir)
    except PlanError as error:
        return {}, str(error)
    return {
        wave.wave: {
            "title": wave.title,
            "site": wave.scope.site,
            "systems": list(wave.systems),
            "planned_start": wave.window.start,
            "planned_end": wave.window.end,
            "criteria": wave.criteria.model_dump(),
        }
        for wave in plan.waves
    }, None


def wave_names(connection: sa.Connection) -> list[str]:
    """Waves the ledger knows: a state, a transition or a promoted batch."""
    names = set(connection.execute(sa.select(cutover_wave.c.wave)).scalars())
    names |= set(connection.execute(sa.select(cutover_transition.c.wave).distinct()).scalars())
    names |= set(
        connection.execute(
            sa.select(promotion.c.wave).where(promotion.c.wave.is_not(None)).distinct()
        ).scalars()
    )
    return sorted(names)


def _latest_loaded(batches: list[SystemBatch]) -> list[SystemBatch]:
    """Per system, its newest batch that is not rolled back (batches come oldest first)."""
    latest: dict[str, SystemBatch] = {}
    for item in batches:
        if item.promotion_state != ROLLED_BACK and not item.is_dry_run:
            latest[item.system] = item
    return [latest[name] for name in sorted(latest)]


def waves(
    connection: sa.Connection,
    plan: dict[str, dict] | None = None,
    names: list[str] | None = None,
    evaluate: Callable[[str], list[Criterion]] | None = None,
) -> list[Wave]:
    """Waves of the plan and of the ledger (or only ``names``), each with everything its page
    shows: state, windows, transitions, approvals, batches, reconciliation, go/no-go."""
    plan = plan or {}
    wanted = names if names is not None else [*plan, *wave_names(connection)]
    found: dict[str, Wave] = {name: Wave(name=name) for name in wanted}

    def only(column):
        return column.in_(list(found)) if names is not None else sa.true()

    for name, planned in plan.items():
        if name in found:
            wave = found[name]
            wave.title, wave.site = planned.get("title", ""), planned.get("site", "")
            wave.planned_start = planned.get("planned_start")
            wave.planned_end = planned.get("planned_end")
            wave.planned_systems = list(planned.get("systems") or [])
            wave.plan_criteria = dict(planned.get("criteria") or {})
    for row in connection.execute(sa.select(cutover_wave).where(only(cutover_wave.c.wave))):
        found[row.wave].state, found[row.wave].updated_at = row.state, _utc(row.updated_at)
    table = cutover_transition
    for row in connection.execute(
        sa.select(table).where(only(table.c.wave)).order_by(table.c.at, table.c.transition_id)
    ):
        found[row.wave].transitions.append(
            Transition(
                wave=row.wave,
                from_state=row.from_state,
                to_state=row.to_state,
                actor=row.actor,
                at=_utc(row.at),
                run_id=row.run_id,
                mapping_version=row.mapping_version,
                evidence=_evidence(row.evidence),
            )
        )
    table = cutover_approval
    for row in connection.execute(
        sa.select(table).where(only(table.c.wave)).order_by(table.c.at, table.c.approval_id)
    ):
        if row.wave in found:
            found[row.wave].approvals.append(
                Approval(
                    role=row.role,
                    approver=row.approver,
                    decision=row.decision,
                    channel=row.channel,
                    run_id=row.run_id,
                    at=_utc(row.at),
                    is_current=bool(row.is_current),
                    note=screened_note(row.note),
                )
            )
    wave_batches = connection.execute(
        sa.select(promotion.c.wave, promotion.c.batch_id).where(
            promotion.c.wave.is_not(None) & only(promotion.c.wave)
        )
    ).all()
    figures = {b.batch_id: b for b in batch_figures(connection, [r.batch_id for r in wave_batches])}
    for row in wave_batches:
        if row.batch_id in figures and row.wave in found:
            found[row.wave].batches.append(figures[row.batch_id])
    table = wave_reconciliation
    latest_check: dict[tuple[str, str, str], Reconciliation] = {}
    for row in connection.execute(
        sa.select(table).where(only(table.c.wave)).order_by(table.c.checked_at)
    ):
        latest_check[(row.wave, row.source_system, row.entity)] = Reconciliation(
            system=row.source_system,
            entity=row.entity,
            batch_id=row.batch_id,
            expected_rows=int(row.expected_rows),
            core_rows=int(row.core_rows),
            missing_in_core=int(row.missing_in_core),
            unexpected_in_core=int(row.unexpected_in_core),
            content_mismatches=int(row.content_mismatches),
            is_reconciled=bool(row.is_reconciled),
            checked_at=_utc(row.checked_at),
        )
    for (name, _system, _entity), item in sorted(latest_check.items()):
        if name in found:
            found[name].reconciliation.append(item)
    for wave in found.values():
        wave.batches.sort(key=lambda b: (b.started_at or _EPOCH, b.system))
        wave.latest = _latest_loaded(wave.batches)
        for transition in reversed(wave.transitions):
            recorded = criteria_from_evidence(transition.evidence)
            if recorded:
                wave.criteria, wave.criteria_source = recorded, "ledger"
                break
        else:
            if wave.plan_criteria and evaluate is not None:
                wave.criteria, wave.criteria_source = evaluate(wave.name), "current"
    order = {name: index for index, name in enumerate(plan)}
    return sorted(found.values(), key=lambda w: (order.get(w.name, len(order)), w.name))


def wave_detail(
    connection: sa.Connection,
    name: str,
    plan: dict[str, dict] | None = None,
    evaluate: Callable[[str], list[Criterion]] | None = None,
) -> Wave:
    """One wave, as ``waves`` builds it."""
    return waves(connection, plan, names=[name], evaluate=evaluate)[0]


def criteria_now(settings) -> Callable[[str], list[Criterion]]:
    """The ledger's own go/no-go evaluation (``etl.cutover.waves``) on the current figures."""
    from etl.cutover.waves import evaluate_criteria

    def evaluate(name: str) -> list[Criterion]:
        return [
            Criterion(c.name, bool(c.passed), c.detail) for c in evaluate_criteria(settings, name)
        ]

    return evaluate
