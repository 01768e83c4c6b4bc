"""The feed's HL7 v2.5 messages, built and read with python-hl7: ADT^A31 (a person's
demographics) and ADT^A08 (a care contact: PID + PV1), and the receiver's ACK.

PID-3 lists the target system's own identifiers for the patient, so it finds its record: each
source key it has for the person (type ``PI``, assigning authority the system's name, upper
case) and each identity number it already holds (personnummer and samordningsnummer with
Skatteverket's OIDs, type ``NNSWE``; reserve numbers with the system as authority, type ``PT``).
Text is escaped the HL7 way, non-ASCII as ``\\Xhh\\``, so the wire is ASCII whatever the
receiver's code page (legacy Swedish systems: ISO-8859-1 or CP850).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import hl7

SENDING_APPLICATION = "VARDFLYTT"
SENDING_FACILITY = "CORE"
VERSION = "2.5"
A31 = "A31"
A08 = "A08"
_STRUCTURES = {A31: "ADT_A05", A08: "ADT_A01"}
# Skatteverket's identity numbers as HL7 Sweden names them (OIDs of personnummer and
# samordningsnummer); other kinds are the legacy system's own.
_NATIONAL_AUTHORITY = {
    "personnummer": "&1.2.752.129.2.1.3.1&ISO",
    "samordningsnummer": "&1.2.752.129.2.1.3.3&ISO",
}
_SEX = {"male": "M", "female": "F", "unknown": "U"}
# HL7 table 0004, patient class, from the core's encounter classes.
_PATIENT_CLASS = {
    "inpatient": "I",
    "ambulatory": "O",
    "outpatient": "O",
    "emergency": "E",
    "virtual": "O",
    "home": "O",
}
ACCEPTED = "AA"
ACK_CODES = {"AA", "AE", "AR", "CA", "CE", "CR"}
_SKELETON = hl7.parse(f"MSH|^~\\&|{SENDING_APPLICATION}\r")


@dataclass(frozen=True)
class Identifier:
    """One identifier the target system has for the patient."""

    value: str
    kind: str  # source_key | personnummer | samordningsnummer | reservnummer_... | ...


@dataclass(frozen=True)
class Demographics:
    """The core's record of a person, as PID carries it (never a protected person's)."""

    family_name: str | None = None
    given_name: str | None = None
    sex: str | None = None
    birth_date: dt.date | None = None
    deceased_date: dt.date | None = None
    address_line: str | None = None
    postal_code: str | None = None
    city: str | None = None


@dataclass(frozen=True)
class Contact:
    """A care contact (encounter) as PV1 carries it."""

    encounter_id: str
    encounter_class: str | None = None
    care_unit_hsa_id: str | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None


@dataclass(frozen=True)
class Ack:
    code: str  # MSA-1
    control_id: str  # MSA-2: the message it answers
    text: str = ""  # MSA-3 / ERR, for the record (a code and short text from the receiver)


@dataclass(frozen=True)
class Outbound:
    """What one message says: to whom, about whom, which event."""

    event: str
    target_system: str
    control_id: str
    identifiers: Sequence[Identifier]
    demographics: Demographics
    contact: Contact | None = None


def _text(value: object) -> str:
    return "" if value is None else str(_SKELETON.escape(str(value)))


def _date(value: dt.date | None) -> str:
    return value.strftime("%Y%m%d") if value else ""


def _timestamp(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.strftime("%Y%m%d%H%M%S") + ("+0000" if value.tzinfo else "")


def authority(system: str) -> str:
    """The assigning authority naming a legacy system (HL7 namespace id, upper case)."""
    return system.upper()


def _identifier(target_system: str, identifier: Identifier) -> str:
    value = _text(identifier.value)
    if identifier.kind == "source_key":
        return f"{value}^^^{authority(target_system)}^PI"
    if identifier.kind in _NATIONAL_AUTHORITY:
        return f"{value}^^^{_NATIONAL_AUTHORITY[identifier.kind]}^NNSWE"
    return f"{value}^^^{authority(target_system)}^PT"


def _pid(outbound: Outbound) -> str:
    person = outbound.demographics
    identifiers = "~".join(_identifier(outbound.target_system, i) for i in outbound.identifiers)
    name = f"{_text(person.family_name)}^{_text(person.given_name)}"
    address = f"{_text(person.address_line)}^^{_text(person.city)}^^{_text(person.postal_code)}^SE"
    fields = [""] * 31
    fields[1] = "1"
    fields[3] = identifiers
    fields[5] = name if name != "^" else ""
    fields[7] = _date(person.birth_date)
    fields[8] = _SEX.get(person.sex or "", "")
    fields[11] = address if address != "^^^^^SE" else ""
    fields[29] = _date(person.deceased_date)
    fields[30] = "Y" if person.deceased_date else ""
    return "PID|" + "|".join(fields[1:]).rstrip("|")


def _pv1(contact: Contact) -> str:
    fields = [""] * 46
    fields[1] = "1"
    fields[2] = _PATIENT_CLASS.get(contact.encounter_class or "", "U")
    fields[3] = _text(contact.care_unit_hsa_id)
    fields[19] = f"{_text(contact.encounter_id)}^^^{SENDING_APPLICATION}^VN"
    fields[44] = _timestamp(contact.started_at)
    fields[45] = _timestamp(contact.ended_at)
    return "PV1|" + "|".join(fields[1:]).rstrip("|")


def build(outbound: Outbound, created_at: dt.datetime) -> str:
    """The message as text (segments separated by CR), parsed back once to prove it is HL7."""
    if outbound.event not in _STRUCTURES:
        raise ValueError(f"the feed sends A31 and A08, not {outbound.event}")
    if (outbound.event == A08) != (outbound.contact is not None):
        raise ValueError("an A08 carries exactly one contact, an A31 none")
    if not outbound.identifiers:
        raise ValueError("a message names the patient by the target system's identifiers")
    stamp = _timestamp(created_at)
    receiver = authority(outbound.target_system)
    segments = [
        f"MSH|^~\\&|{SENDING_APPLICATION}|{SENDING_FACILITY}|{receiver}|{receiver}|{stamp}||"
        f"ADT^{outbound.event}^{_STRUCTURES[outbound.event]}|{_text(outbound.control_id)}|P|"
        f"{VERSION}",
        f"EVN|{outbound.event}|{stamp}",
        _pid(outbound),
    ]
    if outbound.contact is not None:
        segments.append(_pv1(outbound.contact))
    text = "\r".join(segments)
    parsed = hl7.parse(text)
    if str(parsed.segment("MSH")(10)) != outbound.control_id:
        raise ValueError("the control id did not survive building the message")
    return str(parsed)


def control_id_of(message: str) -> str:
    return str(hl7.parse(message).segment("MSH")(10))


def parse_ack(text: str) -> Ack:
    """The receiver's answer: MSA-1 code, MSA-2 control id, MSA-3 and ERR text if any."""
    segments = [line.strip() for line in text.replace("\n", "\r").split("\r") if line.strip()]
    message = hl7.parse("\r".join(segments))
    msa = message.segment("MSA")
    code = str(msa(1)).strip().upper()
    if code not in ACK_CODES:
        raise ValueError(f"'{code[:8]}' is not an HL7 acknowledgement code")
    texts = [str(msa(3)).strip()] if len(msa) > 3 else []
    try:
        for err in message.segments("ERR"):
            texts.append(str(err).removeprefix("ERR|")[:200])
    except KeyError:
        pass
    return Ack(code=code, control_id=str(msa(2)).strip(), text="; ".join(t for t in texts if t))
