"""The project-local Airflow: its home, DAG folder and settings, as environment variables."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from etl.settings import PROJECT_ROOT, Settings


def airflow_environment(settings: Settings) -> dict[str, str]:
    """Environment for any ``airflow`` command run by this project (nothing global is touched)."""
    home = settings.airflow_home
    home.mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ)
    environment.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
            # Data residency: nothing may call home, not even anonymous usage statistics.
            "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
            "GX_ANALYTICS_ENABLED": "False",
            "SCARF_ANALYTICS": "false",
            "DO_NOT_TRACK": "1",
            # Tasks must see the same vardflytt settings as the command that started Airflow.
            "VARDFLYTT_HOME": str(settings.home),
            # `airflow standalone` starts its components as `airflow ...` found on PATH.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        }
    )
    for name in ("estate_dir", "landing_dir", "core_url", "mappings_dir", "expectations_dir"):
        value = getattr(settings, name)
        if value is not None:
            environment[f"VARDFLYTT_{name.upper()}"] = str(value)
    # Data residency (etl/core/residency.py): tasks get the same lists, and Airflow's metadata
    # database and AIRFLOW_CONN_* connections must be on allowed hosts. Airflow and its tasks
    # inherit this process's owner-only umask (etl/core/files.py).
    from etl.core import residency

    for name in ("allowed_hosts", "allowed_storage_roots", "landing_retention_days"):
        if getattr(settings, name) is not None:
            environment[f"VARDFLYTT_{name.upper()}"] = str(getattr(settings, name))
    residency.check_airflow(environment, settings)
    return environment
