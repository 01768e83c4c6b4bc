"""OpenLineage column lineage on the DAGs' load tasks (Airflow's OpenLineage provider).

The provider's listener asks a task for ``get_openlineage_facets_on_complete(task_instance)``
when it succeeds (its DefaultExtractor); ``with_column_lineage`` gives a ``@task`` that method,
answering with the column lineage of the mappings of the systems it loads
(``etl.report.lineage.task_lineage``): each core table an output, with a
``ColumnLineageDatasetFacet`` tracing every core column to its legacy system, dataset and column.

Nothing is sent unless the operator configures a transport (``[openlineage] transport`` or
``AIRFLOW__OPENLINEAGE__TRANSPORT``, e.g. ``{"type": "file", "log_file_path": ...}`` or an HTTP
endpoint on the region's network): without one the provider is disabled and never calls this.
Events carry names of systems, datasets, tables and columns only, never a row's value.

No Airflow import here: the method is set on the operator that ``@task`` built (the worker parses
the same DAG file, so the task it runs has it too). A mapped task (``vardflytt_migrate``) cannot
take a method this way (Airflow rebuilds each map index's operator from its class and partial
arguments): its loads (``provider.load``, ``system.load``) are ``MappedLoadOperator``s
(dags/vardflytt_migration.py), which read their system from the batch they loaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from etl.dag_names import MAPPINGS_DIR

OL_METHOD_COMPLETE = "get_openlineage_facets_on_complete"


def with_column_lineage(
    output: Any, systems: Iterable[str], entities: Iterable[str] | None = None
) -> Any:
    """Give the task behind ``output`` (an XComArg of a ``@task`` call) its column lineage."""
    systems, entities = list(systems), None if entities is None else list(entities)

    def on_complete(_task_instance: Any) -> Any:
        from etl.report.lineage import task_lineage

        return task_lineage(MAPPINGS_DIR, systems, entities)

    setattr(output.operator, OL_METHOD_COMPLETE, on_complete)
    return output
