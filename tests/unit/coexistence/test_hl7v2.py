"""The feed's HL7 v2 messages (etl.coexistence.hl7v2): read back with python-hl7."""

from __future__ import annotations

import datetime as dt

import hl7
import pytest

from etl.coexistence import hl7v2

pytestmark = pytest.mark.unit

AT = dt.datetime(2027, 2, 15, 8, 30, tzinfo=dt.UTC)
PERSON = hl7v2.Demographics(
    family_name="Åberg",
    given_name="Anna|Maria",
    sex="female",
    birth_date=dt.date(1912, 12, 12),
    address_line="Storgatan 1^B",
    postal_code="54130",
    city="Skövde",
)
IDENTIFIERS = [
    hl7v2.Identifier("10013", "source_key"),
    hl7v2.Identifier("191212121212", "personnummer"),
    hl7v2.Identifier("197010632391", "samordningsnummer"),
    hl7v2.Identifier("19810829M071", "reservnummer_vgr"),
]


def _a31() -> hl7.Message:
    outbound = hl7v2.Outbound(hl7v2.A31, "elvis", "ctl-1", IDENTIFIERS, PERSON)
    return hl7.parse(hl7v2.build(outbound, AT))


def test_an_a31_names_the_patient_by_the_legacy_systems_identifiers():
    message = _a31()
    assert str(message.segment("MSH")(9)) == "ADT^A31^ADT_A05"
    assert str(message.segment("MSH")(5)) == "ELVIS"
    assert str(message.segment("MSH")(10)) == "ctl-1"
    identifiers = message.segment("PID")(3)
    assert [str(r(1)) for r in identifiers] == [i.value for i in IDENTIFIERS]
    assert [str(r(5)) for r in identifiers] == ["PI", "NNSWE", "NNSWE", "PT"]
    assert str(identifiers[0](4)) == "ELVIS"
    assert str(identifiers[1](4)) == "&1.2.752.129.2.1.3.1&ISO"
    assert str(identifiers[2](4)) == "&1.2.752.129.2.1.3.3&ISO"
    assert str(identifiers[3](4)) == "ELVIS"


def test_text_is_escaped_so_separators_and_swedish_letters_survive():
    pid = _a31().segment("PID")
    assert _a31().unescape(str(pid(5)(1)(1))) == "Åberg"
    assert _a31().unescape(str(pid(5)(1)(2))) == "Anna|Maria"
    assert _a31().unescape(str(pid(11)(1)(1))) == "Storgatan 1^B"
    assert _a31().unescape(str(pid(11)(1)(3))) == "Skövde"
    assert str(pid(7)) == "19121212"
    assert str(pid(8)) == "F"
    hl7v2.build(hl7v2.Outbound(hl7v2.A31, "elvis", "x", IDENTIFIERS, PERSON), AT).encode("ascii")


def test_an_a08_carries_the_contact_in_pv1():
    contact = hl7v2.Contact(
        "enc-1", "inpatient", "SE2321000131-E000000128785", AT, AT + dt.timedelta(days=2)
    )
    outbound = hl7v2.Outbound(hl7v2.A08, "melior", "ctl-2", IDENTIFIERS, PERSON, contact)
    message = hl7.parse(hl7v2.build(outbound, AT))
    assert str(message.segment("MSH")(9)) == "ADT^A08^ADT_A01"
    pv1 = message.segment("PV1")
    assert str(pv1(2)) == "I"
    assert str(pv1(3)) == "SE2321000131-E000000128785"
    assert str(pv1(19)(1)(1)) == "enc-1"
    assert str(pv1(44)) == "20270215083000+0000"
    assert str(pv1(45)) == "20270217083000+0000"


@pytest.mark.parametrize(
    ("event", "contact", "identifiers"),
    [
        pytest.param("A01", None, IDENTIFIERS, id="an-event-the-feed-does-not-send"),
        pytest.param(hl7v2.A08, None, IDENTIFIERS, id="an-a08-without-contact"),
        pytest.param(hl7v2.A31, hl7v2.Contact("e"), IDENTIFIERS, id="an-a31-with-contact"),
        pytest.param(hl7v2.A31, None, [], id="no-identifier-of-the-target"),
    ],
)
def test_a_message_that_could_not_be_read_right_is_refused(event, contact, identifiers):
    with pytest.raises(ValueError):
        hl7v2.build(hl7v2.Outbound(event, "elvis", "c", identifiers, PERSON, contact), AT)


@pytest.mark.parametrize("code", ["AA", "AE", "AR"])
def test_the_receivers_ack_is_read_with_its_code_and_reason(code):
    ack = _a31().create_ack(code)
    text = f"{ack}\rERR|||207^Application internal error^HL70357" if code != "AA" else str(ack)
    read = hl7v2.parse_ack(text)
    assert (read.code, read.control_id) == (code, "ctl-1")
    assert ("207" in read.text) == (code != "AA")


def test_an_answer_that_is_not_an_ack_is_refused():
    with pytest.raises((ValueError, KeyError)):
        hl7v2.parse_ack(str(_a31()))
