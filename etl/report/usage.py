"""How the mappings use each declared source column: the one answer docs, profile and coverage
share.

A column is *mapped* when a mapping uses it as a source, identifier (or its century), exclusion
or reference column, or when it is the key of a dataset some mapping reads (the key becomes the
core row's ``source_key`` and determines its id). Every other declared column is *unmapped*.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from etl.catalog import SystemMappings
from etl.core.model import ENTITIES, Sensitivity


class Role(StrEnum):
    SOURCE = "source"
    IDENTIFIER = "identifier"
    IDENTIFIER_CENTURY = "identifier_century"
    EXCLUSION = "exclusion"
    REFERENCE = "reference"
    KEY = "key"


class ColumnUse(BaseModel):
    """One use of a source column by one entity mapping."""

    model_config = ConfigDict(frozen=True)
    entity: str
    role: Role
    target: str | None = None  # the core field, for role ``source``
    transform: str | None = None  # for role ``source``
    sensitivity: Sensitivity | None = None  # why the values must never be shown

    @property
    def label(self) -> str:
        if self.target:
            return f"{self.entity}.{self.target}"
        return f"{self.entity} ({self.role.value.replace('_', ' ')})"


def column_uses(system: SystemMappings) -> dict[str, dict[str, list[ColumnUse]]]:
    """``{dataset: {column: [use, ...]}}`` for every declared column, in declared order."""
    uses: dict[str, dict[str, list[ColumnUse]]] = {
        name: {column: [] for column in system.spec.dataset_columns(name)}
        for name in system.spec.datasets
    }
    for entity, mapping in system.entities.items():
        columns = uses[mapping.dataset]
        sensitive = ENTITIES[entity].sensitive_fields()
        for key in system.spec.datasets[mapping.dataset].key:
            columns[key].append(ColumnUse(entity=entity, role=Role.KEY))
        # A lookup's virtual column is the looked-up column of the related dataset.
        virtual = {lookup.as_: uses[lookup.dataset][lookup.take] for lookup in mapping.lookups}
        for column in mapping.columns:
            for source in column.source_columns:
                (virtual[source] if source in virtual else columns[source]).append(
                    ColumnUse(
                        entity=entity,
                        role=Role.SOURCE,
                        target=column.target,
                        transform=column.transform,
                        sensitivity=sensitive.get(column.target),
                    )
                )
        for identifier in mapping.identifiers:
            columns[identifier.source].append(
                ColumnUse(entity=entity, role=Role.IDENTIFIER, sensitivity=Sensitivity.IDENTITY)
            )
            if identifier.century_source:
                columns[identifier.century_source].append(
                    ColumnUse(
                        entity=entity,
                        role=Role.IDENTIFIER_CENTURY,
                        sensitivity=Sensitivity.IDENTITY,
                    )
                )
        for rule in mapping.exclude:
            columns[rule.column].append(ColumnUse(entity=entity, role=Role.EXCLUSION))
        for reference in mapping.references:
            columns[reference.column].append(ColumnUse(entity=entity, role=Role.REFERENCE))
        for lookup in mapping.lookups:
            columns[lookup.column].append(ColumnUse(entity=entity, role=Role.REFERENCE))
    return uses


def unmapped_columns(system: SystemMappings) -> dict[str, list[str]]:
    """Declared columns no mapping uses, per dataset (datasets with none are left out)."""
    found = {
        dataset: [column for column, used in columns.items() if not used]
        for dataset, columns in column_uses(system).items()
    }
    return {dataset: columns for dataset, columns in found.items() if columns}


def is_link_only(uses: list[ColumnUse]) -> bool:
    """Whether a column only links rows (a key, a reference, a ``reference_id`` source)."""
    return bool(uses) and all(
        use.role in {Role.KEY, Role.REFERENCE} or use.transform == "reference_id" for use in uses
    )


def mapping_sensitivity(uses: list[ColumnUse]) -> list[str]:
    """Why a column's values are sensitive by what the mappings do with it (empty: they are not)."""
    return sorted(
        {
            f"{use.label}: {use.sensitivity.value}" if use.role is Role.SOURCE else use.label
            for use in uses
            if use.sensitivity is not None
        }
    )
