"""Golden mapping tests: given these legacy rows, expect these core rows (one table per source).

Fixtures are tiny hand-written legacy rows per source system. The reference date is frozen in
the test, never taken from the clock.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from etl.catalog import load_catalog
from etl.core.ids import core_ids
from etl.extract.landing import ROW_NUMBER, SOURCE_KEY
from tests.golden_helpers import MAPPINGS, run

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(MAPPINGS)


ELVIS_PATIENT = {
    "patient_id": "17",
    "pnr": "19121212-1212",
    "reservnr": None,
    "fornamn": "Tolvan",
    "efternamn": "Tolvansson",
    "kon": "M",
    "fodelsedatum": "121212",
    "adress": "Storgatan 1",
    "postnr": "41101",
    "postort": "Göteborg",
    "skyddad_identitet": "",
    "avliden_datum": None,
    "testpatient": "N",
    "registrerad_tid": "199901011230",
}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {},
            {
                "identity_number": "191212121212",
                "identity_kind": "personnummer",
                "sex": "male",
                "birth_date": dt.date(1912, 12, 12),
                "protected_identity": "none",
            },
        ),
        (
            {"pnr": " 121212+1212 "},
            {"identity_number": "191212121212", "identity_kind": "personnummer"},
        ),
        ({"fodelsedatum": "14.12.1912"}, {"birth_date": dt.date(1912, 12, 14)}),
        ({"skyddad_identitet": "SKYDD"}, {"protected_identity": "skyddad_folkbokforing"}),
        (
            {"pnr": None, "reservnr": "19810829M071"},
            {"identity_number": "19810829M071", "identity_kind": "reservnummer_vgr"},
        ),
        (
            {"registrerad_tid": "202607011230"},
            {"registered_at": pd.Timestamp("2026-07-01 10:30", tz="UTC")},
        ),
    ],
    ids=[
        "12-digit-with-dash",
        "plus-separator-centenarian",
        "birth-date-dotted",
        "protected-identity",
        "reservnummer-only",
        "registered-summer-time-to-utc",
    ],
)
def test_elvis_patient_maps_to_core_patient(catalog, changes, expected):
    result = run(catalog, "elvis", "patient", [{**ELVIS_PATIENT, **changes}], "patient_id")

    assert result.outcomes.empty
    row = result.rows.iloc[0]
    assert row["patient_id"] == core_ids("elvis", "patient", pd.Series(["17"])).iloc[0]
    assert (row["source_system"], row["source_key"], row["batch_id"]) == ("elvis", "17", "batch-1")
    for field, value in expected.items():
        assert row[field] == value, field


@pytest.mark.parametrize(
    ("changes", "reason", "field"),
    [
        ({"pnr": "191212121213"}, "invalid_identity_number", "pnr"),
        ({"fodelsedatum": "1912-13-45"}, "unparseable_date", "fodelsedatum"),
        ({"kon": "Q"}, "invalid_value", "kon"),
        ({"registrerad_tid": "ÅÅÅÅMMDDhhmm"}, "unparseable_date", "registrerad_tid"),
        ({"testpatient": "J"}, "test_patient", "testpatient"),
        ({"pnr": None, "reservnr": None}, "missing_identity_number", "pnr,reservnr"),
    ],
    ids=[
        "bad-check-digit",
        "bad-birth-date",
        "unknown-sex-code",
        "garbage-timestamp",
        "test-patient-excluded",
        "no-identity-at-all",
    ],
)
def test_elvis_patient_problems_name_reason_and_field(catalog, changes, reason, field):
    result = run(catalog, "elvis", "patient", [{**ELVIS_PATIENT, **changes}], "patient_id")

    assert result.rows.empty
    outcome = result.outcomes.iloc[0]
    assert (outcome["reason"], outcome["field"], outcome[ROW_NUMBER], outcome[SOURCE_KEY]) == (
        reason,
        field,
        1,
        "17",
    )


def test_legacy_reserve_number_is_kept_as_linked_identifier(catalog):
    rows = [{**ELVIS_PATIENT, "reservnr": "R1234567"}]
    result = run(catalog, "elvis", "patient", rows, "patient_id")

    identifiers = result.patient_identifiers.sort_values("is_primary", ascending=False)
    assert identifiers[["identity_kind", "is_primary"]].values.tolist() == [
        ["personnummer", True],
        ["reservnummer_legacy", False],
    ]
    assert (identifiers["patient_id"] == result.rows["patient_id"].iloc[0]).all()


MELIOR_PATIENT = {
    "PATNR": "00000042",
    "SEKEL": "9",
    "PNR": "1212121212",
    "EFTERNAMN": "Tolvansson",
    "FORNAMN": "Tolvan",
    "KON": "M",
    "SKYDD": " ",
    "AVLIDEN": "        ",
}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {},
            {
                "identity_number": "191212121212",
                "deceased_date": None,
                "protected_identity": "none",
            },
        ),
        ({"SEKEL": "0", "PNR": "0001012384"}, {"identity_number": "200001012384"}),
        (
            {"SKYDD": "S", "AVLIDEN": "20200131"},
            {"protected_identity": "sekretessmarkering", "deceased_date": dt.date(2020, 1, 31)},
        ),
    ],
    ids=["century-9", "century-0", "protected-and-deceased"],
)
def test_melior_fixed_width_patient_uses_the_century_digit(catalog, changes, expected):
    result = run(catalog, "melior", "patient", [{**MELIOR_PATIENT, **changes}], "PATNR")

    assert result.outcomes.empty
    row = result.rows.iloc[0]
    for field, value in expected.items():
        assert (row[field] if pd.notna(row[field]) else None) == value, field


LAB = {
    "SVARSNR": "9001",
    "PATNR": "00000042",
    "PROVTAGNINGSTID": "202301150830",
    "ANALYSKOD": "NPU02319",
    "ANALYSNAMN": "B-Hemoglobin",
    "RESULTAT": "134",
    "ENHET": "g/L",
    "REFERENSINTERVALL": "117-153",
    "LABB": "Klinisk kemi SU",
}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {},
            {
                "npu_code": "NPU02319",
                "value_numeric": 134.0,
                "reference_low": 117.0,
                "reference_high": 153.0,
                "sampled_at": pd.Timestamp("2023-01-15 07:30", tz="UTC"),
            },
        ),
        (
            {"ANALYSKOD": "L-KREA", "RESULTAT": "<0,8", "REFERENSINTERVALL": "3,5-4,6"},
            {
                "npu_code": "NPU18016",
                "source_analysis_code": "L-KREA",
                "value_numeric": 0.8,
                "value_comparator": "<",
                "reference_low": 3.5,
                "reference_high": 4.6,
            },
        ),
        (
            {"RESULTAT": "POS", "REFERENSINTERVALL": ""},
            {"value_text": "POS", "reference_low": None},
        ),
    ],
    ids=["npu-coded", "local-code-decimal-comma-comparator", "text-result"],
)
def test_melior_lab_result_maps_swedish_notation(catalog, changes, expected):
    result = run(
        catalog, "melior", "observation", [{**LAB, **changes}], "SVARSNR", {"patient": ["00000042"]}
    )

    assert result.outcomes.empty
    row = result.rows.iloc[0]
    for field, value in expected.items():
        actual = row[field] if pd.notna(row[field]) else None
        assert actual == value, field


@pytest.mark.parametrize(
    ("changes", "reason", "field"),
    [
        ({"ANALYSKOD": "L-OKAND"}, "unmapped_code", "ANALYSKOD"),
        ({"PATNR": "99999999"}, "unresolved_reference", "PATNR"),
        ({"ANALYSNAMN": "B-Hemoglobin \ufffd"}, "undecodable_bytes", "ANALYSNAMN"),
    ],
    ids=["unmapped-local-code", "unknown-patient", "undecodable-bytes"],
)
def test_melior_lab_result_problems_are_quarantined(catalog, changes, reason, field):
    result = run(
        catalog, "melior", "observation", [{**LAB, **changes}], "SVARSNR", {"patient": ["00000042"]}
    )

    assert result.rows.empty
    assert result.outcomes[["reason", "field"]].values.tolist() == [[reason, field]]


def test_one_bad_row_does_not_stop_the_rest_of_the_chunk(catalog):
    rows = [
        LAB,
        {**LAB, "SVARSNR": "9002", "PROVTAGNINGSTID": "2023011"},
        {**LAB, "SVARSNR": "9003"},
    ]
    result = run(catalog, "melior", "observation", rows, "SVARSNR", {"patient": ["00000042"]})

    assert result.rows["source_key"].tolist() == ["9001", "9003"]
    assert result.outcomes[[SOURCE_KEY, "reason", "field"]].values.tolist() == [
        ["9002", "unparseable_date", "PROVTAGNINGSTID"]
    ]


DIAGNOSIS = {
    "DIAGNOSNR": "5",
    "PATNR": "00000042",
    "KONTAKTNR": "77",
    "DIAGNOSKOD": "i219",
    "DIAGNOSTEXT": "Akut hjärtinfarkt",
    "DIAGNOSDATUM": "03.04.2021",
    "HUVUDDIAGNOS": "J",
    "LAKARE_HSA": "SE2321000131-E000000000001",
}


def test_melior_diagnosis_stores_dotted_icd10_and_links_the_encounter(catalog):
    result = run(
        catalog, "melior", "diagnosis", [DIAGNOSIS], "DIAGNOSNR", {"patient": ["00000042"]}
    )

    row = result.rows.iloc[0]
    assert (row["icd10_code"], row["diagnosis_date"], row["is_primary_diagnosis"]) == (
        "I21.9",
        dt.date(2021, 4, 3),
        True,
    )
    assert row["encounter_id"] == core_ids("melior", "encounter", pd.Series(["77"])).iloc[0]
    assert row["patient_id"] == core_ids("melior", "patient", pd.Series(["00000042"])).iloc[0]


# --- safety-critical fields in the repository's own mappings fail closed -------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"skyddad_identitet": "SEKR"}, "sekretessmarkering"),
        # ELVIS leaves the field empty (or NULL) for an ordinary patient: declared blank_means.
        ({"skyddad_identitet": ""}, "none"),
        ({"skyddad_identitet": None}, "none"),
    ],
    ids=["explicit-level", "blank-declared-none", "null-declared-none"],
)
def test_elvis_protection_explicit_or_declared_blank_loads_unflagged(catalog, changes, expected):
    result = run(catalog, "elvis", "patient", [{**ELVIS_PATIENT, **changes}], "patient_id")

    assert result.outcomes.empty
    assert result.rows["protected_identity"].iloc[0] == expected


@pytest.mark.parametrize("written", ["SKYD", "J?", "none"], ids=["typo", "garbage", "word-none"])
def test_elvis_unknown_protection_loads_strongest_and_flagged(catalog, written):
    """Before, an unknown level quarantined the patient as invalid_value; a blank loaded 'none'."""
    rows = [{**ELVIS_PATIENT, "skyddad_identitet": written}]
    result = run(catalog, "elvis", "patient", rows, "patient_id")

    assert result.rows["protected_identity"].tolist() == ["fingerade_personuppgifter"]
    flag = result.outcomes.iloc[0]
    assert (flag["outcome"], flag["check_name"], flag["field"]) == (
        "flagged",
        "safety_field_uncertain:protected_identity",
        "skyddad_identitet",
    )


def test_elvis_unreadable_death_date_is_quarantined_never_alive(catalog):
    rows = [{**ELVIS_PATIENT, "avliden_datum": "2020-13-45"}]
    result = run(catalog, "elvis", "patient", rows, "patient_id")

    assert result.rows.empty
    outcome = result.outcomes.iloc[0]
    assert (outcome["reason"], outcome["field"]) == (
        "safety_field_uncertain:deceased_date",
        "avliden_datum",
    )


ELVIS_CONTACT = {
    "kontakt_id": "501",
    "patient_id": "17",
    "vardenhet_id": "3",
    "personal_id": None,
    "kontakttyp": "BESOK",
    "start_tid": "202503300130",
    "slut_tid": None,
    "sparr": "N",
}


@pytest.mark.parametrize(
    ("sparr", "blocked", "flagged"),
    [
        ("J", True, False),
        ("N", False, False),
        ("", True, True),
        (None, True, True),
        ("?", True, True),
    ],
    ids=["blocked", "not-blocked", "blank-is-blocked", "null-is-blocked", "garbage-is-blocked"],
)
def test_elvis_contact_sparr_fails_closed(catalog, sparr, blocked, flagged):
    rows = [{**ELVIS_CONTACT, "sparr": sparr}]
    references = {"patient": ["17"], "vardenhet": ["3"]}
    result = run(catalog, "elvis", "encounter", rows, "kontakt_id", references)

    assert bool(result.rows["is_blocked"].iloc[0]) is blocked
    assert (result.outcomes["check_name"] == "safety_field_uncertain:is_blocked").sum() == flagged


@pytest.mark.parametrize(
    ("start", "started_at", "reason"),
    [
        ("202503300230", "2025-03-30 01:30", "nonexistent_local_time_resolved"),
        ("202510260230", "2025-10-26 01:30", "ambiguous_local_time_resolved"),
        ("202503300130", "2025-03-30 00:30", None),
    ],
    ids=["spring-gap", "autumn-fold", "an-hour-before-the-gap"],
)
def test_elvis_contact_in_a_dst_gap_or_fold_loads_by_its_declared_rule_and_is_counted(
    catalog, start, started_at, reason
):
    """ELVIS declares standard time for both (the clock not yet moved); each such row is flagged."""
    rows = [{**ELVIS_CONTACT, "start_tid": start}]
    references = {"patient": ["17"], "vardenhet": ["3"]}
    result = run(catalog, "elvis", "encounter", rows, "kontakt_id", references)

    assert result.rows["started_at"].iloc[0] == pd.Timestamp(started_at, tz="UTC")
    flags = result.outcomes[result.outcomes["outcome"] == "flagged"]
    assert flags["reason"].tolist() == ([reason] if reason else [])
    assert flags["field"].tolist() == (["start_tid"] if reason else [])
