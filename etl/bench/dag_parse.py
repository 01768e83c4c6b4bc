"""DAG parse time: ``dags/`` parsed in fresh interpreters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from etl.bench.figures import summarize_dag_parse
from etl.settings import PROJECT_ROOT, Settings

# --------------------------------------------------------------------------- DAG parse time

DAG_PARSE_SCRIPT = r"""
import json, sys, time
started = time.perf_counter()
import airflow
imported = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
parsed = time.perf_counter()
DagBag(dag_folder=sys.argv[1])
reparsed = time.perf_counter()
stats = [{"file": s.file, "seconds": s.duration.total_seconds(), "dags": s.dag_num,
          "tasks": s.task_num} for s in bag.dagbag_stats]
errors = {str(k): str(v) for k, v in bag.import_errors.items()}
with open(sys.argv[2], "w") as handle:
    json.dump({"import_airflow_seconds": imported - started,
               "dagbag_total_seconds": parsed - started,
               "parse_seconds": parsed - imported, "warm_reparse_seconds": reparsed - parsed,
               "file_parse_seconds": sum(s["seconds"] for s in stats), "files": stats,
               "dag_ids": sorted(bag.dag_ids), "import_errors": errors,
               "dag_folder": sys.argv[1]}, handle)
"""


def measure_dag_parse(settings: Settings, repeats: int, scratch: Path) -> dict[str, Any]:
    """``repeats`` warm samples plus one cold first sample, each in a fresh interpreter."""
    from etl.airflow_env import airflow_environment

    environment = airflow_environment(
        settings
    )  # project-local AIRFLOW_HOME inside the bench folder
    dag_folder = str(PROJECT_ROOT / "dags")
    samples = []
    for index in range(repeats + 1):
        result_file = scratch / f"dag_parse_{index}.json"
        log_file = scratch / f"dag_parse_{index}.log"
        with log_file.open("w") as handle:
            done = subprocess.run(
                [sys.executable, "-c", DAG_PARSE_SCRIPT, dag_folder, str(result_file)],
                cwd=PROJECT_ROOT,
                env=environment,
                stdout=handle,
                stderr=subprocess.STDOUT,
                timeout=600,
            )
        if done.returncode != 0:
            raise RuntimeError(
                f"DAG parse sample failed (exit {done.returncode}):\n"
                f"{log_file.read_text(errors='replace')[-4000:]}"
            )
        samples.append(json.loads(result_file.read_text("utf-8")))
    return summarize_dag_parse(samples)
