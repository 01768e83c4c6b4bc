"""The Celery configuration of ``vardflytt cluster``: Airflow's own, plus what each worker imports
once, before it forks its pool.

Airflow runs a task on a Celery worker in a process forked from the worker's pool process (the
task SDK's supervisor forks the task runner; Celery's prefork pool forks the pool process from
the worker), and the task then imports what it calls: ``etl.pipeline`` with pandas and PyArrow,
and, to validate or report, Great Expectations. Imported in the forked runner, they are imported
again by every task (about 0.6 CPU s for the pipeline, 2.5 with Great Expectations, measured on
this project's two cores), and thrown away when it ends. Celery's ``imports`` setting has the
worker's main process import modules at start, before it starts its pool: every pool process and
every task runner forked from it has them already. A worker starts a few seconds later once, and
each task that long sooner.

Airflow's Celery worker does the same for a few modules of its own (``on_celery_import_modules``
in airflow/providers/celery/executors/celery_executor_utils.py: "0.3-0.5s per task"); the
project's task modules cost several times that. Measured on the fault test's cluster
(tests/integration/test_cluster.py, two runs side by side on the same load): its 17 task
runs took 70 s in all instead of 123, the DAG run 72 s instead of 112.

Named by ``[celery] celery_config_options`` (etl/cluster.py sets it for every process of the
cluster; only a worker acts on ``imports``). The modules are those a task runner imports anyway;
none connects to anything or starts a thread when imported, so a fork after them is safe (the
worker processes of etl/parallel.py start from the same imports, etl/stage_modules.py).
"""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

from etl.airflow_main import TASK_PRELOAD

# What a migration task's runner imports (etl/airflow_main.py, whose module level imports nothing
# heavy: this module is imported by the scheduler and the api-server too).
CELERY_CONFIG = {
    **DEFAULT_CELERY_CONFIG,
    "imports": (*DEFAULT_CELERY_CONFIG.get("imports", ()), *TASK_PRELOAD),
}
