"""Steward text screening that holds (issue 11, point 7): an identity number however it is typed,
or a name or number of one of the batch's own patients, keeps a justification out of the record,
and the refusal says why without repeating the text."""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.batch import BatchPaths
from etl.core.database import core_engine
from etl.steward import screening
from etl.steward.actions import StewardError, check_justification
from etl.steward.screening import (
    DASHES,
    IDENTITY_REFUSAL,
    INVISIBLE,
    NAME_REFUSAL,
    SPACES,
    has_identity_number,
    hashes_of,
    normalise,
    screen,
)
from tests.cores import BOTH_CORES
from tests.steward_problem import PROBLEM

KEY = b"screening-test-key-0123456789"


# --- the normaliser -------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("19\u2013121\u2212212", "19-121-212", id="en-dash-and-minus"),
        pytest.param("\uff11\uff19\uff0d\uff12", "19-2", id="fullwidth-digits-and-dash"),
        pytest.param(
            "a\u00a0b\u2009c\u202fd\u3000e", "a b c d e", id="nbsp-thin-narrow-ideographic"
        ),
        pytest.param("19\u200b12\u00ad12", "191212", id="zero-width-and-soft-hyphen-dropped"),
        pytest.param("a\u2011b\ufe63c", "a-b-c", id="non-breaking-and-small-hyphen"),
        pytest.param("\u0661\u0669", "19", id="arabic-indic-digits"),
        pytest.param("a \u2003 \u2002 b", "a b", id="runs-of-spaces-collapse"),
    ],
)
def test_the_normaliser_reads_text_as_a_person_does(text, expected):
    assert normalise(text) == expected


# --- identity numbers, however typed --------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    "number",
    [
        pytest.param("19 12 12-1212", id="grouped-in-pairs"),
        pytest.param("191212 1212", id="space-instead-of-dash"),
        pytest.param("19121212\u20131212", id="12-digit-en-dash"),
        pytest.param("191212\u2212 1212", id="minus-sign-and-space"),
        pytest.param("1912\u200b1212\u00a01212", id="zero-width-and-nbsp"),
        pytest.param("\uff11\uff19\uff11\uff12\uff11\uff12\uff0d\uff11\uff12\uff11\uff12", id="fw"),
        pytest.param("191272-1212", id="samordningsnummer"),
        pytest.param("191212+1212", id="over-a-hundred"),
        pytest.param("1981 08 29\u2009M\u2009071", id="spaced-reservnummer"),
        pytest.param("19.12.12/1212", id="dots-and-slash"),
    ],
)
def test_a_spaced_or_unicode_dashed_identity_number_is_refused(number):
    text = f"the clinic confirmed {number} from the paper record"
    with pytest.raises(StewardError) as refused:
        check_justification(text, [PROBLEM], is_required=True)
    message = str(refused.value)
    assert message == IDENTITY_REFUSAL
    assert "contains what looks like an identity number" in message
    assert not re.search(r"\d{4}", message), "the refusal does not repeat the text"


@pytest.mark.unit
@pytest.mark.parametrize(
    "text",
    [
        "confirmed on 2026-11-02 by the clinic manager",
        "confirmed on 2026-11-02 12:30 by the clinic manager",
        "rows 12 13 14 15 16 checked against the paper journal",
        "ticket 4711 at the regional service desk confirms the booking",
        "two rows per clinic were confirmed by Per at the ward",  # 'per' alone is a word
        "version 3.2.1 of the export left the booking time empty",
    ],
)
def test_harmless_text_is_accepted(text):
    patients = hashes_of(KEY, [("Anna", "Svensson"), ("Per", "Holm")], ["191212121212"])
    assert check_justification(text, [PROBLEM], is_required=True) == text
    assert screen(text, patients) is None


def _luhn_digit(digits: str) -> int:
    total = 0
    for position, digit in enumerate(int(d) for d in digits):
        product = digit * (2 if position % 2 == 0 else 1)
        total += product - 9 if product > 9 else product
    return (10 - total % 10) % 10


@st.composite
def identity_numbers(draw) -> str:
    """A Skatteverket-format personnummer or samordningsnummer, 10 or 12 digits, digits only."""
    born = draw(st.dates(dt.date(1890, 1, 1), dt.date(2025, 12, 31)))
    day = born.day + (60 if draw(st.booleans()) else 0)  # samordningsnummer: day + 60
    serial = draw(st.integers(0, 999))
    ten = f"{born:%y%m}{day:02d}{serial:03d}"
    ten += str(_luhn_digit(ten))
    return f"{born.year // 100}{ten}" if draw(st.booleans()) else ten


SEPARATOR_CHARACTERS = DASHES + SPACES.replace("\n", "") + INVISIBLE + "-+ "


@st.composite
def typed_numbers(draw) -> str:
    """An identity number with any Unicode dashes and spaces between arbitrary digit groups."""
    digits = draw(identity_numbers())
    cuts = sorted(draw(st.sets(st.integers(1, len(digits) - 1), max_size=len(digits) - 1)))
    pieces, start = [], 0
    for cut in [*cuts, len(digits)]:
        pieces.append(digits[start:cut])
        start = cut
    separators = st.text(st.sampled_from(SEPARATOR_CHARACTERS), min_size=1, max_size=3)
    typed = pieces[0]
    for piece in pieces[1:]:
        typed += draw(separators) + piece
    return typed


@pytest.mark.unit
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    number=typed_numbers(),
    before=st.sampled_from(["see", "patient", "number:", "(", "checked"]),
    after=st.sampled_from(["in the paper record", ") confirmed", "- see journal", "."]),
)
def test_any_identity_number_typed_with_unicode_dashes_and_spaces_is_caught(number, before, after):
    text = f"{before} {number} {after}"
    assert has_identity_number(text)
    with pytest.raises(StewardError, match="looks like an identity number"):
        check_justification(f"the clinic confirmed {text}", [PROBLEM], is_required=True)


# --- the batch's own patients, by keyed hash ------------------------------------------------


@pytest.mark.unit
def test_a_patients_name_from_the_batch_is_refused_by_keyed_hash():
    patients = hashes_of(
        KEY,
        [("Anna-Karin", "Svensson"), ("Åsa", "Öberg"), ("Bo", "Ek")],
        ["19121212-1212", "AB1234567"],
    )
    for text in (
        "phoned Anna-Karin about the booking",
        "the SVENSSON family confirmed the visit",
        "asa oberg confirmed the visit by phone",  # accents and case do not count
        "Bo Ek confirmed the visit by phone",  # short names count with the family name
        "Svens\u200bson confirmed the visit",  # nothing invisible hides a name
    ):
        assert screen(text, patients) == NAME_REFUSAL, text
    # The batch's identity numbers in forms the shape test alone would miss.
    assert screen("passport AB1234567 seen at the desk", patients) == IDENTITY_REFUSAL
    assert screen("passport ab 1234567 seen at the desk", patients) is None  # split: not theirs
    assert screen("a booking by the ward bo", patients) is None  # 'bo' alone is a word
    # Only keyed hashes are kept: no name, no number, and nothing without the key.
    kept = b"".join(patients.names | patients.identities)
    assert all(len(digest) == 32 for digest in patients.names | patients.identities)
    for plain in (b"svensson", b"anna", b"1212121212", b"AB1234567"):
        assert plain not in kept
    other_key = hashes_of(b"another-key-0123456789", [("Anna", "Svensson")], [])
    assert not other_key.names & patients.names


# --- on a migrated batch: names from the landing zone, the core, and the dashboard ------------


@pytest.fixture(scope="module", params=BOTH_CORES)
def migrated(request, small_estate, tmp_path_factory, core_of):
    """ELVIS of the small estate, migrated once per database."""
    from etl import pipeline
    from etl.settings import Settings

    root = tmp_path_factory.mktemp(f"screening-{request.param}")
    with core_of(request.param, root) as core_url, pytest.MonkeyPatch.context() as patch:
        patch.setenv("VARDFLYTT_HOME", str(root / "home"))
        patch.setenv("VARDFLYTT_ESTATE_DIR", str(small_estate))
        patch.setenv("VARDFLYTT_CORE_URL", core_url)
        patch.setenv("VARDFLYTT_PSEUDONYM_KEY", "screening-test-key-0123456789")
        patch.setenv("LOGNAME", "test.steward")
        patch.delenv("AIRFLOW_CTX_DAG_OWNER", raising=False)
        settings_ = Settings()
        pipeline.run_system("elvis", "elvis-screening", dt.date(2026, 7, 1), settings=settings_)
        yield settings_


WAIVABLE = "appointment.scheduled_at.not_null"
GOOD = "Booking time never recorded in ELVIS; the clinic confirms the visit took place"


def _handle(settings_) -> str:
    from etl.steward.queue import QueueFilter, list_queue

    rows = list_queue(settings_, QueueFilter(check=WAIVABLE, batch_id="elvis-screening")).rows
    return rows[0].handle


def _decisions(settings_) -> int:
    with core_engine(settings_.resolved_core_url).connect() as connection:
        return connection.execute(sa.text("SELECT COUNT(*) FROM quarantine_decision")).scalar()


def _quarantined_patient(settings_) -> dict:
    """A patient the batch quarantined for its identity number: that number is in the landing
    zone only, never in the core."""
    with core_engine(settings_.resolved_core_url).connect() as connection:
        row_number = connection.execute(
            sa.text(
                "SELECT row_number FROM quarantine WHERE batch_id = 'elvis-screening' "
                "AND entity = 'patient' AND reason = 'invalid_identity_number' "
                "ORDER BY row_number"
            )
        ).scalar()
        in_core = {
            re.sub(r"\D", "", number)
            for (number,) in connection.execute(
                sa.text("SELECT identity_number FROM patient_identifier")
            )
            if number
        }
    assert row_number is not None, "the small estate quarantines an invalid identity number"
    landed = pq.read_table(
        BatchPaths.of(settings_, "elvis-screening", "elvis").landed_file("patient")
    ).to_pandas()
    patient = landed.set_index("_row_number").loc[row_number]
    assert re.sub(r"\D", "", patient["pnr"])[-10:] not in {n[-10:] for n in in_core}
    return {"family": patient["efternamn"], "given": patient["fornamn"], "pnr": patient["pnr"]}


@pytest.mark.integration
def test_a_patients_name_or_number_from_the_batch_is_refused_and_nothing_recorded(migrated):
    from etl.steward import actions

    handle, before = _handle(migrated), _decisions(migrated)
    with core_engine(migrated.resolved_core_url).connect() as connection:
        given, family, number = connection.execute(
            sa.text(
                "SELECT given_name, family_name, identity_number FROM patient "
                "WHERE batch_id = 'elvis-screening' AND identity_number IS NOT NULL "
                "AND length(family_name) >= 4 ORDER BY patient_id LIMIT 1"
            )
        ).one()
    quarantined = _quarantined_patient(migrated)
    spaced = "\u2009".join(re.findall(r"\d{2}", re.sub(r"\D", "", number)))  # "19 12 12 12 ..."
    for text, refusal in (
        (f"{GOOD}; confirmed by {given} {family} on the phone", NAME_REFUSAL),
        (f"{GOOD}; {family.upper()} called the ward", NAME_REFUSAL),
        (f"{GOOD}; {quarantined['family']} called the ward", NAME_REFUSAL),
        (f"{GOOD}; see number {spaced} in the record", IDENTITY_REFUSAL),
    ):
        with pytest.raises(actions.StewardError) as refused:
            actions.waive(migrated, [handle], text, by="test.steward")
        assert str(refused.value) == refusal
        for value in (given, family, quarantined["family"], number):
            assert value not in str(refused.value)
    assert _decisions(migrated) == before, "nothing was recorded"

    # The quarantined patient's number was read from the landing zone (the core never had it).
    patients = screening.load_batch_patients(migrated, {("elvis", "elvis-screening")}, "t")
    assert patients.identities_in(f"number {quarantined['pnr']} seen")
    assert not patients.identities_in("number 19121212-1212 seen")

    # The read of the batch's names is access-logged, with counts only.
    with core_engine(migrated.resolved_core_url).connect() as connection:
        logged = pd.read_sql(
            sa.text("SELECT * FROM access_log WHERE action = 'steward_screen'"), connection
        )
    # One per screening that read names (a number-shaped text is refused before any read).
    assert len(logged) >= 4 and (logged["rows"] > 0).all()
    assert set(logged["batch_id"]) == {"elvis-screening"}
    assert family not in logged.to_csv() and quarantined["family"] not in logged.to_csv()

    # Harmless text is recorded.
    [outcome] = actions.waive(migrated, [handle], GOOD, by="test.steward")
    assert outcome.is_recorded and outcome.justification == GOOD


@pytest.mark.integration
def test_the_dashboard_refuses_a_patients_name_without_showing_it(migrated):
    from fastapi.testclient import TestClient

    from etl.dashboard.app import create_app
    from etl.dashboard.auth import DashboardUser, Role, TokenAuthenticator, token_digest

    token = "steward-token-0123456789abcdef"
    users = [DashboardUser("sara.steward", Role.STEWARD, token_digest(token))]
    client = TestClient(
        create_app(migrated, authenticator=lambda _s: TokenAuthenticator(users, b"x" * 32))
    )
    quarantined = _quarantined_patient(migrated)
    response = client.post(
        "/steward/decide",
        headers={"Authorization": f"Bearer {token}"},
        data={
            "handle": _handle(migrated),
            "decision": "waived",
            "justification": f"{GOOD}; {quarantined['given']} {quarantined['family']} called",
        },
    )
    assert response.status_code == 200
    error = re.search(r'<p class="error" id="error">(.*?)</p>', response.text).group(1)
    assert "contains a patient&#39;s name from this batch" in error
    assert quarantined["family"] not in response.text
