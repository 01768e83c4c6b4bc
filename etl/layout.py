"""The mapping folder's layout, read without parsing anything: cheap enough for DAG parsing."""

from __future__ import annotations

from pathlib import Path

SYSTEM_FILE = "system.yaml"
CROSSWALK_DIR = "crosswalks"


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


def list_system_entities(root: Path) -> dict[str, list[str]]:
    """``{system: [entity, ...]}`` from file names alone."""
    return {
        directory.name: sorted(p.stem for p in directory.glob("*.yaml") if p.name != SYSTEM_FILE)
        for directory in system_directories(root)
    }
