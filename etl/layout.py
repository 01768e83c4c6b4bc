"""The mapping folder's layout, read without the heavy parts: cheap enough for DAG parsing.

``mappings/<system>/system.yaml`` makes a folder a source system. A system may name an
``archetype``: a shared template in ``mappings/_archetypes/<name>/`` (its ``system.yaml`` part
and entity files) that the system's own files extend or override. Thirty lab systems of the
same product then differ only in their name and title.
"""

from __future__ import annotations

import re
from pathlib import Path

SYSTEM_FILE = "system.yaml"
CROSSWALK_DIR = "crosswalks"
ARCHETYPE_DIR = "_archetypes"
_ARCHETYPE_LINE = re.compile(r"^archetype:\s*['\"]?([A-Za-z0-9_-]+)", re.MULTILINE)


def system_directories(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return [
        directory
        for directory in sorted(root.iterdir())
        if directory.is_dir()
        and directory.name != CROSSWALK_DIR
        and not directory.name.startswith((".", "_"))
        and (directory / SYSTEM_FILE).exists()
    ]


def archetype_of(directory: Path) -> str | None:
    """The archetype a system's ``system.yaml`` names (a top-level ``archetype:`` line)."""
    match = _ARCHETYPE_LINE.search((directory / SYSTEM_FILE).read_text(encoding="utf-8"))
    return match.group(1) if match else None


def entity_files(directory: Path) -> dict[str, Path]:
    """Entity mapping files of a system: its archetype's, overridden by its own."""
    files: dict[str, Path] = {}
    archetype = archetype_of(directory)
    if archetype:
        archetype_directory = directory.parent / ARCHETYPE_DIR / archetype
        files.update(
            {p.stem: p for p in sorted(archetype_directory.glob("*.yaml")) if p.name != SYSTEM_FILE}
        )
    files.update({p.stem: p for p in sorted(directory.glob("*.yaml")) if p.name != SYSTEM_FILE})
    return dict(sorted(files.items()))


def list_system_entities(root: Path) -> dict[str, list[str]]:
    """``{system: [entity, ...]}`` from file names alone."""
    return {directory.name: list(entity_files(directory)) for directory in system_directories(root)}
