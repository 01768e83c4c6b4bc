"""What a region's log reviewers do with the access log: verify its chain, export an excerpt,
purge past retention, and ask "who looked at this patient".

Retention: ``VARDFLYTT_AUDIT_RETENTION_DAYS``, default ten years (3,653 days). Patientdatalagen
and HSLF-FS 2016:40 require logs to be kept and reviewed but set no period; regions commonly keep
access logs as long as the journal itself must be kept (at least ten years after the last entry,
PDL 3 kap. 17 §), and a migration's log answers questions about records that moved in it, so
the default matches the journal's. A region with a shorter policy sets the variable.

A purge deletes the oldest entries only, whole, in chain order, and then appends an
``audit_purged`` entry naming the last purged entry's sequence and hash; the head row's anchor
holds the same, so the remaining chain still verifies from the anchor on.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import sqlalchemy as sa

from etl.core.audit import (
    CONTENT_COLUMNS,
    SCOPE_ALL,
    SCOPE_BATCH,
    SCOPE_LISTED,
    append_entry,
    current_actor,
    drop_guard,
    entry_hash,
    install_append_only,
    lock_head,
)
from etl.core.tables import (
    ACCESS_LOG_HEAD_ID,
    ENTITY_TABLES,
    GENESIS_HASH,
    access_log,
    access_log_head,
)

RETENTION_VARIABLE = "VARDFLYTT_AUDIT_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 3_653
PURGED_ACTION = "audit_purged"
DELETE_GUARD = "access_log_no_delete"
EXPORT_COLUMNS = (*CONTENT_COLUMNS, "previous_hash", "entry_hash")


class AuditError(RuntimeError):
    """A request on the access log that cannot be carried out as asked."""


def retention_days() -> int:
    text = os.environ.get(RETENTION_VARIABLE, "").strip()
    if not text:
        return DEFAULT_RETENTION_DAYS
    try:
        days = int(text)
    except ValueError as error:
        raise AuditError(f"{RETENTION_VARIABLE} must be a whole number of days") from error
    if days < 1:
        raise AuditError(f"{RETENTION_VARIABLE} must be at least 1")
    return days


# --- verify ---------------------------------------------------------------------------------------


@dataclass
class ChainReport:
    entries: int = 0
    first_sequence: int | None = None
    last_sequence: int | None = None
    anchor_sequence: int = 0
    broken_at: int | None = None  # the sequence of the first entry that does not verify
    problem: str | None = None

    @property
    def is_intact(self) -> bool:
        return self.problem is None


def verify_chain(connection: sa.Connection) -> ChainReport:
    """Walk the chain from its anchor; name the first entry that was edited, removed or moved."""
    head = connection.execute(
        sa.select(access_log_head).where(access_log_head.c.head_id == ACCESS_LOG_HEAD_ID)
    ).first()
    anchor_sequence = int(head.anchor_sequence) if head else 0
    anchor_hash = head.anchor_hash if head else GENESIS_HASH
    report = ChainReport(anchor_sequence=anchor_sequence)

    def broken(sequence: int | None, problem: str) -> ChainReport:
        report.broken_at, report.problem = sequence, problem
        return report

    unchained = connection.execute(
        sa.select(sa.func.count()).select_from(access_log).where(access_log.c.sequence.is_(None))
    ).scalar_one()
    if unchained:
        return broken(None, f"{unchained} entries were written outside the chain (no sequence)")
    expected, previous = anchor_sequence + 1, anchor_hash
    last_purge: dict[str, Any] | None = None
    rows = connection.execution_options(yield_per=5_000).execute(
        sa.select(access_log).order_by(access_log.c.sequence)
    )
    for row in rows.mappings():
        sequence = int(row["sequence"])
        if sequence != expected:
            if sequence < expected:
                return broken(sequence, f"entry {sequence} is older than the purge anchor")
            return broken(
                expected, f"entry {expected} is missing (deleted); the next is {sequence}"
            )
        if row["previous_hash"] != previous:
            return broken(sequence, f"entry {sequence} does not follow entry {sequence - 1}")
        if entry_hash(previous, dict(row)) != row["entry_hash"]:
            return broken(sequence, f"entry {sequence} was changed after it was written")
        if row["action"] == PURGED_ACTION:
            last_purge = json.loads(row["detail"] or "{}")
        report.entries += 1
        report.first_sequence = report.first_sequence or sequence
        report.last_sequence = sequence
        expected, previous = sequence + 1, row["entry_hash"]
    head_sequence = int(head.sequence) if head else 0
    if head_sequence != expected - 1 or (head and head.entry_hash != previous):
        return broken(
            expected if head_sequence >= expected else head_sequence,
            f"the log ends at entry {expected - 1} but its head names entry {head_sequence}: "
            "the newest entries were deleted",
        )
    if anchor_sequence and (
        last_purge is None
        or int(last_purge.get("purged_through_sequence", -1)) != anchor_sequence
        or last_purge.get("purged_through_hash") != anchor_hash
    ):
        return broken(
            report.first_sequence,
            f"the chain starts after entry {anchor_sequence}, but no purge entry records that",
        )
    return report


# --- export ---------------------------------------------------------------------------------------


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def entries_between(
    connection: sa.Connection, start: dt.datetime | None, end: dt.datetime | None
) -> Iterator[dict[str, Any]]:
    """Entries with ``start <= accessed_at < end`` in chain order, as exported."""
    query = sa.select(*(access_log.c[name] for name in EXPORT_COLUMNS)).order_by(
        access_log.c.sequence
    )
    if start is not None:
        query = query.where(access_log.c.accessed_at >= start)
    if end is not None:
        query = query.where(access_log.c.accessed_at < end)
    for row in connection.execution_options(yield_per=5_000).execute(query).mappings():
        entry = dict(row)
        entry["accessed_at"] = _aware(entry["accessed_at"]).isoformat(timespec="microseconds")
        yield entry


def write_export(entries: Iterator[dict[str, Any]], handle: TextIO, form: str) -> int:
    """JSON lines (one entry per line, as stored, hashes included) or CSV; returns the count."""
    count = 0
    if form == "csv":
        writer = csv.DictWriter(handle, fieldnames=list(EXPORT_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for entry in entries:
            writer.writerow({k: "" if v is None else v for k, v in entry.items()})
            count += 1
        return count
    for entry in entries:
        handle.write(json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n")
        count += 1
    return count


def verify_excerpt(entries: list[dict[str, Any]]) -> str | None:
    """Check an exported excerpt on its own: each entry's hash, and the links between
    consecutive entries. None when it holds, else the first problem. (A gap between two
    entries of an excerpt is expected where the time filter left entries out.)"""
    previous: dict[str, Any] | None = None
    for entry in entries:
        typed = dict(entry)
        for name in ("sequence", "rows", "subject_count"):
            if typed.get(name) not in (None, ""):
                typed[name] = int(typed[name])
            elif name == "subject_count":
                typed[name] = None
        for name in CONTENT_COLUMNS:
            if typed.get(name) == "" and name not in ("source_system", "batch_id"):
                typed[name] = None
        typed["accessed_at"] = dt.datetime.fromisoformat(str(typed["accessed_at"]))
        if entry_hash(typed["previous_hash"], typed) != typed["entry_hash"]:
            return f"entry {typed['sequence']} does not match its hash"
        if (
            previous is not None
            and typed["sequence"] == previous["sequence"] + 1
            and typed["previous_hash"] != previous["entry_hash"]
        ):
            return f"entry {typed['sequence']} does not follow entry {previous['sequence']}"
        previous = typed
    return None


# --- retention ------------------------------------------------------------------------------------


@dataclass
class PurgeReport:
    purged: int
    purged_through_sequence: int | None
    cutoff: dt.datetime
    checkpoint_sequence: int | None = None


def purge(connection: sa.Connection, days: int, now: dt.datetime) -> PurgeReport:
    """Delete entries older than ``days`` (oldest first, whole prefix of the chain) and record
    the purge as an entry; inside the caller's transaction, under the chain's lock."""
    cutoff = now - dt.timedelta(days=days)
    lock_head(connection)
    first_kept = connection.execute(
        sa.select(sa.func.min(access_log.c.sequence)).where(access_log.c.accessed_at >= cutoff)
    ).scalar()
    through = connection.execute(
        sa.select(sa.func.max(access_log.c.sequence)).where(
            access_log.c.sequence < first_kept if first_kept is not None else sa.true()
        )
    ).scalar()
    if through is None:
        return PurgeReport(0, None, cutoff)
    last = connection.execute(
        sa.select(access_log.c.entry_hash).where(access_log.c.sequence == through)
    ).scalar_one()
    drop_guard(connection, DELETE_GUARD)  # back before this transaction commits
    purged = connection.execute(
        access_log.delete().where(access_log.c.sequence <= through)
    ).rowcount
    install_append_only(connection, [DELETE_GUARD])
    connection.execute(
        access_log_head.update()
        .where(access_log_head.c.head_id == ACCESS_LOG_HEAD_ID)
        .values(anchor_sequence=int(through), anchor_hash=last)
    )
    actor = current_actor()
    entry = append_entry(
        connection,
        {
            "user_name": actor.name,
            "process": f"{actor.channel}:{PURGED_ACTION}",
            "action": PURGED_ACTION,
            "purpose": "retention",
            "source_system": "",
            "batch_id": "",
            "rows": int(purged),
            "detail": json.dumps(
                {
                    "purged_through_sequence": int(through),
                    "purged_through_hash": last,
                    "cutoff": cutoff.isoformat(),
                    "retention_days": days,
                },
                sort_keys=True,
            ),
        },
    )
    return PurgeReport(int(purged), int(through), cutoff, entry["sequence"])


# --- who looked at this patient -------------------------------------------------------------------


@dataclass
class PatientAccesses:
    pseudonyms: list[str]
    # entries naming one of the pseudonyms
    listed: list[dict[str, Any]] = field(default_factory=list)
    bulk: list[dict[str, Any]] = field(default_factory=list)  # whole-batch / all-patient accesses


def pseudonyms_of_identity_number(
    connection: sa.Connection, key: bytes, number: str
) -> tuple[list[str], set[str]]:
    """The pseudonyms under which a person's rows appear: every core patient row carrying this
    (normalised) identity number, as its own or as a secondary identifier, and their systems.
    The number is used in this query only; it is never logged or returned."""
    from etl.core.pseudonym import pseudonym

    patient, identifier = ENTITY_TABLES["patient"], ENTITY_TABLES["patient_identifier"]
    ids = {
        *connection.execute(
            sa.select(patient.c.patient_id).where(patient.c.identity_number == number)
        ).scalars(),
        *connection.execute(
            sa.select(identifier.c.patient_id).where(identifier.c.identity_number == number)
        ).scalars(),
    }
    rows = connection.execute(
        sa.select(patient.c.source_system, patient.c.source_key).where(
            patient.c.patient_id.in_(sorted(ids))
        )
    ).all()
    names = sorted({pseudonym(key, system, source_key) for system, source_key in rows})
    return names, {system for system, _ in rows}


def accesses_of(
    connection: sa.Connection, pseudonyms: list[str], systems: set[str] | None = None
) -> PatientAccesses:
    """Entries that listed one of these pseudonyms, and the bulk accesses that covered them:
    every-patient accesses, and whole-batch accesses of the patient's ``systems``."""
    found = PatientAccesses(pseudonyms=sorted(set(pseudonyms)))
    if not found.pseudonyms:
        return found
    wanted = set(found.pseudonyms)
    listed = sa.select(access_log).where(
        access_log.c.subject_scope == SCOPE_LISTED,
        sa.or_(*(access_log.c.subjects.contains(f'"{p}"') for p in found.pseudonyms)),
    )
    for row in connection.execute(listed.order_by(access_log.c.sequence)).mappings():
        if wanted & set(json.loads(row["subjects"] or "[]")):
            found.listed.append(_shown(row))
    covers = access_log.c.subject_scope == SCOPE_ALL
    if systems:
        covers = covers | (
            (access_log.c.subject_scope == SCOPE_BATCH)
            & access_log.c.source_system.in_(sorted(systems))
        )
    bulk = sa.select(access_log).where(covers)
    found.bulk = [
        _shown(r) for r in connection.execute(bulk.order_by(access_log.c.sequence)).mappings()
    ]
    return found


def _shown(row: sa.RowMapping) -> dict[str, Any]:
    return {
        "sequence": row["sequence"],
        "accessed_at": _aware(row["accessed_at"]).isoformat(timespec="seconds"),
        "user_name": row["user_name"],
        "action": row["action"],
        "purpose": row["purpose"],
        "source_system": row["source_system"],
        "entity": row["entity"],
        "batch_id": row["batch_id"],
        "rows": row["rows"],
        "subject_scope": row["subject_scope"],
    }
