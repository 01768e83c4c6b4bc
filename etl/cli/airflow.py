"""``vardflytt airflow``: any ``airflow`` command against the project-local Airflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from etl.cli.common import console
from etl.settings import get_settings


def airflow(context: typer.Context) -> None:
    """Run any ``airflow`` command against the project-local Airflow (e.g. ``standalone``).

    ``standalone`` runs sized for this machine, on loopback, without log servers
    (etl/airflow_env.py, etl/airflow_standalone.py). ``pools sync`` creates or resizes the
    project's pools and records the systems' priorities (etl/airflow_pools.py); ``standalone``,
    ``vardflytt demo`` and ``vardflytt cluster up`` do it themselves."""
    from etl.airflow_env import ADMIN_USER, airflow_environment, passwords_file

    settings = get_settings()
    environment = airflow_environment(settings)
    if context.args == ["pools", "sync"]:  # Airflow's own `pools` has no `sync`
        from etl.airflow_pools import sync

        sync(environment, settings, console.print)
        return
    if context.args[:1] == ["standalone"]:
        address = (
            f"http://{environment['AIRFLOW__API__HOST']}:"
            f"{environment.get('AIRFLOW__API__PORT', '8080')}/"
        )
        console.print(
            f"Airflow UI: {address} once ready; sign in as '{ADMIN_USER}' with the password in "
            f"{passwords_file(settings)}. DAGs start paused: switch one on before triggering it."
        )
        command = [sys.executable, "-m", "etl.airflow_standalone", *context.args[1:]]
    else:
        command = [str(Path(sys.executable).with_name("airflow")), *context.args]
    raise typer.Exit(subprocess.call(command, env=environment))
