"""The fingerprint of a wave's reviewed plan: what its go/no-go is decided by, file by file.

A wave's go/no-go depends on more than its entry in ``mappings/waves.yaml``. The fingerprint
covers every file that can change a criterion's outcome:

- ``mappings/waves.yaml``: the wave, its systems and its criteria;
- ``mappings/<system>/**`` for each system of the wave (moved whole, split by unit, or whose
  unscoped rows it takes), and the archetype it extends (``mappings/_archetypes/<name>/**``):
  how rows are mapped, hence loaded or quarantined, and which unit a row belongs to;
- ``mappings/care_units.yaml`` for a wave that splits systems by unit: what its sites expand to;
- ``mappings/crosswalks/**``: every code table. Mappings name them by argument and the checks
  read reference tables too, so all of them are in; an edit to one another wave uses is then a
  plan change here as well, which is cheap to record and dangerous to miss;
- ``expectations/thresholds.yaml``: the data-quality gate;
- ``expectations/<entity>.json`` for each entity the wave's systems map: what is checked.

Each file gets its own SHA-256, so a refusal names the files that changed, were added or were
removed; the plan digest is SHA-256 over the sorted ``path NUL digest`` lines. Paths are relative
to the mappings and expectations folders (``mappings/...``, ``expectations/...``), so the same
plan has the same fingerprint in a checkout, an Airflow worker and a test's copied folder.

The mapping version (git commit) is recorded beside the digest, not inside it: a commit of other
code leaves the reviewed criteria as they were, and a plan committed after its rehearsal has the
same content. Uncommitted changes are refused separately (``uncommitted_files``), and a folder
that is not a git checkout (tests, the demo's copies) has no commit to be dirty against.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.core.files import sha256_of as file_digest
from etl.cutover.plan import REGISTER_FILE, Wave
from etl.layout import ARCHETYPE_DIR, CROSSWALK_DIR, SYSTEM_FILE, archetype_of, entity_files
from etl.settings import Settings
from etl.validate.checks import THRESHOLDS_FILE

MAPPINGS = "mappings"
EXPECTATIONS = "expectations"


@dataclass(frozen=True)
class Fingerprint:
    digest: str  # SHA-256 hex over the per-file digests
    files: dict[str, str]  # path (mappings/..., expectations/...) -> SHA-256 hex
    mapping_version: str | None = None

    @property
    def short(self) -> str:
        return self.digest[:12]


@dataclass(frozen=True)
class PlanDifference:
    """Files of the plan that differ between a recorded fingerprint and another one."""

    changed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.changed or self.added or self.removed)

    def as_dict(self) -> dict[str, Any]:
        return {"changed": self.changed, "added": self.added, "removed": self.removed}

    def describe(self) -> str:
        parts = [
            f"{label}: {', '.join(paths)}"
            for label, paths in (
                ("changed", self.changed),
                ("added", self.added),
                ("removed", self.removed),
            )
            if paths
        ]
        return "; ".join(parts) or "no file changed"


def plan_digest(files: dict[str, str]) -> str:
    lines = "".join(f"{path}\0{files[path]}\n" for path in sorted(files))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def _tree(root: Path, label: str, directory: Path) -> dict[str, Path]:
    """Every regular file under ``directory`` (not hidden, no caches), keyed by its label path."""
    if not directory.is_dir():
        return {}
    found = {}
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or any(
            part.startswith(".") or part == "__pycache__" for part in relative.parts
        ):
            continue
        found[f"{label}/{relative.as_posix()}"] = path
    return found


def plan_files(settings: Settings, wave: Wave, systems: list[str] | None = None) -> dict[str, Path]:
    """The files the wave's go/no-go depends on (see the module docstring), by label path.
    ``systems``: the systems the wave loads, if more than it names (a patients wave's)."""
    mappings = settings.mappings_dir
    expectations = settings.expectations_dir
    files: dict[str, Path] = {}
    candidates = {
        f"{MAPPINGS}/{settings.wave_plan}": mappings / settings.wave_plan,
        f"{EXPECTATIONS}/{THRESHOLDS_FILE}": expectations / THRESHOLDS_FILE,
    }
    named = [*wave.systems, *wave.by_unit, *wave.unscoped]
    if wave.is_by_unit or set(systems or []) - set(named):  # scopes read through the register
        candidates[f"{MAPPINGS}/{REGISTER_FILE}"] = mappings / REGISTER_FILE
    entities: set[str] = set()
    for system in dict.fromkeys([*named, *(systems or [])]):
        directory = mappings / system
        files.update(_tree(mappings, MAPPINGS, directory))
        if (directory / SYSTEM_FILE).exists():
            archetype = archetype_of(directory)
            if archetype:
                files.update(_tree(mappings, MAPPINGS, mappings / ARCHETYPE_DIR / archetype))
            entities.update(entity_files(directory))
    files.update(_tree(mappings, MAPPINGS, mappings / CROSSWALK_DIR))
    for entity in sorted(entities):
        candidates[f"{EXPECTATIONS}/{entity}.json"] = expectations / f"{entity}.json"
    files.update({label: path for label, path in candidates.items() if path.is_file()})
    return dict(sorted(files.items()))


def fingerprint(
    settings: Settings,
    wave: Wave,
    mapping_version: str | None = None,
    systems: list[str] | None = None,
) -> Fingerprint:
    """The wave's plan as the working copy holds it now."""
    files = {
        label: file_digest(path) for label, path in plan_files(settings, wave, systems).items()
    }
    return Fingerprint(plan_digest(files), files, mapping_version)


def difference(recorded: dict[str, str], current: dict[str, str]) -> PlanDifference:
    """Which files of ``current`` differ from ``recorded`` (both ``{path: sha256}``)."""
    return PlanDifference(
        changed=sorted(p for p in recorded.keys() & current.keys() if recorded[p] != current[p]),
        added=sorted(current.keys() - recorded.keys()),
        removed=sorted(recorded.keys() - current.keys()),
    )


def uncommitted_files(settings: Settings) -> list[str] | None:
    """Files git reports as changed or untracked under the mappings and expectations folders.

    None when neither folder is in a git checkout (or git is not installed): there is no commit
    to differ from, and the content fingerprint alone protects the plan. Read afresh on every
    call (``etl.core.provenance.mapping_version`` is cached per process)."""
    found: list[str] | None = None
    for directory in (settings.mappings_dir, settings.expectations_dir):
        if not directory.is_dir():
            continue
        try:
            output = subprocess.run(
                ["git", "status", "--porcelain=v1", "-z", "--untracked-files=all", "--", "."],
                cwd=directory,
                capture_output=True,
                check=True,
            ).stdout.decode("utf-8", "replace")
        except (OSError, subprocess.CalledProcessError):
            continue  # not a git checkout
        found = found or []
        entries = iter(output.split("\0"))
        for entry in entries:
            if not entry:
                continue
            status, path = entry[:2], entry[3:]
            if "R" in status or "C" in status:
                next(entries, None)  # -z: the original path of a rename follows as its own entry
            if path not in found:
                found.append(path)
    return sorted(found) if found is not None else None
