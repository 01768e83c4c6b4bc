"""``vardflytt export fhir``: the core rows of a wave as Bulk Data style NDJSON plus a manifest.

What is exported: the rows of the wave's promoted batches (or every core row), and every row
they refer to that the core holds (the patient of an encounter loaded by another wave, its care
unit, ...), so each literal reference resolves inside the export. A reference to a row the core
does not hold is never written: a required one (the subject) keeps the resource out, an
optional one is left off, and either is reported as an OperationOutcome in the manifest's
``error`` (core ids and field names only).

Streaming: each type is read with ``yield_per`` in chunks of ``chunk_size`` rows, ordered by id,
and written line by line; the referenced rows are chosen in SQL, never collected in memory.
Nothing here logs or prints patient data: counts per resource type only.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from etl.core import files
from etl.core.tables import ENTITY_TABLES, promotion
from etl.export import fhir
from etl.settings import Settings

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
ERRORS_FILE = "OperationOutcome.ndjson"
PROMOTED = "promoted"


@dataclass(frozen=True)
class Link:
    """A column of one core entity that refers to a row of another."""

    column: str
    entity: str
    required: bool = False


@dataclass(frozen=True)
class ResourceSpec:
    """One resource type: the core entity it is built from, how, and the links it follows."""

    entity: str
    resource_type: str
    build: Callable[[fhir.Row, fhir.Context], fhir.Resource]
    links: tuple[Link, ...] = ()


PATIENT = Link("patient_id", "patient", required=True)
SUBJECT_PROTECTION = "subject__protected_identity"
ENCOUNTER = Link("encounter_id", "encounter")

# In export order: what is referred to comes before what refers to it.
SPECS: tuple[ResourceSpec, ...] = (
    ResourceSpec("patient", "Patient", fhir.patient),
    ResourceSpec("care_unit", "Organization", fhir.organization),
    ResourceSpec("care_unit", "Location", fhir.location),
    ResourceSpec("practitioner", "Practitioner", fhir.practitioner),
    ResourceSpec(
        "encounter",
        "Encounter",
        fhir.encounter,
        (
            PATIENT,
            Link("care_unit_id", "care_unit"),
            Link("practitioner_id", "practitioner"),
        ),
    ),
    ResourceSpec("diagnosis", "Condition", fhir.condition, (PATIENT, ENCOUNTER)),
    ResourceSpec("observation", "Observation", fhir.observation, (PATIENT,)),
    ResourceSpec("procedure", "Procedure", fhir.procedure, (PATIENT, ENCOUNTER)),
    ResourceSpec("medication", "MedicationStatement", fhir.medication_statement, (PATIENT,)),
    ResourceSpec(
        "appointment", "Appointment", fhir.appointment, (PATIENT, Link("care_unit_id", "care_unit"))
    ),
    ResourceSpec(
        "referral",
        "ServiceRequest",
        fhir.service_request,
        (PATIENT, Link("from_care_unit_id", "care_unit")),
    ),
    ResourceSpec(
        "clinical_note", "DocumentReference", fhir.document_reference, (PATIENT, ENCOUNTER)
    ),
    ResourceSpec("alert", "Flag", fhir.flag, (PATIENT,)),
    ResourceSpec("immunization", "Immunization", fhir.immunization, (PATIENT,)),
)
# The type a reference to an entity names (a care unit is referred to as its Organization).
RESOURCE_TYPES = {spec.entity: spec.resource_type for spec in reversed(SPECS)}


class ExportError(RuntimeError):
    """The export cannot be made as asked (no such wave, nothing promoted)."""


@dataclass
class ExportResult:
    directory: Path
    counts: dict[str, int]  # per resource type
    issues: int
    batch_ids: list[str]


def wave_batches(connection: sa.Connection, wave: str) -> list[str]:
    """The batches of ``wave`` that are promoted into the core now."""
    query = (
        sa.select(promotion.c.batch_id)
        .where(promotion.c.wave == wave, promotion.c.state == PROMOTED)
        .order_by(promotion.c.seq, promotion.c.batch_id)
    )
    return list(connection.scalars(query))


def _selection(batch_ids: Sequence[str] | None) -> Callable[[str], sa.ColumnElement[bool]]:
    """Which rows of an entity are in the export: its own rows of the batches (or every row),
    and every row a selected row refers to, down the links (in SQL, never in memory)."""
    referrers: dict[str, list[tuple[str, Link]]] = {}
    for spec in SPECS:
        for link in spec.links:
            referrers.setdefault(link.entity, []).append((spec.entity, link))

    def included(entity: str) -> sa.ColumnElement[bool]:
        table = ENTITY_TABLES[entity]
        if batch_ids is None:
            return sa.true()
        clauses: list[sa.ColumnElement[bool]] = [table.c.batch_id.in_(list(batch_ids))]
        id_column = table.c[f"{entity}_id"]
        for referrer, link in referrers.get(entity, []):
            source = ENTITY_TABLES[referrer]
            clauses.append(
                id_column.in_(
                    sa.select(source.c[link.column]).where(
                        source.c[link.column].is_not(None), included(referrer)
                    )
                )
            )
        return sa.or_(*clauses)

    return included


def _row_query(spec: ResourceSpec, where: sa.ColumnElement[bool]) -> sa.Select[Any]:
    """The entity's rows with, per link, whether the referenced row is in the core."""
    table = ENTITY_TABLES[spec.entity]
    columns: list[Any] = list(table.c)
    joined: sa.FromClause = table
    for link in spec.links:
        target = ENTITY_TABLES[link.entity].alias(f"ref_{link.column}")
        target_id = target.c[f"{link.entity}_id"]
        joined = joined.outerjoin(target, target_id == table.c[link.column])
        columns.append(target_id.label(f"found__{link.column}"))
        if link == PATIENT:
            columns.append(target.c.protected_identity.label(SUBJECT_PROTECTION))
    return (
        sa.select(*columns).select_from(joined).where(where).order_by(table.c[f"{spec.entity}_id"])
    )


def _identifiers(connection: sa.Connection, patient_ids: list[str]) -> dict[str, list[Any]]:
    table = ENTITY_TABLES["patient_identifier"]
    query = (
        sa.select(table)
        .where(table.c.patient_id.in_(patient_ids))
        .order_by(
            table.c.patient_id,
            table.c.is_primary.desc(),
            table.c.identity_kind,
            table.c.patient_identifier_id,
        )
    )
    found: dict[str, list[Any]] = {}
    for row in connection.execute(query).mappings():
        found.setdefault(row["patient_id"], []).append(row)
    return found


class _Writer:
    """One NDJSON file, opened owner-only, written a line at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._handle: IO[str] | None = None

    def write(self, resource: Mapping[str, Any]) -> None:
        if self._handle is None:
            descriptor = os.open(
                self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, files.PRIVATE_FILE
            )
            self._handle = os.fdopen(descriptor, "w", encoding="utf-8")
        self._handle.write(json.dumps(resource, ensure_ascii=False, separators=(",", ":")) + "\n")
        self.count += 1

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


def _issue(severity: str, spec: ResourceSpec, row_id: str, link: Link) -> dict[str, Any]:
    action = "not exported" if link.required else "exported without it"
    target = RESOURCE_TYPES.get(link.entity, link.entity)
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": severity,
                "code": "not-found",
                "diagnostics": (
                    f"{spec.resource_type}/{row_id}: {link.column} refers to a {target} "
                    f"the core does not hold; {action}"
                ),
            }
        ],
    }


def _chunks(
    connection: sa.Connection, query: sa.Select[Any], chunk_size: int
) -> Iterator[Sequence[sa.RowMapping]]:
    result = connection.execution_options(yield_per=chunk_size).execute(query).mappings()
    yield from result.partitions()


def _export_type(
    connection: sa.Connection,
    spec: ResourceSpec,
    where: sa.ColumnElement[bool],
    out: _Writer,
    errors: _Writer,
    chunk_size: int,
) -> None:
    for chunk in _chunks(connection, _row_query(spec, where), chunk_size):
        identifiers = (
            _identifiers(connection, [row["patient_id"] for row in chunk])
            if spec.entity == "patient"
            else {}
        )
        for row in chunk:
            row_id = row[f"{spec.entity}_id"]
            resolved: dict[str, bool] = {}
            keep = True
            for link in spec.links:
                value = row[link.column]
                resolved[link.column] = (
                    value is not None and row[f"found__{link.column}"] is not None
                )
                if value is not None and not resolved[link.column]:
                    keep = keep and not link.required
                    severity = "error" if link.required else "warning"
                    errors.write(_issue(severity, spec, row_id, link))
            if not keep:
                continue
            context = fhir.Context(resolved, identifiers.get(row_id, ()))
            resource = spec.build(dict(row), context)
            if PATIENT in spec.links:  # a protected patient's every resource is restricted
                resource = fhir.with_security(
                    resource, fhir.patient_security(row[SUBJECT_PROTECTION])
                )
            out.write(resource)


def _remove_earlier_export(out_dir: Path) -> None:
    """An earlier export's files in the folder go first: a type with no rows now must not leave
    last run's file of patient data behind (the manifest lists only what this run wrote)."""
    for name in [MANIFEST, ERRORS_FILE, *(f"{spec.resource_type}.ndjson" for spec in SPECS)]:
        (out_dir / name).unlink(missing_ok=True)


def export_fhir(
    engine: sa.Engine,
    out_dir: Path,
    *,
    wave: str | None,
    transaction_time: dt.datetime,
    chunk_size: int = 5000,
    request: str = "vardflytt export fhir",
) -> ExportResult:
    """Write ``<Type>.ndjson`` per resource type and ``manifest.json`` into ``out_dir``.

    ``wave`` None exports every core row. Runs in one read transaction, so the files are one
    consistent picture of the core (on PostgreSQL: REPEATABLE READ)."""
    files.private_dir(out_dir)
    connection_options: dict[str, Any] = {}
    if engine.dialect.name == "postgresql":
        connection_options["isolation_level"] = "REPEATABLE READ"
    # One connection for the rows and the identifiers looked up beside them: one snapshot.
    with engine.connect().execution_options(**connection_options) as connection:
        batch_ids: list[str] | None = None
        if wave is not None:
            batch_ids = wave_batches(connection, wave)
            if not batch_ids:
                raise ExportError(f"wave {wave!r} has no promoted batch: nothing to export")
        _remove_earlier_export(out_dir)
        included = _selection(batch_ids)
        errors = _Writer(out_dir / ERRORS_FILE)
        counts: dict[str, int] = {}
        try:
            for spec in SPECS:
                writer = _Writer(out_dir / f"{spec.resource_type}.ndjson")
                try:
                    _export_type(
                        connection,
                        spec,
                        included(spec.entity),
                        writer,
                        errors,
                        chunk_size,
                    )
                finally:
                    writer.close()
                counts[spec.resource_type] = writer.count
                log.info("exported %d %s resources", writer.count, spec.resource_type)
        finally:
            errors.close()
    manifest = {
        "transactionTime": transaction_time.astimezone(dt.UTC).isoformat(),
        "request": request,
        "requiresAccessToken": False,
        "output": [
            {"type": resource_type, "url": f"{resource_type}.ndjson", "count": count}
            for resource_type, count in counts.items()
            if count
        ],
        "error": [{"type": "OperationOutcome", "url": ERRORS_FILE, "count": errors.count}]
        if errors.count
        else [],
        "extension": {"wave": wave, "batches": batch_ids},
    }
    files.write_private_json(out_dir / MANIFEST, manifest)
    if errors.count:
        log.warning(
            "%d references to rows the core does not hold (see %s)", errors.count, ERRORS_FILE
        )
    return ExportResult(out_dir, counts, errors.count, batch_ids or [])


def export_for(
    settings: Settings,
    out_dir: Path,
    *,
    wave: str | None,
    transaction_time: dt.datetime,
    chunk_size: int = 5000,
) -> ExportResult:
    """The export of the configured core, recorded in the access log (Patientdatalagen: the
    pipeline's reads of patient data are accesses too): counts and batch ids, no patient data."""
    from etl.core.audit import record_access
    from etl.core.database import core_engine

    request = f"vardflytt export fhir {'--wave ' + wave if wave else '--all'}"
    result = export_fhir(
        core_engine(settings.resolved_core_url),
        out_dir,
        wave=wave,
        transaction_time=transaction_time,
        chunk_size=chunk_size,
        request=request,
    )
    record_access(
        settings,
        "export_fhir",
        "",
        "",
        sum(result.counts.values()),
        subject_scope="batch" if wave else "all",
        subject_count=result.counts.get("Patient", 0),
        detail={"wave": wave, "batches": result.batch_ids, "counts": result.counts},
    )
    return result
