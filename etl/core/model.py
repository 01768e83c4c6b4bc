"""Core entities as pydantic models: the single definition the tables, mappings and reports use.

Every core row carries lineage: a deterministic id (stable across re-runs), its source system and
source key, the load batch id and a content hash. Fields holding identity numbers, names,
addresses or free text are marked with ``sensitive`` so reports and profiles can mask them.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from etl.core.code_systems import Coded, source_code_column, source_system_column

# HSA-id of a care unit or a person: SE + the organisation number + '-' + letters and digits, at
# most 31 characters (so never å/ä/ö). The transforms check values with etl.identifiers.
HSA_ID_PATTERN = r"^SE[0-9]{10}-[A-Za-z0-9]{1,18}$"


class Sensitivity(StrEnum):
    """Why a field must never leave the core tables in clear."""

    IDENTITY = "identity"
    NAME = "name"
    ADDRESS = "address"
    FREE_TEXT = "free_text"


class ProtectedIdentity(StrEnum):
    """Skatteverket's three levels of protected identity (plus none)."""

    NONE = "none"
    SEKRETESSMARKERING = "sekretessmarkering"
    SKYDDAD_FOLKBOKFORING = "skyddad_folkbokforing"
    FINGERADE_PERSONUPPGIFTER = "fingerade_personuppgifter"


class Sex(StrEnum):
    MALE = "male"
    FEMALE = "female"
    UNKNOWN = "unknown"


def sensitive(kind: Sensitivity, **kwargs: Any) -> Any:
    """A field whose values are patient-identifying: masked outside the core tables."""
    return Field(default=None, json_schema_extra={"sensitive": kind.value}, **kwargs)


class CoreRecord(BaseModel):
    """Lineage every core row carries."""

    model_config = ConfigDict(extra="forbid")
    entity: ClassVar[str]
    lineage_fields: ClassVar[tuple[str, ...]] = (
        "source_system",
        "source_key",
        "batch_id",
        "content_hash",
    )

    # Coded columns (etl/core/code_systems.py): each keeps, beside the target code, the code as
    # the source wrote it and that code's system, ``<column>_source_code`` and
    # ``<column>_source_system`` (filled by the transform from the mapping's ``source_system``).
    coded_fields: ClassVar[dict[str, Coded]] = {}

    source_system: str
    source_key: str
    batch_id: str
    content_hash: str

    @classmethod
    def derived_code_fields(cls) -> list[str]:
        """Fields the transform fills from a coded column's declaration, never a mapping."""
        derived = []
        for column, coded in cls.coded_fields.items():
            derived += [source_code_column(column), source_system_column(column)]
            if coded.system_column:
                derived.append(coded.system_column)
        return derived

    @classmethod
    def id_field(cls) -> str:
        return f"{cls.entity}_id"

    @classmethod
    def business_fields(cls) -> list[str]:
        """Fields a mapping fills (everything but the id and lineage)."""
        return [
            name
            for name in cls.model_fields
            if name not in cls.lineage_fields and name != cls.id_field()
        ]

    @classmethod
    def sensitive_fields(cls) -> dict[str, Sensitivity]:
        found = {}
        for name, info in cls.model_fields.items():
            extra = info.json_schema_extra
            if isinstance(extra, dict) and "sensitive" in extra:
                found[name] = Sensitivity(str(extra["sensitive"]))
        return found


# Which systems a coded column's legacy codes may be in (``local:<name>`` always may). SNOMED CT
# only where the column holds a diagnosis or a finding.
DIAGNOSIS_SOURCES = ("icd10_se", "ksh97_p", "snomed_ct")
PROCEDURE_SOURCES = ("kva",)
LAB_SOURCES = ("npu", "snomed_ct")
ATC_SOURCES = ("atc",)
ALERT_SYSTEMS = ("icd10_se", "atc", "snomed_ct")


class Patient(CoreRecord):
    entity: ClassVar[str] = "patient"
    patient_id: str
    identity_number: str | None = sensitive(Sensitivity.IDENTITY)
    identity_kind: str | None = None
    family_name: str | None = sensitive(Sensitivity.NAME)
    given_name: str | None = sensitive(Sensitivity.NAME)
    sex: Sex | None = None
    birth_date: dt.date | None = None
    deceased_date: dt.date | None = None
    address_line: str | None = sensitive(Sensitivity.ADDRESS)
    postal_code: str | None = sensitive(Sensitivity.ADDRESS)
    city: str | None = sensitive(Sensitivity.ADDRESS)
    protected_identity: ProtectedIdentity = ProtectedIdentity.NONE
    registered_at: dt.datetime | None = None


class PatientIdentifier(CoreRecord):
    """Every identity number a patient has been known by (personnummer, reserve numbers, ...).

    Foreign identifiers (passport, EU health card, ...) carry the country that issued them. A
    reserve number this migration issued is a row of kind ``reservnummer_vgr_issued``: with its
    system, source key and batch it is the record of the issue, and promotion's history makes a
    rollback of the batch take it back.
    """

    entity: ClassVar[str] = "patient_identifier"
    patient_identifier_id: str
    patient_id: str
    identity_number: str | None = sensitive(Sensitivity.IDENTITY)
    identity_kind: str
    is_primary: bool
    issuer_country: str | None = None  # ISO 3166-1 code, foreign identifiers only


class CareUnit(CoreRecord):
    entity: ClassVar[str] = "care_unit"
    care_unit_id: str
    hsa_id: str | None = None
    name: str | None = None
    organisation_number: str | None = None
    site: str | None = None


class Practitioner(CoreRecord):
    entity: ClassVar[str] = "practitioner"
    practitioner_id: str
    hsa_id: str | None = None
    family_name: str | None = sensitive(Sensitivity.NAME)
    given_name: str | None = sensitive(Sensitivity.NAME)
    profession_code: str | None = None
    care_unit_id: str | None = None


class Encounter(CoreRecord):
    """A care contact (vårdkontakt): a visit, an admission, a phone contact."""

    entity: ClassVar[str] = "encounter"
    encounter_id: str
    patient_id: str
    care_unit_id: str | None = None
    care_unit_hsa_id: str | None = None
    practitioner_id: str | None = None
    encounter_class: str | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    is_blocked: bool = False


class Diagnosis(CoreRecord):
    entity: ClassVar[str] = "diagnosis"
    coded_fields: ClassVar[dict[str, Coded]] = {"icd10_code": Coded("icd10_se", DIAGNOSIS_SOURCES)}
    diagnosis_id: str
    patient_id: str
    encounter_id: str | None = None
    icd10_code: str | None = None
    icd10_code_source_code: str | None = None
    icd10_code_source_system: str | None = None
    diagnosis_text: str | None = sensitive(Sensitivity.FREE_TEXT)
    diagnosis_date: dt.date | None = None
    is_primary_diagnosis: bool | None = None
    practitioner_hsa_id: str | None = None
    is_blocked: bool = False


class Procedure(CoreRecord):
    entity: ClassVar[str] = "procedure"
    coded_fields: ClassVar[dict[str, Coded]] = {"kva_code": Coded("kva", PROCEDURE_SOURCES)}
    procedure_id: str
    patient_id: str
    encounter_id: str | None = None
    kva_code: str | None = None
    kva_code_source_code: str | None = None
    kva_code_source_system: str | None = None
    procedure_date: dt.date | None = None
    care_unit_hsa_id: str | None = None
    is_blocked: bool = False


class Observation(CoreRecord):
    """A laboratory result."""

    entity: ClassVar[str] = "observation"
    coded_fields: ClassVar[dict[str, Coded]] = {"npu_code": Coded("npu", LAB_SOURCES)}
    observation_id: str
    patient_id: str
    npu_code: str | None = None
    npu_code_source_code: str | None = None
    npu_code_source_system: str | None = None
    source_analysis_code: str | None = None
    analysis_name: str | None = None
    value_numeric: float | None = None
    value_comparator: str | None = None
    value_text: str | None = None
    unit: str | None = None
    reference_low: float | None = None
    reference_high: float | None = None
    sampled_at: dt.datetime | None = None
    laboratory: str | None = None
    is_blocked: bool = False


class Medication(CoreRecord):
    entity: ClassVar[str] = "medication"
    coded_fields: ClassVar[dict[str, Coded]] = {
        "atc_code": Coded("atc", ATC_SOURCES),
        "npl_id": Coded("npl_id", ("npl_id",)),
    }
    medication_id: str
    patient_id: str
    atc_code: str | None = None
    npl_id: str | None = None
    atc_code_source_code: str | None = None
    atc_code_source_system: str | None = None
    npl_id_source_code: str | None = None
    npl_id_source_system: str | None = None
    product_name: str | None = None
    dosage_text: str | None = sensitive(Sensitivity.FREE_TEXT)
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    is_blocked: bool = False


class Appointment(CoreRecord):
    entity: ClassVar[str] = "appointment"
    appointment_id: str
    patient_id: str
    care_unit_id: str | None = None
    scheduled_at: dt.datetime | None = None
    duration_minutes: int | None = None
    status: str | None = None


class Referral(CoreRecord):
    entity: ClassVar[str] = "referral"
    referral_id: str
    patient_id: str
    from_care_unit_id: str | None = None
    to_care_unit_hsa_id: str | None = None
    sent_date: dt.date | None = None
    priority: str | None = None
    status: str | None = None
    question_text: str | None = sensitive(Sensitivity.FREE_TEXT)


class ClinicalNote(CoreRecord):
    entity: ClassVar[str] = "clinical_note"
    clinical_note_id: str
    patient_id: str
    encounter_id: str | None = None
    note_type: str | None = None
    written_at: dt.datetime | None = None
    note_text: str | None = sensitive(Sensitivity.FREE_TEXT)
    is_blocked: bool = False


class Alert(CoreRecord):
    """Warning information (varningsinformation): allergies, infections, hypersensitivity."""

    entity: ClassVar[str] = "alert"
    coded_fields: ClassVar[dict[str, Coded]] = {
        "code": Coded(None, ALERT_SYSTEMS, system_column="code_system")
    }
    alert_id: str
    patient_id: str
    alert_type: str | None = None
    code: str | None = None
    code_system: str | None = None  # the URI of the code's system (per row)
    code_source_code: str | None = None
    code_source_system: str | None = None
    description: str | None = sensitive(Sensitivity.FREE_TEXT)
    recorded_date: dt.date | None = None
    is_blocked: bool = False


class WaitingListEntry(CoreRecord):
    """A place on a waiting list (care guarantee follow-up): for a visit or an operation."""

    entity: ClassVar[str] = "waiting_list_entry"
    coded_fields: ClassVar[dict[str, Coded]] = {"planned_kva_code": Coded("kva", PROCEDURE_SOURCES)}
    waiting_list_entry_id: str
    patient_id: str
    care_unit_hsa_id: str | None = None
    listed_date: dt.date | None = None
    planned_kva_code: str | None = None
    planned_kva_code_source_code: str | None = None
    planned_kva_code_source_system: str | None = None
    priority: str | None = None
    status: str | None = None
    removed_date: dt.date | None = None


class OperationRequest(CoreRecord):
    """An operation request (operationsanmälan) from Orbit: what is planned, by whom, how urgent."""

    entity: ClassVar[str] = "operation_request"
    coded_fields: ClassVar[dict[str, Coded]] = {
        "kva_code": Coded("kva", PROCEDURE_SOURCES),
        "icd10_code": Coded("icd10_se", DIAGNOSIS_SOURCES),
    }
    operation_request_id: str
    patient_id: str
    kva_code: str | None = None
    icd10_code: str | None = None
    kva_code_source_code: str | None = None
    kva_code_source_system: str | None = None
    icd10_code_source_code: str | None = None
    icd10_code_source_system: str | None = None
    requested_date: dt.date | None = None
    priority: str | None = None
    surgeon_hsa_id: str | None = None
    care_unit_hsa_id: str | None = None
    scheduled_at: dt.datetime | None = None
    theatre: str | None = None
    status: str | None = None


class Pregnancy(CoreRecord):
    entity: ClassVar[str] = "pregnancy"
    pregnancy_id: str
    patient_id: str
    last_menstrual_period_date: dt.date | None = None
    estimated_delivery_date: dt.date | None = None
    gravidity: int | None = None
    parity: int | None = None
    is_blocked: bool = False


class Delivery(CoreRecord):
    """A birth: links the mother, her pregnancy and the newborn (a patient of its own)."""

    entity: ClassVar[str] = "delivery"
    delivery_id: str
    patient_id: str  # the mother
    pregnancy_id: str | None = None
    newborn_patient_id: str | None = None
    delivered_at: dt.datetime | None = None
    delivery_mode: str | None = None
    gestational_age_days: int | None = None
    birth_weight_grams: int | None = None
    apgar_5_minutes: int | None = None
    is_blocked: bool = False


class Immunization(CoreRecord):
    entity: ClassVar[str] = "immunization"
    coded_fields: ClassVar[dict[str, Coded]] = {"atc_code": Coded("atc", ATC_SOURCES)}
    immunization_id: str
    patient_id: str
    atc_code: str | None = None
    atc_code_source_code: str | None = None
    atc_code_source_system: str | None = None
    vaccine_name: str | None = None
    batch_number: str | None = None
    administered_at: dt.datetime | None = None
    dose_number: int | None = None
    care_unit_hsa_id: str | None = None


ENTITIES: dict[str, type[CoreRecord]] = {
    model.entity: model
    for model in (
        Patient,
        PatientIdentifier,
        CareUnit,
        Practitioner,
        Encounter,
        Diagnosis,
        Procedure,
        Observation,
        Medication,
        Appointment,
        Referral,
        ClinicalNote,
        Alert,
        WaitingListEntry,
        OperationRequest,
        Pregnancy,
        Delivery,
        Immunization,
    )
}
# Entities a mapping file may target; patient_identifier is derived from patient mappings.
MAPPABLE_ENTITIES = tuple(name for name in ENTITIES if name != "patient_identifier")
