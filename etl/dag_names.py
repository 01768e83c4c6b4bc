"""What every DAG file names the same way: DAG ids, the core assets and the folders they read.

One place, so the migration DAGs' load outlets, identity resolution's schedule and the cutover
loads cannot drift apart (an asset renamed in one file would silently stop a schedule). Light on
purpose: Airflow parses the DAG files every 30 seconds, so this imports nothing of the project
and ``airflow.sdk`` only inside the functions that build Airflow objects.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import Asset, AssetAlias

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SELECTION_DAG_ID = "vardflytt_migrate"
IDENTITY_DAG_ID = "identity_resolution"
ROLLBACK_DAG_ID = "vardflytt_rollback"
# The coexistence feed (etl/coexistence): the core's changes back to legacy systems still live.
COEXISTENCE_DAG_ID = "vardflytt_coexistence"
CORE_ASSET_ALIAS = "vardflytt_core"
# vardflytt_migrate's mapped task groups, each with the task whose list gives its map indexes'
# arguments (``{"system", "entities"}`` each): the systems whose care units or practitioners
# another selected system references by HSA-id, then the others (dags/vardflytt_migration.py).
PROVIDER_GROUP, SYSTEM_GROUP = "provider", "system"
SELECTION_TASKS = {PROVIDER_GROUP: "selected_providers", SYSTEM_GROUP: "selected_systems"}
# The providers' tasks outrank the other systems' (weight 1): their validations wait for them.
PROVIDER_WEIGHT = 2
# Airflow pools (etl/airflow_pools.py creates them): one per legacy source, one for core writes.
CORE_WRITE_POOL = "vardflytt_core_writes"
# What the pool sync measured: each system's rows, read by the DAG files for their priorities.
# In VARDFLYTT_HOME, which every Airflow component of the project shares (a cluster's hosts too:
# docker/compose.yaml mounts it on each), unlike an Airflow home, which may be per host.
PRIORITIES_FILE = "airflow_priorities.json"
# A task's priority is its own weight, not summed over the tasks up- or downstream of it: with
# Airflow's default ("downstream") a system with more entities (more tasks) would outrank a
# bigger one, and the migration's first tasks would outrank its loads.
WEIGHT_RULE = "absolute"


def _folder(variable: str, default: str) -> Path:
    # The same environment variables and defaults as etl.settings.Settings, without pydantic.
    return Path(os.environ.get(variable) or PROJECT_ROOT / default)


MAPPINGS_DIR = _folder("VARDFLYTT_MAPPINGS_DIR", "mappings")
EXPECTATIONS_DIR = _folder("VARDFLYTT_EXPECTATIONS_DIR", "expectations")


def system_dag_id(system: str) -> str:
    return f"vardflytt_{system}"


def cutover_dag_id(wave: str) -> str:
    return f"vardflytt_cutover_{wave}"


# The file of the DAG folder that defines each DAG, for ``airflow dags test`` to parse that file
# only (etl/airflow_main.py): the cutover DAGs and the rollback; each system's DAG and the
# selection; identity resolution; the coexistence feed. tests/dags checks it against the DagBag.
CUTOVER_DAG_FILE = "vardflytt_cutover.py"
MIGRATION_DAG_FILE = "vardflytt_migration.py"
DAG_FILES = {
    ROLLBACK_DAG_ID: CUTOVER_DAG_FILE,
    SELECTION_DAG_ID: MIGRATION_DAG_FILE,
    IDENTITY_DAG_ID: "vardflytt_identity.py",
    COEXISTENCE_DAG_ID: "vardflytt_coexistence.py",
}


def dag_file(dag_id: str) -> str | None:
    """The name of the DAG file that defines ``dag_id`` (None: not one of the project's ids)."""
    if dag_id in DAG_FILES:
        return DAG_FILES[dag_id]
    if dag_id.startswith(cutover_dag_id("")):
        return CUTOVER_DAG_FILE
    if dag_id.startswith(system_dag_id("")):
        return MIGRATION_DAG_FILE
    return None


def core_asset_name(system: str) -> str:
    return f"vardflytt_core_{system}"


def core_asset(system: str) -> Asset:
    """The core tables one system loads into: a load's outlet, identity resolution's trigger."""
    from airflow.sdk import Asset

    return Asset(name=core_asset_name(system), uri=f"vardflytt://core/{system}")


def core_asset_alias() -> AssetAlias:
    """The outlet of the mapped selection DAG's load: it names the system's asset at run time."""
    from airflow.sdk import AssetAlias

    return AssetAlias(name=CORE_ASSET_ALIAS)


def source_pool(system: str) -> str:
    """The pool every task reading ``system``'s legacy source runs in (its slots: the reads
    the source's owner allows at once, ``max_parallel_reads`` in its system.yaml)."""
    return f"vardflytt_source_{system}"


def priorities_path(home: str | Path | None = None) -> Path:
    """Where the priorities are, in ``home`` or else VARDFLYTT_HOME (as etl.settings has it)."""
    return Path(home or os.environ.get("VARDFLYTT_HOME") or PROJECT_ROOT / "var") / PRIORITIES_FILE


def read_system_rows(path: Path | None = None) -> dict[str, int]:
    """Each system's rows as the last pool sync measured them; empty when never synced."""
    path = path or priorities_path()
    if not path.is_file():
        return {}
    try:
        systems = json.loads(path.read_text(encoding="utf-8"))["systems"]
        return {name: int(entry["rows"]) for name, entry in systems.items()}
    except (ValueError, KeyError, TypeError):
        return {}  # a damaged file costs the ordering, never the DAGs


def system_weights(rows: dict[str, int], systems: Iterable[str]) -> dict[str, int]:
    """Airflow priority weights so that systems with more rows start first.

    The weight is the rank of the system's row count (1 for the fewest; equal counts share a
    weight), so it stays small whatever the volumes. A system never measured counts 0 rows: with
    nothing measured every system weighs 1, Airflow's default, and runs in the mappings' order.
    """
    counts = {system: rows.get(system, 0) for system in systems}
    ranks = {count: rank for rank, count in enumerate(sorted(set(counts.values())), start=1)}
    return {system: ranks[count] for system, count in counts.items()}


def by_priority(weights: dict[str, int]) -> list[str]:
    """The systems heaviest first (ties keep the given order): a mapped task's map indexes
    follow this order, and Airflow's scheduler queues equal weights by map index."""
    return sorted(weights, key=lambda system: -weights[system])
