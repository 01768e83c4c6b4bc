"""Column lineage from the mappings (etl/report/lineage.py): source column -> transform -> core
column, as the OpenLineage facets and ``vardflytt lineage`` carry it."""

from __future__ import annotations

import pytest

from etl.catalog import load_system
from etl.report.lineage import (
    CORE_NAMESPACE,
    legacy_namespace,
    lineage_rows,
    system_lineage,
    task_lineage,
)
from etl.settings import PROJECT_ROOT

pytestmark = pytest.mark.unit

MAPPINGS = PROJECT_ROOT / "mappings"


def _sources(fields: dict, column: str) -> set[tuple[str, str, str, str]]:
    return {
        (f.namespace, f.name, f.field, f.transformations[0].subtype)
        for f in fields[column].inputFields
    }


def test_a_core_column_traces_to_its_source_column_and_transform():
    lineage = task_lineage(MAPPINGS, ["melior"])
    diagnosis = next(o for o in lineage.outputs if o.name == "diagnosis")
    assert diagnosis.namespace == CORE_NAMESPACE
    fields = diagnosis.facets["columnLineage"].fields
    melior = legacy_namespace("melior")
    assert _sources(fields, "icd10_code") == {(melior, "diagnos", "DIAGNOSKOD", "TRANSFORMATION")}
    assert fields["icd10_code"].transformationDescription.startswith("normalise_icd10_se")
    # A lookup: the contact's spärr flows in (DIRECT), joined on the diagnosis' contact (INDIRECT).
    assert _sources(fields, "is_blocked") == {
        (melior, "kontakt", "SPARR", "TRANSFORMATION"),
        (melior, "diagnos", "KONTAKTNR", "JOIN"),
    }
    assert _sources(fields, "diagnosis_text") == {(melior, "diagnos", "DIAGNOSTEXT", "IDENTITY")}
    # The reference check decides which rows load: a dataset-level input.
    filters = {(f.name, f.field) for f in diagnosis.facets["columnLineage"].dataset}
    assert ("diagnos", "PATNR") in filters


def test_identity_numbers_trace_to_the_number_and_its_century_column():
    patient = next(o for o in task_lineage(MAPPINGS, ["melior"]).outputs if o.name == "patient")
    fields = patient.facets["columnLineage"].fields
    assert {f.field for f in fields["identity_number"].inputFields} == {"PNR", "SEKEL"}
    assert {f.field for f in fields["patient_id"].inputFields} == {"PATNR"}


def test_every_mapped_target_of_every_entity_has_its_lineage():
    systems = load_system(MAPPINGS / "elvis")
    rows = system_lineage(MAPPINGS / "elvis")
    traced = {(r.table, r.column) for r in rows}
    for entity, mapping in systems.entities.items():
        for column in mapping.columns:
            assert (entity, column.target) in traced
    # Inputs name only datasets the system declares, and columns those datasets have.
    for row in rows:
        for source in row.sources:
            assert source.column in systems.spec.dataset_columns(source.dataset) + [
                lookup.as_ for m in systems.entities.values() for lookup in m.lookups
            ]


def test_two_systems_filling_one_core_column_are_both_its_inputs():
    lineage = task_lineage(MAPPINGS, ["melior", "elvis"])
    patient = next(o for o in lineage.outputs if o.name == "patient")
    namespaces = {f.namespace for f in patient.facets["columnLineage"].fields["sex"].inputFields}
    assert namespaces == {legacy_namespace("melior"), legacy_namespace("elvis")}
    assert {(d.namespace, d.name) for d in lineage.inputs} >= {
        (legacy_namespace("melior"), "patient"),
        (legacy_namespace("melior"), "diagnos"),
    }


def test_lineage_rows_filter_by_core_column():
    rows = lineage_rows(MAPPINGS, ["melior"], "diagnosis.icd10_code")
    assert rows == [
        {
            "core_column": "diagnosis.icd10_code",
            "system": "melior",
            "source": "diagnos.DIAGNOSKOD",
            "kind": "DIRECT TRANSFORMATION",
            "transform": rows[0]["transform"],
        }
    ]
    assert "normalise_icd10_se" in rows[0]["transform"]


def test_the_lineage_command_prints_a_core_columns_sources(monkeypatch):
    import json

    from tests.commands import invoke

    monkeypatch.setenv("VARDFLYTT_MAPPINGS_DIR", str(MAPPINGS))
    result = invoke("lineage", "--system", "melior", "--column", "diagnosis.is_blocked", "--json")
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert {(r["source"], r["kind"]) for r in rows} == {
        ("kontakt.SPARR", "DIRECT TRANSFORMATION"),
        ("diagnos.KONTAKTNR", "INDIRECT JOIN"),
    }
    invoke("lineage", "--system", "melior", "--column", "diagnosis.no_such_column", expect=1)
