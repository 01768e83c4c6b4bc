"""Leases: one run at a time for a wave or a source system, across processes, hosts and Airflow.

A lease is a row keyed by what it guards; inserting it is the atomic step (the primary key
refuses a second holder). A run that comes back with the same run id keeps its lease (an Airflow
run holds it across its tasks, a retried task re-enters it). A lease whose last sign of life
(heartbeat, or the time it was taken) is older than its duration belongs to a dead run: the next
run takes it over by compare-and-delete, so two runs taking over at once cannot both win, and is
told whose lease it replaced. The wave lock (etl.cutover.ledger) and the system lease
(``SYSTEM``, below) are both this mechanism.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from etl.batch import utc_now
from etl.core.tables import system_lease


class LeaseHeldError(RuntimeError):
    """Another run holds the lease; the message names it and how to release a dead one."""


class SystemLeasedError(LeaseHeldError):
    """Another run of the same source system holds it."""


@dataclass(frozen=True)
class LeaseKind:
    noun: str  # what is guarded: "wave", "system"
    table: sa.Table
    key_column: str
    duration: dt.timedelta
    unlock_command: str  # e.g. "vardflytt batches unlock {key}"
    error: type[LeaseHeldError]


@dataclass(frozen=True)
class Lease:
    key: str
    holder: str
    run_id: str | None
    acquired_at: dt.datetime
    last_seen_at: dt.datetime
    is_taken: bool = False  # this call took it (False: the run already held it)
    replaced: str | None = None  # a dead run's lease this call took over, for the log


# No heartbeat for this long means the holder is dead: a run renews its lease at every stage,
# and the longest single stage (transforming the largest entity) takes minutes, not hours.
SYSTEM_LEASE_DURATION = dt.timedelta(hours=2)


def current_actor() -> str:
    """Who acts, as ledger and lease rows name them: ``etl.core.audit.current_user`` (inside
    Airflow the person who triggered the run, never the DAG owner; on the command line the
    operating-system account)."""
    from etl.core.audit import current_actor as acting

    return acting().name


def holder_label(run_id: str | None) -> str:
    where = f"{socket.gethostname()} pid {os.getpid()}"
    return f"{run_id or 'command line'} by {current_actor()} on {where}"


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)  # SQLite


def _lease_of(kind: LeaseKind, row: sa.Row[Any]) -> Lease:
    columns = kind.table.c
    run_id = row.run_id if "run_id" in columns else None
    seen = row.heartbeat_at if "heartbeat_at" in columns else row.acquired_at
    return Lease(
        key=getattr(row, kind.key_column),
        holder=row.holder,
        run_id=run_id,
        acquired_at=_aware(row.acquired_at),
        last_seen_at=_aware(seen),
    )


def _is_same_run(kind: LeaseKind, row: sa.Row[Any], run_id: str | None) -> bool:
    if run_id is None:
        return False
    if "run_id" in kind.table.c:
        return bool(row.run_id == run_id)
    holder: str = row.holder
    return holder.startswith(f"{run_id} by ")


def holder_of(engine: sa.Engine, kind: LeaseKind, key: str) -> Lease | None:
    key_column = kind.table.c[kind.key_column]
    with engine.connect() as connection:
        row = connection.execute(sa.select(kind.table).where(key_column == key)).first()
    return _lease_of(kind, row) if row else None


def acquire(engine: sa.Engine, kind: LeaseKind, key: str, run_id: str | None = None) -> Lease:
    """Take the lease on ``key`` atomically, re-enter it for the same run (renewing its heartbeat),
    take over a dead run's, or refuse naming the holder, its run and how to release it."""
    table, key_column = kind.table, kind.table.c[kind.key_column]
    now = utc_now()
    renewed = _renewed(engine, kind, key, run_id, now)
    if renewed is not None:
        return renewed
    replaced = None
    with engine.begin() as connection:
        row = connection.execute(sa.select(table).where(key_column == key)).first()
        if row is not None:
            held = _lease_of(kind, row)
            if _is_same_run(kind, row, run_id):
                if "heartbeat_at" in table.c:
                    connection.execute(
                        table.update().where(key_column == key).values(heartbeat_at=now)
                    )
                return held
            if now - held.last_seen_at < kind.duration:
                raise kind.error(_refusal(kind, held))
            # Compare-and-delete: only the dead lease we read, never one taken a moment ago.
            gone = connection.execute(
                table.delete().where(
                    (key_column == key)
                    & (table.c.holder == row.holder)
                    & (table.c.acquired_at == row.acquired_at)
                )
            ).rowcount
            if gone:
                replaced = (
                    f"{kind.noun} {key}: took over the lease of {held.holder}, silent since "
                    f"{held.last_seen_at:%Y-%m-%d %H:%M} UTC (longer than {kind.duration})"
                )
    holder = holder_label(run_id)
    values = {kind.key_column: key, "holder": holder, "acquired_at": now}
    if "run_id" in table.c:
        values["run_id"] = run_id or holder
    if "heartbeat_at" in table.c:
        values["heartbeat_at"] = now
    try:
        with engine.begin() as connection:
            connection.execute(table.insert().values(**values))
    except sa.exc.IntegrityError as error:
        current = holder_of(engine, kind, key)
        detail = _refusal(kind, current) if current else f"{kind.noun} {key} was taken a moment ago"
        raise kind.error(detail) from error
    return Lease(key, holder, run_id, now, now, is_taken=True, replaced=replaced)


def _renewed(
    engine: sa.Engine, kind: LeaseKind, key: str, run_id: str | None, now: dt.datetime
) -> Lease | None:
    """The same run's lease with its heartbeat renewed, in one statement; None when the run
    does not hold it (or the lease or database cannot say so this way: ``acquire`` then reads
    the row and decides as always).

    Every stage of a run renews its lease (about 40 times in a wave's final delta of ELVIS and
    Melior), so the renewal is what a small batch pays most often: one ``UPDATE ... RETURNING``
    instead of a read and a write, and on PostgreSQL committed without waiting for the write-
    ahead log's flush (``synchronous_commit`` off for this transaction only). A heartbeat lost
    by a server crash leaves the lease as old as the heartbeat before it, minutes against its
    duration of hours: nobody can take it over for that. Taking a lease (the insert), taking
    over a dead one and every other transaction stay synchronous."""
    table = kind.table
    if (
        run_id is None
        or not {"run_id", "heartbeat_at"} <= set(table.c.keys())
        or not engine.dialect.update_returning
    ):
        return None
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
        row = connection.execute(
            table.update()
            .where((table.c[kind.key_column] == key) & (table.c.run_id == run_id))
            .values(heartbeat_at=now)
            .returning(*table.c)
        ).first()
    return None if row is None else _lease_of(kind, row)


def _refusal(kind: LeaseKind, held: Lease) -> str:
    run = f" (run {held.run_id})" if held.run_id and held.run_id not in held.holder else ""
    lapses = held.last_seen_at + kind.duration
    return (
        f"{kind.noun} {held.key} is held by {held.holder}{run} since "
        f"{held.acquired_at:%Y-%m-%d %H:%M} UTC; two runs of one {kind.noun} must not interleave. "
        f"Wait for it to finish; if that run is dead, its lease lapses at {lapses:%Y-%m-%d %H:%M} "
        f"UTC, or release it now with `{kind.unlock_command.format(key=held.key)}`."
    )


def release(
    engine: sa.Engine,
    kind: LeaseKind,
    key: str,
    holder: str | None = None,
    run_id: str | None = None,
) -> bool:
    """Release the lease: the holder's own (by label or run id), or any with neither (forced)."""
    table = kind.table
    with engine.begin() as connection:
        query = table.delete().where(table.c[kind.key_column] == key)
        if holder is not None:
            query = query.where(table.c.holder == holder)
        elif run_id is not None:
            if "run_id" in table.c:
                query = query.where(table.c.run_id == run_id)
            else:
                query = query.where(table.c.holder.startswith(f"{run_id} by "))
        return connection.execute(query).rowcount > 0


SYSTEM = LeaseKind(
    noun="system",
    table=system_lease,
    key_column="source_system",
    duration=SYSTEM_LEASE_DURATION,
    unlock_command="vardflytt batches unlock {key}",
    error=SystemLeasedError,
)
