"""The modules a migration stage imports (the pipeline's stages with pandas and PyArrow, and Great
Expectations to validate, imported as etl/validate/gx_import.py does: ~0.6 + 1.8 CPU s on this
project's two cores, 2.5 for GX with a plain import), in one list for every process that forks
workers after importing them once: etl/parallel.py's fork server, a Celery worker
(etl/airflow_celery.py) and a LocalExecutor scheduler (etl/airflow_main.py). None of them
connects to anything or starts a thread when imported, so a fork after them is safe. This module
imports nothing: Airflow's commands read it without paying for what it names."""

STAGE_MODULES = (
    "etl.pipeline",
    "etl.validate.stage",
    "etl.validate.suites",
    "etl.validate.gx_import",
)
