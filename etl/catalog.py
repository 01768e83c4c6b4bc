"""The mapping catalog: source systems and entity mappings declared as YAML under ``mappings/``.

Layout (convention, checked at load):
``mappings/<system>/system.yaml``   which datasets the source has (and how to reach it, when
                                    that is not the convention of ``conventional_connection``);
``mappings/<system>/<entity>.yaml`` how one dataset becomes one core entity;
``mappings/crosswalks/<name>.csv``  local code to standard code tables.

A system of an archetype (``etl/layout.py``) gets the archetype's entity files; its own file of
the same name replaces the archetype's, or, with ``extends: <archetype>``, changes it key by key
(:func:`extend_entity_mapping`).

Every file is parsed into typed models; an error names the file and the field.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from etl.core import (
    code_systems,
    encodings,  # noqa: F401  (registers iso646_se before codecs are checked)
    yaml_files,
)
from etl.core.model import ENTITIES, HSA_ID_PATTERN, MAPPABLE_ENTITIES
from etl.core.safety import SAFETY_TARGETS, SafetyDeclaration, declaration_problem
from etl.core.vocabulary import REGISTRY
from etl.layout import (
    ARCHETYPE_DIR,
    CROSSWALK_DIR,
    SYSTEM_FILE,
    archetype_of,
    entity_files,
    system_directories,
)


class MappingError(ValueError):
    """A mapping file is wrong; the message names the file and the field. Loading the catalog
    gathers every problem of every file into one MappingError (``problems`` lists them)."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or [message]


def _all_problems(problems: list[str]) -> MappingError:
    files = {problem.split(": ", 1)[0] for problem in problems}
    heading = f"{len(problems)} mapping problem(s) in {len(files)} file(s):"
    return MappingError(
        problems[0] if len(problems) == 1 else "\n".join([heading, *problems]), problems
    )


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- system.yaml ------------------------------------------------------------------------------


class SourceFormat(StrEnum):
    SQL = "sql"
    FILES = "files"


class FileFormat(StrEnum):
    DELIMITED = "delimited"
    FIXED_WIDTH = "fixed_width"
    HL7V2 = "hl7v2"
    XML = "xml"
    JSONL = "jsonl"


# Formats whose fields are located by a path inside each record rather than by position.
PATH_FORMATS = {FileFormat.HL7V2, FileFormat.XML, FileFormat.JSONL}


class SourceField(Strict):
    """One field of a record: by ``width`` in fixed-width files, by ``path`` in structured ones.

    Paths: HL7 v2 ``SEG.field[.component[.subcomponent]]`` (``PID.3.1``, ``OBX.5``); XML an
    element path relative to the record, ``@name`` for an attribute (``Patient/Pnr``,
    ``@id``); JSON lines a dotted key path (``patient.id``).
    """

    name: str
    width: int | None = Field(default=None, gt=0)
    path: str | None = None
    # XML and JSON lines: a record without this element, attribute or key is unreadable
    # (``missing_field``) instead of reading it as NA. See etl/extract/shape.py.
    required: bool = False


class Connection(Strict):
    url_env: str | None = None
    default_url: str | None = None
    path_env: str | None = None
    default_path: str | None = None


def conventional_connection(system: str, source_format: str) -> dict[str, str]:
    """Where a system is read from unless its ``system.yaml`` says otherwise.

    A SQL source: its URL from ``VARDFLYTT_SOURCE_<SYSTEM>_URL``, by default the estate's
    ``<system>/<system>.sqlite``; a file source: its folder from ``VARDFLYTT_SOURCE_<SYSTEM>_PATH``,
    by default the estate's ``<system>/``. A ``connection:`` block overrides key by key (``null``
    removes a default), so it is written only where a system differs from this.
    """
    variable = f"VARDFLYTT_SOURCE_{system.upper()}"
    if source_format == SourceFormat.SQL:
        return {
            "url_env": f"{variable}_URL",
            "default_url": f"sqlite:///{{estate_dir}}/{system}/{system}.sqlite",
        }
    return {"path_env": f"{variable}_PATH", "default_path": f"{{estate_dir}}/{system}"}


class DatasetRole(StrEnum):
    """What a dataset is for: rows that become core rows, or a side table read only by lookups."""

    ENTITY = "entity"
    # A side file (a country code table, say) that lookups read: no entity mapping, and its rows
    # are accounted for as lookup rows, never as unmapped ones.
    LOOKUP = "lookup"


class SqlDataset(Strict):
    table: str
    key: list[str] = Field(min_length=1)
    columns: list[str] = Field(min_length=1)
    role: DatasetRole = DatasetRole.ENTITY

    @property
    def source_name(self) -> str:
        return self.table


class FileDataset(Strict):
    file: str
    format: FileFormat
    encoding: str
    key: list[str] = Field(min_length=1)
    delimiter: str = ";"
    columns: list[str] = Field(default_factory=list)
    fields: list[SourceField] = Field(default_factory=list)
    message_types: list[str] = Field(default_factory=list)  # HL7 v2, e.g. ["ORU^R01"]
    row_segment: str | None = None  # HL7 v2: one row per occurrence of this segment
    record_path: str | None = None  # XML: path of the repeated record element
    role: DatasetRole = DatasetRole.ENTITY

    @property
    def source_name(self) -> str:
        return self.file

    @model_validator(mode="after")
    def _layout_declared(self) -> FileDataset:
        if self.format is FileFormat.FIXED_WIDTH and (
            not self.fields or any(f.width is None for f in self.fields)
        ):
            raise ValueError("a fixed_width dataset needs 'fields' with a name and width each")
        if self.format in PATH_FORMATS and (
            not self.fields or any(f.path is None for f in self.fields)
        ):
            raise ValueError(f"a {self.format} dataset needs 'fields' with a name and path each")
        if self.format is FileFormat.XML and not self.record_path:
            raise ValueError("an xml dataset needs 'record_path' (the repeated record element)")
        if self.format is FileFormat.HL7V2 and not self.message_types:
            raise ValueError("an hl7v2 dataset needs 'message_types', e.g. ['ORU^R01']")
        if self.format is FileFormat.DELIMITED and not self.columns:
            raise ValueError("a delimited dataset needs 'columns'")
        try:  # an unknown codec fails here, at load, not mid-run
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(f"unknown encoding '{self.encoding}'") from None
        return self

    @property
    def column_names(self) -> list[str]:
        return [field.name for field in self.fields] if self.fields else list(self.columns)


class SystemSpec(Strict):
    system: str
    title: str
    format: SourceFormat
    connection: Connection
    datasets: dict[str, Annotated[SqlDataset | FileDataset, Field(union_mode="left_to_right")]]
    # Days landed data is kept before `vardflytt landing purge` may remove it (etl.extract.
    # retention); unset: VARDFLYTT_LANDING_RETENTION_DAYS, and with neither it is kept.
    landing_retention_days: int | None = Field(default=None, ge=0)
    # How many reads of this source may run at once, as its owner allows: the slots of its
    # Airflow pool (etl/airflow_pools.py). Undeclared: 1, fail closed, because a legacy
    # production system's owner is asked before a second connection is opened on it.
    max_parallel_reads: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _datasets_match_format(self) -> SystemSpec:
        expected = SqlDataset if self.format is SourceFormat.SQL else FileDataset
        for name, dataset in self.datasets.items():
            if not isinstance(dataset, expected):
                raise ValueError(f"dataset '{name}' does not look like a {self.format} dataset")
            columns = dataset.columns if isinstance(dataset, SqlDataset) else dataset.column_names
            missing = [key for key in dataset.key if key not in columns]
            if missing:
                raise ValueError(f"dataset '{name}': key column(s) {missing} are not declared")
        return self

    def dataset_columns(self, dataset: str) -> list[str]:
        spec = self.datasets[dataset]
        return spec.columns if isinstance(spec, SqlDataset) else spec.column_names

    @property
    def lookup_datasets(self) -> list[str]:
        """Datasets declared ``role: lookup``: read by lookups only, never mapped to an entity."""
        return [name for name, d in self.datasets.items() if d.role is DatasetRole.LOOKUP]


# --- <entity>.yaml ----------------------------------------------------------------------------


# Transform arguments that turn a blank source value into a value of their own: never for a
# safety-critical field, where only the column's ``safety`` declaration may say what blank means.
BLANK_DEFAULT_ARGS = ("default", "missing_is")


class ColumnMapping(Strict):
    target: str
    source: str | None = None  # one legacy column; None for a constant
    transform: str = "text"
    args: dict[str, Any] = Field(default_factory=dict)
    # Required for safety-critical targets (etl/core/safety.py): what an uncertain value does.
    safety: SafetyDeclaration | None = None
    # Required for coded targets (etl/core/code_systems.py): the code system(s) of the legacy
    # codes, by name (``icd10_se``, ``local:alert-code``); a list: the first that recognises a
    # code is its system. Kept in the core as ``<target>_source_code``/``_source_system``.
    source_system: str | list[str] | None = None
    # A target whose system varies per row (an alert's code): the systems the mapped code may be
    # in, recognised the same way; default: the source systems (the code passes unchanged).
    target_system: str | list[str] | None = None
    note: str = ""

    @property
    def source_columns(self) -> list[str]:
        return [] if self.source is None else [self.source]

    @property
    def declared_source_systems(self) -> list[str]:
        return _as_list(self.source_system)

    @property
    def declared_target_systems(self) -> list[str]:
        return _as_list(self.target_system) or self.declared_source_systems

    def source_code_systems(self, system: str) -> list[code_systems.CodeSystem]:
        """The declared source systems, resolved for the mapping's source ``system``."""
        return [code_systems.resolve(name, system) for name in self.declared_source_systems]

    def target_code_systems(self, system: str) -> list[code_systems.CodeSystem]:
        return [code_systems.resolve(name, system) for name in self.declared_target_systems]

    @model_validator(mode="after")
    def _known_transform(self) -> ColumnMapping:
        definition = REGISTRY.get(self.transform)
        if definition is None:
            raise ValueError(
                f"unknown transform '{self.transform}' for target '{self.target}'; "
                f"known: {', '.join(sorted(REGISTRY))}"
            )
        definition.args_model.model_validate(self.args)
        return self

    @model_validator(mode="after")
    def _fails_closed(self) -> ColumnMapping:
        """A safety-critical target declares what happens to a missing or unparsable value."""
        if self.target not in SAFETY_TARGETS and self.safety is None:
            return self
        problem = declaration_problem(self.target, self.safety)
        if problem:
            raise ValueError(problem)
        if self.source is None:
            raise ValueError(
                f"target '{self.target}' is safety-critical: it needs a source column (a constant "
                "cannot say whether a patient is protected); leave it unmapped if the source has "
                "no such field"
            )
        defaults = [name for name in BLANK_DEFAULT_ARGS if name in self.args]
        if defaults:
            raise ValueError(
                f"target '{self.target}' is safety-critical: remove args {defaults}; a blank "
                "value is uncertain unless 'safety.blank_means' (with a note) says otherwise"
            )
        return self

    def parsed_args(self):
        return REGISTRY[self.transform].args_model.model_validate(self.args)


def _as_list(declared: str | list[str] | None) -> list[str]:
    if declared is None:
        return []
    return [declared] if isinstance(declared, str) else list(declared)


def coded_column_problems(entity: str, column: ColumnMapping) -> list[str]:
    """What is wrong with a column's code system declaration (etl/core/code_systems.py)."""
    model = ENTITIES[entity]
    coded = model.coded_fields.get(column.target)
    field = f"columns.{column.target}"
    if coded is None:
        return [
            f"field '{field}.{key}': '{column.target}' is not a coded column of '{entity}' "
            f"(coded: {', '.join(model.coded_fields) or 'none'})"
            for key, value in (
                ("source_system", column.source_system),
                ("target_system", column.target_system),
            )
            if value is not None
        ]
    allowed = [*coded.allowed, "local:<name>"]
    if column.source is None:
        return []  # a constant: nothing was written in the source, so no source code to keep
    if not column.declared_source_systems:
        return [
            f"field '{field}.source_system': '{column.target}' is coded: declare the code "
            f"system of the legacy codes (allowed here: {', '.join(allowed)})"
        ]
    if column.target_system is not None and coded.system_column is None:
        return [
            f"field '{field}.target_system': '{column.target}' is always in "
            f"{code_systems.KNOWN[str(coded.target)].title}; only a column whose system varies "
            "per row declares it"
        ]
    problems = []
    for key, names in (
        ("source_system", column.declared_source_systems),
        ("target_system", _as_list(column.target_system)),
    ):
        resolved = []
        for name in names:
            try:
                system = code_systems.resolve(name, "system")
            except ValueError as error:
                problems.append(f"field '{field}.{key}': {error}")
                continue
            if not coded.allows(system):
                why = (
                    " (SNOMED CT only for diagnoses and findings)"
                    if system is code_systems.SNOMED_CT
                    else ""
                )
                problems.append(
                    f"field '{field}.{key}': '{name}' is not allowed for "
                    f"{entity}.{column.target}{why}; allowed: {', '.join(allowed)}"
                )
            resolved.append(system)
        catch_all = [s.name for s in resolved[:-1] if s.is_catch_all]
        if catch_all:
            problems.append(
                f"field '{field}.{key}': {catch_all} recognise any code, so a system after them "
                "would never be chosen; list them last"
            )
        if len({s.name for s in resolved}) != len(resolved):
            problems.append(f"field '{field}.{key}': a system is listed twice")
    return problems


class IdentifierOrigin(StrEnum):
    """Who issued the numbers in an identifier column."""

    SWEDISH = "swedish"  # personnummer, samordningsnummer, reservnummer, interimsnummer
    FOREIGN = "foreign"  # another country's or body's document: kept as a secondary identifier


class ForeignDocument(StrEnum):
    PASSPORT = "passport"
    EU_HEALTH_CARD = "eu_health_card"  # European health insurance card (EU/EES)
    NATIONAL_ID = "national_id"
    PERSONAL_NUMBER = "personal_number"  # another country's personal identity number


class IdentifierMapping(Strict):
    """A source column holding an identity number (personnummer, reservnummer, a passport, ...).

    ``kind: foreign`` declares a foreign identifier: its ``document`` and its issuing country,
    from a column (``issuer_source``, which may be a lookup's column) or fixed (``issuer``).
    Foreign identifiers are never a patient's primary identity.
    """

    source: str
    kind: IdentifierOrigin = IdentifierOrigin.SWEDISH
    century_source: str | None = None
    accept_legacy_reserve: bool = False
    document: ForeignDocument | None = None
    issuer_source: str | None = None
    issuer: str | None = Field(default=None, pattern=r"^[A-Z]{2,3}$")
    note: str = ""

    @field_validator("issuer", mode="before")
    @classmethod
    def _country_code_as_text(cls, value: Any) -> Any:
        if isinstance(value, bool):  # YAML 1.1 reads NO (Norway) as false, YES/ON as true
            raise ValueError("a country code must be quoted in YAML, e.g. issuer: 'NO'")
        return value

    @model_validator(mode="after")
    def _fields_fit_the_kind(self) -> IdentifierMapping:
        if self.kind is IdentifierOrigin.FOREIGN:
            wrong = [
                name
                for name, value in (
                    ("century_source", self.century_source),
                    ("accept_legacy_reserve", self.accept_legacy_reserve),
                )
                if value
            ]
            if wrong:
                raise ValueError(f"'{self.source}': {wrong} only apply to Swedish numbers")
            if self.document is None:
                raise ValueError(
                    f"'{self.source}': a foreign identifier needs 'document' "
                    f"({', '.join(d.value for d in ForeignDocument)})"
                )
            if (self.issuer_source is None) == (self.issuer is None):
                raise ValueError(
                    f"'{self.source}': a foreign identifier needs exactly one of 'issuer_source' "
                    "(the column with the issuing country) or 'issuer' (a fixed country code)"
                )
        else:
            wrong = [
                name
                for name, value in (
                    ("document", self.document),
                    ("issuer_source", self.issuer_source),
                    ("issuer", self.issuer),
                )
                if value is not None
            ]
            if wrong:
                raise ValueError(f"'{self.source}': {wrong} need 'kind: foreign'")
        return self

    @property
    def source_columns(self) -> list[str]:
        return [c for c in (self.source, self.century_source, self.issuer_source) if c]


class ReserveIssue(StrEnum):
    # A patient without a Swedish number is quarantined (missing_identity_number).
    NEVER = "never"
    # ... gets a VGR reservnummer issued by the region's scheme (etl.identifiers).
    REGION_SCHEME = "region_scheme"


class ReservePolicy(Strict):
    """What happens to a patient without any Swedish number (personnummer, samordningsnummer,
    reservnummer). The source's own reserve numbers are kept by declaring their column among
    ``identifiers``; ``issue: region_scheme`` issues one to every patient still without."""

    issue: ReserveIssue = ReserveIssue.NEVER
    note: str = ""


class ExclusionRule(Strict):
    """Rows excluded on purpose (for example test patients): counted, never silently dropped."""

    rule: str
    column: str
    equals: list[str]
    note: str


class ReferenceCheck(Strict):
    """A source column that must point at an existing row of another dataset of the system."""

    column: str
    dataset: str
    note: str = ""


class Lookup(Strict):
    """A value taken from another dataset's row that this row points at, as a virtual column.

    ``{column: KONTAKTNR, dataset: kontakt, take: SPARR, as: KONTAKT_SPARR}`` gives every row
    the SPARR of the care contact it belongs to, so a blocked contact's diagnoses are blocked too.
    Column mappings then use ``KONTAKT_SPARR`` like any source column.
    """

    column: str
    dataset: str
    take: str
    as_: str = Field(alias="as", pattern=r"^[A-Z][A-Z0-9_]*$")
    # The value for a row whose ``column`` is empty (it points at no row), e.g. ``N`` for a
    # diagnosis documented outside any care contact: no contact, no contact spärr. Without it the
    # value is missing, which a safety-critical column treats as uncertain. A row pointing at a row
    # that does not exist always gets a missing value.
    when_unlinked: str | None = None
    note: str = ""


class UnitFollows(StrEnum):
    # Patient-level (the register, warning information): in the plan's patients wave.
    PATIENT = "patient"
    # No unit of its own (a medication list, results naming only a laboratory): with the first
    # wave that moves one of the patient's rows in the system, whatever the plan's patients wave.
    PATIENT_CARE = "patient_care"


class UnitOfRow(Strict):
    """How a row belongs to a care unit, for waves scoped by unit (etl/cutover/scope.py).

    Exactly one of:

    - ``column: care_unit_hsa_id``: the row's own target column holding an HSA-id (a column
      named ``*hsa_id``), e.g. a referral's receiving unit ``to_care_unit_hsa_id``;
    - ``column: care_unit_id``: its own reference to one of the system's care units (a column
      named ``*care_unit_id``), read through that care unit's ``hsa_id``;
    - ``via: encounter_id``: the unit of the row it points at (``<entity>_id``: its encounter,
      its practitioner, ...), which declares its own unit;
    - ``follows: patient``: a patient-level row (the register, warning information): it moves
      with its patient, in the plan's patient wave (region-wide or the first that needs it);
    - ``follows: patient_care``: a row with no unit of its own (a medication list): it moves
      with the first wave that moves one of the patient's rows in the system;
    - ``fixed: <HSA-id>``: every row of this entity of this system is that unit's (a
      laboratory's results, when the message names no requesting unit).

    Declared as the mapping's ``care_unit:`` key, e.g. ``care_unit: {via: encounter_id}``.
    """

    column: str | None = None
    via: str | None = None
    follows: UnitFollows | None = None
    fixed: str | None = Field(default=None, pattern=HSA_ID_PATTERN)
    note: str = ""

    @model_validator(mode="after")
    def _exactly_one(self) -> UnitOfRow:
        chosen = [k for k in ("column", "via", "follows", "fixed") if getattr(self, k)]
        if len(chosen) != 1:
            raise ValueError(
                "declare exactly one of 'column' (own HSA-id or care_unit_id column), 'via' "
                "(<entity>_id of the row whose unit it takes), 'follows: patient' or 'fixed' "
                f"(an HSA-id); got {chosen or 'none'}"
            )
        if self.column and not self.column.endswith(("hsa_id", "care_unit_id")):
            raise ValueError(
                f"'column: {self.column}': a unit column holds an HSA-id (*hsa_id) or a care unit "
                "reference (*care_unit_id)"
            )
        if self.via and (not self.via.endswith("_id") or self.via_entity not in ENTITIES):
            raise ValueError(f"'via: {self.via}': expected <entity>_id of a core entity")
        if self.via_entity == "patient":
            raise ValueError("'via: patient_id': a patient has no unit; write 'follows: patient'")
        return self

    @property
    def via_entity(self) -> str | None:
        return self.via.removesuffix("_id") if self.via else None

    @property
    def is_patient_level(self) -> bool:
        """Placed by its patient (either ``follows``), not by a unit of its own."""
        return self.follows is not None

    @property
    def is_reference(self) -> bool:
        """The column is a care unit reference, read through the care unit's ``hsa_id``."""
        return bool(self.column and self.column.endswith("care_unit_id"))


class EntityMapping(Strict):
    system: str
    entity: Literal[MAPPABLE_ENTITIES]  # type: ignore[valid-type]
    dataset: str
    description: str = ""
    identifiers: list[IdentifierMapping] = Field(default_factory=list)
    reserve: ReservePolicy = Field(default_factory=ReservePolicy)
    exclude: list[ExclusionRule] = Field(default_factory=list)
    references: list[ReferenceCheck] = Field(default_factory=list)
    lookups: list[Lookup] = Field(default_factory=list)
    columns: list[ColumnMapping]
    # How a row belongs to a care unit (waves by unit); required of every entity of a system
    # the wave plan splits by unit (etl/cutover/plan.py), optional elsewhere.
    care_unit: UnitOfRow | None = None

    @model_validator(mode="after")
    def _targets_exist(self) -> EntityMapping:
        model = ENTITIES[self.entity]
        allowed = set(model.business_fields())
        targets = [column.target for column in self.columns]
        unknown = sorted(set(targets) - allowed)
        if unknown:
            raise ValueError(
                f"target column(s) {unknown} do not exist on core entity '{self.entity}' "
                f"(its columns: {', '.join(model.business_fields())})"
            )
        duplicates = sorted({t for t in targets if targets.count(t) > 1})
        if duplicates:
            raise ValueError(f"target column(s) {duplicates} are mapped more than once")
        if self.identifiers and self.entity != "patient":
            raise ValueError("'identifiers' is only allowed in a patient mapping")
        identity_targets = {"identity_number", "identity_kind"} & set(targets)
        if identity_targets:
            raise ValueError(f"{sorted(identity_targets)} come from 'identifiers', not 'columns'")
        derived = sorted(set(model.derived_code_fields()) & set(targets))
        if derived:
            raise ValueError(
                f"{derived} are filled from the coded column's 'source_system', not mapped"
            )
        problems = [p for c in self.columns for p in coded_column_problems(self.entity, c)]
        if problems:
            raise ValueError("; ".join(problems))
        required = {
            name for name, info in model.model_fields.items() if info.is_required()
        } & allowed
        missing = sorted(required - set(targets))
        if missing:
            raise ValueError(f"required target column(s) {missing} are not mapped")
        return self

    @model_validator(mode="after")
    def _unit_declaration_fits(self) -> EntityMapping:
        unit = self.care_unit
        if unit is None:
            return self
        targets = {column.target for column in self.columns}
        if self.entity == "patient" and unit.follows is not UnitFollows.PATIENT:
            raise ValueError(
                "field 'care_unit': a patient is patient-level; write 'follows: patient'"
            )
        if unit.is_patient_level and self.entity != "patient" and "patient_id" not in targets:
            raise ValueError("field 'care_unit.follows': the entity maps no 'patient_id' to follow")
        for key, name in (("column", unit.column), ("via", unit.via)):
            if name and name not in targets:
                where = "maps no" if name in ENTITIES[self.entity].model_fields else "has no"
                raise ValueError(
                    f"field 'care_unit.{key}': entity '{self.entity}' {where} column '{name}' "
                    f"(mapped: {', '.join(sorted(targets))})"
                )
        if unit.via_entity == self.entity:
            raise ValueError(f"field 'care_unit.via': '{unit.via}' points at the entity itself")
        return self

    @model_validator(mode="after")
    def _reserve_policy_fits(self) -> EntityMapping:
        if self.reserve.issue is ReserveIssue.NEVER:
            return self
        if self.entity != "patient":
            raise ValueError("field 'reserve': only allowed in a patient mapping")
        if not self.identifiers:
            raise ValueError("field 'reserve.issue': needs 'identifiers' to know who has none")
        if "birth_date" not in {column.target for column in self.columns}:
            raise ValueError(
                "field 'reserve.issue': region_scheme writes the birth date into the number, "
                "so 'birth_date' must be mapped in 'columns'"
            )
        return self

    def source_columns(self) -> list[str]:
        used = [column for mapping in self.columns for column in mapping.source_columns]
        used += [column for identifier in self.identifiers for column in identifier.source_columns]
        used += [rule.column for rule in self.exclude] + [ref.column for ref in self.references]
        used += [lookup.column for lookup in self.lookups]
        return list(dict.fromkeys(used))

    def virtual_columns(self) -> list[str]:
        """Columns added by lookups before the transforms run (not in the source file)."""
        return [lookup.as_ for lookup in self.lookups]


# --- loading ----------------------------------------------------------------------------------


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        content = yaml_files.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise MappingError(f"{path}: not valid YAML: {error}") from error
    except UnicodeDecodeError as error:
        raise MappingError(
            f"{path}: not UTF-8 text (byte {error.start}): save the mapping file as UTF-8"
        ) from error
    if not isinstance(content, dict):
        raise MappingError(f"{path}: expected a mapping of keys to values at the top level")
    return content


def _validation_message(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: {error.error_count()} problem(s)"]
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(file)"
        lines.append(f"  field '{location}': {item['msg']}")
    return "\n".join(lines)


class SystemMappings(BaseModel):
    """One source system: its system.yaml and every entity mapping file beside it."""

    model_config = ConfigDict(frozen=True)
    spec: SystemSpec
    entities: dict[str, EntityMapping]
    directory: Path

    @property
    def name(self) -> str:
        return self.spec.system


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True)
    root: Path
    systems: dict[str, SystemMappings]

    @cached_property
    def crosswalk_rows(self) -> dict[str, dict[str, CrosswalkRow]]:
        return load_crosswalk_rows(self.root)

    @cached_property
    def crosswalks(self) -> dict[str, dict[str, str]]:
        return {
            name: {code: row.target_code for code, row in rows.items()}
            for name, rows in self.crosswalk_rows.items()
        }

    @cached_property
    def proposed_codes(self) -> dict[str, frozenset[str]]:
        """Per crosswalk, the source codes only a ``proposed`` row maps (not yet approved)."""
        return {
            name: frozenset(code for code, row in rows.items() if row.status == PROPOSED)
            for name, rows in self.crosswalk_rows.items()
        }

    def system(self, name: str) -> SystemMappings:
        try:
            return self.systems[name]
        except KeyError:
            raise MappingError(
                f"no source system '{name}' under {self.root}; known: {', '.join(self.systems)}"
            ) from None


CROSSWALK_COLUMNS = ("source_code", "target_code", "note", "status", "decided_by", "decided_at")
PROPOSED, APPROVED = "proposed", "approved"
CROSSWALK_STATUSES = (PROPOSED, APPROVED)


class CrosswalkRow(BaseModel):
    """One row of a crosswalk: a local code, its standard code and the decision behind it.

    ``status`` is ``proposed`` (a steward's suggestion, not yet reviewed) or ``approved``; a row
    without one is approved (the tables written before statuses existed were reviewed in git).
    ``decided_by``/``decided_at``: who set the status, and when (an ISO date or time); an
    ``approved`` status written out needs both, so an approval is always attributable.
    """

    model_config = ConfigDict(frozen=True)
    source_code: str
    target_code: str
    status: str = APPROVED
    decided_by: str = ""
    decided_at: str = ""


def _crosswalk_row_problems(path: Path, line: int, row: dict[str, str | None]) -> list[str]:
    where = f"{path}: row {line}"
    problems = []
    for name in ("source_code", "target_code"):
        if not (row.get(name) or "").strip():
            problems.append(f"{where}: field '{name}': empty (every row maps a code to a code)")
    status = (row.get("status") or "").strip()
    if status and status not in CROSSWALK_STATUSES:
        problems.append(
            f"{where}: field 'status': {status!r} is not one of {', '.join(CROSSWALK_STATUSES)} "
            "(or empty: approved)"
        )
    decided_at = (row.get("decided_at") or "").strip()
    if decided_at:
        try:
            dt.datetime.fromisoformat(decided_at)
        except ValueError:
            problems.append(
                f"{where}: field 'decided_at': {decided_at!r} is not an ISO date or time"
            )
    if status == APPROVED:
        for name in ("decided_by", "decided_at"):
            if not (row.get(name) or "").strip():
                problems.append(f"{where}: field '{name}': an approved row says who and when")
    return problems


def read_crosswalk(path: Path) -> dict[str, CrosswalkRow]:
    """One crosswalk file by upper-case source code; raises a MappingError naming every bad row
    (file, row number as a spreadsheet counts it, and field)."""
    problems: list[str] = []
    rows: dict[str, CrosswalkRow] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"source_code", "target_code"} <= set(reader.fieldnames):
            raise MappingError(f"{path}: needs columns source_code,target_code,note")
        unknown = [name for name in reader.fieldnames if name not in CROSSWALK_COLUMNS]
        if unknown:
            problems.append(
                f"{path}: unknown column(s) {', '.join(unknown)} "
                f"(columns: {', '.join(CROSSWALK_COLUMNS)})"
            )
        for line, row in enumerate(reader, start=2):
            found = _crosswalk_row_problems(path, line, row)
            problems.extend(found)
            if found:
                continue
            code = (row["source_code"] or "").strip().upper()
            rows[code] = CrosswalkRow(
                source_code=code,
                target_code=(row["target_code"] or "").strip(),
                status=(row.get("status") or "").strip() or APPROVED,
                decided_by=(row.get("decided_by") or "").strip(),
                decided_at=(row.get("decided_at") or "").strip(),
            )
    if problems:
        raise _all_problems(problems)
    return rows


def load_crosswalk_rows(root: Path) -> dict[str, dict[str, CrosswalkRow]]:
    """Every ``crosswalks/<name>.csv`` by name; one MappingError names every bad row of all."""
    tables: dict[str, dict[str, CrosswalkRow]] = {}
    problems: list[str] = []
    for path in sorted((root / CROSSWALK_DIR).glob("*.csv")):
        try:
            tables[path.stem] = read_crosswalk(path)
        except MappingError as error:
            problems.extend(error.problems)
    if problems:
        raise _all_problems(problems)
    return tables


def load_crosswalks(root: Path) -> dict[str, dict[str, str]]:
    """``crosswalks/<name>.csv`` (columns ``source_code,target_code,note`` and optionally
    ``status,decided_by,decided_at``) as ``{name: {SOURCE_CODE: target}}``, every row."""
    return {
        name: {code: row.target_code for code, row in rows.items()}
        for name, rows in load_crosswalk_rows(root).items()
    }


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """The archetype's settings with the system's own on top (nested mappings merge)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


EXTENDS_KEY = "extends"


def extend_entity_mapping(
    base: dict[str, Any], changes: dict[str, Any], path: Path
) -> dict[str, Any]:
    """An archetype's entity mapping with a system's ``extends:`` file on top.

    Mappings merge key by key, at every depth (a column's ``args`` too); a list or a scalar
    replaces the archetype's whole. ``columns`` are keyed by their target: written as a mapping
    ``{target: changes}`` each entry merges into the archetype's column of that target (or adds
    a column at the end), and ``{target: null}`` drops the archetype's column; written as a list
    they replace the archetype's columns. Column order is the archetype's.
    """
    merged = _deep_merge(base, {k: v for k, v in changes.items() if k != "columns"})
    if "columns" in changes:
        merged["columns"] = _extend_columns(base.get("columns") or [], changes["columns"], path)
    return merged


def _extend_columns(base: list[Any], changes: Any, path: Path) -> Any:
    if not isinstance(changes, dict):
        return changes  # a list replaces the archetype's columns; anything else fails validation
    columns: dict[str, dict[str, Any]] = {}
    for column in base:
        if not isinstance(column, dict) or "target" not in column:
            raise MappingError(f"{path}: the archetype's 'columns' must each name a 'target'")
        columns[column["target"]] = column
    for target, change in changes.items():
        if change is None:
            if target not in columns:
                raise MappingError(
                    f"{path}: field 'columns.{target}': the archetype maps no '{target}' to drop"
                )
            del columns[target]
        elif not isinstance(change, dict) or change.get("target", target) != target:
            raise MappingError(
                f"{path}: field 'columns.{target}': expected the keys to change in the "
                f"archetype's '{target}' column (or null to drop it)"
            )
        else:
            columns[target] = _deep_merge(columns.get(target, {"target": target}), change)
    return list(columns.values())


def _entity_content(path: Path, directory: Path) -> dict[str, Any]:
    """An entity file's content, on top of the archetype's file when it ``extends`` it."""
    content = _read_yaml(path)
    if EXTENDS_KEY not in content:
        return content
    extended = content.pop(EXTENDS_KEY)
    if path.parent != directory:
        raise MappingError(f"{path}: field '{EXTENDS_KEY}': only a system's own file extends")
    archetype = archetype_of(directory)
    if extended != archetype or archetype is None:
        raise MappingError(
            f"{path}: field '{EXTENDS_KEY}': '{extended}' is not this system's archetype "
            f"({archetype or 'it names none'}); a file extends its own system's archetype"
        )
    base_path = directory.parent / ARCHETYPE_DIR / archetype / path.name
    if not base_path.exists():
        raise MappingError(f"{path}: field '{EXTENDS_KEY}': no {base_path} to extend")
    return extend_entity_mapping(_read_yaml(base_path), content, path)


def load_system(directory: Path) -> SystemMappings:
    system_path = directory / SYSTEM_FILE
    if not system_path.exists():
        raise MappingError(f"{directory}: missing {SYSTEM_FILE} (how to reach the source system)")
    content = _read_yaml(system_path)
    archetype = content.pop("archetype", None)
    if archetype:
        if archetype != archetype_of(directory):
            raise MappingError(f"{system_path}: write 'archetype:' as a top-level line")
        archetype_path = directory.parent / ARCHETYPE_DIR / str(archetype) / SYSTEM_FILE
        if not archetype_path.exists():
            raise MappingError(f"{system_path}: field 'archetype': no {archetype_path}")
        content = _deep_merge(_read_yaml(archetype_path), content)
    connection = content.get("connection", {})
    if isinstance(connection, dict) and content.get("format") in set(SourceFormat):
        derived = conventional_connection(directory.name, content["format"])
        content["connection"] = derived | connection
    try:
        spec = SystemSpec.model_validate(content)
    except ValidationError as error:
        raise MappingError(_validation_message(system_path, error)) from error
    if spec.system != directory.name:
        raise MappingError(
            f"{system_path}: field 'system' is '{spec.system}' but the folder is '{directory.name}'"
        )
    entities = {}
    problems: list[str] = []
    files = entity_files(directory).values()
    for path in files:  # every file checked, every problem reported
        try:
            mapping = _entity_mapping(path, directory, spec)
        except MappingError as error:
            problems.extend(error.problems)
            continue
        entities[mapping.entity] = mapping
    if problems:
        raise _all_problems(problems)
    if not files:
        raise MappingError(f"{directory}: no entity mapping files (<entity>.yaml)")
    _check_unit_declarations(directory, entities)
    return SystemMappings(spec=spec, entities=entities, directory=directory)


def _entity_mapping(path: Path, directory: Path, spec: SystemSpec) -> EntityMapping:
    content = {"system": spec.system, "entity": path.stem, **_entity_content(path, directory)}
    try:
        mapping = EntityMapping.model_validate(content)
    except ValidationError as error:
        raise MappingError(_validation_message(path, error)) from error
    _check_against_system(path, mapping, spec)
    missing = _missing_crosswalks(path, mapping, directory.parent / CROSSWALK_DIR)
    if missing:
        raise _all_problems(missing)
    return mapping


def _check_unit_declarations(directory: Path, entities: dict[str, EntityMapping]) -> None:
    """A unit read through another entity needs that entity in the system, with a unit of its
    own (no cycles); a care unit reference needs the system's care units with their HSA-id."""
    files = entity_files(directory)
    for name, mapping in entities.items():
        unit = mapping.care_unit
        if unit is None:
            continue
        where = f"{files.get(name, directory / (name + '.yaml'))}: field 'care_unit"
        if unit.is_reference:
            register = entities.get("care_unit")
            if register is None or "hsa_id" not in {c.target for c in register.columns}:
                raise MappingError(
                    f"{where}.column': '{unit.column}' is a care unit reference, but "
                    f"{directory.name} maps no care_unit with its hsa_id"
                )
        seen = [name]
        while unit is not None and unit.via_entity:
            target = unit.via_entity
            if target not in entities:
                raise MappingError(
                    f"{where}.via': {directory.name} maps no '{target}' to take the unit from"
                )
            if target in seen:
                raise MappingError(f"{where}.via': a cycle {' -> '.join([*seen, target])}")
            unit = entities[target].care_unit
            if unit is None or unit.is_patient_level:
                raise MappingError(
                    f"{where}.via': '{target}' declares no care unit of its own "
                    "(a 'care_unit' with column, via or fixed)"
                )
            seen.append(target)


def _check_against_system(path: Path, mapping: EntityMapping, spec: SystemSpec) -> None:
    if mapping.system != spec.system:
        raise MappingError(
            f"{path}: field 'system' is '{mapping.system}' "
            f"but the file is in {spec.system}'s folder"
        )
    if mapping.entity != path.stem:
        raise MappingError(
            f"{path}: field 'entity' is '{mapping.entity}' but the file is '{path.stem}'"
        )
    if mapping.dataset not in spec.datasets:
        raise MappingError(
            f"{path}: field 'dataset': '{mapping.dataset}' is not declared in {SYSTEM_FILE} "
            f"(declared: {', '.join(spec.datasets)})"
        )
    if mapping.dataset in spec.lookup_datasets:
        raise MappingError(
            f"{path}: field 'dataset': '{mapping.dataset}' is declared 'role: lookup' in "
            f"{SYSTEM_FILE}; a lookup table is read by lookups only, never mapped to an entity"
        )
    declared = spec.dataset_columns(mapping.dataset)
    virtual = mapping.virtual_columns()
    unknown = [
        column
        for column in mapping.source_columns()
        if column not in declared and column not in virtual
    ]
    if unknown:
        raise MappingError(
            f"{path}: source column(s) {unknown} are not declared for dataset '{mapping.dataset}'"
        )
    identity_keys = sorted(
        {i.source for i in mapping.identifiers} & set(spec.datasets[mapping.dataset].key)
    )
    if identity_keys:
        raise MappingError(
            f"{path}: field 'identifiers': {identity_keys} is also the dataset's key; "
            "row keys appear in reports and logs, so a key must never be an identity number. "
            "Declare another key."
        )
    _check_lookups(path, mapping, spec, declared)
    _check_references(path, mapping, spec)


def _check_lookups(
    path: Path, mapping: EntityMapping, spec: SystemSpec, declared: list[str]
) -> None:
    for lookup in mapping.lookups:
        if lookup.dataset not in spec.datasets:
            raise MappingError(
                f"{path}: field 'lookups.dataset': '{lookup.dataset}' is not a dataset of "
                f"{spec.system}"
            )
        if lookup.take not in spec.dataset_columns(lookup.dataset):
            raise MappingError(
                f"{path}: field 'lookups.take': '{lookup.take}' is not a column of dataset "
                f"'{lookup.dataset}'"
            )
        if lookup.as_ in declared:
            raise MappingError(
                f"{path}: field 'lookups.as': '{lookup.as_}' is already a column of dataset "
                f"'{mapping.dataset}'; choose another name"
            )


def _check_references(path: Path, mapping: EntityMapping, spec: SystemSpec) -> None:
    for reference in mapping.references:
        if reference.dataset not in spec.datasets:
            raise MappingError(
                f"{path}: field 'references.dataset': '{reference.dataset}' is not a dataset of "
                f"{spec.system}"
            )


def load_catalog(root: Path) -> Catalog:
    """Every system under ``root``; raises one MappingError naming every bad file and field."""
    if not root.is_dir():
        raise MappingError(f"mappings folder {root} does not exist")
    orphans = [
        directory.name
        for directory in sorted(root.iterdir())
        if directory.is_dir()
        and any(directory.glob("*.yaml"))
        and directory not in system_directories(root)
    ]
    problems = [
        f"{root / orphan}: has mapping files but no {SYSTEM_FILE} (how to reach the source)"
        for orphan in orphans
    ]
    systems = {}
    for directory in system_directories(root):
        try:
            mappings = load_system(directory)
        except MappingError as error:
            problems.extend(error.problems)
            continue
        systems[mappings.name] = mappings
    catalog = Catalog(root=root, systems=systems)
    try:
        catalog.crosswalks  # noqa: B018  (read now: a malformed table is a mapping problem)
    except MappingError as error:
        problems.extend(error.problems)
    if problems:
        raise _all_problems(problems)
    return catalog


def _missing_crosswalks(path: Path, mapping: EntityMapping, folder: Path) -> list[str]:
    """The crosswalks the mapping names that have no file in ``folder``."""
    present = sorted(p.stem for p in folder.glob("*.csv")) if folder.is_dir() else []
    return [
        f"{path}: field 'columns.{column.target}.args.crosswalk': no {CROSSWALK_DIR}/{name}.csv "
        f"(crosswalks: {', '.join(present) or 'none'})"
        for column in mapping.columns
        if (name := column.args.get("crosswalk")) and name not in present
    ]
