"""The dashboard's read model of the waves: the cutover ledger's states, transitions,
approvals and reconciliations per wave, with the plan's waves and the go/no-go criteria, as the
waves pages show them (computed from the core's own tables, as etl/dashboard/data.py computes
batches, runs and the core as it is now, which this builds on).

Counts, states, timestamps and approvers' screened notes only: never a source key or a value."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from etl.core.tables import (
    cutover_approval,
    cutover_transition,
    cutover_wave,
    promotion,
    wave_reconciliation,
)
from etl.cutover.ledger import screened_note
from etl.dashboard.data import (
    _EPOCH,
    AIRFLOW_RUN_ID,
    PHASE_OF_STATE,
    PLANNED,
    REHEARSAL,
    ROLLED_BACK,
    TERMINAL_STATES,
    CoreNow,
    RunLabel,
    SystemBatch,
    SystemInCore,
    _utc,
    batch_figures,
    core_now,
    derive_run_label,
)


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

    @property
    def run_label(self) -> str | None:
        """The run that made the transition, by DAG and phase (a rollback's DAG is
        ``vardflytt_rollback``; every other transition's the wave's cutover DAG)."""
        if self.run_id is None:
            return None
        if self.is_rollback and AIRFLOW_RUN_ID.match(self.run_id):
            return RunLabel("vardflytt_rollback", self.wave).text
        phase = PHASE_OF_STATE.get(self.to_state)
        return derive_run_label(self.run_id, [], [self.wave], [phase]).text


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
    # When the ledger recorded them, and by which transition (e.g. to "verified").
    criteria_at: dt.datetime | None = None
    criteria_state: str | None = None
    batches: list[SystemBatch] = field(default_factory=list)
    latest: list[SystemBatch] = field(default_factory=list)
    reconciliation: list[Reconciliation] = field(default_factory=list)
    # Its systems as the core holds them now (``core_now``: the same figures as every page).
    systems: list[SystemInCore] = field(default_factory=list)
    # Legacy changes to its rows after it was cut over, held for the stewards (etl/cutover/
    # slices.py): open ones, counted.
    open_conflicts: int = 0

    @property
    def rows_in_core(self) -> int:
        return sum(s.rows_in_core for s in self.systems)

    @property
    def promoted_since_criteria(self) -> list[str]:
        """Systems with a batch promoted after the recorded criteria: they may be out of date."""
        if self.criteria_source != "ledger" or self.criteria_at is None:
            return []
        return sorted(
            {
                b.system
                for b in self.batches
                if b.promoted_at is not None and b.promoted_at > self.criteria_at
            }
        )

    @property
    def systems_in_core(self) -> list[SystemInCore]:
        return [s for s in self.systems if s.is_in_core]

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


def load_wave_plan(
    mappings_dir, plan_file: str = "waves.yaml"
) -> tuple[dict[str, dict], str | None]:
    """The wave plan by wave name, and a problem message if it cannot be read."""
    from etl.cutover.plan import PlanError, load_plan

    try:
        plan = load_plan(mappings_dir, plan_file)
    except PlanError as error:
        return {}, str(error)
    return {
        wave.wave: {
            "title": wave.title,
            "site": wave.scope.site,
            "systems": list(wave.systems),
            "split_by_unit": list(wave.by_unit),
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
    core: CoreNow | None = None,
) -> list[Wave]:
    """Waves of the plan and of the ledger (or only ``names``), each with everything its page
    shows: state, windows, transitions, approvals, batches, reconciliation, go/no-go, and its
    systems from ``core`` (``core_now``, computed here when not given)."""
    plan = plan or {}
    wanted = names if names is not None else [*plan, *wave_names(connection)]
    found: dict[str, Wave] = {name: Wave(name=name) for name in wanted}

    def only(column):
        return column.in_(list(found)) if names is not None else sa.true()

    _add_plan(found, plan)
    for row in connection.execute(sa.select(cutover_wave).where(only(cutover_wave.c.wave))):
        found[row.wave].state, found[row.wave].updated_at = row.state, _utc(row.updated_at)
    _add_transitions(connection, found, only)
    _add_approvals(connection, found, only)
    wave_batches = connection.execute(
        sa.select(promotion.c.wave, promotion.c.batch_id).where(
            promotion.c.wave.is_not(None) & only(promotion.c.wave)
        )
    ).all()
    figures = {b.batch_id: b for b in batch_figures(connection, [r.batch_id for r in wave_batches])}
    for row in wave_batches:
        if row.batch_id in figures and row.wave in found:
            found[row.wave].batches.append(figures[row.batch_id])
    _add_reconciliation(connection, found, only)
    from etl.cutover.slices import conflicts_per_wave

    for name, count in conflicts_per_wave(connection).items():
        if name in found:
            found[name].open_conflicts = count
    core = core or core_now(connection, plan)
    for wave in found.values():
        wave.systems = core.for_wave(wave.name)
        wave.batches.sort(key=lambda b: (b.started_at or _EPOCH, b.system))
        wave.latest = _latest_loaded(wave.batches)
        _set_criteria(wave, evaluate)
    order = {name: index for index, name in enumerate(plan)}
    return sorted(found.values(), key=lambda w: (order.get(w.name, len(order)), w.name))


def _add_plan(found: dict[str, Wave], plan: dict[str, dict]) -> None:
    """What the plan (mappings/waves.yaml) says of each wave found."""
    for name, planned in plan.items():
        if name in found:
            wave = found[name]
            wave.title, wave.site = planned.get("title", ""), planned.get("site", "")
            wave.planned_start = planned.get("planned_start")
            wave.planned_end = planned.get("planned_end")
            wave.planned_systems = list(planned.get("systems") or [])
            wave.plan_criteria = dict(planned.get("criteria") or {})


def _add_transitions(connection: sa.Connection, found: dict[str, Wave], only: Callable) -> None:
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


def _add_approvals(connection: sa.Connection, found: dict[str, Wave], only: Callable) -> None:
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


def _add_reconciliation(connection: sa.Connection, found: dict[str, Wave], only: Callable) -> None:
    """The latest reconciliation of each system and entity of a wave."""
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


def _set_criteria(wave: Wave, evaluate: Callable[[str], list[Criterion]] | None) -> None:
    """The go/no-go criteria of the latest transition that recorded them, or else (when the
    plan has criteria) as ``evaluate`` finds them now."""
    for transition in reversed(wave.transitions):
        recorded = criteria_from_evidence(transition.evidence)
        if recorded:
            wave.criteria, wave.criteria_source = recorded, "ledger"
            wave.criteria_at, wave.criteria_state = transition.at, transition.to_state
            break
    else:
        if wave.plan_criteria and evaluate is not None:
            wave.criteria, wave.criteria_source = evaluate(wave.name), "current"


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
