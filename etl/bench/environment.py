"""Facts about where a benchmark ran: the machine and the git checkout."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from etl.bench.figures import to_mib
from etl.settings import PROJECT_ROOT


def machine_info() -> dict[str, Any]:
    from importlib import metadata

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "memory_total_mib": None,
    }
    try:
        import psutil

        info["memory_total_mib"] = to_mib(psutil.virtual_memory().total)
    except ImportError:
        pass
    versions: dict[str, str | None] = {}
    for package in (
        "apache-airflow",
        "great-expectations",
        "pandas",
        "pyarrow",
        "sqlalchemy",
        "psycopg",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    info["packages"] = versions
    return info


def git_info(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The commit the code came from, and whether tracked files differ from it (None if no git)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=20
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}
