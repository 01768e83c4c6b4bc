"""Identity resolution after every load: the same person in many systems becomes one person.

Scheduled on the core asset each system's ``load`` task updates (``vardflytt_core_<system>``),
and triggerable by hand. ``AssetAny``, not a plain list: a list waits until *every* system has
loaded again, so migrating one system (a wave) would leave its patients unresolved.

Thin by design: each task is one call into ``etl.identity.runs``; nothing heavy is imported at
module level. XCom carries run ids and counts only.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from airflow.sdk import Asset, AssetAny, dag, get_current_context, task

from etl.layout import list_system_entities

MAPPINGS_DIR = Path(
    os.environ.get("VARDFLYTT_MAPPINGS_DIR") or Path(__file__).resolve().parents[1] / "mappings"
)
# The same name and uri as the outlet of each system DAG's load task (vardflytt_migration.py).
CORE_ASSETS = [
    Asset(name=f"vardflytt_core_{system}", uri=f"vardflytt://core/{system}")
    for system in list_system_entities(MAPPINGS_DIR)
]


@dag(
    dag_id="identity_resolution",
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
