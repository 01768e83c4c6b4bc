"""Code system declarations of coded columns (etl.catalog, etl.core.code_systems): every coded
target declares the system of its legacy codes; SNOMED CT only for diagnoses and findings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from etl.catalog import EntityMapping

pytestmark = pytest.mark.unit


def _mapping(entity: str, column: dict, dataset: str = "rows") -> EntityMapping:
    return EntityMapping.model_validate(
        {
            "system": "demo",
            "entity": entity,
            "dataset": dataset,
            "columns": [
                {"target": "patient_id", "source": "PAT", "transform": "reference_id",
                 "args": {"entity": "patient"}},
                column,
            ],
        }
    )  # fmt: skip


@pytest.mark.parametrize(
    ("entity", "target"),
    [("diagnosis", "icd10_code"), ("operation_request", "icd10_code"),
     ("observation", "npu_code"), ("alert", "code")],
)  # fmt: skip
def test_snomed_ct_is_allowed_for_diagnoses_and_findings(entity, target):
    column = {"target": target, "source": "KOD", "transform": "upper_text",
              "source_system": ["snomed_ct", "local:legacy"]}  # fmt: skip
    mapping = _mapping(entity, column)
    systems = mapping.columns[1].source_code_systems("demo")
    assert [s.uri for s in systems] == ["http://snomed.info/sct", "urn:vardflytt:legacy:demo"]


@pytest.mark.parametrize(
    ("entity", "target"),
    [("procedure", "kva_code"), ("medication", "atc_code"), ("medication", "npl_id"),
     ("immunization", "atc_code"), ("waiting_list_entry", "planned_kva_code")],
)  # fmt: skip
def test_snomed_ct_is_refused_elsewhere(entity, target):
    column = {"target": target, "source": "KOD", "transform": "upper_text",
              "source_system": "snomed_ct"}  # fmt: skip
    with pytest.raises(ValidationError, match="SNOMED CT only for diagnoses and findings"):
        _mapping(entity, column)


@pytest.mark.parametrize(
    ("source_system", "problem"),
    [
        (None, "'icd10_code' is coded: declare the code system of the legacy codes \\(allowed "
               "here: icd10_se, ksh97_p, snomed_ct, local:<name>\\)"),
        ("loinc", "unknown code system 'loinc'"),
        ("atc", "'atc' is not allowed for diagnosis.icd10_code"),
        (["local:own", "icd10_se"], "list them last"),
        (["icd10_se", "icd10_se"], "listed twice"),
        ("local:Own Codes", "local:<name>"),
    ],
    ids=["missing", "unknown", "wrong-system", "catch-all-first", "twice", "bad-local-name"],
)  # fmt: skip
def test_a_wrong_declaration_names_the_field_and_the_allowed_systems(source_system, problem):
    column = {"target": "icd10_code", "source": "KOD", "transform": "normalise_icd10_se"}
    if source_system is not None:
        column["source_system"] = source_system
    with pytest.raises(ValidationError, match=problem) as refused:
        _mapping("diagnosis", column)
    assert "columns.icd10_code.source_system" in str(refused.value)


def test_a_declaration_on_a_column_that_is_not_coded_is_refused():
    column = {"target": "diagnosis_text", "source": "TEXT", "source_system": "icd10_se"}
    with pytest.raises(ValidationError, match="'diagnosis_text' is not a coded column"):
        _mapping("diagnosis", column)


def test_the_kept_source_columns_are_never_mapped_directly():
    column = {"target": "icd10_code_source_code", "source": "KOD"}
    with pytest.raises(ValidationError, match="filled from the coded column's 'source_system'"):
        _mapping("diagnosis", column)


def test_only_a_column_whose_system_varies_declares_a_target_system():
    column = {"target": "icd10_code", "source": "KOD", "transform": "normalise_icd10_se",
              "source_system": "icd10_se", "target_system": "icd10_se"}  # fmt: skip
    with pytest.raises(ValidationError, match="only a column whose system varies per row"):
        _mapping("diagnosis", column)
    alert = {
        "target": "code",
        "source": "KOD",
        "transform": "upper_text",
        "source_system": "local:antibody",
        "target_system": ["snomed_ct", "local:antibody"],
    }
    mapping = _mapping("alert", alert)
    assert [s.name for s in mapping.columns[1].target_code_systems("demo")] == [
        "snomed_ct",
        "local:antibody",
    ]
