"""The FHIR R4 export (``vardflytt export fhir``) of a migrated core, on SQLite and PostgreSQL.

Melior, ELVIS and AsynjaVisph are loaded as waves w1, w2 and w3 by the real pipeline. Every
exported resource validates with fhir.resources; a round trip (export, parse the NDJSON,
compare with the core rows) shows that nothing is dropped: per type, exported + refused
(reported) = core rows, with the same ids, codes and dates; every literal reference resolves
inside the export; protected patients and spärr rows carry their security labels; no identity
number reaches the manifest, the command's output or the log.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fhir.resources.R4B import get_fhir_model_class

from etl import pipeline
from etl.core.database import core_engine
from etl.core.tables import ENTITY_TABLES
from etl.export import fhir
from etl.export.bulk import ERRORS_FILE, MANIFEST, SPECS, ExportError, export_fhir
from etl.export.check import references_in
from etl.settings import Settings
from tests.cores import BOTH_CORES

pytestmark = pytest.mark.integration

AS_OF = dt.date(2026, 7, 1)
NOW = dt.datetime(2026, 12, 4, 19, 0, tzinfo=dt.UTC)
WAVES = {"w1": "melior", "w2": "elvis", "w3": "asynjavisph"}
# Codes a resource's required bindings allow, for the elements we fill (fhir.resources checks
# structure and cardinality, not bound codes).
ALLOWED = {
    ("Patient", "gender"): {"male", "female", "other", "unknown"},
    ("Encounter", "status"): {
        "planned",
        "arrived",
        "triaged",
        "in-progress",
        "onleave",
        "finished",
        "cancelled",
        "entered-in-error",
        "unknown",
    },
    ("Observation", "status"): {
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    },
    ("Procedure", "status"): {
        "preparation",
        "in-progress",
        "not-done",
        "on-hold",
        "stopped",
        "completed",
        "entered-in-error",
        "unknown",
    },
    ("MedicationStatement", "status"): {
        "active",
        "completed",
        "entered-in-error",
        "intended",
        "stopped",
        "on-hold",
        "unknown",
        "not-taken",
    },
    ("Appointment", "status"): {
        "proposed",
        "pending",
        "booked",
        "arrived",
        "fulfilled",
        "cancelled",
        "noshow",
        "entered-in-error",
        "checked-in",
        "waitlist",
    },
    ("ServiceRequest", "status"): {
        "draft",
        "active",
        "on-hold",
        "revoked",
        "completed",
        "entered-in-error",
        "unknown",
    },
    ("ServiceRequest", "intent"): {
        "proposal",
        "plan",
        "directive",
        "order",
        "original-order",
        "reflex-order",
        "filler-order",
        "instance-order",
        "option",
    },
    ("ServiceRequest", "priority"): {"routine", "urgent", "asap", "stat"},
    ("DocumentReference", "status"): {"current", "superseded", "entered-in-error"},
    ("Flag", "status"): {"active", "inactive", "entered-in-error"},
    ("Immunization", "status"): {"completed", "entered-in-error", "not-done"},
}
R = {"system": fhir.CONFIDENTIALITY_SYSTEM, "code": "R"}
SPARR = {"system": fhir.SECURITY_REASON_SYSTEM, "code": "sparr"}


@pytest.fixture(scope="module", params=BOTH_CORES)
def migrated(request, small_estate, tmp_path_factory, core_of):
    """Melior as wave w1, ELVIS as wave w2, AsynjaVisph as w3; yields the settings."""
    root = tmp_path_factory.mktemp(f"fhir-{request.param}")
    with core_of(request.param, root) as core_url, pytest.MonkeyPatch.context() as patch:
        patch.setenv("VARDFLYTT_HOME", str(root / "home"))
        patch.setenv("VARDFLYTT_ESTATE_DIR", str(small_estate))
        patch.setenv("VARDFLYTT_CORE_URL", core_url)
        for name in ("VARDFLYTT_LANDING_DIR", "VARDFLYTT_ALLOWED_HOSTS"):
            patch.delenv(name, raising=False)
        settings = Settings()
        for wave, system in WAVES.items():
            pipeline.run_system(system, f"full-{system}", AS_OF, settings=settings, wave=wave)
        yield settings


@pytest.fixture(scope="module")
def exported(migrated, tmp_path_factory):
    """The export of the whole core (no wave), made and parsed once for the module's tests that
    only read it: its folder and its resources per type (read-only to the tests)."""
    out = _export(migrated, tmp_path_factory.mktemp("fhir-all") / "all", wave=None)
    return out, _read(out)


def _engine(settings: Settings) -> sa.Engine:
    return core_engine(settings.resolved_core_url)


def _export(settings: Settings, out: Path, wave: str | None, chunk_size: int = 5000) -> Path:
    export_fhir(_engine(settings), out, wave=wave, transaction_time=NOW, chunk_size=chunk_size)
    return out


def _read(out: Path) -> dict[str, list[dict[str, Any]]]:
    """The NDJSON files the manifest lists, parsed, per resource type; counts checked."""
    manifest = json.loads((out / MANIFEST).read_text("utf-8"))
    found: dict[str, list[dict[str, Any]]] = {}
    for entry in manifest["output"]:
        lines = (out / entry["url"]).read_text("utf-8").splitlines()
        assert len(lines) == entry["count"]
        found[entry["type"]] = [json.loads(line) for line in lines]
    return found


def _refused(out: Path) -> dict[str, set[str]]:
    """Ids of resources kept out for a required reference the core does not hold, per type."""
    refused: dict[str, set[str]] = {}
    path = out / ERRORS_FILE
    if not path.exists():
        return refused
    for line in path.read_text("utf-8").splitlines():
        issue = json.loads(line)["issue"][0]
        get_fhir_model_class("OperationOutcome").model_validate(json.loads(line))
        if issue["severity"] == "error":
            resource_type, row_id = issue["diagnostics"].split(":")[0].split("/")
            refused.setdefault(resource_type, set()).add(row_id)
    return refused


def _core_rows(settings: Settings, entity: str) -> dict[str, dict[str, Any]]:
    table = ENTITY_TABLES[entity]
    with _engine(settings).connect() as connection:
        return {
            row[f"{entity}_id"]: dict(row)
            for row in connection.execute(sa.select(table)).mappings()
        }


def test_every_resource_validates_with_a_fhir_model_library(exported):
    _, resources = exported
    assert set(resources) == {spec.resource_type for spec in SPECS}
    for resource_type, items in resources.items():
        model = get_fhir_model_class(resource_type)
        for resource in items:
            model.model_validate(resource)
            for (bound_type, element), allowed in ALLOWED.items():
                if bound_type == resource_type and element in resource:
                    assert resource[element] in allowed, (resource_type, element)


def test_round_trip_drops_nothing(migrated, exported):
    out, resources = exported
    refused = _refused(out)
    for spec in SPECS:
        core = _core_rows(migrated, spec.entity)
        exported = {r["id"]: r for r in resources.get(spec.resource_type, [])}
        kept_out = refused.get(spec.resource_type, set())
        assert not set(exported) & kept_out
        assert set(exported) | kept_out == set(core), spec.resource_type
        assert len(exported) > 0, spec.resource_type
    _compare_codes_and_dates(migrated, resources)


def _codes(resource: dict, element: str, system: str) -> list[str]:
    concept = resource.get(element) or {}
    return [c["code"] for c in concept.get("coding", []) if c["system"] == system]


def _compare_codes_and_dates(settings: Settings, resources: dict[str, list[dict]]) -> None:
    by_type = {t: {r["id"]: r for r in items} for t, items in resources.items()}
    checks = {
        "diagnosis": (
            "Condition",
            "code",
            fhir.ICD10_SE_SYSTEM,
            "icd10_code",
            "recordedDate",
            "diagnosis_date",
        ),
        "procedure": (
            "Procedure",
            "code",
            fhir.KVA_SYSTEM,
            "kva_code",
            "performedDateTime",
            "procedure_date",
        ),
        "medication": (
            "MedicationStatement",
            "medicationCodeableConcept",
            fhir.ATC_SYSTEM,
            "atc_code",
            None,
            "start_date",
        ),
        "observation": (
            "Observation",
            "code",
            fhir.NPU_SYSTEM,
            "npu_code",
            "effectiveDateTime",
            "sampled_at",
        ),
    }
    for entity, (
        resource_type,
        element,
        system,
        code_column,
        date_element,
        date_column,
    ) in checks.items():
        compared = 0
        for row_id, row in _core_rows(settings, entity).items():
            resource = by_type[resource_type].get(row_id)
            if resource is None:
                continue
            expected_code = [row[code_column]] if row[code_column] is not None else []
            assert _codes(resource, element, system) == expected_code
            value = (
                resource.get("effectivePeriod", {}).get("start")
                if date_element is None
                else resource.get(date_element)
            )
            core_value = row[date_column]
            if isinstance(core_value, dt.datetime):
                expected = fhir._instant(core_value)
            else:
                expected = core_value.isoformat() if core_value else None
            assert value == expected, (entity, row_id)
            compared += 1
        assert compared > 0, entity
    # Notes keep their text, alerts their code, vaccinations their ATC code.
    for row_id, row in _core_rows(settings, "clinical_note").items():
        if row_id in by_type["DocumentReference"] and row["note_text"]:
            data = by_type["DocumentReference"][row_id]["content"][0]["attachment"]["data"]
            assert base64.b64decode(data).decode("utf-8") == row["note_text"]
    for row_id, row in _core_rows(settings, "alert").items():
        if row_id in by_type["Flag"]:
            system = fhir.alert_code_system(row)
            expected_code = [row["code"]] if row["code"] else []
            assert _codes(by_type["Flag"][row_id], "code", system) == expected_code
    for row_id, row in _core_rows(settings, "immunization").items():
        if row_id in by_type["Immunization"]:
            expected_code = [row["atc_code"]] if row["atc_code"] else []
            immunization = by_type["Immunization"][row_id]
            assert _codes(immunization, "vaccineCode", fhir.ATC_SYSTEM) == expected_code
    # Encounters keep their start; patients their birth date and every identifier.
    for row_id, row in _core_rows(settings, "encounter").items():
        if row_id in by_type["Encounter"]:
            period = by_type["Encounter"][row_id].get("period", {})
            assert period.get("start") == fhir._instant(row["started_at"])
    identifiers = Counter(
        row["patient_id"] for row in _core_rows(settings, "patient_identifier").values()
    )
    for row_id, row in _core_rows(settings, "patient").items():
        patient = by_type["Patient"][row_id]
        assert patient.get("birthDate") == (
            row["birth_date"].isoformat() if row["birth_date"] else None
        )
        assert len(patient.get("identifier", [])) >= identifiers[row_id]


# Per coded entity: its resource type, the element with the codes, and per coded column the
# system of its target code (None: the row's own ``code_system``).
SOURCE_CODED = {
    "diagnosis": ("Condition", "code", {"icd10_code": fhir.ICD10_SE_SYSTEM}),
    "procedure": ("Procedure", "code", {"kva_code": fhir.KVA_SYSTEM}),
    "observation": ("Observation", "code", {"npu_code": fhir.NPU_SYSTEM}),
    "medication": (
        "MedicationStatement",
        "medicationCodeableConcept",
        {"atc_code": fhir.ATC_SYSTEM, "npl_id": fhir.NPL_SYSTEM},
    ),
    "alert": ("Flag", "code", {"code": None}),
    "immunization": ("Immunization", "vaccineCode", {"atc_code": fhir.ATC_SYSTEM}),
}


def test_source_codes_survive_the_round_trip_as_a_second_coding(migrated, exported):
    """Every core row whose source code is in another system than its target code (a local
    code through a crosswalk, a retired KSH97-P diagnosis) carries both codings; the source
    coding's system is the core's ``<column>_source_system``. Alerts carry their code system."""
    _, resources = exported
    by_type = {t: {r["id"]: r for r in items} for t, items in resources.items()}
    two_codings = Counter()
    for entity, (resource_type, element, columns) in SOURCE_CODED.items():
        for row_id, row in _core_rows(migrated, entity).items():
            resource = by_type[resource_type].get(row_id)
            if resource is None:
                continue
            for column, target_system in columns.items():
                target_system = target_system or row["code_system"]
                source_system = row[f"{column}_source_system"]
                if row[column] is not None:
                    assert source_system is not None, (entity, column, row_id)
                    assert row[f"{column}_source_code"] is not None
                if source_system is None or source_system == target_system:
                    continue
                source_code = row[f"{column}_source_code"]
                assert _codes(resource, element, source_system) == [source_code], row_id
                assert _codes(resource, element, target_system) == [row[column]]
                two_codings[entity] += 1
    # Melior's local lab codes, AsynjaVisph's KSH97-P diagnoses, Melior's alerts' own codes.
    assert two_codings["observation"] > 0
    assert two_codings["diagnosis"] > 0
    alerts = _core_rows(migrated, "alert").values()
    systems = {row["code_system"] for row in alerts}
    assert {fhir.ATC_SYSTEM, fhir.ICD10_SE_SYSTEM} <= systems
    for row in alerts:
        flag = by_type["Flag"].get(row["alert_id"])
        if flag is not None and row["code"] is not None:
            assert _codes(flag, "code", row["code_system"]) == [row["code"]]
    # Many to one: one NPU code reached from a local code and written as itself, both kept.
    sources: dict[str, set[str]] = {}
    for row in _core_rows(migrated, "observation").values():
        if row["npu_code"] is not None:
            sources.setdefault(row["npu_code"], set()).add(row["npu_code_source_code"])
    assert any(len(codes) > 1 for codes in sources.values())


def test_every_reference_resolves_inside_the_export(migrated, exported, tmp_path):
    for wave in (None, "w1", "w2"):
        resources = (
            exported[1] if wave is None else _read(_export(migrated, tmp_path / wave, wave=wave))
        )
        present = {f"{t}/{r['id']}" for t, items in resources.items() for r in items}
        references = [ref for items in resources.values() for ref in references_in(items)]
        assert references, wave
        assert set(references) <= present, wave


def test_a_wave_exports_its_batches_and_what_they_refer_to(migrated, tmp_path):
    """Wave w1 is Melior's: its rows only, plus the rows they refer to wherever those were
    loaded (here a Melior patient last written by ELVIS's batch, i.e. by wave w2)."""
    engine = _engine(migrated)
    table = ENTITY_TABLES["patient"]
    encounters = ENTITY_TABLES["encounter"]
    with engine.connect() as connection:
        moved = connection.execute(
            sa.select(encounters.c.patient_id)
            .join(table, table.c.patient_id == encounters.c.patient_id)
            .where(encounters.c.batch_id == "full-melior")
            .order_by(encounters.c.patient_id)
            .limit(1)
        ).scalar_one()
    with engine.begin() as connection:
        connection.execute(
            table.update().where(table.c.patient_id == moved).values(batch_id="full-elvis")
        )
    try:
        out = _export(migrated, tmp_path / "w1", wave="w1")
    finally:
        with engine.begin() as connection:
            connection.execute(
                table.update().where(table.c.patient_id == moved).values(batch_id="full-melior")
            )
    resources = _read(out)
    manifest = json.loads((out / MANIFEST).read_text("utf-8"))
    assert manifest["extension"] == {"wave": "w1", "batches": ["full-melior"]}
    patients = {r["id"] for r in resources["Patient"]}
    assert moved in patients
    core = _core_rows(migrated, "patient")
    assert {core[p]["source_system"] for p in patients} == {"melior"}
    encounter_ids = {r["id"] for r in resources["Encounter"]}
    melior_encounters = {
        k
        for k, row in _core_rows(migrated, "encounter").items()
        if row["batch_id"] == "full-melior"
    }
    assert encounter_ids == melior_encounters - _refused(out).get("Encounter", set())


def test_protected_patients_and_sparr_rows_carry_security_labels(migrated, exported):
    _, resources = exported
    patients = {r["id"]: r for r in resources["Patient"]}
    protected = {
        k
        for k, row in _core_rows(migrated, "patient").items()
        if row["protected_identity"] != "none"
    }
    assert protected, "the estate has protected patients"
    for row_id, resource in patients.items():
        labelled = R in resource.get("meta", {}).get("security", [])
        assert labelled is (row_id in protected)
    about_protected = 0
    for resource_type, items in resources.items():
        for resource in items:
            subject = (resource.get("subject") or resource.get("patient") or {}).get("reference")
            if subject and subject.removeprefix("Patient/") in protected:
                assert R in resource["meta"]["security"], resource_type
                about_protected += 1
    assert about_protected > 0
    blocked_seen = 0
    for spec in SPECS:
        if "is_blocked" not in ENTITY_TABLES[spec.entity].c:
            continue
        exported = {r["id"]: r for r in resources[spec.resource_type]}
        for row_id, row in _core_rows(migrated, spec.entity).items():
            if row_id not in exported:
                continue
            security = exported[row_id].get("meta", {}).get("security", [])
            assert (SPARR in security) is (row["is_blocked"] is not False)
            if row["is_blocked"] is not False:
                assert R in security
            blocked_seen += row["is_blocked"] is not False
    assert blocked_seen > 0


def test_no_identity_number_leaks_into_output_manifest_or_log(migrated, tmp_path, cli, caplog):
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "cli"
    result = cli("export", "fhir", "--wave", "w1", "--out", str(out))
    assert "Patient" in result.output
    numbers = {
        row["identity_number"]
        for row in _core_rows(migrated, "patient_identifier").values()
        if row["identity_number"]
    }
    names = {
        row["family_name"] for row in _core_rows(migrated, "patient").values() if row["family_name"]
    }
    assert numbers and names
    said = result.output + caplog.text + (out / MANIFEST).read_text("utf-8")
    if (out / ERRORS_FILE).exists():
        said += (out / ERRORS_FILE).read_text("utf-8")
    digits = set(re.findall(r"\d{6,}[-+A-Z]?\d*", said))
    assert not any(number in said for number in numbers)
    assert not digits & numbers
    assert not any(re.search(rf"\b{re.escape(name)}\b", said) for name in names)
    # ... while the patient file itself does carry them (the export is the journal).
    assert any(number in (out / "Patient.ndjson").read_text("utf-8") for number in numbers)


def test_chunk_size_changes_nothing_in_the_files(migrated, tmp_path):
    small = _export(migrated, tmp_path / "small", wave=None, chunk_size=7)
    large = _export(migrated, tmp_path / "large", wave=None, chunk_size=100_000)
    names = sorted(p.name for p in small.iterdir())
    assert names == sorted(p.name for p in large.iterdir())
    for name in names:
        assert (small / name).read_bytes() == (large / name).read_bytes(), name


def test_a_wave_without_promoted_batches_is_refused(migrated, tmp_path, cli):
    with pytest.raises(ExportError):
        _export(migrated, tmp_path / "none", wave="w9")
    result = cli("export", "fhir", "--wave", "w9", "--out", str(tmp_path / "cli"), expect=1)
    assert "no promoted batch" in result.output
    cli("export", "fhir", "--out", str(tmp_path / "cli"), expect=2)
    cli("export", "fhir", "--all", "--wave", "w1", expect=2)
    cli("export", "fhir", "--wave", "../../w1", expect=2)  # no folder outside the export root
    shutil.rmtree(tmp_path / "none", ignore_errors=True)


def test_an_export_over_an_earlier_one_leaves_no_stale_file(migrated, tmp_path):
    out = _export(migrated, tmp_path / "same", wave=None)
    assert (out / "Immunization.ndjson").exists()
    _export(migrated, out, wave="w2")  # ELVIS: no vaccinations, no lab results
    manifest = json.loads((out / MANIFEST).read_text("utf-8"))
    listed = {entry["url"] for entry in manifest["output"] + manifest["error"]}
    assert "Immunization.ndjson" not in listed
    assert {p.name for p in out.iterdir()} == listed | {MANIFEST}
