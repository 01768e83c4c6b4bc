"""The suites' plausibility and code-format checks on hand-made rows: what fails, what passes.

Rows go through ``enrich`` with the suite's own ``meta.context`` (patients from a transformed
patient file of a hand-made batch), then through the suite, exactly as the validate stage runs
them. Each case names the checks it must fail; an empty set means the row is clean.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.batch import BatchPaths
from etl.validate.context import enrich
from etl.validate.suites import read_suite_definition, validate_chunk

pytestmark = pytest.mark.unit

EXPECTATIONS = Path(__file__).resolve().parents[3] / "expectations"
AS_OF = "2026-07-01"
PATIENTS = {
    # patient_id: (birth_date, deceased_date)
    "born-2000": (dt.date(2000, 5, 10), None),
    "died-2020": (dt.date(1950, 1, 20), dt.date(2020, 3, 1)),
    "mother-1990": (dt.date(1990, 6, 15), None),
    "leap-mother": (dt.date(1992, 2, 29), None),
}


@pytest.fixture
def batch(tmp_path) -> BatchPaths:
    """A batch whose transformed patients are ``PATIENTS``."""
    paths = BatchPaths(tmp_path / "batch")
    path = paths.stage_file("transformed", "patient")
    path.parent.mkdir(parents=True)
    table = pa.table(
        {
            "patient_id": list(PATIENTS),
            "birth_date": [birth for birth, _ in PATIENTS.values()],
            "deceased_date": [death for _, death in PATIENTS.values()],
        },
        schema=pa.schema(
            [
                ("patient_id", pa.string()),
                ("birth_date", pa.date32()),
                ("deceased_date", pa.date32()),
            ]
        ),
    )
    pq.write_table(table, path)
    return paths


def failed_checks(entity: str, rows: pd.DataFrame, paths: BatchPaths) -> dict[str, set[str]]:
    """Per row id, the checks it fails."""
    meta = read_suite_definition(EXPECTATIONS, entity).get("meta") or {}
    enriched = enrich(paths, rows.copy(), meta)
    failures = validate_chunk(EXPECTATIONS, entity, enriched, f"{entity}_id", {"as_of_date": AS_OF})
    found: dict[str, set[str]] = {row_id: set() for row_id in rows[f"{entity}_id"]}
    for failure in failures:
        for row_id in failure.row_ids:
            found[row_id].add(failure.check_name.split(".", 1)[1])
    return found


def utc(local: str) -> pd.Timestamp:
    """A Swedish local time as the UTC timestamp the transform makes of it."""
    return pd.Timestamp(local).tz_localize("Europe/Stockholm").tz_convert("UTC")


def assert_cases(found: dict[str, set[str]], cases) -> None:
    wrong = {row_id: found[row_id] for row_id, *_, expected in cases if found[row_id] != expected}
    assert not wrong, wrong


# --- patient: birth and death -------------------------------------------------------------------

PATIENT_CASES = [
    ("ordinary", dt.date(1980, 1, 2), None, set()),
    ("born-on-as-of-date", dt.date(2026, 7, 1), None, set()),
    ("born-tomorrow", dt.date(2026, 7, 2), None, {"birth_date.not_in_future"}),
    ("born-2031", dt.date(2031, 3, 4), None, {"birth_date.not_in_future"}),
    ("died-on-birth-day", dt.date(2020, 1, 1), dt.date(2020, 1, 1), set()),
    (
        "died-before-birth",
        dt.date(1960, 1, 2),
        dt.date(1959, 12, 31),
        {"deceased_date.not_before_birth"},
    ),
    ("died-on-as-of-date", dt.date(1940, 1, 2), dt.date(2026, 7, 1), set()),
    ("died-in-future", dt.date(1940, 1, 2), dt.date(2027, 1, 1), {"deceased_date.not_in_future"}),
    ("no-birth-date", None, dt.date(2001, 1, 1), set()),
]


def test_patient_birth_and_death_plausibility(batch):
    rows = pd.DataFrame(
        {
            "patient_id": [case[0] for case in PATIENT_CASES],
            "identity_number": "191212121212",
            "identity_kind": "personnummer",
            "sex": "female",
            "protected_identity": "none",
            "birth_date": [case[1] for case in PATIENT_CASES],
            "deceased_date": [case[2] for case in PATIENT_CASES],
        }
    )
    assert_cases(failed_checks("patient", rows, batch), PATIENT_CASES)


# --- care contacts within the patient's lifetime ------------------------------------------------

ENCOUNTER_CASES = [
    ("mid-life", "born-2000", "2010-01-01 10:00", set()),
    ("birth-day-just-after-midnight", "born-2000", "2000-05-10 00:30", set()),
    ("six-days-before-birth", "born-2000", "2000-05-04 12:00", set()),
    ("seven-days-before-birth", "born-2000", "2000-05-03 12:00", set()),
    ("eight-days-before-birth", "born-2000", "2000-05-02 12:00", {"started_at.not_before_birth"}),
    ("years-before-birth", "born-2000", "1985-05-02 12:00", {"started_at.not_before_birth"}),
    ("death-day-late-evening", "died-2020", "2020-03-01 23:30", set()),
    (
        "day-after-death-just-after-midnight",
        "died-2020",
        "2020-03-02 00:30",
        {"started_at.not_after_death"},
    ),
    ("unknown-patient", "not-in-batch", "1800-01-01 12:00", set()),
]


def test_care_contacts_fall_within_the_patients_lifetime_on_local_dates(batch):
    rows = pd.DataFrame(
        {
            "encounter_id": [case[0] for case in ENCOUNTER_CASES],
            "patient_id": [case[1] for case in ENCOUNTER_CASES],
            "started_at": pd.Series([utc(case[2]) for case in ENCOUNTER_CASES]),
        }
    )
    assert_cases(failed_checks("encounter", rows, batch), ENCOUNTER_CASES)


@pytest.mark.parametrize(
    ("entity", "column", "dated"),
    [
        ("diagnosis", "diagnosis_date", "date"),
        ("procedure", "procedure_date", "date"),
        ("medication", "start_date", "date"),
        ("immunization", "administered_at", "time"),
        ("observation", "sampled_at", "time"),
    ],
)
def test_dated_clinical_events_fall_within_the_lifetime(batch, entity, column, dated):
    cases = [
        ("inside", "died-2020", "2019-02-03", set()),
        ("death-day", "died-2020", "2020-03-01", set()),
        ("after-death", "died-2020", "2020-03-02", {f"{column}.not_after_death"}),
        ("before-birth", "born-2000", "1999-01-01", {f"{column}.not_before_birth"}),
    ]
    when = [pd.Timestamp(case[2]) for case in cases]
    rows = pd.DataFrame(
        {
            f"{entity}_id": [case[0] for case in cases],
            "patient_id": [case[1] for case in cases],
            column: (
                [t.date() for t in when]
                if dated == "date"
                else pd.Series([utc(f"{case[2]} 12:00") for case in cases])
            ),
        }
    )
    # Columns the entity's other checks read, filled with valid values.
    filler = {
        "diagnosis": {"icd10_code": "I21.9"},
        "procedure": {"kva_code": "JAB30"},
        "medication": {"atc_code": "A10BA02"},
        "immunization": {"atc_code": "J07BM01"},
        "observation": {"npu_code": "NPU03230", "unit": "mmol/L", "value_numeric": 4.1},
    }[entity]
    for name, value in filler.items():
        rows[name] = value
    assert_cases(failed_checks(entity, rows, batch), cases)


# --- deliveries: the mother's age -----------------------------------------------------------------

DELIVERY_CASES = [
    (
        "day-before-12th-birthday",
        "mother-1990",
        "2002-06-14 12:00",
        {"patient_id.plausible_maternal_age"},
    ),
    ("on-12th-birthday", "mother-1990", "2002-06-15 00:30", set()),
    ("aged-31", "mother-1990", "2021-09-01 03:10", set()),
    ("aged-60", "mother-1990", "2051-06-14 12:00", set()),
    ("on-61st-birthday", "mother-1990", "2051-06-15 12:00", {"patient_id.plausible_maternal_age"}),
    (
        "leap-day-mother-turns-12-on-1-march",
        "leap-mother",
        "2004-02-28 12:00",
        {"patient_id.plausible_maternal_age"},
    ),
    ("leap-day-mother-12", "leap-mother", "2004-02-29 12:00", set()),
    ("unknown-mother", "not-in-batch", "2021-09-01 03:10", set()),
]


def test_maternal_age_at_delivery_is_12_to_60_completed_years(batch):
    rows = pd.DataFrame(
        {
            "delivery_id": [case[0] for case in DELIVERY_CASES],
            "patient_id": [case[1] for case in DELIVERY_CASES],
            "delivered_at": pd.Series([utc(case[2]) for case in DELIVERY_CASES]),
        }
    )
    assert_cases(failed_checks("delivery", rows, batch), DELIVERY_CASES)


# --- lab results: unit allowed for the analysis, value possible ---------------------------------

OBSERVATION_CASES = [
    ("potassium", "NPU03230", "mmol/L", 4.1, set()),
    ("potassium-at-highest", "NPU03230", "mmol/L", 15.0, set()),
    ("potassium-decimal-slip", "NPU03230", "mmol/L", 41.0, {"value_numeric.not_above_possible"}),
    ("potassium-too-low", "NPU03230", "mmol/L", 0.4, {"value_numeric.not_below_possible"}),
    ("potassium-in-mg-per-dl", "NPU03230", "mg/dL", 16.0, {"unit.allowed_for_code"}),
    ("potassium-unit-with-spaces", "NPU03230", " mmol/L ", 4.1, set()),
    ("ferritin-micro-sign", "NPU19763", "µg/L", 120.0, set()),
    ("ferritin-mikrog", "NPU19763", "mikrog/L", 120.0, set()),
    ("potassium-without-unit", "NPU03230", None, 4.1, set()),
    ("culture-not-in-table", "NPU90001", None, None, set()),
    ("swedish-national-code", "SWE05478", "mmol/L", 3.0, set()),
    ("local-code-left", "L-K", "mmol/L", 4.1, {"npu_code.format"}),
]


def test_lab_units_and_possible_ranges_per_npu_code(batch):
    rows = pd.DataFrame(
        {
            "observation_id": [case[0] for case in OBSERVATION_CASES],
            "patient_id": "born-2000",
            "npu_code": pd.array([case[1] for case in OBSERVATION_CASES], dtype="string"),
            "unit": pd.array([case[2] for case in OBSERVATION_CASES], dtype="string"),
            "value_numeric": [case[3] for case in OBSERVATION_CASES],
            "sampled_at": utc("2020-01-01 10:00"),
        }
    )
    assert_cases(failed_checks("observation", rows, batch), OBSERVATION_CASES)


# --- code formats (DOMAIN.md) ---------------------------------------------------------------------


ICD10_SE_CASES = [
    ("I21.9", True),
    ("I10", True),
    ("S72.00", True),
    ("Z86.1A", True),
    ("S72.00A", False),
    ("Z86.1AB", False),
    ("I219", False),
    ("I21.", False),
    ("21.9", False),
]
ATC_CASES = [("A10BA02", True), ("V08AB02", True), ("E10BA02", False), ("A10BA2", False)]


def test_icd10_se_format(batch):
    """Letter, two digits, then a dot and one digit plus an optional digit or letter."""
    rows = pd.DataFrame(
        {
            "diagnosis_id": [code for code, _ in ICD10_SE_CASES],
            "patient_id": "born-2000",
            "icd10_code": [code for code, _ in ICD10_SE_CASES],
        }
    )
    rows["diagnosis_date"] = dt.date(2010, 1, 1)
    found = failed_checks("diagnosis", rows, batch)
    assert {code: not found[code] for code, _ in ICD10_SE_CASES} == dict(ICD10_SE_CASES)
    assert set().union(*found.values()) == {"icd10_code.format"}


def test_atc_format_names_an_anatomical_main_group(batch):
    rows = pd.DataFrame(
        {
            "medication_id": [code for code, _ in ATC_CASES],
            "patient_id": "born-2000",
            "atc_code": [code for code, _ in ATC_CASES],
        }
    )
    rows["start_date"] = dt.date(2010, 1, 1)
    found = failed_checks("medication", rows, batch)
    assert {code: not found[code] for code, _ in ATC_CASES} == dict(ATC_CASES)


def test_a_failing_context_check_names_the_rows_own_column(batch):
    """Stewards see the row's column (mapped to the legacy one), never a context column."""
    meta = read_suite_definition(EXPECTATIONS, "observation")["meta"]
    rows = pd.DataFrame(
        {
            "observation_id": ["slip", "unit"],
            "patient_id": "born-2000",
            "npu_code": ["NPU03230", "NPU03230"],
            # Every stage row has its code's system (issue 17): the suite checks its value set.
            "npu_code_source_system": "urn:oid:1.2.752.108.1",
            "unit": ["mmol/L", "mg/dL"],
            "value_numeric": [41.0, 4.0],
            "sampled_at": utc("2020-01-01 10:00"),
        }
    )
    failures = validate_chunk(
        EXPECTATIONS,
        "observation",
        enrich(batch, rows, meta),
        "observation_id",
        {"as_of_date": AS_OF},
    )
    assert {f.check_name: f.column for f in failures} == {
        "observation.value_numeric.not_above_possible": "value_numeric",
        "observation.unit.allowed_for_code": "unit",
    }
