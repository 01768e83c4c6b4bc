"""Mapping documentation generated from ``mappings/`` alone (``vardflytt docs``).

The table data stewards read (target | source | rule | note) comes from the same parsed specs
the pipeline runs, and each rule's wording from the transform's own docstring, so the
documentation is never written twice and cannot drift from the code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from etl.catalog import (
    Catalog,
    ExclusionRule,
    FileDataset,
    IdentifierMapping,
    Lookup,
    ReferenceCheck,
    SystemMappings,
    UnitOfRow,
)
from etl.core import code_systems, safety
from etl.core.model import ENTITIES
from etl.core.vocabulary import REGISTRY
from etl.report.render import render_html, render_markdown, write_text
from etl.report.usage import column_uses

CROSSWALK_ROWS_SHOWN = 25


class Rule(BaseModel):
    transform: str
    arguments: str
    summary: str


class ColumnRow(BaseModel):
    target: str
    source: str | None
    rule: Rule
    note: str
    sensitivity: str | None


class EntityDocument(BaseModel):
    entity: str
    dataset: str
    description: str
    columns: list[ColumnRow]
    identifiers: list[IdentifierMapping]
    exclusions: list[ExclusionRule]
    references: list[ReferenceCheck]
    lookups: list[Lookup] = []
    unfilled_fields: list[str]
    care_unit: str = ""  # how a row belongs to a care unit (waves by unit), in words


class SourceColumn(BaseModel):
    name: str
    width: int | None
    used_by: list[str]


class DatasetDocument(BaseModel):
    name: str
    source_name: str
    source_kind: str
    format: str
    encoding: str | None
    delimiter: str | None
    key: list[str]
    columns: list[SourceColumn]
    entities: list[str]

    @property
    def unmapped(self) -> list[str]:
        return [column.name for column in self.columns if not column.used_by]


class CrosswalkDocument(BaseModel):
    name: str
    used_by: list[str]
    codes: int
    target_codes: int
    passthrough: list[str]
    rows: list[tuple[str, str]]


class SystemDocument(BaseModel):
    system: str
    title: str
    format: str
    connection: list[str]
    datasets: list[DatasetDocument]
    entities: list[EntityDocument]
    crosswalks: list[CrosswalkDocument]

    @property
    def declared_columns(self) -> int:
        return sum(len(dataset.columns) for dataset in self.datasets)

    @property
    def unmapped_columns(self) -> int:
        return sum(len(dataset.unmapped) for dataset in self.datasets)


class TransformDocument(BaseModel):
    name: str
    summary: str
    arguments: list[str]


def format_arguments(args: dict[str, Any]) -> str:
    return ", ".join(
        f"{name}={json.dumps(value, ensure_ascii=False)}" for name, value in args.items()
    )


def _connection(system: SystemMappings) -> list[str]:
    """Where the source is read from: variable names and default paths, never a URL's content."""
    connection = system.spec.connection
    lines = []
    if connection.url_env:
        lines.append(f"database URL from the environment variable {connection.url_env}")
    if connection.path_env:
        lines.append(f"folder from the environment variable {connection.path_env}")
    if connection.default_path:
        lines.append(f"default folder {connection.default_path}")
    if connection.default_url:
        lines.append("a default database URL is declared in system.yaml")
    return lines


def _datasets(system: SystemMappings) -> list[DatasetDocument]:
    uses = column_uses(system)
    documents = []
    for name, dataset in system.spec.datasets.items():
        widths = (
            {field.name: field.width for field in dataset.fields}
            if isinstance(dataset, FileDataset)
            else {}
        )
        file_dataset = dataset if isinstance(dataset, FileDataset) else None
        documents.append(
            DatasetDocument(
                name=name,
                source_name=dataset.source_name,
                source_kind="file" if file_dataset is not None else "table",
                format=file_dataset.format.value if file_dataset is not None else "sql table",
                encoding=file_dataset.encoding if file_dataset is not None else None,
                delimiter=file_dataset.delimiter
                if file_dataset is not None and file_dataset.format.value == "delimited"
                else None,
                key=list(dataset.key),
                columns=[
                    SourceColumn(
                        name=column,
                        width=widths.get(column),
                        used_by=sorted({use.label for use in used}),
                    )
                    for column, used in uses[name].items()
                ],
                entities=[e for e, m in system.entities.items() if m.dataset == name],
            )
        )
    return documents


def _note_with_safety(column) -> str:
    """The column's note, then how a safety-critical field fails closed and which code systems
    a coded column's legacy codes are in (never written twice)."""
    parts = [column.note]
    if column.safety is not None:
        parts.append(safety.describe(column.target, column.safety))
    if column.source_system is not None:
        parts.append(
            f"Source code kept in {code_systems.source_code_column(column.target)} with its "
            f"system ({', '.join(column.declared_source_systems)}) in "
            f"{code_systems.source_system_column(column.target)}."
        )
    return " ".join(filter(None, parts))


def _derived_code_fields(entity: str, mapping) -> set[str]:
    """Fields the transform fills from the mapping's coded columns (kept source codes)."""
    model = ENTITIES[entity]
    derived: set[str] = set()
    for column in mapping.columns:
        coded = model.coded_fields.get(column.target)
        if coded is None or column.source is None:
            continue
        derived |= {
            code_systems.source_code_column(column.target),
            code_systems.source_system_column(column.target),
        }
        if coded.system_column:
            derived.add(coded.system_column)
    return derived


def _entities(system: SystemMappings) -> list[EntityDocument]:
    documents = []
    for entity, mapping in system.entities.items():
        model = ENTITIES[entity]
        sensitive = model.sensitive_fields()
        filled = {column.target for column in mapping.columns}
        filled |= _derived_code_fields(entity, mapping)
        if mapping.identifiers:
            filled |= {"identity_number", "identity_kind"}
        documents.append(
            EntityDocument(
                entity=entity,
                dataset=mapping.dataset,
                description=mapping.description,
                columns=[
                    ColumnRow(
                        target=column.target,
                        source=column.source,
                        rule=Rule(
                            transform=column.transform,
                            arguments=format_arguments(column.args),
                            summary=REGISTRY[column.transform].summary,
                        ),
                        note=_note_with_safety(column),
                        sensitivity=sensitive[column.target].value
                        if column.target in sensitive
                        else None,
                    )
                    for column in mapping.columns
                ],
                identifiers=mapping.identifiers,
                exclusions=mapping.exclude,
                references=mapping.references,
                lookups=mapping.lookups,
                unfilled_fields=[f for f in model.business_fields() if f not in filled],
                care_unit=describe_care_unit(mapping.care_unit),
            )
        )
    return documents


def _crosswalks(catalog: Catalog, system: SystemMappings) -> list[CrosswalkDocument]:
    used: dict[str, list[tuple[str, str | None]]] = {}
    for entity, mapping in system.entities.items():
        for column in mapping.columns:
            name = column.args.get("crosswalk")
            if name:
                used.setdefault(name, []).append(
                    (f"{entity}.{column.target}", column.args.get("standard_pattern"))
                )
    documents = []
    for name, users in sorted(used.items()):
        table = catalog.crosswalks[name]
        documents.append(
            CrosswalkDocument(
                name=name,
                used_by=[label for label, _ in users],
                codes=len(table),
                target_codes=len(set(table.values())),
                passthrough=sorted({pattern for _, pattern in users if pattern}),
                rows=sorted(table.items())[:CROSSWALK_ROWS_SHOWN],
            )
        )
    return documents


def system_document(catalog: Catalog, system_name: str) -> SystemDocument:
    system = catalog.system(system_name)
    return SystemDocument(
        system=system.name,
        title=system.spec.title,
        format=system.spec.format.value,
        connection=_connection(system),
        datasets=_datasets(system),
        entities=_entities(system),
        crosswalks=_crosswalks(catalog, system),
    )


def transform_documents() -> list[TransformDocument]:
    return [
        TransformDocument(
            name=name,
            summary=definition.summary,
            arguments=list(definition.args_model.model_fields),
        )
        for name, definition in sorted(REGISTRY.items())
    ]


def write_docs(catalog: Catalog, out_dir: Path) -> list[Path]:
    """``index.{html,md}`` and ``<system>.{html,md}`` under ``out_dir``; returns the files."""
    documents = [system_document(catalog, name) for name in catalog.systems]
    transforms = transform_documents()
    written = []
    for document in documents:
        context = {"doc": document, "shown_rows": CROSSWALK_ROWS_SHOWN}
        written.append(
            write_text(
                out_dir / f"{document.system}.html", render_html("docs_system.html", **context)
            )
        )
        written.append(
            write_text(
                out_dir / f"{document.system}.md", render_markdown("docs_system.md", **context)
            )
        )
    context = {"systems": documents, "transforms": transforms}
    written.append(write_text(out_dir / "index.html", render_html("docs_index.html", **context)))
    written.append(write_text(out_dir / "index.md", render_markdown("docs_index.md", **context)))
    return written


def describe_care_unit(unit: UnitOfRow | None) -> str:
    """The mapping's ``care_unit`` declaration as a sentence for the mapping documentation."""
    if unit is None:
        return ""
    if unit.fixed:
        text = f"every row is unit {unit.fixed}'s"
    elif unit.follows == "patient_care":
        text = "no unit of its own: moves with the first wave that moves one of the patient's rows"
    elif unit.is_patient_level:
        text = "patient-level: moves with the patient, in the plan's patient wave"
    elif unit.is_reference:
        text = f"its own unit, through the care unit {unit.column} points at"
    elif unit.column:
        text = f"its own unit, the HSA-id in {unit.column}"
    else:
        text = f"the unit of its {unit.via_entity} ({unit.via})"
    return f"{text}. {unit.note}".strip() if unit.note else text + "."
