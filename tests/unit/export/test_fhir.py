"""FHIR resources from core rows (etl.export.fhir): identifier systems, security labels that
fail closed, code systems, and every resource valid by a maintained FHIR model library."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from fhir.resources.R4B import get_fhir_model_class

from etl.core.model import ProtectedIdentity
from etl.export import fhir
from etl.export.bulk import SPECS

pytestmark = pytest.mark.unit

R = {"system": fhir.CONFIDENTIALITY_SYSTEM, "code": "R"}
LINEAGE = {"source_system": "melior", "source_key": "k1", "batch_id": "b1", "content_hash": "h"}
PATIENT = {
    **LINEAGE,
    "patient_id": "p" * 32,
    "identity_number": "194910269875",
    "identity_kind": "personnummer",
    "family_name": "Testsson",
    "given_name": "Tolvan",
    "sex": "male",
    "birth_date": dt.date(1949, 10, 26),
    "deceased_date": None,
    "address_line": "Testgatan 1",
    "postal_code": "41101",
    "city": "Göteborg",
    "protected_identity": "none",
    "registered_at": None,
}
ENCOUNTER = {
    **LINEAGE,
    "encounter_id": "e" * 32,
    "patient_id": "p" * 32,
    "care_unit_id": "c" * 32,
    "care_unit_hsa_id": "SE2321000131-E000000000001",
    "practitioner_id": "d" * 32,
    "encounter_class": "SLUTENVÅRD",
    "started_at": dt.datetime(2024, 1, 2, 8, 30),
    "ended_at": dt.datetime(2024, 1, 5, 11, 0, tzinfo=dt.UTC),
    "is_blocked": False,
}


def _valid(resource: dict) -> dict:
    """The resource parsed by fhir.resources (R4B models: R4 for these types)."""
    model = get_fhir_model_class(resource["resourceType"])
    model.model_validate(resource)
    return resource


@pytest.mark.parametrize(
    ("level", "labelled"),
    [
        ("none", False),
        *[(level.value, True) for level in ProtectedIdentity if level != ProtectedIdentity.NONE],
        (None, True),
        ("", True),
        ("NONE", True),
        ("okänd", True),
    ],
    ids=lambda value: repr(value),
)
def test_protected_identity_is_restricted_unless_explicitly_none(level, labelled):
    resource = _valid(fhir.patient({**PATIENT, "protected_identity": level}))
    security = resource.get("meta", {}).get("security", [])
    assert (R in security) is labelled
    if labelled:
        expected = level or "uncertain"
        assert {"system": fhir.PROTECTED_IDENTITY_SYSTEM, "code": expected} in security


@pytest.mark.parametrize(
    ("flag", "labelled"),
    [(False, False), (0, False), (True, True), (None, True), (1, True), ("false", True)],
    ids=repr,
)
def test_sparr_is_restricted_unless_explicitly_false(flag, labelled):
    resource = _valid(fhir.encounter({**ENCOUNTER, "is_blocked": flag}))
    security = resource.get("meta", {}).get("security", [])
    assert (R in security) is labelled
    assert ({"system": fhir.SECURITY_REASON_SYSTEM, "code": "sparr"} in security) is labelled


@pytest.mark.parametrize(
    ("kind", "number", "system", "use"),
    [
        (
            "personnummer",
            "194910269875",
            "http://electronichealth.se/identifier/personnummer",
            "official",
        ),
        (
            "samordningsnummer",
            "197010632391",
            "http://electronichealth.se/identifier/samordningsnummer",
            "official",
        ),
        ("reservnummer_vgr", "19810829M071", "urn:vardflytt:reservnummer:vgr", "temp"),
        ("reservnummer_vgr_issued", "19450829K088", "urn:vardflytt:reservnummer:vgr", "temp"),
        ("reservnummer_legacy", "R123", "urn:vardflytt:legacy-reservnummer", "temp"),
    ],
)
def test_identifiers_carry_hl7_sweden_systems(kind, number, system, use):
    identifiers = [
        {
            "identity_kind": kind,
            "identity_number": number,
            "is_primary": True,
            "issuer_country": None,
        }
    ]
    row = {**PATIENT, "identity_number": number, "identity_kind": kind}
    resource = _valid(fhir.patient(row, fhir.Context(identifiers=identifiers)))
    assert resource["identifier"] == [{"use": use, "system": system, "value": number}]


def test_a_patient_keeps_every_identifier_and_its_own_number():
    identifiers = [
        {
            "identity_kind": "reservnummer_legacy",
            "identity_number": "R-77",
            "is_primary": False,
            "issuer_country": None,
        },
        {
            "identity_kind": "foreign_passport",
            "identity_number": "X1234567",
            "is_primary": False,
            "issuer_country": "NO",
        },
    ]
    resource = _valid(fhir.patient(PATIENT, fhir.Context(identifiers=identifiers)))
    assert [i["value"] for i in resource["identifier"]] == ["194910269875", "R-77", "X1234567"]
    assert resource["identifier"][2]["assigner"] == {"display": "NO"}


def test_hsa_ids_use_the_hsa_system():
    unit = _valid(
        fhir.organization(
            {**LINEAGE, "care_unit_id": "c" * 32, "hsa_id": "SE2321000131-E1", "name": "Avd 1"}
        )
    )
    assert unit["identifier"] == [{"system": "urn:oid:1.2.752.29.4.19", "value": "SE2321000131-E1"}]
    encounter = _valid(fhir.encounter(ENCOUNTER))  # care unit not in the export: by HSA-id
    assert encounter["serviceProvider"] == {
        "identifier": {"system": fhir.HSA_SYSTEM, "value": "SE2321000131-E000000000001"}
    }


def test_references_are_written_only_when_resolved():
    bare = _valid(fhir.encounter(ENCOUNTER))
    assert "participant" not in bare
    resolved = fhir.Context(resolved={"care_unit_id": True, "practitioner_id": True})
    full = _valid(fhir.encounter(ENCOUNTER, resolved))
    assert full["serviceProvider"] == {"reference": f"Organization/{'c' * 32}"}
    assert full["participant"] == [{"individual": {"reference": f"Practitioner/{'d' * 32}"}}]
    assert full["subject"] == {"reference": f"Patient/{'p' * 32}"}


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("inpatient", "IMP"),
        ("SLUTENVÅRD", "IMP"),
        ("ÖPPENVÅRD", "AMB"),
        ("ambulatory", "AMB"),
        ("AKUT", "EMER"),
        ("DAGVÅRD", "SS"),
        ("virtual", "VR"),
        ("home", "HH"),
    ],
)
def test_encounter_classes_map_to_act_codes(value, code):
    assert fhir.encounter_class(value) == {"system": fhir.ACT_CODE_SYSTEM, "code": code}


@pytest.mark.parametrize("value", [None, "", "telepati"])
def test_an_unknown_encounter_class_is_a_null_flavor_not_a_guess(value):
    assert fhir.encounter_class(value) == {"system": fhir.NULL_FLAVOR_SYSTEM, "code": "UNK"}


def test_timestamps_are_utc_datetimes():
    resource = _valid(fhir.encounter(ENCOUNTER))
    assert resource["period"] == {
        "start": "2024-01-02T08:30:00+00:00",
        "end": "2024-01-05T11:00:00+00:00",
    }
    assert resource["status"] == "finished"
    assert _valid(fhir.encounter({**ENCOUNTER, "ended_at": None}))["status"] == "unknown"


def test_codes_use_their_code_systems():
    condition = _valid(
        fhir.condition(
            {
                **LINEAGE,
                "diagnosis_id": "g" * 32,
                "patient_id": "p" * 32,
                "encounter_id": None,
                "icd10_code": "I21.9",
                "diagnosis_text": None,
                "diagnosis_date": dt.date(2024, 1, 2),
                "is_primary_diagnosis": True,
                "practitioner_hsa_id": None,
                "is_blocked": False,
            }
        )
    )
    assert condition["code"] == {"coding": [{"system": fhir.ICD10_SE_SYSTEM, "code": "I21.9"}]}
    observation = _valid(
        fhir.observation(
            {
                **LINEAGE,
                "observation_id": "o" * 32,
                "patient_id": "p" * 32,
                "npu_code": "NPU02319",
                "source_analysis_code": "HB",
                "analysis_name": "Hemoglobin",
                "value_numeric": 0.8,
                "value_comparator": "<",
                "value_text": None,
                "unit": "g/L",
                "reference_low": 117.0,
                "reference_high": 153.0,
                "sampled_at": dt.datetime(2024, 1, 2, 7, 0, tzinfo=dt.UTC),
                "laboratory": None,
                "is_blocked": False,
            }
        )
    )
    assert observation["code"]["coding"] == [
        {"system": fhir.NPU_SYSTEM, "code": "NPU02319"},
        {"system": "urn:vardflytt:analysis-code:melior", "code": "HB"},
    ]
    assert observation["valueQuantity"] == {"value": 0.8, "comparator": "<", "unit": "g/L"}
    medication = _valid(
        fhir.medication_statement(
            {
                **LINEAGE,
                "medication_id": "m" * 32,
                "patient_id": "p" * 32,
                "atc_code": "A10BA02",
                "npl_id": None,
                "product_name": "Metformin",
                "dosage_text": None,
                "start_date": dt.date(2023, 1, 1),
                "end_date": None,
                "is_blocked": None,
            }
        )
    )
    assert medication["medicationCodeableConcept"]["coding"] == [
        {"system": fhir.ATC_SYSTEM, "code": "A10BA02"}
    ]
    assert R in medication["meta"]["security"]  # spärr unknown: restricted
    procedure = _valid(
        fhir.procedure(
            {
                **LINEAGE,
                "procedure_id": "q" * 32,
                "patient_id": "p" * 32,
                "encounter_id": "e" * 32,
                "kva_code": "AA011",
                "procedure_date": dt.date(2024, 1, 3),
                "care_unit_hsa_id": None,
                "is_blocked": False,
            },
            fhir.Context(resolved={"encounter_id": True}),
        )
    )
    assert procedure["code"]["coding"] == [{"system": fhir.KVA_SYSTEM, "code": "AA011"}]
    assert procedure["encounter"] == {"reference": f"Encounter/{'e' * 32}"}


def test_a_row_of_nulls_still_makes_a_valid_resource():
    """Every type, with only its id, subject and lineage: no empty element, still valid."""
    from etl.core.model import ENTITIES

    for spec in SPECS:
        model = ENTITIES[spec.entity]
        row = dict.fromkeys(model.model_fields)
        row.update(LINEAGE)
        row[model.id_field()] = "x" * 32
        if spec.entity != "patient" and "patient_id" in row:
            row["patient_id"] = "p" * 32
        resource = _valid(spec.build(row, fhir.NO_CONTEXT))
        assert resource["resourceType"] == spec.resource_type
        assert resource["id"] == "x" * 32


def test_referenced_types_come_before_those_that_refer_to_them():
    order = [spec.entity for spec in SPECS]
    for spec in SPECS:
        for link in spec.links:
            assert order.index(link.entity) < order.index(spec.entity)


def test_referral_states_and_priorities_map_and_keep_their_source_codes():
    row = {
        **LINEAGE,
        "referral_id": "r" * 32,
        "patient_id": "p" * 32,
        "from_care_unit_id": "c" * 32,
        "to_care_unit_hsa_id": "SE2321000131-E2",
        "sent_date": dt.date(2024, 2, 1),
        "priority": "FÖRTUR",
        "status": "AVVISAD",
        "question_text": None,
    }
    resolved = fhir.Context(resolved={"from_care_unit_id": True})
    resource = _valid(fhir.service_request(row, resolved))
    assert (resource["status"], resource["priority"]) == ("revoked", "urgent")
    source_codes = resource["category"][0]["coding"]
    assert {"system": "urn:vardflytt:referral:status", "code": "AVVISAD"} in source_codes
    assert resource["requester"] == {"reference": f"Organization/{'c' * 32}"}
    unknown = _valid(fhir.service_request({**row, "status": "OKÄND", "priority": None}))
    assert unknown["status"] == "unknown"
    assert "priority" not in unknown and "requester" not in unknown


def test_an_unknown_appointment_status_is_proposed_with_its_source_value():
    row = {
        **LINEAGE,
        "appointment_id": "a" * 32,
        "patient_id": "p" * 32,
        "care_unit_id": None,
        "scheduled_at": dt.datetime(2024, 3, 1, 9, 0, tzinfo=dt.UTC),
        "duration_minutes": 30,
        "status": "väntar",
    }
    resource = _valid(fhir.appointment(row))
    assert resource["status"] == "proposed"
    assert resource["appointmentType"]["coding"][0]["code"] == "väntar"
    assert resource["end"] == "2024-03-01T09:30:00+00:00"
    assert _valid(fhir.appointment({**row, "status": "noshow"}))["status"] == "noshow"


def test_a_note_text_travels_as_utf8_attachment():
    text = "Bedömning: åäö, 3,5-4,6 mmol/L"
    row = {
        **LINEAGE,
        "clinical_note_id": "n" * 32,
        "patient_id": "p" * 32,
        "encounter_id": None,
        "note_type": "EPIKRIS",
        "written_at": dt.datetime(2024, 3, 1, 9, 0, tzinfo=dt.UTC),
        "note_text": text,
        "is_blocked": True,
    }
    resource = _valid(fhir.document_reference(row))
    attachment = resource["content"][0]["attachment"]
    assert base64.b64decode(attachment["data"]).decode("utf-8") == text
    assert R in resource["meta"]["security"]


def test_a_vaccination_without_a_time_says_unknown():
    row = {
        **LINEAGE,
        "immunization_id": "v" * 32,
        "patient_id": "p" * 32,
        "atc_code": "J07BB02",
        "vaccine_name": None,
        "batch_number": "LOT1",
        "administered_at": None,
        "dose_number": 2,
        "care_unit_hsa_id": None,
    }
    resource = _valid(fhir.immunization(row))
    assert resource["occurrenceString"] == "unknown"
    assert resource["protocolApplied"] == [{"doseNumberPositiveInt": 2}]


def test_security_labels_are_added_once():
    resource = fhir.encounter({**ENCOUNTER, "is_blocked": True})
    labelled = fhir.with_security(resource, fhir.patient_security("skyddad_folkbokforing"))
    security = labelled["meta"]["security"]
    assert security.count(R) == 1
    assert {"system": fhir.SECURITY_REASON_SYSTEM, "code": "sparr"} in security
    assert {"system": fhir.SECURITY_REASON_SYSTEM, "code": "protected-identity"} in security
    assert "meta" not in fhir.encounter(ENCOUNTER)  # the original is not changed
    assert fhir.with_security(fhir.encounter(ENCOUNTER), fhir.patient_security("none")) == (
        fhir.encounter(ENCOUNTER)
    )
    _valid(labelled)


# --- source codes (issue 17): the target coding and the legacy coding side by side -------------

SNOMED_MYOCARDIAL_INFARCTION = "22298006"


def _diagnosis(**codes) -> dict:
    return {
        **LINEAGE,
        "diagnosis_id": "g" * 32,
        "patient_id": "p" * 32,
        "encounter_id": None,
        "icd10_code": "I21.9",
        "diagnosis_text": None,
        "diagnosis_date": dt.date(2024, 1, 2),
        "is_primary_diagnosis": True,
        "practitioner_hsa_id": None,
        "is_blocked": False,
        **codes,
    }


def test_a_condition_carries_its_icd10_code_and_its_snomed_ct_source_code():
    condition = _valid(
        fhir.condition(
            _diagnosis(
                icd10_code_source_code=SNOMED_MYOCARDIAL_INFARCTION,
                icd10_code_source_system="http://snomed.info/sct",
            )
        )
    )
    assert condition["code"]["coding"] == [
        {"system": fhir.ICD10_SE_SYSTEM, "code": "I21.9"},
        {"system": "http://snomed.info/sct", "code": SNOMED_MYOCARDIAL_INFARCTION},
    ]


def test_a_source_code_in_the_target_system_is_not_a_second_coding():
    """I219 as written, I21.9 as stored: one code of one system, its normalised form goes out."""
    condition = _valid(
        fhir.condition(
            _diagnosis(icd10_code_source_code="I219", icd10_code_source_system=fhir.ICD10_SE_SYSTEM)
        )
    )
    assert condition["code"]["coding"] == [{"system": fhir.ICD10_SE_SYSTEM, "code": "I21.9"}]


def test_a_crosswalked_procedure_carries_the_local_code_it_came_from():
    procedure = _valid(
        fhir.procedure(
            {
                **LINEAGE,
                "source_system": "blodcentral",
                "procedure_id": "q" * 32,
                "patient_id": "p" * 32,
                "kva_code": "DR029",
                "kva_code_source_code": "ERY-BESTR",
                "kva_code_source_system": "urn:vardflytt:blood-product:blodcentral",
            }
        )
    )
    assert procedure["code"]["coding"] == [
        {"system": fhir.KVA_SYSTEM, "code": "DR029"},
        {"system": "urn:vardflytt:blood-product:blodcentral", "code": "ERY-BESTR"},
    ]


def _alert(**values) -> dict:
    return {
        **LINEAGE,
        "alert_id": "a" * 32,
        "patient_id": "p" * 32,
        "alert_type": "Överkänslighet",
        "description": None,
        "recorded_date": None,
        "is_blocked": False,
        **values,
    }


@pytest.mark.parametrize(
    ("code", "system"),
    [
        ("J01CE02", fhir.ATC_SYSTEM),
        ("Z88.1", fhir.ICD10_SE_SYSTEM),
        ("91936005", "http://snomed.info/sct"),
        ("ANTI-K", "urn:vardflytt:antibody:blodcentral"),
    ],
    ids=["atc", "icd10-se", "snomed-ct", "local"],
)
def test_an_alert_code_goes_out_in_its_own_code_system(code, system):
    flag = _valid(
        fhir.flag(
            _alert(code=code, code_system=system, code_source_code=code, code_source_system=system)
        )
    )
    assert flag["code"]["coding"] == [{"system": system, "code": code}]


def test_an_alert_loaded_before_code_systems_keeps_the_legacy_alert_code_system():
    flag = _valid(fhir.flag(_alert(code="X1", code_system=None)))
    assert flag["code"]["coding"] == [{"system": "urn:vardflytt:alert-code:melior", "code": "X1"}]
