"""The coexistence feed end to end, on SQLite and on the real PostgreSQL.

Per database, once (module scope): the small estate's Skaraborg emergency department (akut_skas,
wave w1_skaraborg) and ELVIS (wave w2_hospital_care) migrated by the pipeline, identities
resolved. Each test then starts from w1_skaraborg cut over and an empty feed: the core now owns
the emergency department's rows, ELVIS still serves the same people. A test changes the core
the way the new core system would (a shared person's address on the core-owned row, a contact's
discharge time), runs the feed and holds a real MLLP listener on 127.0.0.1 to what it received.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from dataclasses import dataclass, field
from typing import Any

import hl7
import pytest
import sqlalchemy as sa

from etl import pipeline
from etl.coexistence import feed
from etl.core.database import core_engine
from etl.core.tables import (
    ENTITY_TABLES,
    coexistence_message,
    coexistence_subject,
    coexistence_system,
    cutover_transition,
    cutover_wave,
)
from etl.cutover import ledger
from etl.identity import runs
from etl.settings import Settings
from tests.cores import BOTH_CORES
from tests.mllp_listener import Listener, free_port

pytestmark = pytest.mark.integration

AS_OF = dt.date(2026, 7, 1)
CUT_OVER_SYSTEM, LEGACY_SYSTEM = "akut_skas", "elvis"
FIRST_WAVE, LEGACY_WAVE = "w1_skaraborg", "w2_hospital_care"
TO_CUT_OVER = ("initial_load", "frozen", "final_delta", "verified", "cut_over")
NEW_ADDRESS = "Coexistensgatan 16"
NOW = dt.datetime(2027, 2, 15, 8, 0, tzinfo=dt.UTC)
patient, encounter = ENTITY_TABLES["patient"], ENTITY_TABLES["encounter"]


@dataclass
class Core:
    settings: Settings
    changed: list[tuple[sa.Table, str, dict[str, Any]]] = field(default_factory=list)
    created: list[tuple[sa.Table, str]] = field(default_factory=list)

    @property
    def engine(self) -> sa.Engine:
        return core_engine(self.settings.resolved_core_url)

    def change(self, table: sa.Table, row_id: str, **values: Any) -> None:
        """Change a core row as the new core system would; undone after the test."""
        key = table.c[f"{table.name}_id"]
        with self.engine.begin() as connection:
            before = connection.execute(sa.select(table).where(key == row_id)).one()._mapping
            self.changed.append((table, row_id, {name: before[name] for name in values}))
            connection.execute(table.update().where(key == row_id).values(values))

    def create(self, table: sa.Table, **values: Any) -> None:
        """Add a core row as the new core system would (no migration batch); removed after."""
        with self.engine.begin() as connection:
            connection.execute(table.insert().values(values))
        self.created.append((table, values[f"{table.name}_id"]))

    def restore(self) -> None:
        with self.engine.begin() as connection:
            for table, row_id in self.created:
                connection.execute(table.delete().where(table.c[f"{table.name}_id"] == row_id))
            self.created.clear()
            for table, row_id, values in reversed(self.changed):
                key = table.c[f"{table.name}_id"]
                connection.execute(table.update().where(key == row_id).values(values))
        self.changed.clear()

    def cut_over(self, wave: str) -> None:
        with self.engine.begin() as connection:
            for state in TO_CUT_OVER:
                ledger.transition(connection, wave, state, actor="test")

    def reset(self) -> None:
        """No feed state, no wave moved; then the first wave cut over."""
        with self.engine.begin() as connection:
            for table in (
                coexistence_message,
                coexistence_subject,
                coexistence_system,
                cutover_transition,
                cutover_wave,
            ):
                connection.execute(table.delete())
        self.cut_over(FIRST_WAVE)

    def with_endpoint(self, endpoint: str, **settings: Any) -> Settings:
        return self.settings.model_copy(
            update={
                "coexistence_endpoints": {LEGACY_SYSTEM: endpoint},
                "coexistence_retry_seconds": 60.0,
                "coexistence_ack_timeout_seconds": 5.0,
                **settings,
            }
        )

    def shared_person(self, protected: bool = False) -> dict[str, Any]:
        """A person with a core-owned row and an ELVIS row (and a contact in the core)."""
        query = sa.text(
            "SELECT owned.patient_id AS owned_id, legacy.patient_id AS legacy_id, "
            "legacy.source_key AS legacy_key, legacy.identity_number AS legacy_number, "
            "owned_link.person_id AS person_id, owned.protected_identity AS protection "
            "FROM patient owned "
            "JOIN person_link owned_link ON owned_link.patient_id = owned.patient_id "
            "JOIN person_link legacy_link ON legacy_link.person_id = owned_link.person_id "
            "JOIN patient legacy ON legacy.patient_id = legacy_link.patient_id "
            "WHERE owned.source_system = :owned AND legacy.source_system = :legacy "
            "AND owned_link.is_active AND legacy_link.is_active "
            "AND owned_link.rule <> 'pending_review' "
            "AND EXISTS (SELECT 1 FROM encounter e WHERE e.patient_id = owned.patient_id) "
            "ORDER BY owned.patient_id"
        )
        with self.engine.connect() as connection:
            rows = [
                dict(row._mapping)
                for row in connection.execute(
                    query, {"owned": CUT_OVER_SYSTEM, "legacy": LEGACY_SYSTEM}
                )
            ]
            people = [r for r in rows if (r["protection"] != "none") == protected]
            chosen = people[0] if people else rows[-1]
            chosen["encounter_id"] = connection.execute(
                sa.select(encounter.c.encounter_id)
                .where(encounter.c.patient_id == chosen["owned_id"])
                .order_by(encounter.c.encounter_id)
                .limit(1)
            ).scalar_one()
        return chosen

    def messages(self, **where: Any) -> list[dict[str, Any]]:
        query = sa.select(coexistence_message).order_by(coexistence_message.c.sequence)
        for name, value in where.items():
            query = query.where(coexistence_message.c[name] == value)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]


@pytest.fixture(scope="module", params=BOTH_CORES)
def migrated(request, small_estate, tmp_path_factory, core_of):
    root = tmp_path_factory.mktemp(f"coexistence-{request.param}")
    estate = root / "estate"
    shutil.copytree(small_estate, estate)
    with core_of(request.param, root) as core_url, pytest.MonkeyPatch.context() as patch:
        patch.setenv("VARDFLYTT_HOME", str(root / "home"))
        patch.setenv("VARDFLYTT_ESTATE_DIR", str(estate))
        patch.setenv("VARDFLYTT_CORE_URL", core_url)
        for name in ("VARDFLYTT_LANDING_DIR", "VARDFLYTT_ALLOWED_HOSTS"):
            patch.delenv(name, raising=False)
        settings = Settings()
        for system in (CUT_OVER_SYSTEM, LEGACY_SYSTEM):
            pipeline.run_system(system, f"full-{system}", AS_OF, settings=settings)
        runs.resolve("coexistence-identity", settings)
        yield Core(settings)


@pytest.fixture
def core(migrated):
    migrated.reset()
    yield migrated
    migrated.restore()


def _start(core: Core, settings: Settings) -> dict[str, feed.SystemRun]:
    """The feed's first run for ELVIS: what it has now is the baseline; nothing is sent."""
    first = feed.run(settings, now=NOW)
    assert first[LEGACY_SYSTEM].primed > 0
    assert first[LEGACY_SYSTEM].queued == 0
    assert core.messages() == []
    return first


def _change_address_and_contact(core: Core, person: dict[str, Any]) -> None:
    core.change(patient, person["owned_id"], address_line=NEW_ADDRESS, city="Skövde")
    core.change(
        encounter, person["encounter_id"], ended_at=dt.datetime(2027, 2, 14, 16, 30, tzinfo=dt.UTC)
    )


def test_the_cores_change_reaches_the_legacy_system_once_with_its_identifiers(core):
    person = core.shared_person()
    with Listener() as listener:
        settings = core.with_endpoint(listener.endpoint)
        _start(core, settings)
        _change_address_and_contact(core, person)
        core.create(
            encounter,
            encounter_id="core-created-contact-1",
            patient_id=person["owned_id"],
            care_unit_hsa_id="SE2321000131-E000000128785",
            encounter_class="emergency",
            started_at=dt.datetime(2027, 2, 15, 7, 45, tzinfo=dt.UTC),
            is_blocked=False,
            source_system=CUT_OVER_SYSTEM,
            source_key="core-created-contact-1",
            batch_id="core-system",  # not a migration batch: the core system made it
            content_hash="-",
        )
        result = feed.run(settings, now=NOW + dt.timedelta(minutes=5))
        assert (result[LEGACY_SYSTEM].queued, result[LEGACY_SYSTEM].acked) == (3, 3)
        assert sorted(listener.events()) == ["A08", "A08", "A31"]
        # Re-running sends nothing again: the same change is never sent twice.
        again = feed.run(settings, now=NOW + dt.timedelta(minutes=10))
        assert (again[LEGACY_SYSTEM].queued, again[LEGACY_SYSTEM].acked) == (0, 0)
        assert len(listener.received) == 3

    a31 = hl7.parse(next(m for m in listener.received if "ADT^A31" in m))
    identifiers = {(str(r(1)), str(r(4)), str(r(5))) for r in a31.segment("PID")(3)}
    assert (person["legacy_key"], "ELVIS", "PI") in identifiers
    if person["legacy_number"]:
        assert any(value == person["legacy_number"] for value, _, _ in identifiers)
    assert a31.unescape(str(a31.segment("PID")(11)(1)(1))) == NEW_ADDRESS
    a08s = {
        str(a08.segment("PV1")(19)(1)(1)): a08
        for a08 in (hl7.parse(m) for m in listener.received if "ADT^A08" in m)
    }
    assert set(a08s) == {person["encounter_id"], "core-created-contact-1"}
    assert str(a08s[person["encounter_id"]].segment("PV1")(45)).startswith("20270214163000")
    assert str(a08s["core-created-contact-1"].segment("PV1")(2)) == "E"

    messages = core.messages()
    assert {m["state"] for m in messages} == {feed.ACKED}
    assert {m["ack_code"] for m in messages} == {"AA"}
    assert sorted(listener.control_ids()) == sorted(m["control_id"] for m in messages)
    with core.engine.connect() as connection:
        subjects = connection.execute(
            sa.select(coexistence_subject).where(
                coexistence_subject.c.person_id == person["person_id"]
            )
        ).all()
    assert subjects and all(s.acked_hash == s.content_hash for s in subjects)


def test_a_listener_that_is_down_gets_the_change_once_when_it_is_back(core):
    person = core.shared_person()
    port = free_port()
    settings = core.with_endpoint(f"127.0.0.1:{port}")
    _start(core, settings)
    core.change(patient, person["owned_id"], address_line=NEW_ADDRESS)
    down = feed.run(settings, now=NOW)
    assert (down[LEGACY_SYSTEM].queued, down[LEGACY_SYSTEM].retrying) == (1, 1)
    [waiting] = core.messages()
    assert (waiting["state"], waiting["attempts"]) == (feed.QUEUED, 1)
    assert "ConnectionRefusedError" in waiting["reason"]

    # A second change while it is down replaces the first (the newest state is what counts).
    core.change(patient, person["owned_id"], address_line=NEW_ADDRESS + " B")
    with Listener(port=port) as listener:
        backing_off = feed.run(settings, now=NOW + dt.timedelta(seconds=1))
        assert backing_off[LEGACY_SYSTEM].superseded == 1
        assert listener.received == []  # still backing off: nothing before its time
        back = feed.run(settings, now=NOW + dt.timedelta(minutes=5))
        assert back[LEGACY_SYSTEM].acked == 1
        feed.run(settings, now=NOW + dt.timedelta(minutes=10))
        feed.run(settings, now=NOW + dt.timedelta(hours=1))
    assert len(listener.received) == 1
    delivered = hl7.parse(listener.received[0])
    assert delivered.unescape(str(delivered.segment("PID")(11)(1)(1))) == NEW_ADDRESS + " B"
    states = [(m["state"], m["attempts"]) for m in core.messages()]
    assert states == [(feed.SUPERSEDED, 1), (feed.ACKED, 1)]


def test_attempts_are_bounded_and_a_message_that_never_got_through_is_failed_and_visible(core):
    person = core.shared_person()
    settings = core.with_endpoint(f"127.0.0.1:{free_port()}", coexistence_max_attempts=2)
    _start(core, settings)
    core.change(patient, person["owned_id"], address_line=NEW_ADDRESS)
    feed.run(settings, now=NOW)
    last = feed.run(settings, now=NOW + dt.timedelta(hours=1))
    assert last[LEGACY_SYSTEM].failed == 1
    [failed] = core.messages()
    assert (failed["state"], failed["attempts"]) == (feed.FAILED, 2)
    assert failed["reason"].startswith("no ACK after 2 attempts")
    status = feed.status(settings)
    assert [a["control_id"] for a in status["attention"]] == [failed["control_id"]]
    assert feed.run(settings, now=NOW + dt.timedelta(days=1))[LEGACY_SYSTEM].queued == 0


def test_an_application_error_fails_the_message_with_the_receivers_reason(core):
    person = core.shared_person()
    with Listener(ack_code="AE") as listener:
        settings = core.with_endpoint(listener.endpoint)
        _start(core, settings)
        core.change(patient, person["owned_id"], address_line=NEW_ADDRESS)
        result = feed.run(settings, now=NOW)
        feed.run(settings, now=NOW + dt.timedelta(hours=1))
    assert result[LEGACY_SYSTEM].failed == 1
    assert len(listener.received) == 1  # a refusal is not retried
    [failed] = core.messages()
    assert (failed["state"], failed["ack_code"]) == (feed.FAILED, "AE")
    assert "207" in failed["reason"]


def test_a_protected_persons_change_is_held_and_never_leaves_the_core(core, caplog):
    person = core.shared_person()
    core.change(patient, person["legacy_id"], protected_identity="sekretessmarkering")
    with Listener() as listener, caplog.at_level(logging.DEBUG):
        settings = core.with_endpoint(listener.endpoint)
        _start(core, settings)
        _change_address_and_contact(core, person)
        result = feed.run(settings, now=NOW)
        feed.run(settings, now=NOW + dt.timedelta(hours=1))
    assert (result[LEGACY_SYSTEM].held, result[LEGACY_SYSTEM].queued) == (2, 0)
    assert listener.received == []
    held = core.messages()
    assert {m["state"] for m in held} == {feed.HELD}
    assert all(m["message"] is None for m in held)
    assert all("protected identity" in m["reason"] for m in held)
    assert NEW_ADDRESS not in caplog.text
    assert person["legacy_key"] not in caplog.text
    status = feed.status(settings)
    assert {a["control_id"] for a in status["attention"]} == {m["control_id"] for m in held}
    assert NEW_ADDRESS not in repr(status)


def test_the_feed_to_a_system_stops_when_its_last_wave_is_cut_over(core):
    person = core.shared_person()
    settings = core.with_endpoint(f"127.0.0.1:{free_port()}")
    _start(core, settings)
    core.change(patient, person["owned_id"], address_line=NEW_ADDRESS)
    feed.run(settings, now=NOW)
    [waiting] = core.messages()
    assert waiting["state"] == feed.QUEUED

    core.cut_over(LEGACY_WAVE)
    with Listener(port=int(settings.coexistence_endpoints[LEGACY_SYSTEM].rsplit(":")[1])) as up:
        stopped = feed.run(settings, now=NOW + dt.timedelta(hours=1))
        core.change(patient, person["owned_id"], address_line=NEW_ADDRESS + " C")
        after = feed.run(settings, now=NOW + dt.timedelta(hours=2))
    assert stopped[LEGACY_SYSTEM].stopped and LEGACY_WAVE in stopped[LEGACY_SYSTEM].stopped
    assert stopped[LEGACY_SYSTEM].closed == 1
    assert LEGACY_SYSTEM not in after
    assert up.received == []
    [closed] = core.messages()  # kept, with the reason: never deleted
    assert closed["control_id"] == waiting["control_id"]
    assert closed["state"] == feed.CLOSED
    assert f"{LEGACY_WAVE} cut_over" in closed["reason"]
    [row] = feed.status(settings)["systems"]
    assert (row["live"], row["stopped_at"] is not None) == (False, True)

    # Rolling the wave back makes ELVIS serve its units again: the feed resumes from its hashes.
    with core.engine.begin() as connection:
        ledger.transition(connection, LEGACY_WAVE, ledger.ROLLED_BACK, actor="test")
    resumed = feed.run(settings, now=NOW + dt.timedelta(hours=3), send=False)
    assert resumed[LEGACY_SYSTEM].queued == 1  # the change made while it was stopped
    [row] = feed.status(settings)["systems"]
    assert (row["live"], row["stopped_at"]) == (True, None)


def test_the_command_line_runs_the_feed_and_shows_it_without_patient_data(core, cli, monkeypatch):
    person = core.shared_person()
    with Listener() as listener:
        monkeypatch.setenv(
            "VARDFLYTT_COEXISTENCE_ENDPOINTS", json.dumps({LEGACY_SYSTEM: listener.endpoint})
        )
        first = cli("coexistence", "run")
        core.change(patient, person["owned_id"], address_line=NEW_ADDRESS)
        second = cli("coexistence", "run")
        shown = cli("coexistence", "status")
    assert LEGACY_SYSTEM in first.output and "primed" in first.output
    assert len(listener.received) == 1
    [acked] = core.messages()
    assert acked["state"] == feed.ACKED
    for output in (first.output, second.output, shown.output):
        assert NEW_ADDRESS not in output
        assert person["legacy_key"] not in output.split()
    assert listener.endpoint in shown.output


def test_a_delivery_to_a_host_nobody_allowed_is_refused_and_the_message_waits(
    core, cli, monkeypatch
):
    person = core.shared_person()
    monkeypatch.setenv(
        "VARDFLYTT_COEXISTENCE_ENDPOINTS", json.dumps({LEGACY_SYSTEM: "203.0.113.9:2575"})
    )
    cli("coexistence", "run")
    core.change(patient, person["owned_id"], address_line=NEW_ADDRESS)
    refused = cli("coexistence", "run", expect=1)
    assert "not an allowed host" in refused.output
    [waiting] = core.messages()
    assert (waiting["state"], waiting["attempts"]) == (feed.QUEUED, 0)


def test_two_runs_at_once_never_both_send_one_message(core):
    person = core.shared_person()
    settings = core.with_endpoint(f"127.0.0.1:{free_port()}")
    _start(core, settings)
    core.change(patient, person["owned_id"], address_line=NEW_ADDRESS)
    assert feed.run(settings, now=NOW, send=False)[LEGACY_SYSTEM].queued == 1
    # Both runs read the queue before either sends: only the first takes the message.
    seen_by_first, seen_by_second = (
        feed._due(core.engine, LEGACY_SYSTEM),
        feed._due(core.engine, LEGACY_SYSTEM),
    )
    assert feed._claim(core.engine, seen_by_first[0], NOW) is not None
    assert feed._claim(core.engine, seen_by_second[0], NOW) is None
    [taken] = core.messages()
    assert (taken["state"], taken["attempts"]) == (feed.SENT, 1)
