"""The suites' code system value sets (expectations/<entity>.json) follow the core model's coded
columns (etl.core.code_systems): a system outside a column's set fails validation, and SNOMED
CT is in the set of diagnoses and findings only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from etl.core.code_systems import SNOMED_CT_URI, source_system_column
from etl.core.model import ENTITIES
from etl.validate.suites import read_suite_definition, validate_chunk

pytestmark = pytest.mark.unit

EXPECTATIONS = Path(__file__).resolve().parents[3] / "expectations"
CODED = [
    (entity, column, coded)
    for entity, model in ENTITIES.items()
    for column, coded in model.coded_fields.items()
]


@pytest.mark.parametrize(
    ("entity", "column", "coded"), CODED, ids=[f"{e}.{c}" for e, c, _ in CODED]
)
def test_every_coded_column_has_its_value_set_in_the_suite(entity, column, coded):
    expectations = read_suite_definition(EXPECTATIONS, entity)["expectations"]
    regexes = {
        e["kwargs"]["column"]: e["kwargs"]["regex"]
        for e in expectations
        if e["type"] == "expect_column_values_to_match_regex"
    }
    checked = [source_system_column(column)] + (
        [coded.system_column] if coded.system_column else []
    )
    for name in checked:
        assert regexes.get(name) == coded.uri_pattern(), f"{entity}.{name}"


def _rows(entity: str, column: str, systems: list[str]) -> pd.DataFrame:
    model = ENTITIES[entity]
    frame = pd.DataFrame({name: [None] * len(systems) for name in model.model_fields})
    frame[model.id_field()] = [f"{n:032x}" for n in range(len(systems))]
    frame["patient_id"] = "p" * 32
    frame[source_system_column(column)] = systems
    return frame.astype({source_system_column(column): "string"})


@pytest.mark.parametrize(
    ("entity", "column", "accepted"),
    [("diagnosis", "icd10_code", True), ("observation", "npu_code", True),
     ("procedure", "kva_code", False), ("medication", "atc_code", False)],
)  # fmt: skip
def test_snomed_ct_passes_the_value_set_of_diagnoses_and_findings_only(entity, column, accepted):
    systems = [SNOMED_CT_URI, "urn:vardflytt:legacy-code:melior", "http://loinc.org"]
    rows = _rows(entity, column, systems)
    failures = validate_chunk(
        EXPECTATIONS, entity, rows, f"{entity}_id", {"as_of_date": "2026-07-01"}
    )
    check = f"{entity}.{source_system_column(column)}.value_set"
    failed = {f.check_name: set(f.row_ids) for f in failures}
    expected = {rows.iloc[2][f"{entity}_id"]} | (
        set() if accepted else {rows.iloc[0][f"{entity}_id"]}
    )
    assert failed.get(check) == expected
