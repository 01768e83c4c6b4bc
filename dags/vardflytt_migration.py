"""Migration DAGs generated from the folders in ``mappings/``.

- ``vardflytt_<system>``: one DAG per source system, a task per entity's transform and validate.
- ``vardflytt_migrate``: any selection of systems in one run (the Params form lists them). Two
  task groups, each mapped at run time over its part of the selection (dynamic task mapping): a
  system's entities are transformed, then validated, in one task each. ``provider``: the
  selected systems whose entities another selected system references by natural key (a care
  unit's or practitioner's HSA-id, ``meta.references`` with a ``column``); ``system``: the others,
  whose validation waits until every provider has loaded (or failed, as in ``vardflytt run``).
  Such a reference resolves against every system's promoted rows, so without the wait what gets
  flagged would depend on which system happened to load first. Between two providers that
  reference each other's entities (ELVIS and AsynjaVisph both hold care units) there is still
  no order: map indexes of one group cannot wait for each other (``vardflytt run`` orders them
  by the order given).

Either way an entity is validated only after the entities its suite joins or resolves against
(``meta.context`` and ``meta.references`` in ``expectations/``) are transformed in the same batch.

Pools and priorities (etl/airflow_pools.py): a system DAG's ``extract`` reads its legacy source in
the source's pool, and every ``load`` writes the core in the core pool. Systems with more rows
(as last measured) get a higher ``priority_weight``, the same for all their tasks (weight rule
``absolute``), so long systems start first. In the mapped DAG a pool and a weight are the
task's, the same for every map index: its systems are mapped heaviest first, which the scheduler
follows among equal weights (it orders by map index), the providers' tasks outrank the others',
and each map index of an ``extract`` is moved into its system's source pool by a cluster policy
(etl/airflow_policy.py).

Thin by design: each task is one call into ``etl.pipeline``; nothing heavy is imported at
module level (Airflow parses this file every 30 seconds). XCom carries ids and counts only.
"""

from __future__ import annotations

import datetime as dt

from airflow.providers.standard.decorators.python import _PythonDecoratedOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import Param, TriggerRule, dag, get_current_context, task, task_group
from airflow.sdk.bases.decorator import task_decorator_factory

from etl.airflow_lineage import with_column_lineage
from etl.dag_names import (
    CORE_WRITE_POOL,
    EXPECTATIONS_DIR,
    MAPPINGS_DIR,
    PROVIDER_GROUP,
    PROVIDER_WEIGHT,
    SELECTION_DAG_ID,
    SELECTION_TASKS,
    SYSTEM_GROUP,
    WEIGHT_RULE,
    by_priority,
    core_asset,
    core_asset_alias,
    read_system_rows,
    source_pool,
    system_dag_id,
    system_weights,
)
from etl.layout import list_system_entities
from etl.validate.order import validation_needs

SYSTEMS = list_system_entities(MAPPINGS_DIR)
# From the rows the last pool sync measured (a small JSON file in VARDFLYTT_HOME; no database).
WEIGHTS = system_weights(read_system_rows(), SYSTEMS)
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

RUN_PARAMS = {
    "scope": Param(
        "all",
        type="string",
        title="Scope",
        description="Wave or scope label recorded on the batch; 'all' migrates everything.",
    ),
    "dry_run": Param(
        False,
        type="boolean",
        title="Dry run",
        description="Extract, transform and validate, but write nothing to the core.",
    ),
    # Optional fields are nullable: Airflow 3's form treats a Param whose type excludes "null" as
    # required and keeps Trigger disabled while it is empty, whatever its help text says.
    "batch_id": Param(
        None,
        type=["null", "string"],
        title="Batch id",
        description="Leave empty for one batch per run. Re-use an id to re-run that batch.",
    ),
    "as_of_date": Param(
        None,
        type=["null", "string"],
        format="date",
        title="As-of date",
        description="Reference date for date rules (YYYY-MM-DD); empty means the run's date.",
    ),
}


def _batch(system: str) -> dict:
    from etl.pipeline import batch_id_for

    context = get_current_context()
    params, dag_run = context["params"], context["dag_run"]
    as_of = params["as_of_date"] or dag_run.run_after.date().isoformat()
    batch_id = params["batch_id"] or batch_id_for(system, dag_run.run_id)
    if params["batch_id"] and "systems" in params:
        batch_id = batch_id_for(system, params["batch_id"])  # one batch per system, always
    return {
        "system": system,
        "batch_id": batch_id,
        "as_of_date": as_of,
        "run_id": dag_run.run_id,
        "dry_run": bool(params["dry_run"]),
        "scope": params["scope"],
    }


# The tasks of one system's batch, shared by both DAG shapes. Each takes the batch from
# ``open_batch``, which names its system, so the mapped group needs no system at parse time.


@task
def open_batch(system: str) -> dict:
    return _batch(system)


@task
def extract(batch: dict) -> dict:
    from etl import pipeline

    return pipeline.extract(batch["system"], batch["batch_id"], batch["as_of_date"])


@task
def transform(batch: dict, entity: str) -> dict:
    from etl import pipeline

    return pipeline.transform(batch["system"], entity, batch["batch_id"])


@task
def validate(batch: dict, entity: str) -> dict:
    from etl import pipeline

    return pipeline.validate(batch["system"], entity, batch["batch_id"])


@task(task_id="transform")
def transform_all(batch: dict, entities: list[str]) -> dict:
    """Every entity of the system, so every validation finds what its suite joins."""
    from etl import pipeline

    return {e: pipeline.transform(batch["system"], e, batch["batch_id"]) for e in entities}


@task(task_id="validate")
def validate_all(batch: dict, entities: list[str]) -> dict:
    from etl import pipeline

    return {e: pipeline.validate(batch["system"], e, batch["batch_id"]) for e in entities}


@task
def quality_gate(batch: dict) -> dict:
    from etl import pipeline

    return pipeline.gate(batch["system"], batch["batch_id"], batch["run_id"])


def _load(batch: dict) -> dict:
    from etl import pipeline

    return pipeline.load(
        batch["system"], batch["batch_id"], batch["run_id"], batch["dry_run"], scope=batch["scope"]
    )


class MappedLoadOperator(_PythonDecoratedOperator):
    """The mapped group's ``load``: its system is known only at run time, so its OpenLineage
    column lineage (etl/airflow_lineage.py) comes from the batch it loaded, the argument the
    worker rendered, when the provider asks on success. A class, not a method set on the task as
    the system DAGs do: Airflow rebuilds each map index's operator from its class."""

    def get_openlineage_facets_on_complete(self, task_instance):
        from etl.report.lineage import task_lineage

        batch: dict = (self.op_kwargs or {}).get("batch") or next(iter(self.op_args or ()), {})
        return task_lineage(MAPPINGS_DIR, [batch["system"]])


def load_task(system: str | None):
    """A system DAG's load updates its system's core asset; the mapped group's load, whose system
    is known only at run time, names that asset through the alias (identity resolution and any
    other consumer still see an event of ``vardflytt_core_<system>``)."""
    if system is not None:
        return task(task_id="load", outlets=[core_asset(system)], pool=CORE_WRITE_POOL)(_load)

    @task_decorator_factory(
        decorated_operator_class=MappedLoadOperator,
        task_id="load",
        outlets=[core_asset_alias()],
        pool=CORE_WRITE_POOL,
    )
    def load(batch: dict) -> dict:
        loaded = _load(batch)
        get_current_context()["outlet_events"][core_asset_alias()].add(core_asset(batch["system"]))
        return loaded

    return load


@task
def reconcile(report: dict) -> dict:
    from etl import pipeline

    return pipeline.reconcile(report)


@task
def report(batch: dict) -> dict:
    from etl import pipeline

    return pipeline.report(batch["system"], batch["batch_id"])


def migrate_system(system: str, entities: list[str]) -> None:
    """extract -> transform and validate each entity -> quality gate -> load -> reconcile, and
    the batch's validation report at the end: a teardown of ``open_batch``, so it runs when any
    task before it failed too (a batch the gate stopped is when stewards need it most). As a
    teardown its own failure shows on the task without failing the run: the batch did load."""
    batch = open_batch(system)
    landed = extract.override(pool=source_pool(system))(batch)
    mapped = {
        entity: transform.override(task_id=f"transform_{entity}")(batch, entity)
        for entity in entities
    }
    validated = []
    for entity, needs in validation_needs(EXPECTATIONS_DIR, entities).items():
        checked = validate.override(task_id=f"validate_{entity}")(batch, entity)
        landed >> mapped[entity] >> checked
        for needed in needs:  # the suite joins or resolves against these (etl/validate/order.py)
            mapped[needed] >> checked
        validated.append(checked)
    loaded = _finish(batch, validated, load_task(system))
    # OpenLineage (when a transport is configured): the load's core tables, column by column
    # traced to this system's source columns through the mappings (etl/airflow_lineage.py).
    with_column_lineage(loaded, [system])


def migrate_mapped_system(system, entities, validate_after=()):
    """The same stages for a system known only at run time (a mapped task group's argument);
    its validation waits for ``validate_after`` too. Returns its load.

    Its ``extract`` names no source pool (a pool is the task's, the same for every map index):
    etl/airflow_policy.py puts each map index in its system's pool as Airflow creates it."""
    batch = open_batch(system)
    validated = validate_all(batch, entities)
    extract(batch) >> transform_all(batch, entities) >> validated
    for upstream in validate_after:
        upstream >> validated
    return _finish(batch, [validated], load_task(None))


def _finish(batch, validated: list, load):
    gated = quality_gate(batch)
    loaded = load(batch)
    validated >> gated >> loaded
    reconcile(loaded) >> report(batch).as_teardown(setups=batch)
    return loaded


def build_system_dag(system: str, entities: list[str], priority_weight: int = 1):
    @dag(
        dag_id=system_dag_id(system),
        description=f"Migrate {system} into the core system",
        schedule=None,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        tags=["vardflytt", "migration", system],
        params=RUN_PARAMS,
        default_args={"priority_weight": priority_weight, "weight_rule": WEIGHT_RULE},
        doc_md=f"Extract, transform, validate and load **{system}** (`mappings/{system}/`).",
    )
    def migrate():
        migrate_system(system, entities)

    return migrate()


def build_selection_dag(systems: dict[str, list[str]], weights: dict[str, int] | None = None):
    order = by_priority(weights or dict.fromkeys(systems, 1))
    params = {
        "systems": Param(
            sorted(systems),
            type="array",
            title="Source systems",
            description="Which legacy systems this run migrates.",
            examples=sorted(systems),
            items={"type": "string", "enum": sorted(systems)},
        ),
        **RUN_PARAMS,
    }

    @dag(
        dag_id=SELECTION_DAG_ID,
        description="Migrate a selection of source systems",
        schedule=None,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        tags=["vardflytt", "migration"],
        params=params,
        default_args={"weight_rule": WEIGHT_RULE},
        doc_md=(
            "Pick source systems in the Params form. The `provider` task group runs once per "
            "selected system whose care units or practitioners another selected system "
            "references by HSA-id, the `system` group once per other selected system (each "
            "mapped at run time, one map index per system, systems with the most rows first); "
            "a `system` validates after every `provider` has loaded or failed."
        ),
    )
    def migrate_selected():
        def selection(providers: bool) -> list[dict]:
            """The chosen systems of one kind, heaviest first, as a group's arguments: map index
            0 is the longest system, and the scheduler queues equal weights by map index."""
            from etl.validate.order import natural_key_providers

            chosen = set(get_current_context()["params"]["systems"])
            selected = {system: systems[system] for system in order if system in chosen}
            provider = natural_key_providers(EXPECTATIONS_DIR, selected)
            return [
                {"system": system, "entities": entities}
                for system, entities in selected.items()
                if (system in provider) is providers
            ]

        @task(task_id=SELECTION_TASKS[PROVIDER_GROUP])
        def selected_providers() -> list[dict]:
            return selection(providers=True)

        @task(task_id=SELECTION_TASKS[SYSTEM_GROUP])
        def selected_systems() -> list[dict]:
            return selection(providers=False)

        # Ahead of the other systems in the scheduler's queue: their validations wait for these.
        @task_group(group_id=PROVIDER_GROUP, default_args={"priority_weight": PROVIDER_WEIGHT})
        def one_provider(system, entities):
            return migrate_mapped_system(system, entities)

        # Loaded or failed, as ``vardflytt run`` (etl/parallel.py) lets a stopped system's
        # dependants go on; all_done also passes when no system provides (the group is skipped).
        providers_done = EmptyOperator(task_id="providers_done", trigger_rule=TriggerRule.ALL_DONE)

        @task_group(group_id=SYSTEM_GROUP)
        def one_system(system, entities):
            # A reference by HSA-id resolves against every system's promoted rows: the
            # providers' loads first, as a run one system after another (etl/parallel.py's
            # _cross_system_waits), so what is flagged does not depend on who came first.
            migrate_mapped_system(system, entities, validate_after=[providers_done])

        one_provider.expand_kwargs(selected_providers()) >> providers_done
        one_system.expand_kwargs(selected_systems())

    return migrate_selected()


for _system, _entities in SYSTEMS.items():
    globals()[system_dag_id(_system)] = build_system_dag(_system, _entities, WEIGHTS[_system])
vardflytt_migrate = build_selection_dag(SYSTEMS, WEIGHTS)
