"""Airflow pools and priorities for the migration DAGs: ``vardflytt airflow pools sync``.

Pools bound what hurts when spread out:

- ``vardflytt_source_<system>`` (one per legacy source): slots are the reads its owner allows at
  once, ``max_parallel_reads`` in its ``system.yaml`` (1 when not declared). Each system DAG's
  ``extract`` runs in it.
- ``vardflytt_core_writes``: the tasks that bulk-write the core (a system's ``load``, with its
  staging and promotion; a wave's load, rehearsal and rollback). Slots: ``VARDFLYTT_CORE_WRITE_
  SLOTS``; unset, 1 on SQLite, which locks the whole file for a write transaction (a second
  loader would only wait on the lock, holding a worker, or fail on "database is locked"), and 4
  on a database server: PostgreSQL takes concurrent loads (row locks, no file lock), but each one
  holds a connection and keeps the server's disks busy; 4 keeps far below its 100 connections
  and leaves room for the region's other users. Size it from a measured load (``make bench``).

The mapped selection DAG (``vardflytt_migrate``) cannot name each map index's pool in the DAG:
Airflow sets a task instance's pool from the task, the same for every map index (``pool`` is not
an expandable argument). A cluster policy does it instead (etl/airflow_policy.py, installed here
as the Airflow home's ``config/airflow_local_settings.py``): each map index of the mapped
``extract`` is moved into its system's source pool as Airflow creates it.

Beneath the pools, the system lease (etl/core/lease.py) bounds reads wherever a pool cannot
(a wave's tasks, which read several sources; a mapped extract if the policy is not installed):
``extract`` takes the system's lease before it reads, one run of a system holds it at a time
across every DAG and host, and an extract reads its datasets one after another. So a source is
never read by more than one extract at once, within any ``max_parallel_reads`` (at least 1).

What each gives, precisely: Airflow's scheduler never has more task instances of a pool queued
or running than its slots (whichever DAG they belong to), and among those waiting for a slot it
takes the highest ``priority_weight`` first. With one slot, a second run's extract of a source
waits in the pool instead of failing on the lease. A system is extracted by one task today, so
a limit above 1 lets two runs' extracts start and the lease refuses the later one; the slots
start to count when a system's datasets are read by tasks of their own.

Priorities: :func:`measured_rows` records each system's rows (its latest batch's accounting in
the core; for a system never run, the synthetic estate's manifest; otherwise 0) in
VARDFLYTT_HOME, where the DAG files read them (etl.dag_names.system_weights) to give long
systems the higher ``priority_weight``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from etl.airflow_main import AIRFLOW_COMMAND
from etl.catalog import Catalog, load_catalog
from etl.core.files import write_private_json
from etl.dag_names import CORE_WRITE_POOL, priorities_path, source_pool
from etl.settings import Settings, get_settings

POOLS_FILE = "vardflytt_pools.json"
LOCAL_SETTINGS = Path("config") / "airflow_local_settings.py"
LOCAL_SETTINGS_MARK = "# Written by vardflytt's pool sync (etl/airflow_pools.py)"
LOCAL_SETTINGS_TEXT = f"""{LOCAL_SETTINGS_MARK}; rewritten at every sync.
from etl.airflow_policy import task_instance_mutation_hook  # noqa: F401
"""
SQLITE_CORE_WRITE_SLOTS = 1
SERVER_CORE_WRITE_SLOTS = 4


class PoolSyncError(RuntimeError):
    """Airflow refused the pools; the message says which command and where its output is."""


def core_write_slots(settings: Settings) -> int:
    if settings.core_write_slots is not None:
        return settings.core_write_slots
    is_sqlite = settings.resolved_core_url.startswith("sqlite")
    return SQLITE_CORE_WRITE_SLOTS if is_sqlite else SERVER_CORE_WRITE_SLOTS


def pool_definitions(catalog: Catalog, settings: Settings) -> dict[str, dict[str, Any]]:
    """Every pool, as ``airflow pools import`` reads them (name -> slots, description)."""
    pools = {
        source_pool(name): {
            "slots": system.spec.max_parallel_reads,
            "description": f"Reads of {system.spec.title} at once (max_parallel_reads in "
            f"mappings/{name}/system.yaml)",
            "include_deferred": False,
        }
        for name, system in sorted(catalog.systems.items())
    }
    pools[CORE_WRITE_POOL] = {
        "slots": core_write_slots(settings),
        "description": "Tasks writing the core database at once (VARDFLYTT_CORE_WRITE_SLOTS)",
        "include_deferred": False,
    }
    return pools


def _accounted_rows(settings: Settings) -> dict[str, int]:
    """Rows each system's latest batch read from its source, from the core's accounting."""
    import sqlalchemy as sa

    from etl.core.database import new_engine
    from etl.core.tables import batch_accounting
    from etl.status import latest_batches

    url = settings.resolved_core_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return {}  # no core yet: nothing has run (and nothing is created here)
    engine = new_engine(url)
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table(batch_accounting.name):
                return {}
            query = (
                sa.select(
                    batch_accounting.c.source_system, sa.func.sum(batch_accounting.c.extracted)
                )
                .where(batch_accounting.c.batch_id.in_(latest_batches(connection)))
                .group_by(batch_accounting.c.source_system)
            )
            return {system: int(rows or 0) for system, rows in connection.execute(query)}
    finally:
        engine.dispose()


def _estate_rows(settings: Settings) -> dict[str, int]:
    """Rows per system as the synthetic estate wrote them: its ``manifest.json``'s
    ``row_counts`` (etl.estate.manifest, a layer above this one, so read as plain JSON)."""
    import json

    path = settings.resolved_estate_dir / "manifest.json"
    if not path.is_file():
        return {}
    counts = json.loads(path.read_text(encoding="utf-8")).get("row_counts", {})
    return {system: sum(datasets.values()) for system, datasets in counts.items()}


def measured_rows(catalog: Catalog, settings: Settings, echo=print) -> dict[str, dict[str, Any]]:
    """Each system's rows and where they were measured (counts only, never data)."""
    import sqlalchemy as sa

    try:
        accounted = _accounted_rows(settings)
    except sa.exc.SQLAlchemyError as error:
        echo(
            f"priorities: the core's accounting is unreadable ({type(error).__name__}); "
            "using the estate's manifest where there is one"
        )
        accounted = {}
    estate = _estate_rows(settings)
    measured = {}
    for system in sorted(catalog.systems):
        if system in accounted:
            measured[system] = {"rows": accounted[system], "from": "core accounting"}
        elif system in estate:
            measured[system] = {"rows": estate[system], "from": "estate manifest"}
        else:
            measured[system] = {"rows": 0, "from": "not measured"}
    return measured


def install_policy(airflow_home: Path) -> Path:
    """The Airflow home's ``airflow_local_settings.py``, which loads the policy routing the
    mapped extracts (etl/airflow_policy.py); an operator's own file is never overwritten."""
    path = airflow_home / LOCAL_SETTINGS
    if path.exists() and not path.read_text(encoding="utf-8").startswith(LOCAL_SETTINGS_MARK):
        raise PoolSyncError(
            f"{path} is not vardflytt's: add the line `from etl.airflow_policy import "
            "task_instance_mutation_hook` to it (the mapped extracts' source pools), and "
            f"start it with `{LOCAL_SETTINGS_MARK}` to let the sync keep it"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(LOCAL_SETTINGS_TEXT, encoding="utf-8")
    return path


def sync(environment: dict[str, str], settings: Settings | None = None, echo=print) -> dict:
    """Create or resize every pool in the Airflow of ``environment`` (its ``AIRFLOW_HOME`` and
    metadata database, already migrated), and record the systems' rows for the priorities.

    Pools of systems no longer in the mappings are left as they are (they hold no task). The
    policy takes effect in Airflow processes started afterwards."""
    settings = settings or get_settings()
    catalog = load_catalog(settings.mappings_dir)
    home = Path(environment["AIRFLOW_HOME"])
    install_policy(home)
    pools = pool_definitions(catalog, settings)
    pools_file = home / POOLS_FILE
    write_private_json(pools_file, pools)
    completed = subprocess.run(
        [*AIRFLOW_COMMAND, "pools", "import", str(pools_file)],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise PoolSyncError(
            f"airflow pools import {pools_file} failed (exit {completed.returncode}):\n"
            f"{(completed.stderr or completed.stdout)[-2000:]}"
        )
    rows = measured_rows(catalog, settings, echo)
    write_private_json(priorities_path(settings.home), {"systems": rows})
    echo(
        f"Airflow pools: {len(pools) - 1} source pools, {CORE_WRITE_POOL} with "
        f"{pools[CORE_WRITE_POOL]['slots']} slot(s); priorities in {priorities_path(settings.home)}"
    )
    return {"pools": pools, "systems": rows}


def main() -> None:
    """``python -m etl.airflow_pools``: sync into the Airflow of this process's environment as
    it is (its AIRFLOW_HOME and metadata database), e.g. a deployment's init container after
    ``airflow db migrate``; ``vardflytt airflow pools sync`` uses the project-local Airflow."""
    import os

    if "AIRFLOW_HOME" not in os.environ:
        raise SystemExit("AIRFLOW_HOME is not set: which Airflow should get the pools?")
    sync(dict(os.environ))


if __name__ == "__main__":
    main()
