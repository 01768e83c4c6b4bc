"""Column lineage of the core from ``mappings/``: source column -> transform -> core column.

One function of the mappings alone (no data is read), so it cannot disagree with what the
pipeline runs: every core column an entity mapping fills is traced to the legacy system, dataset
and column(s) it comes from, with the transform, its arguments and the mapping's note. Lookups
(a column taken from another dataset's row) show both the taken column and the joining key;
exclusion rules and reference checks are dataset-level inputs (they decide which rows load).

Two readers: the DAGs' OpenLineage events (``task_lineage``, attached to the load tasks by
``etl/airflow_lineage.py``), which carry it as a ``ColumnLineageDatasetFacet`` on each core table,
and ``vardflytt lineage`` (``lineage_rows``). Only names of systems, datasets, tables and columns
and the mapping's declarations appear, never a value of a row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.catalog import EntityMapping, SystemMappings, load_system

# Namespaces of the datasets in the events, matching the Airflow assets of the loads
# (``vardflytt://core/<system>``, etl/dag_names.py): a legacy system's datasets, the core's tables.
CORE_NAMESPACE = "vardflytt://core"
IDENTITY_TRANSFORM = "text"  # copies the value as it is (trimmed): an IDENTITY transformation


def legacy_namespace(system: str) -> str:
    return f"vardflytt://legacy/{system}"


@dataclass(frozen=True)
class SourceColumn:
    """One input of a core column: where it comes from and what was done to it."""

    system: str
    dataset: str
    column: str
    kind: str  # DIRECT (the value flows) or INDIRECT (it decides, e.g. a join key)
    subtype: str  # IDENTITY, TRANSFORMATION, JOIN, FILTER
    description: str


@dataclass(frozen=True)
class ColumnLineage:
    """A core column (``table.column``) and the source columns it is derived from."""

    table: str
    column: str
    system: str
    sources: tuple[SourceColumn, ...]
    description: str


def _describe(transform: str, args: dict[str, Any], note: str) -> str:
    text = transform
    if args:
        text += " " + json.dumps(args, ensure_ascii=False, sort_keys=True, default=str)
    return f"{text}: {note}" if note else text


def _column_sources(
    mapping: EntityMapping, source: str, transform: str, description: str
) -> list[SourceColumn]:
    """The dataset column(s) behind one source column name: a lookup's virtual column is the
    looked-up dataset's column (DIRECT) reached through this dataset's key column (INDIRECT)."""
    system, subtype = mapping.system, "TRANSFORMATION"
    for lookup in mapping.lookups:
        if lookup.as_ == source:
            joined = f"lookup {mapping.dataset}.{lookup.column} -> {lookup.dataset}.{lookup.take}"
            if lookup.note:
                joined += f": {lookup.note}"
            return [
                SourceColumn(system, lookup.dataset, lookup.take, "DIRECT", subtype, description),
                SourceColumn(system, mapping.dataset, lookup.column, "INDIRECT", "JOIN", joined),
            ]
    if transform == IDENTITY_TRANSFORM:
        subtype = "IDENTITY"
    return [SourceColumn(system, mapping.dataset, source, "DIRECT", subtype, description)]


def entity_lineage(systems: SystemMappings, mapping: EntityMapping) -> list[ColumnLineage]:
    """Every core column one entity mapping fills, with its source columns."""
    table, system = mapping.entity, mapping.system
    key = systems.spec.datasets[mapping.dataset].key
    rows: list[ColumnLineage] = []

    def add(column: str, sources: list[SourceColumn], description: str) -> None:
        rows.append(ColumnLineage(table, column, system, tuple(sources), description))

    row_key = f"the source row's key ({', '.join(key)})"
    for key_column in ("source_key", f"{table}_id"):
        add(
            key_column,
            [
                SourceColumn(system, mapping.dataset, k, "DIRECT", "TRANSFORMATION", row_key)
                for k in key
            ],
            row_key if key_column == "source_key" else f"deterministic id from {row_key}",
        )
    for column in mapping.columns:
        description = _describe(column.transform, column.args, column.note)
        sources = [
            source
            for name in column.source_columns
            for source in _column_sources(mapping, name, column.transform, description)
        ]
        add(column.target, sources, description if sources else f"constant: {description}")
    identifier_sources = [
        source
        for identifier in mapping.identifiers
        for name in identifier.source_columns
        for source in _column_sources(
            mapping,
            name,
            "identifier",
            _describe(f"identifier ({identifier.kind})", {}, identifier.note),
        )
    ]
    if identifier_sources:
        for identity_column in ("identity_number", "identity_kind"):
            add(identity_column, identifier_sources, "identity number, validated and classified")
    return rows


def _row_filters(mapping: EntityMapping) -> list[SourceColumn]:
    """Source columns that decide which rows load (excluded, quarantined): dataset-level."""
    filters = [
        SourceColumn(
            mapping.system,
            mapping.dataset,
            rule.column,
            "INDIRECT",
            "FILTER",
            f"exclusion rule {rule.rule}: {rule.note}",
        )
        for rule in mapping.exclude
    ]
    filters += [
        SourceColumn(
            mapping.system,
            mapping.dataset,
            ref.column,
            "INDIRECT",
            "FILTER",
            f"reference check -> {ref.dataset}" + (f": {ref.note}" if ref.note else ""),
        )
        for ref in mapping.references
    ]
    return filters


def system_lineage(directory: Path, entities: Iterable[str] | None = None) -> list[ColumnLineage]:
    """The column lineage of one system's mappings folder (optionally some entities only)."""
    systems = load_system(directory)
    wanted = set(entities) if entities is not None else None
    return [
        row
        for name, mapping in sorted(systems.entities.items())
        if wanted is None or name in wanted
        for row in entity_lineage(systems, mapping)
    ]


def lineage_rows(
    mappings_dir: Path, systems: Iterable[str] | None = None, column: str | None = None
) -> list[dict[str, str]]:
    """Flat rows for ``vardflytt lineage``: one per (core column, source column)."""
    from etl.layout import list_system_entities

    names = list(systems) if systems else sorted(list_system_entities(mappings_dir))
    out = []
    for system in names:
        for row in system_lineage(mappings_dir / system):
            if column and column not in (f"{row.table}.{row.column}", row.column):
                continue
            for source in row.sources or (SourceColumn(system, "", "", "", "CONSTANT", ""),):
                out.append(
                    {
                        "core_column": f"{row.table}.{row.column}",
                        "system": system,
                        "source": f"{source.dataset}.{source.column}" if source.column else "",
                        "kind": f"{source.kind} {source.subtype}".strip(),
                        "transform": source.description or row.description,
                    }
                )
    return out


# --- OpenLineage ------------------------------------------------------------------------------


@dataclass
class TaskLineage:
    """What an operator's ``get_openlineage_facets_on_complete`` returns: the provider reads these
    four attributes (it rewrites them into its ``OperatorLineage``), so this layer needs no
    Airflow import."""

    inputs: list[Any] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)
    run_facets: dict[str, Any] = field(default_factory=dict)
    job_facets: dict[str, Any] = field(default_factory=dict)


def _input_field(source: SourceColumn) -> Any:
    from openlineage.client.facet_v2 import column_lineage_dataset as cl

    return cl.InputField(
        namespace=legacy_namespace(source.system),
        name=source.dataset,
        field=source.column,
        transformations=[
            cl.Transformation(
                type=source.kind,
                subtype=source.subtype,
                description=source.description,
                masking=False,
            )
        ],
    )


def _schema(columns: Iterable[str]) -> Any:
    from openlineage.client.facet_v2 import schema_dataset

    return schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name=c) for c in dict.fromkeys(columns)]
    )


def task_lineage(
    mappings_dir: Path, systems: Iterable[str], entities: Iterable[str] | None = None
) -> TaskLineage:
    """OpenLineage inputs (legacy datasets) and outputs (core tables, each with its column lineage
    facet) of a task that loads these systems (optionally only these entities)."""
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import column_lineage_dataset as cl

    by_table: dict[str, list[ColumnLineage]] = {}
    filters: dict[str, list[SourceColumn]] = {}
    used: dict[tuple[str, str], list[str]] = {}
    for system in systems:
        mappings = load_system(mappings_dir / system)
        for name, mapping in sorted(mappings.entities.items()):
            if entities is not None and name not in set(entities):
                continue
            rows = entity_lineage(mappings, mapping)
            by_table.setdefault(name, []).extend(rows)
            filters.setdefault(name, []).extend(_row_filters(mapping))
            for source in [s for r in rows for s in r.sources] + _row_filters(mapping):
                used.setdefault((source.system, source.dataset), []).append(source.column)
    inputs = [
        InputDataset(
            namespace=legacy_namespace(system),
            name=dataset,
            facets={"schema": _schema(columns)},
        )
        for (system, dataset), columns in sorted(used.items())
    ]
    outputs = []
    for table, rows in sorted(by_table.items()):
        fields: dict[str, Any] = {}
        for row in rows:  # several systems may fill one core column: all their inputs
            previous = fields.get(row.column)
            inputs_of_row = [_input_field(s) for s in row.sources]
            if previous is None:
                fields[row.column] = cl.Fields(
                    inputFields=inputs_of_row, transformationDescription=row.description
                )
            else:
                previous.inputFields.extend(inputs_of_row)
        facet = cl.ColumnLineageDatasetFacet(
            fields=fields, dataset=[_input_field(s) for s in filters[table]]
        )
        outputs.append(
            OutputDataset(
                namespace=CORE_NAMESPACE,
                name=table,
                facets={"schema": _schema(fields), "columnLineage": facet},
            )
        )
    return TaskLineage(inputs=inputs, outputs=outputs)
