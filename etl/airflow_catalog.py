"""The mappings parsed once in a process that forks Airflow's task runners (the LocalExecutor's
scheduler, a Celery worker), before it forks: imported last of ``TASK_PRELOAD``
(etl/airflow_main.py, etl/airflow_celery.py).

A task that runs a stage reads the catalog (``etl.pipeline.catalog``: the YAML of every system,
entity and crosswalk, ~0.2-0.3 CPU s); forked with it already parsed, it only checks that the
files still have the bytes it was parsed from (``folder_key``, a few milliseconds) and parses
again if one changed. A catalog that does not parse here is left to the tasks, whose errors say
what is wrong; the process that forks them starts as ever.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def preload() -> bool:
    """Parse the catalog of this process's settings into the pipeline's memo; true if it did."""
    from etl import pipeline
    from etl.settings import get_settings

    try:
        pipeline.catalog(get_settings())
    except Exception as error:  # the tasks report it, with the file and field
        logger.warning("the mappings were not read ahead (%s): each task reads them", error)
        return False
    return True


preload()
