"""Core rows as FHIR R4 resources (plain dicts, ready for NDJSON): pure functions, one per type.

Ids are the core ids (deterministic, 32 hex characters: a valid FHIR id), so the same core row
is the same resource in every export. A reference is written only when the referenced row is in
the export (the caller says which are, see ``etl.export.bulk``).

Identifier systems follow HL7 Sweden's base profiles (``etl.identifiers.FHIR_SYSTEMS``): the
personnummer and samordningsnummer NamingSystem URIs of electronichealth.se (the base profiles'
own examples use them; the OIDs 1.2.752.129.2.1.3.1 / .3.3 name the same systems), the region's
own system for VGR reserve numbers, and ``urn:oid:1.2.752.29.4.19`` for HSA-ids.

Security labels (``meta.security``), failing closed: a patient whose protected identity is
anything but an explicit ``none`` (any level, an unknown value, NULL) is labelled
v3-Confidentiality ``R`` (restricted) plus the project's label saying why, and so is every
resource about that patient (where and when someone was cared for can lead to them); a clinical
row whose spärr flag is anything but an explicit false is labelled ``R`` plus ``sparr``.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from etl.core import code_systems
from etl.identifiers import FHIR_SYSTEMS, IdentityKind

Row = Mapping[str, Any]
Resource = dict[str, Any]


@dataclass(frozen=True)
class Context:
    """What a builder needs besides the row: which of its references are in the export, and
    (for a patient) its ``patient_identifier`` rows."""

    resolved: Mapping[str, bool] = field(default_factory=dict)
    identifiers: Sequence[Row] = ()


NO_CONTEXT = Context()

HSA_SYSTEM = "urn:oid:1.2.752.29.4.19"
CONFIDENTIALITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
# The project's own labels beside the standard one: which rule made a resource restricted.
SECURITY_REASON_SYSTEM = "urn:vardflytt:security-label"
PROTECTED_IDENTITY_SYSTEM = "urn:vardflytt:protected-identity"
ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
NULL_FLAVOR_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
# Code systems: one registry, etl/core/code_systems.py (its note cites where each URI was
# checked). Profession codes have no system we could confirm: they carry the project's URN
# so a receiver can map them, never a guessed OID.
ICD10_SE_SYSTEM = code_systems.ICD10_SE.uri
KVA_SYSTEM = code_systems.KVA.uri
ATC_SYSTEM = code_systems.ATC.uri
NPU_SYSTEM = code_systems.NPU.uri
NPL_SYSTEM = code_systems.NPL_ID.uri
PROFESSION_SYSTEM = "urn:vardflytt:profession-code"
ORGANISATION_NUMBER_SYSTEM = "urn:vardflytt:organisationsnummer"
ENCOUNTER_CLASS_SOURCE_SYSTEM = "urn:vardflytt:encounter-class"


def analysis_system(source_system: str) -> str:
    """A legacy system's own lab analysis codes."""
    return f"urn:vardflytt:analysis-code:{source_system}"


# The core's encounter classes (English from ELVIS, Swedish from Melior) as v3 ActEncounterCode.
_ENCOUNTER_CLASS = {
    "inpatient": "IMP",
    "slutenvård": "IMP",
    "ambulatory": "AMB",
    "outpatient": "AMB",
    "öppenvård": "AMB",
    "dagvård": "SS",
    "emergency": "EMER",
    "akut": "EMER",
    "virtual": "VR",
    "home": "HH",
}
_SEX = {"male": "male", "female": "female", "unknown": "unknown"}


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and value != value)


def _date(value: Any) -> str | None:
    if not _present(value):
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)[:10]


def _instant(value: Any) -> str | None:
    """A core ``*_at`` timestamp (UTC; SQLite hands it back without a zone) as a FHIR dateTime."""
    if not _present(value):
        return None
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat()


def _positive(value: Any) -> int | None:
    """A count FHIR types as positiveInt; None when missing or not positive."""
    return int(value) if _present(value) and int(value) > 0 else None


def _compact(resource: Resource) -> Resource:
    """Leave out empty elements (FHIR forbids empty values)."""
    return {key: value for key, value in resource.items() if value not in (None, [], {}, "")}


def reference(resource_type: str, row_id: str) -> dict[str, str]:
    return {"reference": f"{resource_type}/{row_id}"}


def hsa_reference(hsa_id: Any) -> dict[str, Any] | None:
    """A logical reference by HSA-id (a care unit or person the core has no row for)."""
    return {"identifier": {"system": HSA_SYSTEM, "value": hsa_id}} if _present(hsa_id) else None


def _coding(system: str, code: Any) -> dict[str, str] | None:
    return {"system": system, "code": str(code)} if _present(code) else None


def _source_coding(row: Row, column: str, target_system: str | None) -> dict[str, str] | None:
    """The code as the legacy system wrote it, with its system (a coded column's
    ``<column>_source_code``/``_source_system``), beside the target coding. Left out when it is in
    the target's own system: the target is then the same code, normalised (I219 as I21.9)."""
    system = row.get(code_systems.source_system_column(column))
    if not _present(system) or system == target_system:
        return None
    return _coding(str(system), row.get(code_systems.source_code_column(column)))


def _concept(*codings: dict[str, str] | None, text: Any = None) -> dict[str, Any] | None:
    found = []
    for coding in codings:  # each (system, code) once
        if coding and coding not in found:
            found.append(coding)
    concept = _compact({"coding": found, "text": text if _present(text) else None})
    return concept or None


def patient_security(protected_identity: Any) -> list[dict[str, str]]:
    """Restricted unless the core says, explicitly, that the identity is not protected."""
    if protected_identity == "none":
        return []
    level = str(protected_identity).strip() if _present(protected_identity) else ""
    level = level or "uncertain"
    return [
        {"system": CONFIDENTIALITY_SYSTEM, "code": "R"},
        {"system": SECURITY_REASON_SYSTEM, "code": "protected-identity"},
        {"system": PROTECTED_IDENTITY_SYSTEM, "code": level},
    ]


def blocked_security(is_blocked: Any) -> list[dict[str, str]]:
    """Restricted unless the core says, explicitly, that the row is not under a spärr."""
    if is_blocked is False or (isinstance(is_blocked, int) and is_blocked == 0):
        return []
    return [
        {"system": CONFIDENTIALITY_SYSTEM, "code": "R"},
        {"system": SECURITY_REASON_SYSTEM, "code": "sparr"},
    ]


def with_security(resource: Resource, labels: list[dict[str, str]]) -> Resource:
    """``resource`` with ``labels`` added to its ``meta.security`` (each label once)."""
    if not labels:
        return resource
    meta = dict(resource.get("meta") or {})
    security = list(meta.get("security") or [])
    security += [label for label in labels if label not in security]
    meta["security"] = security
    return {**resource, "meta": meta}


def _meta(security: list[dict[str, str]]) -> dict[str, Any] | None:
    return {"security": security} if security else None


def identifier(kind: Any, number: Any, is_primary: Any, issuer_country: Any = None) -> Resource:
    """One identity number with its HL7 Sweden system; reserve numbers are ``temp``."""
    try:
        system = FHIR_SYSTEMS[IdentityKind(str(kind))]
    except ValueError:
        system = f"urn:vardflytt:identifier:{kind}"
    temporary = str(kind).startswith("reservnummer")
    use = "temp" if temporary else ("official" if is_primary else "secondary")
    found: Resource = {"use": use, "system": system, "value": str(number)}
    if _present(issuer_country):
        found["assigner"] = {"display": str(issuer_country)}
    return found


def patient(row: Row, context: Context = NO_CONTEXT) -> Resource:
    """Patient with every identity number it has been known by (``patient_identifier`` rows;
    the patient row's own number too when no identifier row holds it)."""
    found = [
        identifier(i["identity_kind"], i["identity_number"], i["is_primary"], i["issuer_country"])
        for i in context.identifiers
        if _present(i["identity_number"])
    ]
    own = row.get("identity_number")
    if _present(own) and not any(i["value"] == str(own) for i in found):
        found.insert(0, identifier(row.get("identity_kind"), own, True))
    name = _compact(
        {
            "use": "official",
            "family": row.get("family_name"),
            "given": [row["given_name"]] if _present(row.get("given_name")) else None,
        }
    )
    address = _compact(
        {
            "line": [row["address_line"]] if _present(row.get("address_line")) else None,
            "postalCode": row.get("postal_code"),
            "city": row.get("city"),
        }
    )
    return _compact(
        {
            "resourceType": "Patient",
            "id": row["patient_id"],
            "meta": _meta(patient_security(row.get("protected_identity"))),
            "identifier": found,
            "name": [name] if len(name) > 1 else None,
            "gender": _SEX.get(str(row.get("sex"))) if _present(row.get("sex")) else None,
            "birthDate": _date(row.get("birth_date")),
            "deceasedDateTime": _date(row.get("deceased_date")),
            "address": [address] if address else None,
        }
    )


def organization(row: Row, context: Context = NO_CONTEXT) -> Resource:
    """A care unit (vårdenhet) as an Organization identified by its HSA-id."""
    identifiers = [
        {"system": HSA_SYSTEM, "value": row["hsa_id"]} if _present(row.get("hsa_id")) else None,
        {"system": ORGANISATION_NUMBER_SYSTEM, "value": row["organisation_number"]}
        if _present(row.get("organisation_number"))
        else None,
    ]
    return _compact(
        {
            "resourceType": "Organization",
            "id": row["care_unit_id"],
            "identifier": [found for found in identifiers if found],
            "name": row.get("name"),
            "alias": [row["site"]] if _present(row.get("site")) else None,
        }
    )


def practitioner(row: Row, context: Context = NO_CONTEXT) -> Resource:
    name = _compact(
        {
            "family": row.get("family_name"),
            "given": [row["given_name"]] if _present(row.get("given_name")) else None,
        }
    )
    profession = _concept(_coding(PROFESSION_SYSTEM, row.get("profession_code")))
    return _compact(
        {
            "resourceType": "Practitioner",
            "id": row["practitioner_id"],
            "identifier": [{"system": HSA_SYSTEM, "value": row["hsa_id"]}]
            if _present(row.get("hsa_id"))
            else None,
            "name": [name] if name else None,
            "qualification": [{"code": profession}] if profession else None,
        }
    )


def encounter_class(value: Any) -> dict[str, str]:
    """v3 ActEncounterCode of a core class; UNK (NullFlavor) when unknown (class is required)."""
    code = _ENCOUNTER_CLASS.get(str(value).strip().lower()) if _present(value) else None
    if code is None:
        return {"system": NULL_FLAVOR_SYSTEM, "code": "UNK"}
    return {"system": ACT_CODE_SYSTEM, "code": code}


def encounter(row: Row, context: Context = NO_CONTEXT) -> Resource:
    """A care contact; ``resolved`` says which of its references are in the export."""
    resolved = context.resolved
    service_provider = (
        reference("Organization", row["care_unit_id"])
        if resolved.get("care_unit_id")
        else hsa_reference(row.get("care_unit_hsa_id"))
    )
    ended = _instant(row.get("ended_at"))
    return _compact(
        {
            "resourceType": "Encounter",
            "id": row["encounter_id"],
            "meta": _meta(blocked_security(row.get("is_blocked"))),
            # Migrated history: a contact with an end is over; without one we cannot tell.
            "status": "finished" if ended else "unknown",
            "class": encounter_class(row.get("encounter_class")),
            "type": [_concept(_coding(ENCOUNTER_CLASS_SOURCE_SYSTEM, row["encounter_class"]))]
            if _present(row.get("encounter_class"))
            else None,
            "subject": reference("Patient", row["patient_id"]),
            "participant": [{"individual": reference("Practitioner", row["practitioner_id"])}]
            if resolved.get("practitioner_id")
            else None,
            "period": _compact({"start": _instant(row.get("started_at")), "end": ended}) or None,
            "serviceProvider": service_provider,
        }
    )


def condition(row: Row, context: Context = NO_CONTEXT) -> Resource:
    """A diagnosis coded in ICD-10-SE."""
    resolved = context.resolved
    return _compact(
        {
            "resourceType": "Condition",
            "id": row["diagnosis_id"],
            "meta": _meta(blocked_security(row.get("is_blocked"))),
            "category": [
                _concept(
                    _coding(
                        "http://terminology.hl7.org/CodeSystem/condition-category",
                        "encounter-diagnosis",
                    )
                )
            ],
            "code": _concept(
                _coding(ICD10_SE_SYSTEM, row.get("icd10_code")),
                _source_coding(row, "icd10_code", ICD10_SE_SYSTEM),
                text=row.get("diagnosis_text"),
            ),
            "subject": reference("Patient", row["patient_id"]),
            "encounter": reference("Encounter", row["encounter_id"])
            if resolved.get("encounter_id")
            else None,
            "recordedDate": _date(row.get("diagnosis_date")),
            "recorder": hsa_reference(row.get("practitioner_hsa_id")),
        }
    )


def procedure(row: Row, context: Context = NO_CONTEXT) -> Resource:
    """A procedure coded in KVÅ; the care unit by HSA-id."""
    resolved = context.resolved
    unit = hsa_reference(row.get("care_unit_hsa_id"))
    return _compact(
        {
            "resourceType": "Procedure",
            "id": row["procedure_id"],
            "meta": _meta(blocked_security(row.get("is_blocked"))),
            "status": "completed",
            "code": _concept(
                _coding(KVA_SYSTEM, row.get("kva_code")),
                _source_coding(row, "kva_code", KVA_SYSTEM),
            ),
            "subject": reference("Patient", row["patient_id"]),
            "encounter": reference("Encounter", row["encounter_id"])
            if resolved.get("encounter_id")
            else None,
            "performedDateTime": _date(row.get("procedure_date")),
            "performer": [{"actor": unit}] if unit else None,
        }
    )


def _quantity(value: Any, unit: Any, comparator: Any = None) -> dict[str, Any] | None:
    if not _present(value):
        return None
    return _compact(
        {
            "value": float(value),
            "comparator": comparator if comparator in {"<", "<=", ">=", ">"} else None,
            "unit": unit if _present(unit) else None,
        }
    )


def observation(row: Row, context: Context = NO_CONTEXT) -> Resource:
    """A laboratory result: NPU code and the source analysis code side by side."""
    value = _quantity(row.get("value_numeric"), row.get("unit"), row.get("value_comparator"))
    reference_range = _compact(
        {
            "low": _quantity(row.get("reference_low"), row.get("unit")),
            "high": _quantity(row.get("reference_high"), row.get("unit")),
        }
    )
    # Rows loaded before source codes were kept (core revision 0009) still carry the source
    # analysis code in the legacy system's own analysis-code system.
    source = _source_coding(row, "npu_code", NPU_SYSTEM)
    if source is None and not _present(row.get("npu_code_source_system")):
        source = _coding(analysis_system(row["source_system"]), row.get("source_analysis_code"))
    code = _concept(_coding(NPU_SYSTEM, row.get("npu_code")), source, text=row.get("analysis_name"))
    return _compact(
        {
            "resourceType": "Observation",
            "id": row["observation_id"],
            "meta": _meta(blocked_security(row.get("is_blocked"))),
            "status": "final",
            "category": [
                _concept(
                    _coding(
                        "http://terminology.hl7.org/CodeSystem/observation-category", "laboratory"
                    )
                )
            ],
            "code": code or {"text": "unknown"},
            "subject": reference("Patient", row["patient_id"]),
            "effectiveDateTime": _instant(row.get("sampled_at")),
            "valueQuantity": value,
            "valueString": None if value else row.get("value_text"),
            "referenceRange": [reference_range] if reference_range else None,
        }
    )


def medication_statement(row: Row, context: Context = NO_CONTEXT) -> Resource:
    """A medication coded in ATC (and NPL-id where known)."""
    ended = _date(row.get("end_date"))
    return _compact(
        {
            "resourceType": "MedicationStatement",
            "id": row["medication_id"],
            "meta": _meta(blocked_security(row.get("is_blocked"))),
            # Migrated lists: an ended medication is completed; otherwise we cannot tell.
            "status": "completed" if ended else "unknown",
            "medicationCodeableConcept": _concept(
                _coding(ATC_SYSTEM, row.get("atc_code")),
                _source_coding(row, "atc_code", ATC_SYSTEM),
                _coding(NPL_SYSTEM, row.get("npl_id")),
                _source_coding(row, "npl_id", NPL_SYSTEM),
                text=row.get("product_name"),
            )
            or {"text": "unknown"},
            "subject": reference("Patient", row["patient_id"]),
            "effectivePeriod": _compact({"start": _date(row.get("start_date")), "end": ended})
            or None,
            "dosage": [{"text": row["dosage_text"]}] if _present(row.get("dosage_text")) else None,
        }
    )


def location(row: Row, context: Context = NO_CONTEXT) -> Resource:
    """A care unit as the place care happens (what an Appointment or Encounter names), run by
    the Organization of the same core id."""
    return _compact(
        {
            "resourceType": "Location",
            "id": row["care_unit_id"],
            "identifier": [{"system": HSA_SYSTEM, "value": row["hsa_id"]}]
            if _present(row.get("hsa_id"))
            else None,
            "name": row.get("name"),
            "managingOrganization": reference("Organization", row["care_unit_id"]),
        }
    )


# Appointment status: the core's values are FHIR's own; a value we do not know becomes
# ``proposed``, the weakest claim (FHIR has no ``unknown`` here), with the source value kept.
_APPOINTMENT_STATUS = {"proposed", "pending", "booked", "arrived", "fulfilled", "cancelled",
                       "noshow", "entered-in-error", "checked-in", "waitlist"}  # fmt: skip
APPOINTMENT_STATUS_SOURCE_SYSTEM = "urn:vardflytt:appointment-status"


def appointment(row: Row, context: Context = NO_CONTEXT) -> Resource:
    status = str(row.get("status") or "").strip().lower()
    start = _instant(row.get("scheduled_at"))
    duration = _positive(row.get("duration_minutes"))
    end = None
    if start and duration:
        end = _instant(dt.datetime.fromisoformat(start) + dt.timedelta(minutes=duration))
    participants = [{"actor": reference("Patient", row["patient_id"]), "status": "accepted"}]
    if context.resolved.get("care_unit_id"):
        participants.append(
            {"actor": reference("Location", row["care_unit_id"]), "status": "accepted"}
        )
    return _compact(
        {
            "resourceType": "Appointment",
            "id": row["appointment_id"],
            "status": status if status in _APPOINTMENT_STATUS else "proposed",
            "appointmentType": _concept(
                _coding(APPOINTMENT_STATUS_SOURCE_SYSTEM, row.get("status"))
            )
            if _present(row.get("status")) and status not in _APPOINTMENT_STATUS
            else None,
            "start": start,
            "end": end,
            "minutesDuration": duration,
            "participant": participants,
        }
    )


# ELVIS referral states and priorities (upper case Swedish) as FHIR's request codes.
_REFERRAL_STATUS = {
    "SKICKAD": "active",
    "MOTTAGEN": "active",
    "BEDÖMD": "active",
    "AVSLUTAD": "completed",
    "AVVISAD": "revoked",
}
_REFERRAL_PRIORITY = {"NORMAL": "routine", "FÖRTUR": "urgent", "AKUT": "stat"}
REFERRAL_SOURCE_SYSTEM = "urn:vardflytt:referral"


def service_request(row: Row, context: Context = NO_CONTEXT) -> Resource:
    """A referral (remiss): from a care unit in the core to one named by HSA-id."""
    status = str(row.get("status") or "").strip().upper()
    priority = str(row.get("priority") or "").strip().upper()
    source_codes = [
        _coding(f"{REFERRAL_SOURCE_SYSTEM}:status", row.get("status")),
        _coding(f"{REFERRAL_SOURCE_SYSTEM}:priority", row.get("priority")),
    ]
    return _compact(
        {
            "resourceType": "ServiceRequest",
            "id": row["referral_id"],
            "status": _REFERRAL_STATUS.get(status, "unknown"),
            "intent": "order",
            "category": [_concept(*source_codes)] if any(source_codes) else None,
            "priority": _REFERRAL_PRIORITY.get(priority),
            "subject": reference("Patient", row["patient_id"]),
            "authoredOn": _date(row.get("sent_date")),
            "requester": reference("Organization", row["from_care_unit_id"])
            if context.resolved.get("from_care_unit_id")
            else None,
            "performer": [hsa_reference(row.get("to_care_unit_hsa_id"))]
            if _present(row.get("to_care_unit_hsa_id"))
            else None,
            "note": [{"text": row["question_text"]}]
            if _present(row.get("question_text"))
            else None,
        }
    )


NOTE_TYPE_SYSTEM = "urn:vardflytt:note-type"


def document_reference(row: Row, context: Context = NO_CONTEXT) -> Resource:
    """A clinical note: its text as a UTF-8 plain-text attachment."""
    text = row.get("note_text")
    attachment: Resource = {"contentType": "text/plain; charset=utf-8"}
    if _present(text):
        attachment["data"] = base64.b64encode(str(text).encode("utf-8")).decode("ascii")
    return _compact(
        {
            "resourceType": "DocumentReference",
            "id": row["clinical_note_id"],
            "meta": _meta(blocked_security(row.get("is_blocked"))),
            "status": "current",
            "type": _concept(_coding(NOTE_TYPE_SYSTEM, row.get("note_type"))),
            "subject": reference("Patient", row["patient_id"]),
            "date": _instant(row.get("written_at")),
            "content": [{"attachment": attachment}],
            "context": {"encounter": [reference("Encounter", row["encounter_id"])]}
            if context.resolved.get("encounter_id")
            else None,
        }
    )


ALERT_TYPE_SYSTEM = "urn:vardflytt:alert-type"


def alert_code_system(row: Row) -> str:
    """The system of an alert's code: the core's ``code_system`` (ICD-10-SE, ATC, SNOMED CT or
    the legacy system's own); for a row loaded before the core kept it (revision 0009), the
    legacy system's own alert codes."""
    if _present(row.get("code_system")):
        return str(row["code_system"])
    return code_systems.local_system("alert-code", row["source_system"]).uri


def flag(row: Row, context: Context = NO_CONTEXT) -> Resource:
    """Warning information (varningsinformation) as a Flag; the kind (allergy, infection, ...)
    is its category."""
    return _compact(
        {
            "resourceType": "Flag",
            "id": row["alert_id"],
            "meta": _meta(blocked_security(row.get("is_blocked"))),
            "status": "active",
            "category": [_concept(_coding(ALERT_TYPE_SYSTEM, row.get("alert_type")))]
            if _present(row.get("alert_type"))
            else None,
            "code": _concept(
                _coding(alert_code_system(row), row.get("code")),
                _source_coding(row, "code", alert_code_system(row)),
                text=row.get("description"),
            )
            or {"text": "unknown"},
            "subject": reference("Patient", row["patient_id"]),
            "period": {"start": _date(row["recorded_date"])}
            if _present(row.get("recorded_date"))
            else None,
        }
    )


def immunization(row: Row, context: Context = NO_CONTEXT) -> Resource:
    """A vaccination: vaccine by ATC, given by a care unit named by HSA-id."""
    given = _instant(row.get("administered_at"))
    unit = hsa_reference(row.get("care_unit_hsa_id"))
    dose = _positive(row.get("dose_number"))
    return _compact(
        {
            "resourceType": "Immunization",
            "id": row["immunization_id"],
            "status": "completed",
            "vaccineCode": _concept(
                _coding(ATC_SYSTEM, row.get("atc_code")),
                _source_coding(row, "atc_code", ATC_SYSTEM),
                text=row.get("vaccine_name"),
            )
            or {"text": "unknown"},
            "patient": reference("Patient", row["patient_id"]),
            # occurrence is required: a vaccination without a time says so.
            "occurrenceDateTime": given,
            "occurrenceString": None if given else "unknown",
            "lotNumber": row.get("batch_number"),
            "performer": [{"actor": unit}] if unit else None,
            "protocolApplied": [{"doseNumberPositiveInt": dose}] if dose else None,
        }
    )
