"""The cutover ledger: each wave's state, its legal transitions, approvals, and the wave lock.

    planned -> rehearsal (repeatable) -> initial_load (repeatable: systems that failed)
            -> delta_load (repeatable) -> frozen
            -> final_delta -> verified (repeatable: after a plan change) -> cut_over
    and from initial_load on: -> rolled_back (then initial_load again, or rehearsal)

Every transition records who, when, the Airflow run (if any), the mapping version (git commit)
and its evidence (counts, batch ids, check results: never patient data). An illegal transition
is refused with the states the wave may go to from where it is.

The ledger also keeps each wave's reviewed plan (``cutover_plan``): the fingerprint taken at the
first rehearsal or load and at every recorded plan change, with who, why and which files changed.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from etl.batch import utc_now
from etl.core import lease
from etl.core.lease import current_actor
from etl.core.tables import (
    cutover_approval,
    cutover_lock,
    cutover_plan,
    cutover_transition,
    cutover_wave,
)

PLANNED = "planned"
REHEARSAL = "rehearsal"
INITIAL_LOAD = "initial_load"
DELTA_LOAD = "delta_load"
FROZEN = "frozen"
FINAL_DELTA = "final_delta"
VERIFIED = "verified"
CUT_OVER = "cut_over"
ROLLED_BACK = "rolled_back"

TRANSITIONS: dict[str, tuple[str, ...]] = {
    PLANNED: (REHEARSAL, INITIAL_LOAD),
    REHEARSAL: (REHEARSAL, INITIAL_LOAD),
    INITIAL_LOAD: (INITIAL_LOAD, DELTA_LOAD, FROZEN, ROLLED_BACK),
    DELTA_LOAD: (DELTA_LOAD, FROZEN, ROLLED_BACK),
    FROZEN: (FINAL_DELTA, ROLLED_BACK),
    FINAL_DELTA: (VERIFIED, FINAL_DELTA, ROLLED_BACK),
    VERIFIED: (CUT_OVER, VERIFIED, FINAL_DELTA, ROLLED_BACK),
    CUT_OVER: (ROLLED_BACK,),
    ROLLED_BACK: (REHEARSAL, INITIAL_LOAD),
}
STATES = tuple(TRANSITIONS)
LOCK_LEASE = timedelta(hours=12)
logger = logging.getLogger(__name__)


class LedgerError(RuntimeError):
    """A transition the state machine does not allow, or a missing precondition."""


class WaveLockedError(lease.LeaseHeldError):
    """Another run holds the wave."""


def wave_state(connection: sa.Connection, wave: str) -> str:
    row = connection.execute(
        sa.select(cutover_wave.c.state).where(cutover_wave.c.wave == wave)
    ).first()
    return row.state if row else PLANNED


def check_transition(wave: str, current: str, to_state: str) -> None:
    """Refuse a move the state machine does not allow, naming the states it does allow."""
    if to_state not in TRANSITIONS:
        raise LedgerError(f"'{to_state}' is not a cutover state ({', '.join(STATES)})")
    if to_state not in TRANSITIONS[current]:
        allowed = ", ".join(TRANSITIONS[current]) or "none"
        raise LedgerError(
            f"wave {wave} is {current}: it cannot go to {to_state}. From {current} it may go to: "
            f"{allowed}."
        )


def transition(
    connection: sa.Connection,
    wave: str,
    to_state: str,
    actor: str | None = None,
    run_id: str | None = None,
    mapping_version: str | None = None,
    evidence: dict[str, Any] | None = None,
    note: str | None = None,
    plan_digest: str | None = None,
) -> dict[str, Any]:
    """Move the wave to ``to_state`` if the state machine allows it; record who, when, why."""
    current = wave_state(connection, wave)
    check_transition(wave, current, to_state)
    now = utc_now()
    record = {
        "transition_id": uuid.uuid4().hex,
        "wave": wave,
        "from_state": current,
        "to_state": to_state,
        "actor": actor or current_actor(),
        "at": now,
        "run_id": run_id,
        "mapping_version": mapping_version,
        "evidence": json.dumps(evidence or {}, sort_keys=True, default=str),
        "note": note,
    }
    connection.execute(cutover_transition.insert().values(**record))
    exists = connection.execute(
        sa.select(cutover_wave.c.wave).where(cutover_wave.c.wave == wave)
    ).first()
    values = {"state": to_state, "updated_at": now}
    if plan_digest:
        values["plan_digest"] = plan_digest
    if exists:
        connection.execute(cutover_wave.update().where(cutover_wave.c.wave == wave).values(values))
    else:
        connection.execute(cutover_wave.insert().values(wave=wave, **values))
    return record


def transitions(connection: sa.Connection, wave: str | None = None) -> list[dict[str, Any]]:
    query = sa.select(cutover_transition).order_by(cutover_transition.c.at)
    if wave:
        query = query.where(cutover_transition.c.wave == wave)
    rows = []
    for row in connection.execute(query):
        item = dict(row._mapping)
        item["evidence"] = json.loads(item["evidence"] or "{}")
        rows.append(item)
    return rows


def count_transitions(connection: sa.Connection, wave: str, to_state: str) -> int:
    return int(
        connection.execute(
            sa.select(sa.func.count()).where(
                (cutover_transition.c.wave == wave) & (cutover_transition.c.to_state == to_state)
            )
        ).scalar_one()
    )


def record_approval(
    connection: sa.Connection,
    wave: str,
    role: str,
    approver: str,
    decision: str,
    channel: str,
    run_id: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Record a role's decision; it supersedes the role's earlier ones.

    ``note`` is free text an approver typed (in Airflow's form or ``--note``): the decision is
    already made there, so a note is never refused, but identity numbers in it are withheld
    before it is stored (the wave page and evidence packs show notes)."""
    if decision not in {"approve", "reject"}:
        raise LedgerError(f"a decision is 'approve' or 'reject', not '{decision}'")
    connection.execute(
        cutover_approval.update()
        .where((cutover_approval.c.wave == wave) & (cutover_approval.c.role == role))
        .values(is_current=False)
    )
    record = {
        "approval_id": uuid.uuid4().hex,
        "wave": wave,
        "role": role,
        "approver": approver,
        "decision": decision,
        "channel": channel,
        "run_id": run_id,
        "at": utc_now(),
        "note": screened_note(note),
        "is_current": True,
    }
    connection.execute(cutover_approval.insert().values(**record))
    return record


def screened_note(note: str | None) -> str | None:
    """An approver's note as it may be stored and shown: identity numbers withheld, or None."""
    from etl.steward.screening import withhold_identity_numbers

    if note is None or not note.strip():
        return None
    return withhold_identity_numbers(note.strip())


def approvals(
    connection: sa.Connection, wave: str, current_only: bool = False
) -> list[dict[str, Any]]:
    query = (
        sa.select(cutover_approval)
        .where(cutover_approval.c.wave == wave)
        .order_by(cutover_approval.c.at)
    )
    if current_only:
        query = query.where(cutover_approval.c.is_current)
    return [dict(row._mapping) for row in connection.execute(query)]


def invalidate_approvals(connection: sa.Connection, wave: str) -> None:
    """New data after an approval voids it: the lead approves what was verified, nothing else."""
    connection.execute(
        cutover_approval.update().where(cutover_approval.c.wave == wave).values(is_current=False)
    )


def record_plan(
    connection: sa.Connection,
    wave: str,
    digest: str,
    files: dict[str, str],
    event: str,
    actor: str,
    mapping_version: str | None = None,
    changes: dict[str, Any] | None = None,
    reason: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Record the wave's reviewed plan (it supersedes the one before); keep the wave row's
    ``plan_digest`` in step. Paths and digests only."""
    connection.execute(
        cutover_plan.update().where(cutover_plan.c.wave == wave).values(is_current=False)
    )
    now = utc_now()
    record = {
        "plan_id": uuid.uuid4().hex,
        "wave": wave,
        "digest": digest,
        "files": json.dumps(files, sort_keys=True),
        "mapping_version": mapping_version,
        "event": event,
        "reason": reason,
        "changes": json.dumps(changes, sort_keys=True) if changes is not None else None,
        "actor": actor,
        "run_id": run_id,
        "at": now,
        "is_current": True,
    }
    connection.execute(cutover_plan.insert().values(**record))
    exists = connection.execute(
        sa.select(cutover_wave.c.wave).where(cutover_wave.c.wave == wave)
    ).first()
    if exists:
        connection.execute(
            cutover_wave.update().where(cutover_wave.c.wave == wave).values(plan_digest=digest)
        )
    else:
        connection.execute(
            cutover_wave.insert().values(
                wave=wave, state=PLANNED, plan_digest=digest, updated_at=now
            )
        )
    return _plan_row(record)


def _plan_row(row: Mapping[Any, Any]) -> dict[str, Any]:
    item = dict(row)
    item["files"] = json.loads(item["files"] or "{}")
    item["changes"] = json.loads(item["changes"]) if item["changes"] else None
    return item


def current_plan(connection: sa.Connection, wave: str) -> dict[str, Any] | None:
    """The wave's reviewed plan (digest, ``{path: sha256}``, who, when, why), or None."""
    row = connection.execute(
        sa.select(cutover_plan).where((cutover_plan.c.wave == wave) & cutover_plan.c.is_current)
    ).first()
    return _plan_row(row._mapping) if row else None


def plan_history(connection: sa.Connection, wave: str) -> list[dict[str, Any]]:
    """Every fingerprint recorded for the wave, oldest first."""
    query = sa.select(cutover_plan).where(cutover_plan.c.wave == wave).order_by(cutover_plan.c.at)
    return [_plan_row(row._mapping) for row in connection.execute(query)]


@dataclass(frozen=True)
class LockHolder:
    holder: str
    acquired_at: object


# The wave lock is a lease (etl.core.lease), the same mechanism as the per-system run lease.
WAVE = lease.LeaseKind(
    noun="wave",
    table=cutover_lock,
    key_column="wave",
    duration=LOCK_LEASE,
    unlock_command="vardflytt cutover unlock {key}",
    error=WaveLockedError,
)


def acquire_lock(engine: sa.Engine, wave: str, run_id: str | None = None) -> tuple[str, bool]:
    """Take the wave's lease, atomically (primary key); refuse with who holds it.

    Returns the holder label and whether this call took it: an Airflow run that took the lease
    in its first task holds it through its later tasks (same run id) until its last task."""
    held = lease.acquire(engine, WAVE, wave, run_id)
    if held.replaced:
        logger.warning(held.replaced)
    return held.holder, held.is_taken


def release_lock(
    engine: sa.Engine, wave: str, holder: str | None = None, run_id: str | None = None
) -> bool:
    """Release the lease: the holder's own (by label or run id), or any with neither (forced)."""
    return lease.release(engine, WAVE, wave, holder=holder, run_id=run_id)


def lock_holder(engine: sa.Engine, wave: str) -> LockHolder | None:
    held = lease.holder_of(engine, WAVE, wave)
    return LockHolder(held.holder, held.acquired_at) if held else None


@contextmanager
def wave_lock(engine: sa.Engine, wave: str, run_id: str | None = None) -> Iterator[str]:
    """Hold the wave for this block; a lease the run already held stays held after it."""
    holder, taken = acquire_lock(engine, wave, run_id)
    try:
        yield holder
    finally:
        if taken:
            release_lock(engine, wave, holder)
