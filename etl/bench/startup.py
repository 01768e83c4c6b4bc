"""Start-up cost, apart from the work: a fresh interpreter, ``vardflytt --help``, the imports
an Airflow task process pays before its first row (the pipeline, Great Expectations, Airflow).

Each command runs ``repeats`` times in a fresh interpreter; the child's own wall and CPU seconds
(user + system from ``os.wait4``) are kept, the median reported. No peak RSS: a child's
``ru_maxrss`` starts from its parent's at fork and exec (see ``DEFINITIONS``). In process the
same imports are paid once (``import_seconds`` of the bench), then nothing per stage.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from etl.bench.figures import median_or_none
from etl.settings import PROJECT_ROOT

COMMANDS: dict[str, list[str]] = {
    "python -c pass (interpreter alone)": ["-c", "pass"],
    "vardflytt --help (command line, no work)": ["-m", "etl.cli", "--help"],
    "import etl.pipeline + great_expectations (a task's pipeline imports)": [
        "-c",
        "import etl.validate.gx_import, etl.pipeline",
    ],
    "import airflow.sdk + etl.pipeline + great_expectations (an Airflow task's imports)": [
        "-c",
        "import airflow.sdk, etl.validate.gx_import, etl.pipeline",
    ],
}


def timed_child(arguments: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Wall and CPU (user + system) seconds of one fresh ``python <arguments>``."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, *arguments],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    _pid, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"`python {' '.join(arguments)}` exited with {child.returncode}")
    return {
        "wall_seconds": wall,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }


def summarize_samples(samples: list[dict[str, float]]) -> dict[str, Any]:
    """Medians of the samples of one command (and how many there were)."""
    return {
        "samples": len(samples),
        **{
            key: median_or_none([s[key] for s in samples])
            for key in ("wall_seconds", "cpu_seconds")
        },
    }


def measure_startup(repeats: int = 3, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Each start-up command ``repeats`` times (after one unreported warm-up run)."""
    figures = {}
    for name, arguments in COMMANDS.items():
        timed_child(arguments, env)  # warm the page cache and the bytecode
        figures[name] = summarize_samples([timed_child(arguments, env) for _ in range(repeats)])
    return {"repeats": repeats, "python": str(Path(sys.executable)), "commands": figures}
