"""Every DAG imports cleanly and cheaply, and its wiring matches the committed snapshot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.dags

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = Path(__file__).with_name("dag_snapshot.json")


@pytest.fixture(scope="module")
def dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def _structure(dag_bag) -> dict:
    return {dag_id: _wiring(dag) for dag_id, dag in sorted(dag_bag.dags.items())}


def _wiring(dag) -> dict:
    """Params, tasks and their downstream tasks, and the pools of tasks outside the default."""
    wiring = {
        "params": sorted(dag.params.keys()),
        "tasks": {task.task_id: sorted(task.downstream_task_ids) for task in dag.tasks},
    }
    pools = {task.task_id: task.pool for task in dag.tasks if task.pool != "default_pool"}
    return wiring | ({"pools": pools} if pools else {})


def test_every_dag_imports_without_errors(dag_bag):
    assert dag_bag.import_errors == {}
    assert set(dag_bag.dag_ids) >= {"vardflytt_elvis", "vardflytt_melior"}


def test_every_dag_is_found_in_the_file_dags_test_parses_for_it(dag_bag):
    """``airflow dags test`` parses only the file that etl.dag_names.dag_file names
    (etl/airflow_main.py): a DAG defined anywhere else would not be found."""
    from etl.dag_names import dag_file

    assert {d: dag_file(d) for d in dag_bag.dag_ids} == {
        d: Path(dag.fileloc).name for d, dag in dag_bag.dags.items()
    }


def test_one_dag_per_source_system_in_mappings(dag_bag):
    from etl.layout import list_system_entities

    systems = list_system_entities(ROOT / "mappings")
    per_system = {
        d
        for d in dag_bag.dag_ids
        if d.startswith("vardflytt_")
        and d not in {"vardflytt_migrate", "vardflytt_rollback", "vardflytt_coexistence"}
        and not d.startswith("vardflytt_cutover_")
    }
    assert {f"vardflytt_{s}" for s in systems} == per_system


def test_the_selection_dag_offers_every_system_in_its_params_form(dag_bag):
    from etl.layout import list_system_entities

    systems = sorted(list_system_entities(ROOT / "mappings"))
    param = dag_bag.dags["vardflytt_migrate"].params.get_param("systems")
    assert param.schema["items"]["enum"] == systems
    assert param.value == systems


def test_dag_wiring_matches_the_snapshot(dag_bag):
    """A mapping change that alters orchestration shows up here for the reviewer.

    Regenerate after a deliberate change with: VARDFLYTT_UPDATE_SNAPSHOT=1 make test
    """
    import os

    structure = _structure(dag_bag)
    if os.environ.get("VARDFLYTT_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(structure, indent=2, sort_keys=True) + "\n")
    assert structure == json.loads(SNAPSHOT.read_text())


def test_importing_the_dags_loads_no_heavy_module():
    """Airflow parses DAG files every 30 seconds: no pandas, pyarrow or GX at import time."""
    code = (
        "import sys; sys.path.insert(0, 'dags'); import vardflytt_migration; "
        "heavy = [m for m in ('pandas', 'pyarrow', 'great_expectations', 'etl.pipeline') "
        "if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == ""


def test_tasks_only_call_into_etl(dag_bag):
    """Thin DAGs: every task is a TaskFlow call, no operators with inline logic; the
    exceptions are the cutover's go/no-go per role, Airflow's own human-in-the-loop operator,
    and the selection DAG's join after its providers, an operator with no body."""
    for dag in dag_bag.dags.values():
        for task in dag.tasks:
            if dag.dag_id.startswith("vardflytt_cutover_") and task.task_id.startswith("go_no_go_"):
                assert type(task).__name__ == "HITLOperator"
                continue
            if type(task).__name__ == "EmptyOperator":
                assert (dag.dag_id, task.task_id) == ("vardflytt_migrate", "providers_done")
                continue
            if type(task).__name__ == "MappedLoadOperator":
                # A mapped group's load: a TaskFlow task whose class adds only its OpenLineage
                # column lineage (a mapped task cannot take a method set on it).
                assert task.task_id in {"provider.load", "system.load"}, (dag.dag_id, task.task_id)
                assert "_PythonDecoratedOperator" in {c.__name__ for c in type(task).__mro__}
                continue
            assert type(task).__name__ in {
                "_PythonDecoratedOperator",
                "_ShortCircuitDecoratedOperator",
                "_BranchPythonDecoratedOperator",
            }, (dag.dag_id, task.task_id)


def test_every_migrated_batch_gets_its_report_whatever_stopped_it(dag_bag):
    """The report task is a teardown of the batch: it runs after reconcile, and also when any
    task before it failed (a batch the quality gate stopped), but not for a system the selection
    DAG skipped: its groups are mapped over the selected systems only."""
    from airflow.task.trigger_rule import TriggerRule

    from etl.dag_names import SELECTION_TASKS

    migration_dags = [
        dag
        for dag_id, dag in dag_bag.dags.items()
        if dag_id.startswith("vardflytt_") and "open_batch" in dag.task_dict
    ]
    assert len(migration_dags) >= 2
    selection = dag_bag.dags["vardflytt_migrate"]
    prefixes = [""] + [
        f"{task_id[: -len('open_batch')]}"
        for task_id in selection.task_dict
        if task_id.endswith(".open_batch")
    ]
    checked = 0
    for dag in [*migration_dags, selection]:
        for prefix in prefixes if dag is selection else [""]:
            if f"{prefix}report" not in dag.task_dict:
                continue
            report = dag.task_dict[f"{prefix}report"]
            opened = dag.task_dict[f"{prefix}open_batch"]
            assert report.is_teardown and opened.is_setup, dag.dag_id
            assert report.trigger_rule == TriggerRule.ALL_DONE_SETUP_SUCCESS
            assert report.upstream_task_ids == {f"{prefix}open_batch", f"{prefix}reconcile"}
            gate = dag.task_dict[f"{prefix}quality_gate"]
            assert report.task_id in {t.task_id for t in gate.get_flat_relatives(upstream=False)}
            if prefix:  # mapped at run time over the systems the selection task returns
                assert opened.upstream_task_ids == {SELECTION_TASKS[prefix.rstrip(".")]}
                assert type(opened.task_group).__name__ == "MappedTaskGroup"
            checked += 1
    assert checked == len(migration_dags) + 2  # the selection DAG's provider and system groups
