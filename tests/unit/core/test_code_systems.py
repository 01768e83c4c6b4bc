"""Code systems of coded columns and the SNOMED CT concept id check (etl.core.code_systems):
Verhoeff's check digit, scalar and vectorised, with properties over generated digit strings."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.core import code_systems
from etl.core.code_systems import (
    snomed_ct_concept_ids_valid,
    systems_of,
    verhoeff_check_digit,
    verhoeff_valid,
)

pytestmark = pytest.mark.unit

# Concept ids of the International Edition: the root, clinical finding, disease, myocardial
# infarction, diabetes mellitus, hypertensive disorder, asthma, allergy to penicillin and the
# core module (18 digits).
KNOWN_CONCEPTS = [
    "138875005",
    "404684003",
    "64572001",
    "22298006",
    "73211009",
    "38341003",
    "195967001",
    "91936005",
    "900000000000207008",
]


def test_known_snomed_ct_concept_ids_are_valid():
    assert snomed_ct_concept_ids_valid(pd.Series(KNOWN_CONCEPTS)).all()


@pytest.mark.parametrize("concept", KNOWN_CONCEPTS)
def test_every_other_check_digit_is_refused(concept):
    wrong = [concept[:-1] + digit for digit in "0123456789" if digit != concept[-1]]
    assert not snomed_ct_concept_ids_valid(pd.Series(wrong)).any()


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("12345", "five digits: too short"),
        ("1" * 17 + "00" + "5", "twenty digits: too long"),
        ("022298006", "leading zero"),
        ("2229800", "no check digit: a valid prefix is not an id"),
        ("12345013", "partition 01 (check digit right): a description id, not a concept"),
        ("I21.9", "not digits"),
        (" 22298006", "spaces are not trimmed here"),
    ],
)
def test_what_is_not_a_concept_id(value, why):
    assert not snomed_ct_concept_ids_valid(pd.Series([value])).iloc[0], why


def test_the_same_digits_in_partition_00_are_a_concept_id():
    assert snomed_ct_concept_ids_valid(pd.Series(["12345009"])).iloc[0]


def test_na_is_not_a_concept_id():
    assert snomed_ct_concept_ids_valid(pd.Series([pd.NA, None], dtype="string")).tolist() == [
        False,
        False,
    ]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789", min_size=1, max_size=17))
def test_the_check_digit_completes_any_payload_and_no_other_digit_does(payload):
    check = verhoeff_check_digit(payload)
    candidates = pd.Series([payload + str(digit) for digit in range(10)])
    assert verhoeff_valid(candidates).tolist() == [digit == check for digit in range(10)]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789", min_size=2, max_size=17), st.data())
def test_every_adjacent_transposition_is_caught(payload, data):
    """Verhoeff's point: swapping two different neighbouring digits always breaks the check."""
    full = payload + str(verhoeff_check_digit(payload))
    position = data.draw(st.integers(0, len(full) - 2))
    swapped = full[:position] + full[position + 1] + full[position] + full[position + 2 :]
    assert verhoeff_valid(pd.Series([swapped])).iloc[0] == (swapped == full)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet="0123456789", min_size=1, max_size=18), max_size=40))
def test_the_vectorised_check_agrees_with_the_scalar_one(values):
    expected = [
        verhoeff_check_digit(v[:-1]) == int(v[-1]) if len(v) > 1 else v == "0" for v in values
    ]
    assert verhoeff_valid(pd.Series(values, dtype="string")).tolist() == expected


def test_mixed_codes_get_the_first_system_that_recognises_them():
    systems = [code_systems.ATC, code_systems.ICD10_SE, code_systems.SNOMED_CT]
    systems.append(code_systems.local_system("alert-code", "melior"))
    codes = pd.Series(["J01CE02", "z88.1", "Z881", "91936005", "91936004", "MRSA", None])
    assert systems_of(codes, systems).tolist() == [
        code_systems.ATC.uri,
        code_systems.ICD10_SE.uri,
        code_systems.ICD10_SE.uri,
        code_systems.SNOMED_CT_URI,
        "urn:vardflytt:alert-code:melior",  # a wrong check digit is no SNOMED CT id
        "urn:vardflytt:alert-code:melior",
        pd.NA,
    ]


def test_without_a_catch_all_an_unrecognised_code_has_no_system():
    found = systems_of(pd.Series(["22298006", "22298007"]), [code_systems.SNOMED_CT])
    assert found.iloc[0] == code_systems.SNOMED_CT_URI
    assert found.isna().iloc[1]


def test_a_local_system_is_named_by_its_source_system():
    assert code_systems.resolve("local:blood-product", "blodcentral").uri == (
        "urn:vardflytt:blood-product:blodcentral"
    )
    with pytest.raises(ValueError, match="unknown code system 'loinc'"):
        code_systems.resolve("loinc", "melior")
    with pytest.raises(ValueError, match="local:<name>"):
        code_systems.resolve("local:Blood Product", "melior")
