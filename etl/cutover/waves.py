"""Running a wave: load, freeze, final delta, verify, approve, cut over (its rehearsal is in
etl/cutover/rehearsal.py, its rollback in etl/cutover/wave_rollback.py, both built on the
helpers here).

Each operation takes the wave's lock, does its work through the pipeline, and records a ledger
transition with its evidence. The command line and the cutover DAGs call these same functions.

The go/no-go is decided by the reviewed plan: the wave's first rehearsal (or, without one, its
initial load) fingerprints the plan and the files its criteria depend on (etl/cutover/fingerprint),
and ``verify`` and ``cut_over`` refuse a working copy that differs from that fingerprint or has
uncommitted changes. A criterion changes only through ``replan``: a recorded plan change, with who
and why, that voids earlier approvals.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from etl.batch import utc_now
from etl.core.audit import current_user
from etl.core.batch_states import PROMOTED
from etl.core.database import core_engine
from etl.core.provenance import mapping_version
from etl.core.tables import dq_result, promotion, wave_reconciliation
from etl.cutover import fingerprint, ledger
from etl.cutover.plan import Criteria, Wave, WavePlan, load_plan
from etl.cutover.reconcile import accounting_residue, reconcile_system
from etl.cutover.slice_checksum import CHECKSUM_VERSION
from etl.load.promote import (
    core_checksums,
)
from etl.settings import Settings

if TYPE_CHECKING:
    from etl.cutover.slices import WaveSlicer

logger = logging.getLogger(__name__)

PHASES = {
    "initial": (ledger.INITIAL_LOAD, "full"),
    "delta": (ledger.DELTA_LOAD, "delta"),
    "final": (ledger.FINAL_DELTA, "delta"),
}


@dataclass
class Criterion:
    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"criterion": self.name, "passed": self.passed, "detail": self.detail}


def plan_of(settings: Settings) -> WavePlan:
    """The plan the waves run: ``settings.wave_plan`` in the mappings folder."""
    return load_plan(settings.mappings_dir, settings.wave_plan)


def wave_of(settings: Settings, name: str) -> Wave:
    return plan_of(settings).wave(name)


def systems_of(settings: Settings, name: str) -> list[str]:
    """The systems the wave loads (whole, or its slice of a system split by care unit)."""
    return plan_of(settings).systems_of(name)


def _slicer(settings: Settings, plan: WavePlan, name: str, system: str) -> WaveSlicer | None:
    """For a system the plan splits by unit: what assigns a batch's rows to waves before its
    gate (which judges the wave's rows) and cuts it to the wave's slice after."""
    from etl.cutover import slices
    from etl.pipeline import catalog

    if system not in plan.split_systems:
        return None
    return slices.WaveSlicer(plan, name, catalog(settings))


def _refuse_without_patients(connection: sa.Connection, plan: WavePlan, name: str) -> None:
    """A unit wave's rows point at patients the patients wave loads: it goes first (fail
    closed: otherwise every contact of the wave would be quarantined as an orphan)."""
    from etl.cutover.slice_core import patients_loaded

    if (
        plan.wave(name).is_by_unit
        and name != plan.patients
        and not patients_loaded(connection, plan)
    ):
        raise ledger.LedgerError(
            f"wave {name} loads its units' rows of {', '.join(plan.wave(name).by_unit)}, whose "
            f"patients move in wave {plan.patients}: load {plan.patients} first "
            f"(`vardflytt cutover load {plan.patients}`)"
        )


def _version(settings: Settings) -> str | None:
    return mapping_version(settings.mappings_dir.resolve().parent)


class PlanChangedError(ledger.LedgerError):
    """The working copy is not the wave's reviewed plan (changed files, or uncommitted ones)."""


def plan_fingerprint(settings: Settings, name: str) -> fingerprint.Fingerprint:
    """The wave's plan as the working copy holds it now, with the mapping version read afresh
    (``mapping_version`` is cached per process; a long-lived worker must not see an old one)."""
    version = mapping_version.__wrapped__(settings.mappings_dir.resolve().parent)
    plan = plan_of(settings)
    return fingerprint.fingerprint(settings, plan.wave(name), version, plan.systems_of(name))


def _described(plan: dict[str, Any]) -> str:
    return (
        f"fingerprint {plan['digest'][:12]}, recorded at {plan['event']} on "
        f"{str(plan['at'])[:16]} by {plan['actor']}"
    )


def check_reviewed_plan(
    connection: sa.Connection, settings: Settings, name: str, action: str
) -> fingerprint.Fingerprint:
    """Refuse ``action`` unless the working copy is the wave's reviewed plan, committed.

    Fails closed: a wave with no recorded fingerprint (a ledger from before fingerprints) is
    refused until a plan change records one."""
    recorded = ledger.current_plan(connection, name)
    if recorded is None:
        raise PlanChangedError(
            f"wave {name} cannot {action}: it has no reviewed plan. The plan is fingerprinted when "
            f"the wave is first rehearsed (or, without a rehearsal, initially loaded); review the "
            f'plan and record it with `vardflytt cutover replan {name} --reason "..."`.'
        )
    current = plan_fingerprint(settings, name)
    problems = []
    changed = fingerprint.difference(recorded["files"], current.files)
    if changed:
        problems.append(
            f"the working copy differs from the reviewed plan ({_described(recorded)}): "
            f"{changed.describe()}"
        )
    uncommitted = fingerprint.uncommitted_files(settings)
    if uncommitted:
        problems.append(
            f"the mapping version is dirty ({current.mapping_version or 'uncommitted'}): "
            f"uncommitted in mappings/expectations: {', '.join(uncommitted)}"
        )
    if problems:
        raise PlanChangedError(
            f"wave {name} cannot {action}: "
            + "; and ".join(problems)
            + ". The go/no-go uses the reviewed plan only: undo the edit, or commit it and record "
            f'the plan change with `vardflytt cutover replan {name} --reason "..."` (which voids '
            "earlier approvals); before the first load, a new rehearsal records it as well."
        )
    return current


def reviewed_plan_status(
    connection: sa.Connection, settings: Settings, name: str
) -> dict[str, Any]:
    """The wave's reviewed plan, whether the working copy matches it, and every plan change."""
    recorded = ledger.current_plan(connection, name)
    current = plan_fingerprint(settings, name)
    changed = fingerprint.difference(recorded["files"], current.files) if recorded else None
    history = ledger.plan_history(connection, name)
    return {
        "fingerprint": recorded["digest"] if recorded else None,
        "recorded_at": str(recorded["at"]) if recorded else None,
        "recorded_by": recorded["actor"] if recorded else None,
        "recorded_event": recorded["event"] if recorded else None,
        "mapping_version": recorded["mapping_version"] if recorded else None,
        "files": recorded["files"] if recorded else current.files,
        "working_copy": current.digest,
        "working_copy_mapping_version": current.mapping_version,
        "matches": bool(recorded) and not changed,
        "difference": changed.as_dict() if changed else None,
        "uncommitted": fingerprint.uncommitted_files(settings),
        "changes": [
            {
                "at": str(p["at"]),
                "event": p["event"],
                "by": p["actor"],
                "reason": p["reason"],
                "fingerprint": p["digest"],
                "mapping_version": p["mapping_version"],
                "files": p["changes"],
            }
            for p in history
        ],
    }


def _record_fingerprint(
    connection: sa.Connection,
    name: str,
    current: fingerprint.Fingerprint,
    event: str,
    actor: str,
    reason: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any] | None:
    """Record ``current`` as the wave's reviewed plan if it differs from the recorded one (an
    unchanged plan is not a change); approvals given under the one before are void."""
    recorded = ledger.current_plan(connection, name)
    if recorded and recorded["digest"] == current.digest:
        return None
    changes = fingerprint.difference(recorded["files"], current.files) if recorded else None
    record = ledger.record_plan(
        connection,
        name,
        current.digest,
        current.files,
        event,
        actor,
        current.mapping_version,
        changes.as_dict() if changes is not None else None,
        reason,
        run_id,
    )
    ledger.invalidate_approvals(connection, name)
    return record


def _engine(settings: Settings) -> sa.Engine:
    return core_engine(settings.resolved_core_url)


def batch_id_for(system: str, wave: str, phase: str, stamp: str) -> str:
    return f"{system}__{wave}__{phase}__{stamp}"


def _stamp() -> str:
    return utc_now().strftime("%Y%m%dT%H%M%S%f")


def wave_checksums(settings: Settings, wave: Wave) -> dict[str, str]:
    """Checksums of the core rows this wave's systems own (other waves' rows are not its); for
    a wave by care unit, of its slice (etl/cutover/slices.py)."""
    return _all_checksums(settings, wave)["slice"]


def _sums_on(
    connection: sa.Connection,
    settings: Settings,
    plan: WavePlan,
    wave: Wave,
    outside_of: dict[str, set[str]] | None = None,
    legacy: bool = False,
) -> dict[str, dict[str, str]]:
    """The wave's checksums on this connection (inside a rollback's transaction, it sees the
    rollback); ``legacy``: a wave by unit's, as computed before checksum version 2."""
    if plan.is_sliced(wave.wave):
        from etl.cutover.slice_core import slice_checksums
        from etl.pipeline import catalog

        return slice_checksums(
            connection, plan, wave.wave, catalog(settings), outside_of, legacy=legacy
        )
    return {"slice": core_checksums(connection, systems=wave.systems)}


def _all_checksums(
    settings: Settings, wave: Wave, outside_of: dict[str, set[str]] | None = None
) -> dict[str, dict[str, str]]:
    """The wave's checksums, and for a wave by unit those of every row outside its slice (or
    outside the rows ``outside_of``)."""
    plan = plan_of(settings)
    with _engine(settings).connect() as connection:
        return _sums_on(connection, settings, plan, wave, outside_of)


def _rollback_scope(settings: Settings, name: str) -> dict[str, set[str]] | None:
    """For a wave by unit: the rows its rollback may change (etl/cutover/slice_core.py)."""
    plan = plan_of(settings)
    if not plan.is_sliced(name):
        return None
    from etl.cutover.slice_core import wave_row_ids
    from etl.pipeline import catalog

    with _engine(settings).connect() as connection:
        return wave_row_ids(connection, plan, name, catalog(settings))


def promoted_batches(connection: sa.Connection, wave: str) -> list[dict[str, Any]]:
    rows = connection.execute(
        sa.select(promotion)
        .where((promotion.c.wave == wave) & (promotion.c.state == PROMOTED))
        .order_by(promotion.c.seq)
    )
    return [dict(row._mapping) for row in rows]


def load_wave(
    settings: Settings,
    name: str,
    phase: str,
    as_of_date: dt.date,
    actor: str | None = None,
    run_id: str | None = None,
    systems: list[str] | None = None,
    on_system: Callable[[str], None] | None = None,
    jobs: int | None = None,
) -> dict[str, Any]:
    """Load the wave's systems (initial: full; delta and final: changes since the last load).

    ``jobs`` above 1 (default ``VARDFLYTT_JOBS``, else 1; ``vardflytt cutover load --jobs``)
    runs the systems side by side in that many worker processes, and each system's independent
    entities, as ``vardflytt run`` does (etl/parallel.py): the same stages, batches, ledger and
    evidence; a system whose entities resolve references against another's rows validates them
    after that system's load, as one after another would. With 1, the systems load one after
    another in this process."""
    if phase not in PHASES:
        raise ledger.LedgerError(f"phase is one of {', '.join(PHASES)}, not '{phase}'")
    plan = plan_of(settings)
    wave = plan.wave(name)
    to_state, kind = PHASES[phase]
    engine = _engine(settings)
    with engine.connect() as connection:
        state = ledger.wave_state(connection, name)
        ledger.check_transition(name, state, to_state)  # refuse before doing any work
        _refuse_without_patients(connection, plan, name)
    plan_systems = systems or plan.systems_of(name)
    jobs = jobs or settings.jobs or 1
    with ledger.wave_lock(engine, name, run_id):
        current = plan_fingerprint(settings, name)  # the plan this load runs
        first_load = phase == "initial" and state != ledger.INITIAL_LOAD
        before = wave_checksums(settings, wave) if first_load else None
        stamp = _stamp()
        runs = [(system, batch_id_for(system, name, phase, stamp)) for system in plan_systems]
        load = _load_in_workers if jobs > 1 else _load_one_by_one
        batches, failures = load(
            settings, plan, _WaveLoad(name, phase, kind, as_of_date, run_id), runs, on_system, jobs
        )
        evidence: dict[str, Any] = {
            "phase": phase,
            "batches": batches,
            "failures": failures,
            "as_of_date": str(as_of_date),
        }
        if before is not None:
            evidence["checksums_before"] = before
            evidence["checksum_version"] = CHECKSUM_VERSION
        evidence["plan"] = current.digest
        with engine.begin() as connection:
            ledger.invalidate_approvals(connection, name)
            step = ledger.transition(
                connection, name, to_state, actor, run_id, _version(settings), evidence
            )
            if phase == "initial" and ledger.current_plan(connection, name) is None:
                # No rehearsal took the fingerprint: the first load is the review point.
                _record_fingerprint(
                    connection, name, current, ledger.INITIAL_LOAD, step["actor"], run_id=run_id
                )
    if failures:
        raise ledger.LedgerError(
            f"wave {name} {phase} load: {len(failures)} of {len(plan_systems)} systems failed "
            "and were recorded in the ledger: "
            + "; ".join(f"{s}: {f['error']}" for s, f in failures.items())
            + f". Fix, then `vardflytt cutover load {name} --phase {phase} --systems "
            + ",".join(failures)
            + "`."
        )
    return evidence


@dataclass(frozen=True)
class _WaveLoad:
    wave: str
    phase: str
    kind: str
    as_of_date: dt.date
    run_id: str | None

    @property
    def data_docs(self) -> bool:
        """In the freeze window (the final phase) Data Docs come after the go/no-go decision."""
        return self.phase != "final"


def _loaded(settings: Settings, system: str, batch_id: str, report: Any) -> dict[str, Any]:
    """A system's batch as the ledger's evidence records it."""
    loaded = {
        "batch_id": batch_id,
        "extracted": sum(a.extracted for a in report.accounting),
        "loaded": sum(a.loaded for a in report.accounting),
        "quarantined": sum(a.quarantined for a in report.accounting),
        "wave_scope": sum(a.wave_scope for a in report.accounting),
        "conflicted": sum(a.conflicted for a in report.accounting),
    }
    gate = _gate_summary(settings, system, batch_id)
    if gate is not None:  # a slice's gate: the wave's figures beside the batch's
        loaded["gate"] = gate
    return loaded


def _failed(batch_id: str, error: BaseException) -> dict[str, str]:
    return {"batch_id": batch_id, "error": f"{type(error).__name__}: {str(error).splitlines()[0]}"}


def _load_one_by_one(
    settings: Settings,
    plan: WavePlan,
    load: _WaveLoad,
    runs: list[tuple[str, str]],
    on_system: Callable[[str], None] | None,
    _jobs: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    from etl import pipeline

    batches, failures = {}, {}
    for system, batch_id in runs:
        if on_system:
            on_system(system)
        try:
            report = pipeline.run_system(
                system,
                batch_id,
                load.as_of_date,
                run_id=load.run_id,
                settings=settings,
                wave=load.wave,
                kind=load.kind,
                slicer=_slicer(settings, plan, load.wave, system),
                data_docs=load.data_docs,
            )
        except Exception as error:  # the ledger must show partial loads too
            failures[system] = _failed(batch_id, error)
            continue
        batches[system] = _loaded(settings, system, batch_id, report)
    return batches, failures


def _load_in_workers(
    settings: Settings,
    plan: WavePlan,
    load: _WaveLoad,
    runs: list[tuple[str, str]],
    on_system: Callable[[str], None] | None,
    jobs: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The systems' stages as tasks in ``jobs`` worker processes (etl/parallel.py)."""
    from etl.parallel import EXTRACT, run_systems

    slicers = {
        system: slicer
        for system, _batch_id in runs
        if (slicer := _slicer(settings, plan, load.wave, system)) is not None
    }

    def on_event(system: str, message: str) -> None:
        if on_system and message == EXTRACT:
            on_system(system)

    outcomes = run_systems(
        runs,
        load.as_of_date,
        settings=settings,
        jobs=jobs,
        run_id=load.run_id,
        kind=load.kind,
        on_event=on_event,
        wave=load.wave,
        slicers=slicers,
        data_docs=load.data_docs,
    )
    batches, failures = {}, {}
    for outcome in outcomes:  # in the plan's order, as one after another
        if outcome.error is not None or outcome.report is None:
            error = outcome.error or RuntimeError(f"{outcome.system}: not loaded")
            failures[outcome.system] = _failed(outcome.batch_id, error)
        else:
            batches[outcome.system] = _loaded(
                settings, outcome.system, outcome.batch_id, outcome.report
            )
    return batches, failures


def _gate_summary(settings: Settings, system: str, batch_id: str) -> dict[str, Any] | None:
    from etl.cutover import slices

    return slices.gate_summary(settings, system, batch_id)


def freeze(
    settings: Settings,
    name: str,
    actor: str | None = None,
    run_id: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Legacy systems of the wave go read-only: from here only the final delta moves data."""
    with _engine(settings).begin() as connection:
        return ledger.transition(
            connection,
            name,
            ledger.FROZEN,
            actor,
            run_id,
            _version(settings),
            {"systems": systems_of(settings, name)},
            note or "legacy systems read-only for the final delta",
        )


def reconcile_wave(
    settings: Settings,
    name: str,
    as_of_date: dt.date,
    run_id: str | None = None,
    final_batches: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Reconcile each system of the wave, source against core. With ``final_batches`` (system ->
    the batch that last read its whole source: its final delta in the freeze window, see
    ``verify``, or its rehearsal batch, see ``rehearse``) a system whose batch kept hash
    aggregates is compared through them, and its source read again only if they differ."""
    from etl.pipeline import catalog

    plan = plan_of(settings)
    label = (run_id or _stamp()).replace(":", "_").replace("+", "_")
    results = []
    for system in plan.systems_of(name):
        sliced = system in plan.split_systems
        for entity in reconcile_system(
            catalog(settings),
            system,
            settings,
            as_of_date,
            wave=name,
            label=label,
            slicer=functools.partial(_measure_slice, settings, plan, name) if sliced else None,
            aggregates_of=(final_batches or {}).get(system),
        ):
            results.append(entity.summary())
    return results


def final_delta_batches(connection: sa.Connection, name: str) -> dict[str, str]:
    """System -> batch id of the wave's last final delta (its ledger evidence); empty before."""
    finals = [
        t for t in ledger.transitions(connection, name) if t["to_state"] == ledger.FINAL_DELTA
    ]
    if not finals:
        return {}
    batches = finals[-1]["evidence"].get("batches") or {}
    return {system: str(batch["batch_id"]) for system, batch in batches.items()}


def final_phase_batches(connection: sa.Connection, name: str) -> dict[str, str]:
    """Batch id -> system of every final delta the wave loaded (each ``load_wave`` phase final
    in the ledger, failed systems' batches too): the batches whose Data Docs wait for the
    go/no-go decision."""
    found: dict[str, str] = {}
    for step in ledger.transitions(connection, name):
        evidence = step["evidence"]
        if step["to_state"] != ledger.FINAL_DELTA or evidence.get("phase") != "final":
            continue
        for group in ("batches", "failures"):
            for system, batch in (evidence.get(group) or {}).items():
                found[str(batch["batch_id"])] = system
    return found


def build_final_data_docs(
    settings: Settings,
    name: str,
    force: bool = False,
    raise_errors: bool = False,
    only: set[str] | None = None,
) -> dict[str, str]:
    """Build the Data Docs of the wave's final deltas, left out of the freeze window: called
    right after the go/no-go decision (``cut_over``, a rejection, ``rollback_wave``,
    ``rollback_batch``), and by ``vardflytt cutover data-docs <wave>`` to build them again.
    Batch id -> ``built``, ``already built``, ``no report`` or ``failed``. A failure is logged
    (with the command that builds them again), never raised unless ``raise_errors``: the
    decision it follows has been recorded and stands. ``only``: just these batches (those a
    batch rollback undid; the wave's others still wait for its decision)."""
    from etl import pipeline

    with _engine(settings).connect() as connection:
        batches = final_phase_batches(connection, name)
    if only is not None:
        batches = {b: system for b, system in batches.items() if b in only}
    outcome: dict[str, str] = {}
    for batch_id, system in batches.items():
        try:
            outcome[batch_id] = pipeline.deferred_data_docs(system, batch_id, settings, force)
        except Exception:
            if raise_errors:
                raise
            logger.exception(
                "wave %s: the Data Docs of %s batch %s could not be built after the go/no-go "
                "decision; build them again with `vardflytt cutover data-docs %s`",
                name,
                system,
                batch_id,
                name,
            )
            outcome[batch_id] = "failed"
    return outcome


def data_docs_after_decision(
    settings: Settings, name: str, only: set[str] | None = None
) -> dict[str, str]:
    """``build_final_data_docs`` right after a decision: nothing it meets is raised (the
    decision is recorded and stands); what failed is logged with the command to build it."""
    try:
        return build_final_data_docs(settings, name, only=only)
    except Exception:  # e.g. the ledger could not be read: no batch was attempted
        logger.exception(
            "wave %s: the final deltas' Data Docs were not built after the go/no-go decision; "
            "build them with `vardflytt cutover data-docs %s`",
            name,
            name,
        )
        return {}


def _measure_slice(
    settings: Settings, plan: WavePlan, name: str, system: str, batch_id: str, local: Settings
) -> dict[str, Any]:
    """Reconciliation's measuring batch cut to the wave's slice (no conflict is recorded)."""
    from etl.cutover import slices
    from etl.pipeline import catalog

    return slices.slice_batch(plan, name, catalog(settings), system, batch_id, local, record=False)


def evaluate_criteria(settings: Settings, name: str) -> list[Criterion]:
    """Each go/no-go criterion of the wave, with pass/fail and the reason."""
    wave = wave_of(settings, name)
    wave_systems = systems_of(settings, name)
    criteria = wave.criteria
    with _engine(settings).connect() as connection:
        batches = promoted_batches(connection, name)
        batch_ids = [b["batch_id"] for b in batches]
        rehearsals = ledger.count_transitions(connection, name, ledger.REHEARSAL)
        return [
            _all_loaded(batches, wave_systems),
            _gate_passed(connection, batch_ids),
            _all_accounted(connection, batch_ids),
            _quarantine_within(connection, batch_ids, criteria),
            _reconciled_exactly(connection, name, batches, wave_systems),
            Criterion(
                f"at least {criteria.min_rehearsals} rehearsal(s)",
                rehearsals >= criteria.min_rehearsals,
                f"{rehearsals} rehearsal(s) recorded",
            ),
        ]


def _all_loaded(batches: list[dict[str, Any]], wave_systems: list[str]) -> Criterion:
    """Every system of the wave has a batch the wave promoted."""
    latest = {batch["source_system"]: batch for batch in batches}
    missing = [s for s in wave_systems if s not in latest]
    return Criterion(
        "every system loaded",
        not missing,
        # "by the wave": a system only runs outside the wave loaded is in the core, but its
        # cutover has not loaded it (the dashboard's "not yet loaded by its wave").
        f"not loaded by the wave: {', '.join(missing)}" if missing else f"{len(latest)} systems",
    )


def _gate_passed(connection: sa.Connection, batch_ids: list[str]) -> Criterion:
    """No data-quality check of the wave's batches over its threshold."""
    breaches = connection.execute(
        sa.select(dq_result.c.source_system, dq_result.c.entity, dq_result.c.check_name).where(
            dq_result.c.batch_id.in_(batch_ids or [""]) & dq_result.c.is_breached
        )
    ).all()
    return Criterion(
        "data-quality gate",
        not breaches,
        "; ".join(f"{s}/{e}/{c}" for s, e, c in breaches) or "no check over threshold",
    )


def _all_accounted(connection: sa.Connection, batch_ids: list[str]) -> Criterion:
    """Every source row of the wave's batches accounted for."""
    residue = accounting_residue(connection, batch_ids)
    return Criterion(
        "record accounting",
        not residue,
        "; ".join(f"{r['source_system']}/{r['entity']}: residue {r['residue']}" for r in residue)
        or "extracted = loaded + quarantined + excluded + merged everywhere",
    )


def _quarantine_within(
    connection: sa.Connection, batch_ids: list[str], criteria: Criteria
) -> Criterion:
    """Each system's quarantined share of its rows in the wave within the limit (or within the
    rows tolerated)."""
    totals = connection.execute(
        sa.text(
            # Rows of other waves (a slice of a split system) are not this wave's to judge.
            "SELECT source_system, sum(extracted - wave_scope - conflicted), sum(quarantined) "
            "FROM batch_accounting "
            "WHERE batch_id IN :ids GROUP BY source_system"
        ).bindparams(sa.bindparam("ids", expanding=True)),
        {"ids": batch_ids or [""]},
    ).all()
    over = [
        f"{system} {quarantined / extracted:.2%} ({quarantined} rows)"
        for system, extracted, quarantined in totals
        if extracted
        and quarantined > criteria.tolerated_quarantined_rows
        and quarantined / extracted > criteria.max_quarantine_rate
    ]
    tolerated = criteria.tolerated_quarantined_rows
    return Criterion(
        f"quarantine rate <= {criteria.max_quarantine_rate:.1%}"
        + (f" (or <= {tolerated} rows)" if tolerated else ""),
        not over,
        "; ".join(over) or "every system within the limit",
    )


def _reconciled_exactly(
    connection: sa.Connection, name: str, batches: list[dict[str, Any]], wave_systems: list[str]
) -> Criterion:
    """Every system of the wave reconciled exactly, source to core, since its last promotion."""
    last_promotion = max((b["promoted_at"] for b in batches), default=None)
    recon = connection.execute(
        sa.select(wave_reconciliation).where(wave_reconciliation.c.wave == name)
    ).all()
    fresh = [r for r in recon if last_promotion is None or _after(r.checked_at, last_promotion)]
    newest: dict[tuple[str, str], sa.Row[Any]] = {}
    for r in sorted(fresh, key=lambda r: _naive(r.checked_at)):
        newest[(r.source_system, r.entity)] = r
    current = list(newest.values())
    failing = [f"{r.source_system}/{r.entity}" for r in current if not r.is_reconciled]
    covered = {r.source_system for r in current}
    not_checked = [s for s in wave_systems if s not in covered]
    return Criterion(
        "reconciliation exact",
        bool(current) and not failing and not not_checked,
        "; ".join(
            [f"mismatch: {', '.join(failing)}"] * bool(failing)
            + [f"not reconciled since the last load: {', '.join(not_checked)}"] * bool(not_checked)
        )
        or f"{len(current)} system/entity pairs match source to core",
    )


def _naive(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=None) if value.tzinfo else value


def _after(checked_at: dt.datetime, promoted_at: dt.datetime) -> bool:
    return _naive(checked_at) >= _naive(promoted_at)


def verify(
    settings: Settings,
    name: str,
    as_of_date: dt.date,
    actor: str | None = None,
    run_id: str | None = None,
) -> list[Criterion]:
    """Reconcile, evaluate the criteria, and record ``verified`` only if every one passes."""
    engine = _engine(settings)
    with engine.connect() as connection:
        state = ledger.wave_state(connection, name)
    ledger.check_transition(name, state, ledger.VERIFIED)
    with ledger.wave_lock(engine, name, run_id):
        with engine.connect() as connection:
            reviewed = check_reviewed_plan(connection, settings, name, "be verified")
            # The freeze window: the source is frozen and the final delta read all of it, so the
            # hash aggregates its promotion kept stand for the source (etl/cutover/reconcile.py).
            finals = final_delta_batches(connection, name)
        reconcile_wave(settings, name, as_of_date, run_id, finals)
        results = evaluate_criteria(settings, name)
        if plan_fingerprint(settings, name).digest != reviewed.digest:
            raise PlanChangedError(
                f"wave {name} is not verified: its plan files changed while it was being "
                "verified; see `vardflytt cutover status " + name + "` and verify again"
            )
        failed = [c for c in results if not c.passed]
        if failed:
            raise ledger.LedgerError(
                f"wave {name} is not verified: "
                + "; ".join(f"{c.name}: {c.detail}" for c in failed)
                + ". See `vardflytt cutover status "
                + name
                + "` and the evidence pack."
            )
        with engine.begin() as connection:
            # A verification again (after a plan change) is what the approvers approve now.
            ledger.invalidate_approvals(connection, name)
            ledger.transition(
                connection,
                name,
                ledger.VERIFIED,
                actor,
                run_id,
                _version(settings),
                {"criteria": [c.as_dict() for c in results], "plan": reviewed.digest},
            )
    return results


def _refuse_unlisted(name: str, wave: Wave, role: str, approver: str, channel: str) -> None:
    roles = wave.criteria.approvers
    if role not in roles:
        raise ledger.LedgerError(
            f"role '{role}' does not approve wave {name}; approvers: {', '.join(roles)}"
        )
    listed = roles[role].accounts(channel)
    if approver not in listed:
        raise ledger.LedgerError(
            f"'{approver}' is not listed to approve wave {name} as {role} through {channel} "
            f"(listed in the wave plan: {', '.join(listed) or 'nobody'})"
        )


def _refuse_one_person_two_roles(
    name: str, approvals: list[dict[str, Any]], role: str, approver: str
) -> None:
    other = sorted(a["role"] for a in approvals if a["approver"] == approver and a["role"] != role)
    if other:
        raise ledger.LedgerError(
            f"'{approver}' already answered for wave {name} as {', '.join(other)}: distinct "
            f"roles need distinct people, someone else must answer as {role}"
        )


def approve(
    settings: Settings,
    name: str,
    approver: str,
    role: str,
    decision: str = "approve",
    channel: str = "cli",
    run_id: str | None = None,
    note: str | None = None,
    data_docs: bool = True,
) -> dict[str, Any]:
    """Record a role's go or no-go. ``approver`` is an authenticated identity (Airflow's
    respondent, the user the command line signed in to Airflow as, or a dashboard sign-in); it
    must be listed for ``role`` in the plan, and may answer for one role of the wave only. A
    rejection is a decision: the final deltas' Data Docs are built once it is recorded (unless
    ``data_docs=False``: the caller builds them)."""
    recorded = _approve(settings, name, approver, role, decision, channel, run_id, note)
    if decision == "reject" and data_docs:
        data_docs_after_decision(settings, name)
    return recorded


def _approve(
    settings: Settings,
    name: str,
    approver: str,
    role: str,
    decision: str,
    channel: str,
    run_id: str | None,
    note: str | None,
) -> dict[str, Any]:
    wave = wave_of(settings, name)
    _refuse_unlisted(name, wave, role, approver, channel)
    with _engine(settings).begin() as connection:
        state = ledger.wave_state(connection, name)
        if state != ledger.VERIFIED:
            raise ledger.LedgerError(
                f"wave {name} is {state}: only a verified wave can be approved for cutover"
            )
        current = ledger.approvals(connection, name, current_only=True)
        _refuse_one_person_two_roles(name, current, role, approver)
        return ledger.record_approval(
            connection, name, role, approver, decision, channel, run_id, note
        )


def cut_over(
    settings: Settings,
    name: str,
    actor: str | None = None,
    run_id: str | None = None,
    data_docs: bool = True,
) -> dict[str, Any]:
    """Commit the cutover: the wave goes live. Needs every role's current approval, each from a
    person listed for it and no person for two roles. Once committed, the final deltas' Data
    Docs are built (``build_final_data_docs``; ``data_docs=False``: the caller builds them)."""
    step = _commit(settings, name, actor, run_id)
    if data_docs:
        data_docs_after_decision(settings, name)
    return step


def _commit(settings: Settings, name: str, actor: str | None, run_id: str | None) -> dict[str, Any]:
    wave = wave_of(settings, name)
    with _engine(settings).begin() as connection:
        reviewed = check_reviewed_plan(connection, settings, name, "cut over")
        _check_verified_under(connection, name, reviewed)
        current = {a["role"]: a for a in ledger.approvals(connection, name, current_only=True)}
        missing = [
            role
            for role in wave.criteria.approvers
            if role not in current or current[role]["decision"] != "approve"
        ]
        if missing:
            raise ledger.LedgerError(
                f"wave {name} cannot cut over: no current approval from {', '.join(missing)}"
                + (
                    f" (rejected by {current[missing[0]]['approver']})"
                    if missing[0] in current
                    else ""
                )
            )
        for role in wave.criteria.approvers:
            approval = current[role]
            _refuse_unlisted(name, wave, role, approval["approver"], approval["channel"])
            others = [a for r, a in current.items() if r in wave.criteria.approvers]
            _refuse_one_person_two_roles(name, others, role, approval["approver"])
        return ledger.transition(
            connection,
            name,
            ledger.CUT_OVER,
            actor,
            run_id,
            _version(settings),
            {
                "approvals": [
                    {k: str(v) for k, v in a.items() if k in {"role", "approver", "channel", "at"}}
                    for a in current.values()
                ],
                "plan": reviewed.digest,
            },
        )


def _check_verified_under(
    connection: sa.Connection, name: str, reviewed: fingerprint.Fingerprint
) -> None:
    """Refuse a cutover whose verification was judged under an earlier plan than the current."""
    plan = ledger.current_plan(connection, name)
    verified = [t for t in ledger.transitions(connection, name) if t["to_state"] == ledger.VERIFIED]
    if plan and verified and _after(plan["at"], verified[-1]["at"]):
        raise PlanChangedError(
            f"wave {name} cannot cut over: its plan changed after it was verified "
            f"({_described(plan)}); verify it again under the new plan "
            f"(`vardflytt cutover verify {name}`), then approve it again."
        )


def replan(settings: Settings, name: str, reason: str, run_id: str | None = None) -> dict[str, Any]:
    """Record a plan change: the working copy's plan becomes the wave's reviewed plan.

    Who is the person running it (``etl.core.audit.current_user``), why is ``reason``; the
    changed, added and removed files are recorded, and every earlier approval is void."""
    reason = (reason or "").strip()
    if not reason:
        raise ledger.LedgerError(
            "a plan change needs a reason (--reason): say what changed and why"
        )
    engine = _engine(settings)
    with engine.connect() as connection:
        state = ledger.wave_state(connection, name)
        recorded = ledger.current_plan(connection, name)
    if state == ledger.PLANNED and recorded is None:
        raise ledger.LedgerError(
            f"wave {name} is planned: its first rehearsal records the reviewed plan "
            f"(`vardflytt cutover rehearse {name}`); there is nothing to change yet"
        )
    uncommitted = fingerprint.uncommitted_files(settings)
    if uncommitted:
        raise PlanChangedError(
            f"wave {name}: commit the plan change first; a recorded plan is a committed one. "
            f"Uncommitted in mappings/expectations: {', '.join(uncommitted)}"
        )
    current = plan_fingerprint(settings, name)
    if recorded and recorded["digest"] == current.digest:
        raise ledger.LedgerError(
            f"wave {name}: the working copy is the reviewed plan ({_described(recorded)}); "
            "there is no plan change to record"
        )
    with ledger.wave_lock(engine, name, run_id), engine.begin() as connection:
        voided = len(ledger.approvals(connection, name, current_only=True))
        record = _record_fingerprint(
            connection, name, current, "replan", current_user(), reason, run_id
        )
    if record is None:  # another replan recorded this very plan since the check above
        raise ledger.LedgerError(
            f"wave {name}: the working copy is the reviewed plan; there is no plan change to record"
        )
    return {**record, "approvals_voided": voided}


def wave_status(settings: Settings) -> list[dict[str, Any]]:
    from etl.cutover.slices import conflicts_per_wave

    plan = plan_of(settings)
    with _engine(settings).connect() as connection:
        conflicts = conflicts_per_wave(connection)
        rows = []
        for wave in plan.waves:
            history = ledger.transitions(connection, wave.wave)
            rows.append(
                {
                    "wave": wave.wave,
                    "title": wave.title,
                    "systems": len(plan.systems_of(wave.wave)),
                    "split_by_unit": len(wave.by_unit),
                    "open_conflicts": conflicts.get(wave.wave, 0),
                    "state": ledger.wave_state(connection, wave.wave),
                    "planned": f"{wave.window.start} - {wave.window.end}",
                    "first_load": next(
                        (
                            str(t["at"])[:16]
                            for t in history
                            if t["to_state"] == ledger.INITIAL_LOAD
                        ),
                        None,
                    ),
                    "last_change": str(history[-1]["at"])[:16] if history else None,
                    "promoted_batches": len(promoted_batches(connection, wave.wave)),
                    "plan": _plan_summary(connection, settings, wave.wave),
                    "lock": getattr(
                        ledger.lock_holder(connection.engine, wave.wave), "holder", None
                    ),
                }
            )
    return rows


def _plan_summary(connection: sa.Connection, settings: Settings, name: str) -> str:
    """One word for the waves table: the reviewed plan's short digest, or what is wrong."""
    recorded = ledger.current_plan(connection, name)
    if recorded is None:
        return "-"
    current = plan_fingerprint(settings, name)
    if current.digest != recorded["digest"]:
        return f"{recorded['digest'][:8]} (changed)"
    short_digest: str = recorded["digest"][:8]
    return short_digest


def evidence_json(pack: Path) -> dict[str, Any]:
    evidence: dict[str, Any] = json.loads((pack / "evidence.json").read_text("utf-8"))
    return evidence
