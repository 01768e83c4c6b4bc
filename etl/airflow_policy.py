"""The selection DAG's extracts in their sources' pools: an Airflow cluster policy.

Airflow gives a task one pool for every map index (``pool`` is the task's, set at parse time, and
not an argument ``expand`` takes), so ``vardflytt_migrate``'s mapped ``provider.extract`` and
``system.extract`` cannot name their system's pool. Airflow calls ``task_instance_mutation_hook``
for every task instance it creates, each map index of a mapped task included (models/taskmap.py,
``expand_mapped_task``), and again whenever one is refreshed from its task (a retry, a cleared
run). Here it moves each mapped extract into ``vardflytt_source_<system>``, its system read from
what the run's ``selected_providers`` or ``selected_systems`` (its group's) returned for that map
index (the expansion's own input, so the index and the system cannot disagree).

Installed by the pool sync (etl/airflow_pools.py) as ``<AIRFLOW_HOME>/config/
airflow_local_settings.py``, which Airflow imports in every process; so this module imports
nothing heavy and returns at once for every other task. If the lookup fails, the extract stays
in the default pool and the system lease still bounds its reads (etl/airflow_pools.py).
"""

from __future__ import annotations

import logging
from typing import Any

from etl.dag_names import SELECTION_DAG_ID, SELECTION_TASKS, source_pool

# Each mapped extract, and the task whose list its map indexes follow.
MAPPED_EXTRACTS = {f"{group}.extract": selection for group, selection in SELECTION_TASKS.items()}

logger = logging.getLogger(__name__)


def task_instance_mutation_hook(task_instance: Any, dag_run: Any = None) -> None:
    if (
        task_instance.dag_id != SELECTION_DAG_ID
        or task_instance.task_id not in MAPPED_EXTRACTS
        or task_instance.map_index is None
        or task_instance.map_index < 0
    ):
        return
    try:
        selection = MAPPED_EXTRACTS[task_instance.task_id]
        system = mapped_system(task_instance.run_id, task_instance.map_index, selection)
    except Exception:  # never stop the scheduler over a pool: the lease still bounds the read
        logger.exception(
            "no source pool for %s[%s]", task_instance.task_id, task_instance.map_index
        )
        return
    if system is not None:
        task_instance.pool = source_pool(system)


def mapped_system(run_id: str, map_index: int, selection: str) -> str | None:
    """The system of one map index: the ``map_index``-th argument the task ``selection`` gave."""
    from airflow import settings
    from airflow.models.xcom import XComModel

    query = XComModel.get_many(
        run_id=run_id,
        key="return_value",
        dag_ids=SELECTION_DAG_ID,
        task_ids=selection,
        map_indexes=-1,
        limit=1,
    )
    # A connection of its own: Airflow's session is thread-scoped, and the one creating this
    # task instance is still open (closing it would detach every object it holds).
    if settings.engine is None:  # Airflow's ORM is not configured in this process
        return None
    with settings.engine.connect() as connection:
        row = connection.execute(query).first()
        arguments = XComModel.deserialize_value(row) if row is not None else None
    if not isinstance(arguments, list) or not 0 <= map_index < len(arguments):
        return None
    return arguments[map_index]["system"]
