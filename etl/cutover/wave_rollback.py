"""Rolling a wave back: the whole wave (``rollback_wave``) or one batch of it
(``rollback_batch``), each undone exactly (the core checksum-equal to before), with the waves that
depend on it refused or cascaded, and the ledger told what happened.

The command line and the rollback DAG call these; the rest of a wave's life is in
etl/cutover/waves.py."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import sqlalchemy as sa

from etl.core.batch_states import PROMOTED
from etl.core.model import ENTITIES
from etl.core.tables import ENTITY_TABLES, promotion
from etl.cutover import ledger
from etl.cutover.plan import WavePlan
from etl.cutover.slice_checksum import CHECKSUM_VERSION, outside_checksums
from etl.cutover.waves import (
    _engine,
    _sums_on,
    _version,
    data_docs_after_decision,
    plan_of,
    promoted_batches,
)
from etl.load.loader import rewind_watermarks
from etl.load.promote import (
    PromotionError,
    _touched_ids,
    later_conflicts,
    promotion_row,
    rollback,
)
from etl.settings import Settings


def _before_wave(connection: sa.Connection, name: str) -> tuple[dict[str, str] | None, bool]:
    """The wave's checksums from before its first load, and whether they were recorded before
    checksum version 2 (then compared with checksums computed the old way)."""
    started = [
        t["evidence"]
        for t in ledger.transitions(connection, name)
        if t["to_state"] == ledger.INITIAL_LOAD and "checksums_before" in t["evidence"]
    ]
    if not started:
        return None, False
    return started[-1]["checksums_before"], started[-1].get("checksum_version") != CHECKSUM_VERSION


def _undo_wave(
    connection: sa.Connection,
    settings: Settings,
    plan: WavePlan,
    name: str,
    actor: str | None,
    run_id: str | None,
    cascade: bool,
    note: str | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """In the caller's transaction: undo every promoted batch of the wave, newest first, prove
    it by checksums and record the ``rolled_back`` transition. Returns the evidence and what the
    proof found wrong (nothing, when it holds)."""
    from etl.cutover.slice_core import wave_row_ids
    from etl.pipeline import catalog

    wave = plan.wave(name)
    state = ledger.wave_state(connection, name)
    ledger.check_transition(name, state, ledger.ROLLED_BACK)
    before, legacy = _before_wave(connection, name)
    sliced = plan.is_sliced(name)
    scope = wave_row_ids(connection, plan, name, catalog(settings)) if sliced else None
    outside_before = (
        _sums_on(connection, settings, plan, wave, scope)["outside"] if sliced else None
    )
    batches = promoted_batches(connection, name)
    undone = []
    for batch in reversed(batches):
        for report in rollback(connection, batch["batch_id"], cascade=cascade):
            if not report.already_done:
                undone.append(report.batch_id)
    for system in sorted({batch["source_system"] for batch in batches}):
        rewind_watermarks(connection, system, settings)
    sums = _sums_on(connection, settings, plan, wave, scope)
    after = compared = sums["slice"]
    if before is not None and sliced and legacy:  # evidence older than the checksum's version
        compared = _sums_on(connection, settings, plan, wave, scope, legacy=True)["slice"]
    evidence: dict[str, Any] = {
        "from_state": state,
        "rolled_back_batches": undone,
        "checksums_after": after,
        "checksum_version": CHECKSUM_VERSION,
        "checksum_equal_to_before_wave": before == compared if before else None,
        **(extra or {}),
    }
    problems = []
    if before is not None and before != compared:
        changed = sorted(k for k in compared if compared[k] != before.get(k))
        problems.append(f"its core rows differ from before the wave: {changed}")
    if outside_before is not None:
        outside = sums["outside"]
        evidence["outside_unchanged"] = outside == outside_before
        if outside != outside_before:
            changed = sorted(k for k in outside if outside[k] != outside_before.get(k))
            problems.append(f"rows outside its slice changed: {changed}")
    ledger.invalidate_approvals(connection, name)
    ledger.transition(
        connection, name, ledger.ROLLED_BACK, actor, run_id, _version(settings), evidence, note
    )
    return evidence, problems


def _dependants(connection: sa.Connection, plan: WavePlan, name: str) -> list[str]:
    """The waves whose promoted rows point at the patients wave ``name`` moved, newest first
    (by their latest promotion)."""
    from etl.cutover.slice_core import later_slice_waves

    found = later_slice_waves(connection, plan, name)
    if not found:
        return []
    latest = dict(
        connection.execute(
            sa.select(promotion.c.wave, sa.func.max(promotion.c.seq))
            .where(promotion.c.wave.in_(found) & (promotion.c.state == PROMOTED))
            .group_by(promotion.c.wave)
        ).all()
    )
    return sorted(found, key=lambda wave: latest.get(wave) or 0, reverse=True)


def _refuse_dependants(
    connection: sa.Connection, what: str, name: str, dependants: list[str], cascade: bool
) -> None:
    """Without cascade, refuse while dependants are promoted; with it, refuse (before anything
    changes) when the ledger does not let one of them go to ``rolled_back``."""
    if not dependants:
        return
    if not cascade:
        live = [w for w in dependants if ledger.wave_state(connection, w) == ledger.CUT_OVER]
        raise ledger.LedgerError(
            f"cannot roll back {what}: waves {', '.join(dependants)} are loaded and their rows "
            f"point at the patients {name} moved; roll those back first (newest first), or pass "
            "--cascade to roll them back first, newest first, in the same transaction"
            + (
                f" ({', '.join(live)} cut over: the cascade takes it back past go-live)"
                if live
                else ""
            )
        )
    for wave in dependants:
        state = ledger.wave_state(connection, wave)
        try:
            ledger.check_transition(wave, state, ledger.ROLLED_BACK)
        except ledger.LedgerError as error:
            raise ledger.LedgerError(
                f"cannot cascade the rollback of {what}: {error} Nothing was rolled back."
            ) from error


def _cascade(
    connection: sa.Connection,
    settings: Settings,
    plan: WavePlan,
    dependants: list[str],
    actor: str | None,
    run_id: str | None,
    cause: str,
) -> list[dict[str, Any]]:
    """Roll back the dependant waves, newest first, each with its own proof and transition, in
    the caller's transaction: a proof that fails raises, and the transaction undoes them all."""
    done = []
    for wave in dependants:
        evidence, problems = _undo_wave(
            connection,
            settings,
            plan,
            wave,
            actor,
            run_id,
            True,
            note=f"cascade: {cause}",
            extra={"cascaded_by": cause},
        )
        if problems:
            raise ledger.LedgerError(
                f"the cascade stopped at wave {wave}: {'; '.join(problems)}. Nothing was rolled "
                "back (the cascade is one transaction); investigate, then roll back "
                f"{wave} on its own to record its evidence"
            )
        done.append(
            {
                "wave": wave,
                "from_state": evidence["from_state"],
                "rolled_back_batches": evidence["rolled_back_batches"],
            }
        )
    return done


def _locks(engine: sa.Engine, waves: list[str], run_id: str | None) -> ExitStack:
    """Every wave's lock, in name order; on a refusal the ones taken are released."""
    stack = ExitStack()
    with stack:
        for wave in sorted(set(waves)):
            stack.enter_context(ledger.wave_lock(engine, wave, run_id))
        return stack.pop_all()


def rollback_wave(
    settings: Settings,
    name: str,
    actor: str | None = None,
    run_id: str | None = None,
    cascade: bool = False,
) -> dict[str, Any]:
    """Undo every promoted batch of the wave, newest first, in one transaction.

    A wave by care unit undoes exactly its slice: its checksums must equal those from before
    the wave, and every row outside it (other units' rows in the same tables) must be as it was
    just before the rollback. The patients wave is refused while a unit wave that points at its
    patients is promoted; with ``cascade`` those waves are rolled back first, newest first, each
    proved and recorded, then the patients wave, all in one transaction: if one step fails,
    nothing is rolled back."""
    plan = plan_of(settings)
    engine = _engine(settings)
    with engine.connect() as connection:
        state = ledger.wave_state(connection, name)
        ledger.check_transition(name, state, ledger.ROLLED_BACK)
        dependants = _dependants(connection, plan, name)
        _refuse_dependants(connection, f"wave {name}", name, dependants, cascade)
    with _locks(engine, [name, *dependants], run_id), engine.begin() as connection:
        cascaded = _cascade(
            connection, settings, plan, dependants, actor, run_id, f"rollback of wave {name}"
        )
        extra = {"cascaded_waves": cascaded} if cascaded else None
        evidence, problems = _undo_wave(
            connection, settings, plan, name, actor, run_id, cascade, extra=extra
        )
        if problems and cascaded:
            raise ledger.LedgerError(
                f"wave {name}: {'; '.join(problems)}. Nothing was rolled back (the cascade "
                "is one transaction); investigate before trying again"
            )
    data_docs_after_decision(settings, name)  # the decision was no-go: the batches keep theirs
    for wave in dependants if cascaded else []:
        data_docs_after_decision(settings, wave)
    if problems:
        raise ledger.LedgerError(
            f"wave {name} rolled back, but {'; and '.join(problems)}; "
            "investigate before loading again"
        )
    return evidence


# The state a wave goes to when one of its batches is undone: the same load phase (its data
# changed, so approvals are voided), and a verified wave back to its final delta (verify again).
# A frozen or cut-over wave is not undone batch by batch: the ledger only lets it roll back whole.
BATCH_ROLLBACK_STATES = {
    ledger.INITIAL_LOAD: ledger.INITIAL_LOAD,
    ledger.DELTA_LOAD: ledger.DELTA_LOAD,
    ledger.FINAL_DELTA: ledger.FINAL_DELTA,
    ledger.VERIFIED: ledger.FINAL_DELTA,
}


def _batch_step(connection: sa.Connection, wave: str, batch_id: str) -> str:
    state = ledger.wave_state(connection, wave)
    to_state = BATCH_ROLLBACK_STATES.get(state)
    if to_state is None:
        past = " (past go-live only the whole wave goes back)" if state == ledger.CUT_OVER else ""
        raise ledger.LedgerError(
            f"wave {wave} is {state}: batch {batch_id} is not undone on its own{past}; roll back "
            f"the whole wave (`vardflytt cutover rollback {wave}`). Nothing was rolled back."
        )
    ledger.check_transition(wave, state, to_state)
    return to_state


def _undo_order(connection: sa.Connection, batch_id: str, cascade: bool) -> list[str]:
    """The promoted batches ``rollback(batch_id, cascade)`` undoes, in its order (read only)."""
    row = promotion_row(connection, batch_id)
    if row is None or row["state"] != PROMOTED:
        return []
    order: list[str] = []
    if cascade:
        for later in later_conflicts(connection, batch_id):
            order += _undo_order(connection, later["batch_id"], True)
    return list(dict.fromkeys([*order, batch_id]))


def _touched(connection: sa.Connection, batch_ids: list[str]) -> dict[str, set[str]]:
    """Per core table, the ids of the rows these batches changed (what their rollback may)."""
    found: dict[str, set[str]] = {}
    for batch_id in batch_ids:
        for entity in ENTITY_TABLES:
            if entity in ENTITIES:
                ids = connection.execute(_touched_ids(entity, batch_id)).scalars()
                found.setdefault(entity, set()).update(str(i) for i in ids)
    return found


def _waves_of(connection: sa.Connection, batch_ids: list[str]) -> dict[str, str | None]:
    rows = connection.execute(
        sa.select(promotion.c.batch_id, promotion.c.wave).where(
            promotion.c.batch_id.in_(batch_ids or [""])
        )
    ).all()
    return {str(b): (str(w) if w else None) for b, w in rows}


def _batch_waves(
    connection: sa.Connection,
    plan: WavePlan,
    planned: set[str],
    name: str,
    batch_id: str,
    cascade: bool,
) -> tuple[list[str], list[str], dict[str, str]]:
    """Before anything changes: the waves that depend on the batch's wave (refused as for a
    wave's rollback), the other waves whose batches it undoes, and the state each planned one
    goes to."""
    dependants = _dependants(connection, plan, name)
    _refuse_dependants(connection, f"batch {batch_id} of wave {name}", name, dependants, cascade)
    order = _undo_order(connection, batch_id, cascade)
    owners = _waves_of(connection, order)
    hit = [w for w in dict.fromkeys(owners[b] for b in order) if w and w not in dependants]
    steps = {w: _batch_step(connection, w, batch_id) for w in hit if w in planned}
    return dependants, hit, steps


def _rollback_unrecorded(
    engine: sa.Engine, batch_id: str, wave: str | None, cascade: bool, run_id: str | None
) -> dict[str, Any]:
    """Undo a batch of no wave of the plan, or one not promoted, as before: under its wave's lock
    if it has one, without a ledger record."""
    locks = _locks(engine, [wave] if wave else [], run_id)
    with locks, engine.begin() as connection:
        reports = rollback(connection, batch_id, cascade=cascade)
    return {
        "batch_id": batch_id,
        "rolled_back_batches": [r.batch_id for r in reports if not r.already_done],
    }


def _rewind_systems(connection: sa.Connection, settings: Settings, undone: list[str]) -> None:
    """Rewind the watermarks of the source systems of the undone batches."""
    systems = connection.execute(
        sa.select(promotion.c.source_system).where(promotion.c.batch_id.in_(undone or [""]))
    ).scalars()
    for system in sorted(set(systems)):
        rewind_watermarks(connection, system, settings)


def _check_outside(
    connection: sa.Connection,
    scope: dict[str, set[str]],
    outside_before: dict[str, str],
    cause: str,
) -> None:
    """Refuse (the transaction undoes it all) when a core row the undone batches did not touch
    has a checksum other than before."""
    outside_after = outside_checksums(connection, scope)
    if outside_after != outside_before:
        changed = sorted(k for k in outside_after if outside_after[k] != outside_before.get(k))
        raise ledger.LedgerError(
            f"{cause}: rows it did not write changed in {changed}. Nothing was rolled "
            "back; investigate before trying again"
        )


def _batch_evidence(
    batch_id: str,
    undone: list[str],
    scope: dict[str, set[str]],
    cascaded: list[dict[str, Any]],
) -> dict[str, Any]:
    """The evidence a batch's rollback records for each wave concerned."""
    evidence: dict[str, Any] = {
        "batch_id": batch_id,
        "rolled_back_batches": undone,
        "outside_unchanged": True,
        "rows_in_scope": {k: len(v) for k, v in scope.items() if v},
        "checksum_version": CHECKSUM_VERSION,
    }
    if cascaded:
        evidence["cascaded_waves"] = cascaded
    return evidence


def rollback_batch(
    settings: Settings,
    batch_id: str,
    cascade: bool = False,
    run_id: str | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    """Undo one promoted batch (and, with cascade, the later ones that changed its rows) with
    the guarantees of a wave's rollback, in one transaction:

    - the wave's lock (and that of every wave whose batch the cascade undoes);
    - a batch of the patients wave is refused while unit waves point at its patients; with
      cascade those waves are rolled back first (newest first, each proved and recorded);
    - every core row the undone batches did not touch has the same checksum after as before
      (else nothing is rolled back);
    - each wave concerned records a ledger transition with who, which batches and the proof
      (a frozen or cut-over wave is refused: the ledger only lets it roll back whole).

    A batch of no wave of the plan is undone as before, without a ledger record."""
    plan = plan_of(settings)
    planned = {w.wave for w in plan.waves}
    engine = _engine(settings)
    with engine.connect() as connection:
        row = promotion_row(connection, batch_id)
        if row is None:
            raise PromotionError(f"batch {batch_id} is not in the promotion ledger")
        name = row["wave"] if row["wave"] in planned else None
        if name is not None and row["state"] == PROMOTED:
            dependants, hit, steps = _batch_waves(
                connection, plan, planned, name, batch_id, cascade
            )
    if name is None or row["state"] != PROMOTED:
        return _rollback_unrecorded(engine, batch_id, row["wave"], cascade, run_id)
    cause = f"rollback of batch {batch_id} of wave {name}"
    with _locks(engine, [*hit, *dependants], run_id), engine.begin() as connection:
        cascaded = _cascade(connection, settings, plan, dependants, actor, run_id, cause)
        order = _undo_order(connection, batch_id, cascade)
        scope = _touched(connection, order)
        outside_before = outside_checksums(connection, scope)
        slice_before = _sums_on(connection, settings, plan, plan.wave(name))["slice"]
        reports = rollback(connection, batch_id, cascade=cascade)
        undone = [r.batch_id for r in reports if not r.already_done]
        owners = _waves_of(connection, undone)
        _rewind_systems(connection, settings, undone)
        _check_outside(connection, scope, outside_before, cause)
        slice_after = _sums_on(connection, settings, plan, plan.wave(name))["slice"]
        evidence = _batch_evidence(batch_id, undone, scope, cascaded)
        for wave, to_state in steps.items():
            mine = [b for b in undone if owners.get(b) == wave]
            record = {**evidence, "wave_batches": mine}
            if wave == name:
                record |= {"slice_before": slice_before, "slice_after": slice_after}
            ledger.invalidate_approvals(connection, wave)
            ledger.transition(
                connection, wave, to_state, actor, run_id, _version(settings), record, cause
            )
    # An undone final delta gets its Data Docs now (no decision will come for it).
    for wave in steps:
        data_docs_after_decision(settings, wave, only=set(undone))
    for wave in dependants if cascaded else []:
        data_docs_after_decision(settings, wave)
    return {**evidence, "wave": name, "slice_before": slice_before, "slice_after": slice_after}


def rollback_one_batch(
    settings: Settings,
    batch_id: str,
    cascade: bool = False,
    run_id: str | None = None,
    actor: str | None = None,
) -> list[str]:
    """Undo one promoted batch (:func:`rollback_batch`); the batches undone."""
    undone: list[str] = rollback_batch(settings, batch_id, cascade, run_id, actor)[
        "rolled_back_batches"
    ]
    return undone
