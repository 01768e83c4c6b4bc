"""Identity resolution after every load: the same person in many systems becomes one person.

Scheduled on the core asset each system's ``load`` task updates (``vardflytt_core_<system>``),
and triggerable by hand. ``AssetAny``, not a plain list: a list waits until *every* system has
loaded again, so migrating one system (a wave) would leave its patients unresolved.

Thin by design: each task is one call into ``etl.identity.runs``; nothing heavy is imported at
module level. XCom carries run ids and counts only.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import AssetAny, dag, get_current_context, task

from etl.dag_names import IDENTITY_DAG_ID, MAPPINGS_DIR, core_asset
from etl.layout import list_system_entities

# The outlets of the loads (vardflytt_migration.py, vardflytt_cutover.py), from one helper.
CORE_ASSETS = [core_asset(system) for system in list_system_entities(MAPPINGS_DIR)]


@dag(
    dag_id=IDENTITY_DAG_ID,
    description="Link core patients of all systems to persons; conflicts go to data stewards",
    schedule=AssetAny(*CORE_ASSETS),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    tags=["vardflytt", "identity"],
    doc_md=(
        "Resolves every core patient to a person (`vardflytt identity resolve`). Review and "
        "decide conflicts with `vardflytt identity review` / `decide`; undo a run with "
        "`vardflytt identity undo RUN_ID`."
    ),
)
def identity_resolution():
    @task
    def resolve() -> dict:
        from etl.identity import runs

        airflow_run_id = get_current_context()["dag_run"].run_id
        return runs.resolve(runs.run_id_for(airflow_run_id)).model_dump(mode="json")

    @task
    def summarise(resolved: dict) -> dict:
        from etl.identity import runs

        return runs.identity_summary().model_dump(mode="json")

    summarise(resolve())


identity_resolution()
