"""The vectorised resolver gives exactly what the resolver before it gave: the same persons,
links (with their evidence, byte for byte), reviews and counts, on random patients and
identifiers (hypothesis) and on every system of a generated estate.

``resolve_before`` is the resolver as it was before the evidence was built in Arrow and the
review keys hashed in one call (issue 15's identity bench), frozen as the reference.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.identity import resolve
from tests.unit.identity import resolve_before

pytestmark = pytest.mark.unit

KINDS = ("personnummer", "samordningsnummer", "reservnummer_vgr", "reservnummer_legacy", "lma")
NUMBERS = ("189001019802", "189001029819", "R1", "R2", " R1 ", "")
SYSTEMS = ("elvis", "melior", "orbit")
SEXES = ("male", "female", "unknown", None)
BIRTH_DATES = ("1990-01-01", "1990-01-20", "1990-03-15", None)
PROTECTION = ("none", "sekretessmarkering", "fingerade_personuppgifter", "okänd_nivå", None)

number = st.one_of(st.none(), st.sampled_from(NUMBERS))
kind = st.one_of(st.none(), st.sampled_from(KINDS))


@st.composite
def estates(draw) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Patients, identifiers (unique ids, as the core's primary key makes them) and decisions."""
    patient_ids = draw(
        st.lists(st.text("ab0129", min_size=1, max_size=4), min_size=2, max_size=30, unique=True)
    )
    patients = pd.DataFrame(
        {
            "patient_id": patient_ids,
            "source_system": [draw(st.sampled_from(SYSTEMS)) for _ in patient_ids],
            "identity_number": [draw(number) for _ in patient_ids],
            "identity_kind": [draw(kind) for _ in patient_ids],
            "sex": [draw(st.sampled_from(SEXES)) for _ in patient_ids],
            "birth_date": [draw(st.sampled_from(BIRTH_DATES)) for _ in patient_ids],
            "protected_identity": [draw(st.sampled_from(PROTECTION)) for _ in patient_ids],
        },
        columns=resolve.PATIENT_COLUMNS,
    )
    owners = st.sampled_from([*patient_ids, "not-a-patient"])
    count = draw(st.integers(0, 40))
    identifiers = pd.DataFrame(
        {
            "patient_identifier_id": [f"i{j:03d}" for j in draw(st.permutations(range(count)))],
            "patient_id": [draw(owners) for _ in range(count)],
            "identity_number": [draw(number) for _ in range(count)],
            "identity_kind": [draw(kind) for _ in range(count)],
        },
        columns=resolve.IDENTIFIER_COLUMNS,
    )
    decisions = pd.DataFrame(
        [
            {
                "review_id": f"r{d}",
                "status": draw(
                    st.sampled_from([resolve.DECISION_MERGED, resolve.DECISION_KEPT_APART])
                ),
                "patient_ids": draw(st.lists(owners, max_size=4, unique=True)),
            }
            for d in range(draw(st.integers(0, 3)))
        ],
        columns=["review_id", "status", "patient_ids"],
    )
    return patients, identifiers, decisions


def assert_same(patients, identifiers, decisions=None, open_reviews=None, run_id="run-1"):
    before = resolve_before.resolve_identities(
        patients, identifiers, decisions, open_reviews, run_id
    )
    after = resolve.resolve_identities(patients, identifiers, decisions, open_reviews, run_id)
    pd.testing.assert_frame_equal(after.links, before.links)
    pd.testing.assert_frame_equal(after.persons, before.persons)
    pd.testing.assert_frame_equal(after.reviews, before.reviews)
    assert after.counts == before.counts
    return after


# Seconds, not milliseconds: out of make test-fast (the mark), in make test.
@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(estates())
def test_the_vectorised_resolver_equals_the_one_before(estate):
    patients, identifiers, decisions = estate
    first = assert_same(patients, identifiers, decisions)
    # A later run with the first run's reviews still open keeps them (open_by_key).
    assert_same(patients, identifiers, decisions, first.reviews, run_id="run-2")


def test_matches_are_ordered_by_identifier_then_matched_patient_as_text():
    """Ids that sort differently as text and as numbers, identifiers given out of order."""
    patients = pd.DataFrame(
        {
            "patient_id": ["p10", "p9", "p100", "p2"],
            "source_system": ["elvis", "melior", "orbit", "elvis"],
            "identity_number": ["189001019802"] * 4,
            "identity_kind": ["personnummer"] * 4,
            "sex": ["female"] * 4,
            "birth_date": ["1890-01-01"] * 4,
            "protected_identity": ["none"] * 4,
        }
    )
    identifiers = pd.DataFrame(
        {
            "patient_identifier_id": ["z1", "a10", "a9", "b"],
            "patient_id": ["p10", "p10", "p9", "p2"],
            "identity_number": ["R1", "189001019802", "R1", "R1"],
            "identity_kind": [
                "reservnummer_vgr",
                "personnummer",
                "reservnummer_vgr",
                "reservnummer_vgr",
            ],
        }
    )
    links = assert_same(patients, identifiers).links.set_index("patient_id")
    matches = json.loads(links.at["p10", "evidence"])["matches"]
    assert [(m["identifier_id"], m["matched_patient_id"]) for m in matches] == [
        ("a10", "p100"),
        ("a10", "p2"),
        ("a10", "p9"),
        ("z1", "p2"),
        ("z1", "p9"),
    ]


@pytest.mark.slow
def test_every_system_of_a_generated_estate_resolves_as_before(estate_of, tmp_path):
    """The bench's inputs (every system extracted, its patients transformed) from a small estate."""
    from etl.bench.identity_scale import IDENTIFIERS_FILE, PATIENTS_FILE, prepare_inputs
    from etl.estate.base import EXTRACT_DATE

    inputs = tmp_path / "inputs"
    prepared = prepare_inputs(estate_of(400, 7), tmp_path / "home", 5_000, EXTRACT_DATE, inputs)
    assert prepared["systems"] == 49
    patients = pd.read_parquet(inputs / PATIENTS_FILE)
    identifiers = pd.read_parquet(inputs / IDENTIFIERS_FILE)
    assert len(patients) == prepared["patients"] > 400
    after = assert_same(patients, identifiers)
    assert after.counts["persons_in_several_systems"] > 0
    assert after.counts["reviews"] > 0  # the estate plants conflicts
