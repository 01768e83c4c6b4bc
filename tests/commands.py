"""Running the project's commands from tests, one way everywhere.

- ``run_vardflytt``: the installed ``vardflytt`` command in a child process (what an operator and
  Airflow's tasks run), failing the test with the command's last output when it fails;
- ``invoke``: the command line in this process (Typer's ``CliRunner``), for tests that read the
  output or patch something, with the same failure message;
- ``copy_migrated_airflow_db``: an Airflow metadata database as ``airflow db migrate`` leaves it,
  migrated once per test run and copied, instead of migrating again in every module;
- ``cached_estate``: a synthetic estate generated once per test run by size and seed, shared by
  every pytest-xdist worker;
- ``mappings_of``: a mappings folder of a few systems, so that Airflow parses and serialises
  their DAGs only (with every system, ``airflow dags test`` spends a third of its time
  serialising the other systems' DAGs).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path

VARDFLYTT = str(Path(sys.executable).with_name("vardflytt"))
TAIL = 4000


def _failure(arguments: tuple[str, ...], exit_code: int | None, output: str) -> str:
    return f"vardflytt {' '.join(arguments)} exited {exit_code}:\n{output[-TAIL:]}"


def run_vardflytt(
    *arguments: str,
    home: Path | None = None,
    environment: Mapping[str, str] | None = None,
    log: Path | None = None,
    timeout: float = 600,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """``vardflytt <arguments>`` in a child process with this process's environment, plus
    ``VARDFLYTT_HOME=home`` and ``environment``. With ``log`` the output goes (appended) to that
    file instead of being captured; with ``check`` a non-zero exit fails the test."""
    env = {**os.environ, **(environment or {})}
    if home is not None:
        env["VARDFLYTT_HOME"] = str(home)
    command = [VARDFLYTT, *arguments]
    if log is None:
        completed = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout
        )
        output = f"{completed.stdout}\n{completed.stderr}"
    else:
        with log.open("ab") as handle:
            completed = subprocess.run(
                command, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout
            )
        output = f"(output in {log})\n" + log.read_text(encoding="utf-8", errors="replace")
    if check:
        assert completed.returncode == 0, _failure(arguments, completed.returncode, output)
    return completed


def invoke(*arguments: str, expect: int | None = 0, **options):
    """The command line in this process; ``expect`` is the exit code asserted (None: any)."""
    from typer.testing import CliRunner

    from etl.cli import app

    result = CliRunner().invoke(app, list(arguments), **options)
    if expect is not None:
        assert result.exit_code == expect, _failure(arguments, result.exit_code, result.output)
    return result


def migrated_airflow_db(cache: Path) -> Path:
    """The SQLite metadata database ``airflow db migrate`` makes, built once in ``cache`` (a
    folder shared by every pytest-xdist worker of one run; the first worker builds it under a
    lock, the others wait and reuse it)."""
    cache.mkdir(parents=True, exist_ok=True)
    database = cache / "airflow" / "airflow.db"
    with _locked(cache / "airflow-db.lock"):
        if not database.exists():
            home = cache / "building"
            shutil.rmtree(home, ignore_errors=True)
            run_vardflytt("airflow", "db", "migrate", home=home, timeout=600)
            database.parent.mkdir(exist_ok=True)
            os.replace(home / "airflow" / "airflow.db", database)
            shutil.rmtree(home)
    return database


def copy_migrated_airflow_db(template: Path, airflow_home: Path) -> Path:
    """Put a copy of the migrated metadata database where ``airflow_home`` expects it, stamped
    as migrated (etl/cli/airflow.py): ``vardflytt airflow`` then runs its command at once
    instead of first migrating the copy again and reserialising the DAGs (~9 CPU s); ``dags
    test`` writes the DAGs it runs itself. The stamp names Airflow's default database in that
    home: under any other ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` it does not match, and the
    command migrates first as before."""
    from etl.cli.airflow import mark_migrated

    airflow_home.mkdir(parents=True, exist_ok=True)
    target = airflow_home / "airflow.db"
    shutil.copyfile(template, target)
    mark_migrated({"AIRFLOW_HOME": str(airflow_home)})
    return target


@contextmanager
def _locked(lock_file: Path):
    """One pytest-xdist worker at a time builds what ``lock_file`` guards; the others wait."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def cached_estate(cache: Path, patients: int, seed: int, canaries: bool = False) -> Path:
    """The synthetic estate of ``(patients, seed, canaries)``, generated once per test run in
    ``cache`` and shared read-only (generation is deterministic: same arguments, same bytes)."""
    from etl.estate import generate_estate

    name = f"estate-{patients}p-seed{seed}" + ("-canaries" if canaries else "")
    folder = cache / name
    with _locked(cache / f"{name}.lock"):
        if not folder.exists():
            scratch = cache / f".{name}.building"
            shutil.rmtree(scratch, ignore_errors=True)
            generate_estate(scratch, patients=patients, seed=seed, canaries=canaries)
            os.replace(scratch, folder)  # whole or not at all
    return folder


def estate_manifest(folder: Path):
    """The manifest ``generate_estate`` returned for ``folder``, read back from its file."""
    from etl.estate import EstateManifest

    return EstateManifest.model_validate_json((folder / "manifest.json").read_text("utf-8"))


def mappings_of(folder: Path, systems: Iterable[str]) -> Path:
    """A mappings folder holding only ``systems`` (links to the project's folders) and what every
    system shares (archetypes, crosswalks); ``folder`` is created."""
    from etl.layout import ARCHETYPE_DIR, CROSSWALK_DIR
    from etl.settings import PROJECT_ROOT

    folder.mkdir(parents=True)
    for name in [*systems, ARCHETYPE_DIR, CROSSWALK_DIR]:
        (folder / name).symlink_to(PROJECT_ROOT / "mappings" / name, target_is_directory=True)
    return folder
