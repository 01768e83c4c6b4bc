"""Which version of the declarations a result was produced under, for evidence and results."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path


@cache
def mapping_version(root: Path) -> str | None:
    """The git commit the mappings were read at (``+dirty`` if the tree has local changes)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "mappings", "expectations"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}+dirty" if dirty else commit
