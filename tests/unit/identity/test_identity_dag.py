"""The identity DAG: cheap to import, scheduled on exactly the assets the loads emit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.dags

ROOT = Path(__file__).resolve().parents[3]
DAG_ID = "identity_resolution"


@pytest.fixture(scope="module")
def dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_importing_the_identity_dag_loads_no_heavy_module():
    """Nothing heavy beyond what Airflow's own SDK already loads (it brings SQLAlchemy)."""
    code = (
        "import sys; sys.path.insert(0, 'dags'); import airflow.sdk; before = set(sys.modules); "
        "import vardflytt_identity; "
        "heavy = [m for m in ('pandas', 'pyarrow', 'sqlalchemy', 'scipy', 'numpy', "
        "'great_expectations', 'etl.identity', 'etl.pipeline') "
        "if m in sys.modules and m not in before]; "
        "print(','.join(heavy))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == ""


def test_it_runs_after_any_system_load_and_by_hand(dag_bag):
    from etl.layout import list_system_entities

    assert dag_bag.import_errors == {}
    dag = dag_bag.dags[DAG_ID]
    condition = dag.timetable.asset_condition
    assert type(condition).__name__ == "AssetAny"
    scheduled = {(asset.name, asset.uri) for asset in condition.objects}
    loads = {
        (outlet.name, outlet.uri)
        for system in list_system_entities(ROOT / "mappings")
        for outlet in dag_bag.dags[f"vardflytt_{system}"].get_task("load").outlets
    }
    assert scheduled == loads and loads
    assert dag.max_active_runs == 1
    assert {task.task_id: sorted(task.downstream_task_ids) for task in dag.tasks} == {
        "resolve": ["summarise"],
        "summarise": [],
    }
