"""Check an export folder as its receiver would: every resource parses and validates against the
FHIR R4 models of a maintained library (``fhir.resources``, R4B: the R4 structure and
cardinality), the manifest's counts match the files, and every literal reference
(``Type/id``) resolves to a resource inside the export.

A verification read, not the export's hot path: each resource is parsed once, streamed line by
line; only ids are kept (for the reference check). The summary names types, counts and element
paths, never a value."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.export.bulk import MANIFEST


class ExportCheckError(RuntimeError):
    """The folder is not an export (no manifest) or the model library is missing."""


@dataclass
class ExportCheck:
    resources: Counter[str] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)  # "Type: element path" -> count
    unresolved: Counter[str] = field(default_factory=Counter)  # referenced type -> count
    count_mismatches: list[str] = field(default_factory=list)
    references: int = 0

    @property
    def ok(self) -> bool:
        return not (self.invalid or self.unresolved or self.count_mismatches)

    def describe(self) -> str:
        total = sum(self.resources.values())
        head = f"{total} resources of {len(self.resources)} types, {self.references} references"
        if self.ok:
            return f"{head}: all valid (fhir.resources, R4B), every reference resolves"
        problems = [f"{n} invalid at {where}" for where, n in sorted(self.invalid.items())]
        problems += [
            f"{n} unresolved references to {t}" for t, n in sorted(self.unresolved.items())
        ]
        return f"{head}; problems: " + "; ".join(problems + self.count_mismatches)


def references_in(value: Any) -> Iterator[str]:
    """Every literal reference (``{"reference": "Type/id"}``) anywhere in a resource."""
    if isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            yield value["reference"]
        for item in value.values():
            yield from references_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from references_in(item)


def _resources(
    path: Path, url: str, resource_type: str, result: ExportCheck
) -> Iterator[dict[str, Any]]:
    """The file's resources, one per line; a corrupted or foreign line is counted as a resource
    and as a problem named by its line, never skipped."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            result.resources[resource_type] += 1
            try:
                resource = json.loads(line)
            except json.JSONDecodeError:
                resource = None
            if isinstance(resource, dict) and resource.get("resourceType") == resource_type:
                yield resource
            else:
                result.invalid[f"{url}: line {number} is not a {resource_type}"] += 1


def check_export(folder: Path) -> ExportCheck:
    """Validate every resource of the export in ``folder`` (see the module's note)."""
    try:
        from fhir.resources.R4B import get_fhir_model_class
        from pydantic import ValidationError
    except ImportError as error:  # a development dependency (pyproject's dev extra)
        raise ExportCheckError(
            "checking an export needs fhir.resources: install the project with `make setup`"
        ) from error
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        raise ExportCheckError(f"{folder} has no {MANIFEST}: not a vardflytt FHIR export")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    result = ExportCheck()
    ids: dict[str, set[str]] = {}
    cited: Counter[str] = Counter()
    for entry in manifest.get("output", []):
        resource_type = entry["type"]
        model = get_fhir_model_class(resource_type)
        seen = ids.setdefault(resource_type, set())
        for resource in _resources(folder / entry["url"], entry["url"], resource_type, result):
            seen.add(resource.get("id", ""))
            try:
                model.model_validate(resource)
            except ValidationError as error:
                for problem in error.errors():
                    where = ".".join(str(p) for p in problem["loc"])
                    result.invalid[f"{resource_type}: {where}"] += 1
            cited.update(references_in(resource))
        if result.resources[resource_type] != entry.get("count"):
            result.count_mismatches.append(
                f"{resource_type}: manifest says {entry.get('count')}, the file holds "
                f"{result.resources[resource_type]}"
            )
    for reference, times in cited.items():
        result.references += times
        kind, _, target = reference.partition("/")
        if target not in ids.get(kind, set()):
            result.unresolved[kind] += times
    return result
