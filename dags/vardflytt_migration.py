"""Migration DAGs generated from the folders in ``mappings/``.

- ``vardflytt_<system>``: one DAG per source system.
- ``vardflytt_migrate``: any selection of systems in one run (the Params form lists them).

Thin by design: each task is one call into ``etl.pipeline``; nothing heavy is imported at
module level (Airflow parses this file every 30 seconds). XCom carries ids and counts only.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from airflow.sdk import Asset, Param, dag, get_current_context, task, task_group

from etl.layout import list_system_entities

MAPPINGS_DIR = Path(
    os.environ.get("VARDFLYTT_MAPPINGS_DIR") or Path(__file__).resolve().parents[1] / "mappings"
)
SYSTEMS = list_system_entities(MAPPINGS_DIR)
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
        "batch_id": batch_id,
        "as_of_date": as_of,
        "run_id": dag_run.run_id,
        "dry_run": bool(params["dry_run"]),
        "scope": params["scope"],
    }


def migrate_system(system: str, entities: list[str], selected=None) -> None:
    """extract -> transform and validate each entity -> quality gate -> load -> reconcile, and
    the batch's validation report at the end: a teardown of ``open_batch``, so it runs when any
    task before it failed too (a batch the gate stopped is when stewards need it most). As a
    teardown its own failure shows on the task without failing the run: the batch did load."""

    @task
    def open_batch() -> dict:
        return _batch(system)

    @task
    def extract(batch: dict) -> dict:
        from etl import pipeline

        return pipeline.extract(system, batch["batch_id"], batch["as_of_date"])

    @task
    def transform(batch: dict, entity: str) -> dict:
        from etl import pipeline

        return pipeline.transform(system, entity, batch["batch_id"])

    @task
    def validate(batch: dict, entity: str) -> dict:
        from etl import pipeline

        return pipeline.validate(system, entity, batch["batch_id"])

    @task
    def quality_gate(batch: dict) -> dict:
        from etl import pipeline

        return pipeline.gate(system, batch["batch_id"], batch["run_id"])

    @task(outlets=[Asset(name=f"vardflytt_core_{system}", uri=f"vardflytt://core/{system}")])
    def load(batch: dict) -> dict:
        from etl import pipeline

        return pipeline.load(
            system, batch["batch_id"], batch["run_id"], batch["dry_run"], scope=batch["scope"]
        )

    @task
    def reconcile(report: dict) -> dict:
        from etl import pipeline

        return pipeline.reconcile(report)

    @task
    def report(batch: dict) -> dict:
        from etl import pipeline

        return pipeline.report(system, batch["batch_id"])

    batch = open_batch()
    if selected is not None:
        selected >> batch
    landed = extract(batch)
    mapped = {
        entity: transform.override(task_id=f"transform_{entity}")(batch, entity)
        for entity in entities
    }
    validated = []
    for entity in entities:
        checked = validate.override(task_id=f"validate_{entity}")(batch, entity)
        landed >> mapped[entity] >> checked
        if entity != "patient" and "patient" in mapped:
            # Plausibility checks join the batch's transformed patients (etl/validate/context.py).
            mapped["patient"] >> checked
        validated.append(checked)
    gated = quality_gate(batch)
    loaded = load(batch)
    validated >> gated >> loaded
    reconcile(loaded) >> report(batch).as_teardown(setups=batch)


def build_system_dag(system: str, entities: list[str]):
    @dag(
        dag_id=f"vardflytt_{system}",
        description=f"Migrate {system} into the core system",
        schedule=None,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        tags=["vardflytt", "migration", system],
        params=RUN_PARAMS,
        doc_md=f"Extract, transform, validate and load **{system}** (`mappings/{system}/`).",
    )
    def migrate():
        migrate_system(system, entities)

    return migrate()


def build_selection_dag(systems: dict[str, list[str]]):
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
        dag_id="vardflytt_migrate",
        description="Migrate a selection of source systems",
        schedule=None,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        tags=["vardflytt", "migration"],
        params=params,
        doc_md="Pick source systems in the Params form; each runs as its own task group.",
    )
    def migrate_selected():
        for system, entities in systems.items():

            @task_group(group_id=system)
            def one_system(system=system, entities=entities):
                @task.short_circuit(task_id="is_selected")
                def is_selected() -> bool:
                    return system in get_current_context()["params"]["systems"]

                migrate_system(system, entities, selected=is_selected())

            one_system()

    return migrate_selected()


for _system, _entities in SYSTEMS.items():
    globals()[f"vardflytt_{_system}"] = build_system_dag(_system, _entities)
vardflytt_migrate = build_selection_dag(SYSTEMS)
