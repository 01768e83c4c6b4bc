"""``vardflytt airflow``: any ``airflow`` command against the project-local Airflow."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
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
        from etl.airflow_main import AIRFLOW_COMMAND

        command = [*AIRFLOW_COMMAND, *context.args]
        if context.args[:1] and context.args[0] not in NO_METADATA_COMMANDS:
            migrated = ensure_metadata_database(AIRFLOW_COMMAND, environment)
            if migrated:
                raise typer.Exit(migrated)
    raise typer.Exit(subprocess.call(command, env=environment))


# Airflow commands that need no migrated metadata database (or migrate it themselves).
NO_METADATA_COMMANDS = {"db", "version", "info", "config", "cheat-sheet", "standalone"}


def _stamp(environment: dict[str, str]) -> Path:
    return Path(environment["AIRFLOW_HOME"]) / ".vardflytt-db-migrated"


def metadata_url(environment: dict[str, str]) -> str:
    """The metadata database's URL (Airflow's default: airflow.db in its home)."""
    default = f"sqlite:///{Path(environment['AIRFLOW_HOME']) / 'airflow.db'}"
    return environment.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") or default


def _migrated_for(environment: dict[str, str]) -> str:
    """What the stamp records: the Airflow version and the metadata database's URL."""
    from importlib.metadata import version

    url = metadata_url(environment)
    return f"apache-airflow {version('apache-airflow')}\n{url}\n"


def _is_migrated(environment: dict[str, str]) -> bool:
    stamp = _stamp(environment)
    if not stamp.is_file() or stamp.read_text(encoding="utf-8") != _migrated_for(environment):
        return False
    url = metadata_url(environment)
    if url.startswith("sqlite:///"):  # a deleted file needs migrating again
        return Path(url.removeprefix("sqlite:///").split("?")[0]).is_file()
    return True


def _stderr() -> int | None:
    """This process's standard error as a file descriptor, when it has one."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a captured stream (tests) has none
        return None


def ensure_metadata_database(airflow: Sequence[str], environment: dict[str, str]) -> int:
    """Run ``airflow db migrate`` and ``airflow dags reserialize`` (so the project's DAGs are
    there to list) unless this Airflow version already migrated this metadata database (a stamp
    in the Airflow home); returns the exit code (0: ready)."""
    if _is_migrated(environment):
        return 0
    # On standard error, all of it: the command's own output (JSON, say) stays alone on stdout.
    typer.echo(
        "Airflow's metadata database is not migrated yet: running `airflow db migrate`", err=True
    )
    for step in (["db", "migrate"], ["dags", "reserialize"]):  # then the DAGs are listed
        code = subprocess.call([*airflow, *step], env=environment, stdout=_stderr())
        if code:
            typer.echo(
                f"airflow {' '.join(step)} failed (exit {code}); nothing else was run", err=True
            )
            return code
    mark_migrated(environment)
    return 0


def mark_migrated(environment: dict[str, str]) -> None:
    """Record that this Airflow version migrated the metadata database of ``environment`` (the
    stamp ``ensure_metadata_database`` checks), for a database put in place already migrated."""
    _stamp(environment).write_text(_migrated_for(environment), encoding="utf-8")
