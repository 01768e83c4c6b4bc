"""The coexistence feed: the core's changes to shared patients, queued per legacy system and
delivered over MLLP with their acknowledgements.

**Who is sent what.** A *shared* person has a patient row in a system the core now owns (its
waves are cut over; identity resolution links the rows, a group still waiting for a steward's
review is not a person yet and is left out) and rows in a legacy system that still serves them
(:func:`etl.coexistence.serving.serves`). The core's record of the person is its patient row in
the first core-owned system (by name): the new core system keeps it. Each serving system gets

- ``ADT^A31`` with the person's demographics, and
- ``ADT^A08`` per care contact of the person in the core-owned systems (PID + PV1), if the
  system keeps contacts itself (it has encounter rows in the core),

naming the patient by the system's own identifiers (:mod:`etl.coexistence.hl7v2`).

**When.** Per target (system, person[, encounter]) the feed keeps the hash of the state last
queued. A target met for the first time is a *baseline* (recorded, nothing sent) when the legacy
system already has it: a person's demographics as migrated, a contact a migration batch loaded;
so neither the feed's first run nor a later go-live that makes more people shared sends history.
A contact the core created itself (its row came from no migration batch) is news and is sent.
From then on a state whose hash differs is queued once, superseding an older one still
undelivered (an A31 or A08 carries the whole state, so only the newest matters and order is
kept). Re-running queues nothing new: the feed is idempotent.

**Protected identity and spärr fail closed.** A person with any level of protected identity on
any of their rows, and a blocked contact, gets no message body at all: the entry is *held* (with
its hash, so it is held once per change) for a steward to carry over by hand.

**Delivery.** Per system, in queue order, to its endpoint (an allowed host only). ``AA`` acks;
``AE``/``AR`` fail the message with the receiver's reason; no connection or no ACK in time leaves
it queued with a doubling backoff and stops that system's delivery for this run (nothing
overtakes it), up to the configured attempts, then it fails, visibly. A retry carries the same
control id, so a receiver can drop a repeat.

**Stop.** A system none of whose waves is live any more (its last wave cut over) stops: its
undelivered messages are closed with the reason, never deleted.

Logs and results name systems, control ids, states and pseudonyms; never message content.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa

from etl.batch import utc_now
from etl.coexistence import hl7v2, mllp
from etl.coexistence.serving import Coexistence, is_core_owned, serves
from etl.core import audit
from etl.core.database import core_engine
from etl.core.identity_tables import person, person_link
from etl.core.pseudonym import pseudonym, pseudonym_key
from etl.core.tables import (
    ENTITY_TABLES,
    coexistence_message,
    coexistence_subject,
    coexistence_system,
    load_batch,
)
from etl.cutover.plan import load_plan
from etl.identity.resolve import RULE_PENDING_REVIEW
from etl.settings import Settings

logger = logging.getLogger(__name__)

QUEUED, SENT, ACKED, FAILED, HELD, SUPERSEDED, CLOSED = (
    "queued",
    "sent",
    "acked",
    "failed",
    "held",
    "superseded",
    "closed",
)
STATES = (QUEUED, SENT, ACKED, FAILED, HELD, SUPERSEDED, CLOSED)
# Waiting for delivery: queued, or sent without an ACK (a run that died in between).
DUE = (QUEUED, SENT)
PURPOSE = "coexistence feed"
# Reserve numbers this migration issued: no legacy system has ever seen one.
_NEVER_IN_LEGACY = {"reservnummer_vgr_issued"}
_DEMOGRAPHICS = (
    "family_name",
    "given_name",
    "sex",
    "birth_date",
    "deceased_date",
    "address_line",
    "postal_code",
    "city",
)
_CHUNK = 5_000  # ids per IN list
_patient = ENTITY_TABLES["patient"]
_identifier = ENTITY_TABLES["patient_identifier"]
_encounter = ENTITY_TABLES["encounter"]


@dataclass
class SystemRun:
    """What one run did for one target system: counts, states and control ids only."""

    system: str
    primed: int = 0
    queued: int = 0
    held: int = 0
    superseded: int = 0
    acked: int = 0
    failed: int = 0
    retrying: int = 0
    closed: int = 0
    stopped: str | None = None
    refused: str | None = None  # why nothing was delivered (no endpoint, host not allowed)


@dataclass
class Target:
    """One message's subject and content, before it is queued."""

    system: str
    subject_key: str
    event: str
    person_id: str
    encounter_id: str | None
    pseudonym: str
    content_hash: str
    outbound: hl7v2.Outbound | None  # None: held (protected identity, blocked contact)
    held_reason: str | None = None
    # Known to the legacy systems as migrated (a person's demographics, a contact a migration
    # batch loaded): when first met it is a baseline. A contact the core created is news.
    is_migrated: bool = True


@dataclass
class _Person:
    person_id: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    def rows_of(self, system: str) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["source_system"] == system]


def _aware(moment: dt.datetime) -> dt.datetime:
    """A stored time as UTC-aware (SQLite gives back naive UTC, PostgreSQL aware)."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _digest(content: object) -> str:
    text = json.dumps(content, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- who is shared, and what the core says about them -------------------------------------------


def _shared_persons(connection: sa.Connection, coexistence: Coexistence) -> list[_Person]:
    """Persons with a row in a core-owned system, with all their patient rows (any system)."""
    owned = [s for s in coexistence.waves_of_system if is_core_owned(coexistence, s)]
    if not owned:
        return []
    link = person_link.alias("link")
    owned_persons = (
        sa.select(link.c.person_id)
        .join(_patient, _patient.c.patient_id == link.c.patient_id)
        .where(link.c.is_active.is_(True), _patient.c.source_system.in_(owned))
    )
    columns = [
        _patient.c.patient_id,
        _patient.c.source_system,
        _patient.c.source_key,
        _patient.c.identity_number,
        _patient.c.identity_kind,
        _patient.c.protected_identity,
        *(_patient.c[name] for name in _DEMOGRAPHICS),
    ]
    query = (
        sa.select(person_link.c.person_id, person_link.c.rule, *columns)
        .join(_patient, _patient.c.patient_id == person_link.c.patient_id)
        .where(person_link.c.is_active.is_(True), person_link.c.person_id.in_(owned_persons))
        .order_by(person_link.c.person_id, _patient.c.source_system, _patient.c.patient_id)
    )
    persons: dict[str, _Person] = {}
    pending: set[str] = set()
    for row in connection.execute(query):
        item = dict(row._mapping)
        if item["rule"] == RULE_PENDING_REVIEW:
            pending.add(item["person_id"])
        persons.setdefault(item["person_id"], _Person(item["person_id"])).rows.append(item)
    protected = _protected_persons(connection, list(persons))
    for person_id in protected:
        for patient_row in persons[person_id].rows:
            if (patient_row["protected_identity"] or "none") == "none":
                patient_row["protected_identity"] = "person"  # the resolved person's level
    return [p for key, p in persons.items() if key not in pending]


def _protected_persons(connection: sa.Connection, person_ids: list[str]) -> set[str]:
    """Persons whose resolved identity (the strictest of their patients) is protected."""
    found: set[str] = set()
    for chunk in _chunks(person_ids, _CHUNK):
        query = sa.select(person.c.person_id).where(
            person.c.is_active.is_(True),
            person.c.person_id.in_(chunk),
            sa.func.coalesce(person.c.protected_identity, "unknown") != "none",
        )
        found.update(connection.execute(query).scalars())
    return found


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _secondary_identifiers(
    connection: sa.Connection, patient_ids: Sequence[str]
) -> dict[str, list[hl7v2.Identifier]]:
    """The numbers each patient row recorded beside its primary one, read in chunks (one query
    per 5,000 patients, not one per person: ``patient_id`` is not indexed there)."""
    found: dict[str, list[hl7v2.Identifier]] = defaultdict(list)
    for chunk in _chunks(sorted(set(patient_ids)), _CHUNK):
        query = (
            sa.select(
                _identifier.c.patient_id, _identifier.c.identity_number, _identifier.c.identity_kind
            )
            .where(_identifier.c.patient_id.in_(chunk))
            .order_by(_identifier.c.identity_kind, _identifier.c.identity_number)
        )
        for patient_id, number, kind in connection.execute(query):
            if number and kind not in _NEVER_IN_LEGACY:
                found[patient_id].append(hl7v2.Identifier(number, kind))
    return found


def _identifiers(
    rows: list[dict[str, Any]], secondary: dict[str, list[hl7v2.Identifier]]
) -> list[hl7v2.Identifier]:
    """The target system's own identifiers for the patient: its source keys, the identity
    numbers on its rows and the secondary numbers it recorded (never a number it has not seen)."""
    found: list[hl7v2.Identifier] = [hl7v2.Identifier(r["source_key"], "source_key") for r in rows]
    for row in rows:
        if row["identity_number"] and row["identity_kind"] not in _NEVER_IN_LEGACY:
            found.append(hl7v2.Identifier(row["identity_number"], row["identity_kind"] or ""))
        found.extend(secondary.get(row["patient_id"], []))
    return list(dict.fromkeys(found))


def _is_protected(rows: Iterable[dict[str, Any]]) -> bool:
    """Fail closed: any level, or an unknown one, on any row of the person."""
    return any((row["protected_identity"] or "unknown") != "none" for row in rows)


def _demographics(master: dict[str, Any]) -> hl7v2.Demographics:
    return hl7v2.Demographics(**{name: master[name] for name in _DEMOGRAPHICS})


def _contacts(
    connection: sa.Connection, patient_ids: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """Each patient row's care contacts, with whether a migration batch loaded them; in chunks."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for chunk in _chunks(sorted(set(patient_ids)), _CHUNK):
        query = (
            sa.select(
                _encounter.c.patient_id,
                _encounter.c.encounter_id,
                _encounter.c.encounter_class,
                _encounter.c.care_unit_hsa_id,
                _encounter.c.started_at,
                _encounter.c.ended_at,
                _encounter.c.is_blocked,
                sa.exists()
                .where(load_batch.c.batch_id == _encounter.c.batch_id)
                .label("is_migrated"),
            )
            .where(_encounter.c.patient_id.in_(chunk))
            .order_by(_encounter.c.encounter_id)
        )
        for row in connection.execute(query):
            contact = dict(row._mapping)
            contact["is_migrated"] = bool(contact["is_migrated"])
            found[contact.pop("patient_id")].append(contact)
    return found


def _systems_with_contacts(connection: sa.Connection, systems: list[str]) -> set[str]:
    found = set()
    for system in systems:
        query = sa.select(_encounter.c.source_system).where(_encounter.c.source_system == system)
        if connection.execute(query.limit(1)).first() is not None:
            found.add(system)
    return found


def targets(connection: sa.Connection, coexistence: Coexistence, key: bytes) -> list[Target]:
    """Every message the core's current state calls for, one per (system, person[, contact])."""
    live = coexistence.live_systems()
    keeps_contacts = _systems_with_contacts(connection, live)
    persons = _shared_persons(connection, coexistence)
    owned_of = {
        shared.person_id: [r for r in shared.rows if is_core_owned(coexistence, r["source_system"])]
        for shared in persons
    }
    secondary = _secondary_identifiers(
        connection, [r["patient_id"] for p in persons for r in p.rows if r["source_system"] in live]
    )
    contacts = (
        _contacts(connection, [r["patient_id"] for rows in owned_of.values() for r in rows])
        if keeps_contacts
        else {}
    )
    found: list[Target] = []
    for shared in persons:
        owned = owned_of[shared.person_id]
        for system in live:
            rows = shared.rows_of(system)
            if not owned or not serves(coexistence, system, [r["patient_id"] for r in rows]):
                continue
            about = _About(
                system=system,
                person_id=shared.person_id,
                pseudonym=pseudonym(key, system, rows[0]["source_key"]),
                identifiers=_identifiers(rows, secondary),
                master=owned[0],
                is_protected=_is_protected(shared.rows),
            )
            found.append(about.target(None))
            if system in keeps_contacts:
                for row in owned:
                    found.extend(about.target(c) for c in contacts.get(row["patient_id"], []))
    return found


@dataclass(frozen=True)
class _About:
    """One shared person as one serving system knows them."""

    system: str
    person_id: str
    pseudonym: str
    identifiers: list[hl7v2.Identifier]
    master: dict[str, Any]
    is_protected: bool

    def target(self, contact: dict[str, Any] | None) -> Target:
        """The A31 (no contact) or the A08 of one contact; held when it may not leave."""
        state: dict[str, Any] = {"identifiers": [(i.kind, i.value) for i in self.identifiers]}
        is_migrated = True if contact is None else bool(contact["is_migrated"])
        if contact is None:
            state["demographics"] = {n: self.master[n] for n in _DEMOGRAPHICS}
        else:
            contact = {k: v for k, v in contact.items() if k != "is_migrated"}
            state["contact"] = contact
        state["protected"] = self.is_protected
        target = _target(
            self.system,
            self.person_id,
            contact,
            self.pseudonym,
            state,
            self.is_protected,
            bool(contact and contact["is_blocked"]),
        )
        target.is_migrated = is_migrated
        if target.held_reason is None:
            pv1 = None
            if contact is not None:
                pv1 = hl7v2.Contact(**{k: v for k, v in contact.items() if k != "is_blocked"})
            target.outbound = hl7v2.Outbound(
                target.event,
                self.system,
                uuid.uuid4().hex[:20],
                self.identifiers,
                _demographics(self.master),
                pv1,
            )
        return target


def _target(
    system: str,
    person_id: str,
    contact: dict[str, Any] | None,
    subject: str,
    state: dict[str, Any],
    is_protected: bool,
    is_blocked: bool = False,
) -> Target:
    event = hl7v2.A08 if contact else hl7v2.A31
    encounter_id = contact["encounter_id"] if contact else None
    held = (
        "protected identity: held for a steward, no name or address leaves the core"
        if is_protected
        else "blocked contact (spärr): held for a steward"
        if is_blocked
        else None
    )
    return Target(
        system=system,
        subject_key=f"{person_id}/{encounter_id}" if encounter_id else person_id,
        event=event,
        person_id=person_id,
        encounter_id=encounter_id,
        pseudonym=subject,
        content_hash=_digest({"event": event, **state}),
        outbound=None,
        held_reason=held,
    )


# --- the queue ---------------------------------------------------------------------------------


def _systems(connection: sa.Connection) -> dict[str, dict[str, Any]]:
    return {
        row.target_system: dict(row._mapping)
        for row in connection.execute(sa.select(coexistence_system))
    }


def stop_systems(
    connection: sa.Connection, coexistence: Coexistence, now: dt.datetime
) -> dict[str, tuple[str, int]]:
    """Stop the feed to systems with no live wave left; close their undelivered messages (kept,
    with the reason). Returns each stopped system's reason and how many messages it closed."""
    stopped: dict[str, tuple[str, int]] = {}
    for system, row in _systems(connection).items():
        live = coexistence.is_live(system)
        if row["stopped_at"] is None and not live:
            reason = (
                f"stopped: {system} serves no units any more ({coexistence.last_waves(system)})"
            )
            connection.execute(
                coexistence_system.update()
                .where(coexistence_system.c.target_system == system)
                .values(stopped_at=now, stop_reason=reason)
            )
            closed = connection.execute(
                coexistence_message.update()
                .where(
                    coexistence_message.c.target_system == system,
                    coexistence_message.c.state.in_(DUE),
                )
                .values(state=CLOSED, reason=reason, next_attempt_at=None)
            )
            stopped[system] = (reason, int(closed.rowcount or 0))
            logger.info("coexistence feed to %s stopped: %s", system, reason)
        elif row["stopped_at"] is not None and live:
            # Its wave was rolled back: it serves units again; the baselines still hold.
            connection.execute(
                coexistence_system.update()
                .where(coexistence_system.c.target_system == system)
                .values(stopped_at=None, stop_reason=None)
            )
    return stopped


def enqueue(
    connection: sa.Connection, found: list[Target], now: dt.datetime, runs: dict[str, SystemRun]
) -> None:
    """Queue each target whose state differs from the last one queued; prime new systems."""
    systems = _systems(connection)
    current = {
        (row.target_system, row.subject_key): row.content_hash
        for row in connection.execute(
            sa.select(
                coexistence_subject.c.target_system,
                coexistence_subject.c.subject_key,
                coexistence_subject.c.content_hash,
            )
        )
    }
    sequence = int(
        connection.execute(
            sa.select(sa.func.coalesce(sa.func.max(coexistence_message.c.sequence), 0))
        ).scalar_one()
    )
    by_system: dict[str, list[Target]] = defaultdict(list)
    for target in found:
        by_system[target.system].append(target)
    for system, items in sorted(by_system.items()):
        run = runs.setdefault(system, SystemRun(system))
        created: list[str] = []
        for target in items:
            before = current.get((system, target.subject_key))
            if before == target.content_hash:
                continue
            is_baseline = before is None and target.is_migrated
            if not _record_subject(connection, target, before, now, is_baseline):
                continue  # another run queued this very change first
            if is_baseline:
                run.primed += 1
                continue
            superseded, backing_off_until = _supersede(connection, target)
            run.superseded += superseded
            sequence += 1
            _insert_message(connection, target, sequence, max(now, backing_off_until), run)
            created.append(target.pseudonym)
        if system not in systems:
            connection.execute(
                coexistence_system.insert().values(target_system=system, primed_at=now)
            )
        if created:
            audit.record_access_on(
                connection,
                "coexistence_queue",
                system,
                audit.NOT_APPLICABLE,
                run.queued + run.held,
                "patient",
                purpose=PURPOSE,
                subjects=created,
                detail={"queued": run.queued, "held": run.held},
            )


def _record_subject(
    connection: sa.Connection,
    target: Target,
    before: str | None,
    now: dt.datetime,
    is_baseline: bool,
) -> bool:
    """Move the subject's hash from ``before`` to the target's (compare-and-set: two runs at
    once cannot both queue the same change)."""
    values = {"content_hash": target.content_hash, "updated_at": now}
    if is_baseline:
        values["acked_hash"] = target.content_hash  # what the system already has
    if before is None:
        connection.execute(
            coexistence_subject.insert().values(
                target_system=target.system,
                subject_key=target.subject_key,
                event=target.event,
                person_id=target.person_id,
                encounter_id=target.encounter_id,
                **values,
            )
        )
        return True
    result = connection.execute(
        coexistence_subject.update()
        .where(
            coexistence_subject.c.target_system == target.system,
            coexistence_subject.c.subject_key == target.subject_key,
            coexistence_subject.c.content_hash == before,
        )
        .values(values)
    )
    return result.rowcount == 1


def _supersede(connection: sa.Connection, target: Target) -> tuple[int, dt.datetime]:
    """Replace the subject's undelivered messages; returns how many, and until when the one
    being retried was backing off (its successor waits as long: the receiver is still down)."""
    due = (
        sa.select(coexistence_message.c.next_attempt_at)
        .where(
            coexistence_message.c.target_system == target.system,
            coexistence_message.c.subject_key == target.subject_key,
            coexistence_message.c.state.in_(DUE),
            coexistence_message.c.attempts > 0,
        )
        .order_by(coexistence_message.c.next_attempt_at.desc())
    )
    waiting = connection.execute(due).scalars().first()
    result = connection.execute(
        coexistence_message.update()
        .where(
            coexistence_message.c.target_system == target.system,
            coexistence_message.c.subject_key == target.subject_key,
            coexistence_message.c.state.in_(DUE),
        )
        .values(state=SUPERSEDED, reason="a newer state of the same subject replaced it")
    )
    return int(result.rowcount or 0), _aware(waiting) if waiting else dt.datetime.min.replace(
        tzinfo=dt.UTC
    )


def _insert_message(
    connection: sa.Connection, target: Target, sequence: int, now: dt.datetime, run: SystemRun
) -> None:
    if target.outbound is None:
        control_id = uuid.uuid4().hex[:20]
        message, state, reason = None, HELD, target.held_reason
        run.held += 1
    else:
        control_id = target.outbound.control_id
        message, state, reason = hl7v2.build(target.outbound, now), QUEUED, None
        run.queued += 1
    connection.execute(
        coexistence_message.insert().values(
            control_id=control_id,
            target_system=target.system,
            sequence=sequence,
            subject_key=target.subject_key,
            event=target.event,
            person_id=target.person_id,
            encounter_id=target.encounter_id,
            subject_pseudonym=target.pseudonym,
            content_hash=target.content_hash,
            message=message,
            state=state,
            attempts=0,
            created_at=now,
            next_attempt_at=now if state == QUEUED else None,
            reason=reason,
        )
    )
    logger.info(
        "coexistence %s %s for %s: %s (%s)",
        target.event,
        state,
        target.system,
        control_id,
        target.pseudonym,
    )


# --- delivery ----------------------------------------------------------------------------------


def deliver(
    settings: Settings,
    engine: sa.Engine,
    coexistence: Coexistence,
    now: dt.datetime,
    runs: dict[str, SystemRun],
) -> None:
    """Deliver every due message of every live system, in queue order, one transaction each."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(coexistence_system.c.target_system).where(
                coexistence_system.c.stopped_at.is_(None)
            )
        )
        systems = sorted(rows.scalars())
    for system in systems:
        if coexistence.is_live(system):
            _deliver_system(
                settings, engine, system, now, runs.setdefault(system, SystemRun(system))
            )


def _due(engine: sa.Engine, system: str) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        query = (
            sa.select(
                coexistence_message.c.control_id,
                coexistence_message.c.subject_key,
                coexistence_message.c.subject_pseudonym,
                coexistence_message.c.content_hash,
                coexistence_message.c.attempts,
                coexistence_message.c.next_attempt_at,
            )
            .where(
                coexistence_message.c.target_system == system,
                coexistence_message.c.state.in_(DUE),
            )
            .order_by(coexistence_message.c.sequence)
        )
        return [dict(row._mapping) for row in connection.execute(query)]


def _deliver_system(
    settings: Settings, engine: sa.Engine, system: str, now: dt.datetime, run: SystemRun
) -> None:
    due = _due(engine, system)
    if not due:
        return
    try:
        endpoint = mllp.endpoint_of(settings, system)
    except mllp.EndpointError as error:
        run.refused = str(error)
        logger.warning("coexistence feed to %s not delivered: %s", system, error)
        return
    delivered: list[str] = []
    for item in due:
        next_at = item["next_attempt_at"]
        if next_at is not None and _naive_utc(next_at) > _naive_utc(now):
            break  # backing off: nothing overtakes the oldest message
        if not _deliver_one(settings, engine, endpoint, item, now, run):
            break  # unreachable: try the rest next time, in order
        delivered.append(item["subject_pseudonym"])
    if delivered:
        audit.record_access(
            settings,
            "coexistence_send",
            system,
            audit.NOT_APPLICABLE,
            len(delivered),
            "patient",
            purpose=PURPOSE,
            subjects=delivered,
            detail={"acked": run.acked, "failed": run.failed, "endpoint": str(endpoint)},
        )


def _claim(engine: sa.Engine, item: dict[str, Any], now: dt.datetime) -> str | None:
    """Take the message for one attempt (state sent, one more attempt), or None when another run
    took it first: the attempt count is the version compared, so two runs never both send it."""
    with engine.begin() as connection:
        claimed = connection.execute(
            coexistence_message.update()
            .where(
                coexistence_message.c.control_id == item["control_id"],
                coexistence_message.c.state.in_(DUE),
                coexistence_message.c.attempts == item["attempts"],
            )
            .values(state=SENT, attempts=item["attempts"] + 1, sent_at=now)
        )
        if claimed.rowcount != 1:
            return None
        return str(
            connection.execute(
                sa.select(coexistence_message.c.message).where(
                    coexistence_message.c.control_id == item["control_id"]
                )
            ).scalar_one()
        )


def _deliver_one(
    settings: Settings,
    engine: sa.Engine,
    endpoint: mllp.Endpoint,
    item: dict[str, Any],
    now: dt.datetime,
    run: SystemRun,
) -> bool:
    """One attempt; True when the receiver answered (acked or refused), False to stop here."""
    control_id = item["control_id"]
    attempts = int(item["attempts"]) + 1
    text = _claim(engine, item, now)
    if text is None:
        logger.info("coexistence %s to %s: taken by another run", control_id, run.system)
        return False
    try:
        ack = mllp.send(endpoint, text, settings.coexistence_ack_timeout_seconds)
        if ack.control_id != control_id:
            raise mllp.DeliveryError(f"the ACK answers {ack.control_id[:24]}, not this message")
    except mllp.DeliveryError as error:
        _record_retry(settings, engine, item, attempts, now, str(error), run)
        return False
    values: dict[str, Any] = {
        "ack_code": ack.code,
        "ack_at": utc_now(),
        "next_attempt_at": None,
    }
    accepted = ack.code in {hl7v2.ACCEPTED, "CA"}
    with engine.begin() as connection:
        if accepted:
            values.update(state=ACKED, reason=None)
            connection.execute(
                coexistence_subject.update()
                .where(
                    coexistence_subject.c.target_system == run.system,
                    coexistence_subject.c.subject_key == item["subject_key"],
                )
                .values(acked_hash=item["content_hash"], updated_at=now)
            )
            run.acked += 1
        else:
            values.update(state=FAILED, reason=f"{ack.code} from {run.system}: {ack.text}"[:500])
            run.failed += 1
        connection.execute(
            coexistence_message.update()
            .where(coexistence_message.c.control_id == control_id)
            .values(values)
        )
    logger.info("coexistence %s to %s: %s", control_id, run.system, ack.code)
    return True


def _record_retry(
    settings: Settings,
    engine: sa.Engine,
    item: dict[str, Any],
    attempts: int,
    now: dt.datetime,
    error: str,
    run: SystemRun,
) -> None:
    exhausted = attempts >= settings.coexistence_max_attempts
    backoff = settings.coexistence_retry_seconds * 2 ** (attempts - 1)
    values: dict[str, Any] = {
        "state": FAILED if exhausted else QUEUED,
        "next_attempt_at": None if exhausted else now + dt.timedelta(seconds=backoff),
        "reason": f"no ACK after {attempts} attempts: {error}" if exhausted else error,
    }
    with engine.begin() as connection:
        connection.execute(
            coexistence_message.update()
            .where(coexistence_message.c.control_id == item["control_id"])
            .values(values)
        )
    if exhausted:
        run.failed += 1
    else:
        run.retrying += 1
    logger.warning(
        "coexistence %s to %s: attempt %d, %s", item["control_id"], run.system, attempts, error
    )


# --- one run, and its status -------------------------------------------------------------------


def run(
    settings: Settings, now: dt.datetime | None = None, send: bool = True
) -> dict[str, SystemRun]:
    """Stop what no longer serves, queue the core's changes, deliver what is due."""
    moment = now or utc_now()
    plan = load_plan(settings.mappings_dir, settings.wave_plan)
    engine = core_engine(settings.resolved_core_url)
    key = pseudonym_key(settings)
    runs: dict[str, SystemRun] = {}
    with engine.begin() as connection:
        coexistence = Coexistence.read(connection, plan)
        for system, (reason, closed) in stop_systems(connection, coexistence, moment).items():
            runs[system] = SystemRun(system, stopped=reason, closed=closed)
        enqueue(connection, targets(connection, coexistence, key), moment, runs)
    if send:
        deliver(settings, engine, coexistence, moment, runs)
    return runs


def run_counts(settings: Settings, now: dt.datetime | None = None) -> dict[str, dict[str, Any]]:
    """One run, as plain values per system (what an Airflow task hands on: counts and reasons)."""
    return {system: asdict(result) for system, result in run(settings, now).items()}


def status(settings: Settings) -> dict[str, Any]:
    """Per system: live or stopped, endpoint, messages by state; the failed and held messages
    by control id, pseudonym and ACK code. Never message content."""
    plan = load_plan(settings.mappings_dir, settings.wave_plan)
    engine = core_engine(settings.resolved_core_url)
    with engine.connect() as connection:
        coexistence = Coexistence.read(connection, plan)
        systems = _systems(connection)
        counts: dict[str, dict[str, int]] = defaultdict(dict)
        query = sa.select(
            coexistence_message.c.target_system, coexistence_message.c.state, sa.func.count()
        ).group_by(coexistence_message.c.target_system, coexistence_message.c.state)
        for system, state, count in connection.execute(query):
            counts[system][state] = int(count)
        attention = [
            dict(row._mapping)
            for row in connection.execute(
                sa.select(
                    coexistence_message.c.control_id,
                    coexistence_message.c.target_system,
                    coexistence_message.c.event,
                    coexistence_message.c.subject_pseudonym,
                    coexistence_message.c.state,
                    coexistence_message.c.attempts,
                    coexistence_message.c.ack_code,
                )
                .where(coexistence_message.c.state.in_((FAILED, HELD)))
                .order_by(coexistence_message.c.sequence)
            )
        ]
    rows = []
    for system in sorted(set(systems) | set(counts)):
        row = systems.get(system, {})
        rows.append(
            {
                "system": system,
                "live": coexistence.is_live(system),
                "primed_at": row.get("primed_at"),
                "stopped_at": row.get("stopped_at"),
                "stop_reason": row.get("stop_reason"),
                "endpoint": settings.coexistence_endpoints.get(system),
                "messages": {state: counts[system].get(state, 0) for state in STATES},
            }
        )
    return {"systems": rows, "attention": attention}
