"""Which entities must be transformed before an entity is validated, read from its suite.

A suite joins the batch's transformed rows of the entities in its ``meta.context`` (lifetime
checks against the patient, etl/validate/context.py) and resolves the targets of its
``meta.references`` against them (etl/validate/references.py). Those are the entities that must be
transformed first, in the same batch: the validate stage refuses to run otherwise, and the DAGs
order their tasks by it. Plain JSON, no pandas or Great Expectations: DAG files parse this.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

LOOKUPS, DERIVED, REFERENCES = "lookups", "derived", "references"


def suite_meta(expectations_dir: Path, entity: str) -> dict:
    path = expectations_dir / f"{entity}.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text("utf-8")).get("meta") or {}


def declared_needs(meta: dict | None) -> list[str]:
    """The entities a suite's meta joins (context) or resolves against (references), in order."""
    meta = meta or {}
    context = [k for k in (meta.get("context") or {}) if k not in (LOOKUPS, DERIVED)]
    references = meta.get(REFERENCES) or {}
    targets = [spec["entity"] for spec in references.values() if isinstance(spec, dict)]
    return list(dict.fromkeys([*context, *targets]))


def validation_needs(expectations_dir: Path, entities: Iterable[str]) -> dict[str, list[str]]:
    """``{entity: [other entities of the same system to transform before validating it]}``."""
    entities = list(entities)
    return {
        entity: [
            needed
            for needed in declared_needs(suite_meta(expectations_dir, entity))
            if needed != entity and needed in entities
        ]
        for entity in entities
    }


def natural_key_targets(meta: dict | None) -> set[str]:
    """The entities a suite's ``meta.references`` resolve by natural key (a ``column``, such as
    a care unit's HSA-id): against every system's promoted rows, not only its own batch's
    (etl/validate/references.py), so another system's load changes what they find."""
    references = (meta or {}).get(REFERENCES) or {}
    return {
        spec["entity"]
        for spec in references.values()
        if isinstance(spec, dict) and spec.get("column")
    }


def natural_key_providers(expectations_dir: Path, systems: Mapping[str, Iterable[str]]) -> set[str]:
    """The systems of ``systems`` (``{system: entities}``, a run's selection) that load an
    entity another of them references by natural key: their loads must come before the others'
    validations for a run to flag what a run one system after another would."""
    entities = {system: set(names) for system, names in systems.items()}
    providers: set[str] = set()
    for system, names in entities.items():
        targets = set().union(
            *(natural_key_targets(suite_meta(expectations_dir, e)) for e in names)
        )
        providers |= {other for other in entities if other != system and targets & entities[other]}
    return providers
