"""The cutover DAGs: one per wave of the plan, their Params forms, their task graph."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.dags

ROOT = Path(__file__).resolve().parents[2]


def cutover_graph(roles: list[str]) -> dict[str, list[str]]:
    """The designed graph of a wave's DAG: task -> its downstream tasks. take_wave_lock feeds the
    run (wave, phase, run id) to every task; release_wave_lock is its teardown; verify asks each
    approving role (go_no_go_<role>), record_decision takes every answer, and export_fhir
    writes the wave's FHIR export after the cutover's evidence pack."""
    approvals = [f"go_no_go_{role}" for role in roles]
    phase_tasks = [
        "cutover_evidence",
        "export_fhir",
        "freeze",
        "load_evidence",
        "load_final_delta",
        "load_wave",
        "reconcile_wave",
        "record_decision",
        "rehearse",
        "verify",
    ]
    return {
        "take_wave_lock": sorted(["choose_phase", "release_wave_lock", *phase_tasks]),
        # Every task of every phase's path: the branch skips the paths not taken in one step.
        "choose_phase": sorted([*phase_tasks, *approvals]),
        "rehearse": ["release_wave_lock"],
        "load_wave": ["reconcile_wave"],
        "reconcile_wave": ["load_evidence"],
        "load_evidence": ["release_wave_lock"],
        "freeze": ["load_final_delta"],
        "load_final_delta": ["verify"],
        "verify": sorted(approvals),
        **{approval: ["record_decision"] for approval in approvals},
        "record_decision": ["cutover_evidence", "export_fhir"],
        "cutover_evidence": ["export_fhir"],
        "export_fhir": ["release_wave_lock"],
        "release_wave_lock": [],
    }


ROLLBACK_GRAPH = {
    "take_wave_lock": ["release_wave_lock", "rollback", "rollback_evidence"],
    "rollback": ["rollback_evidence"],
    "rollback_evidence": ["release_wave_lock"],
    "release_wave_lock": [],
}


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "vardflytt_cutover.py"))
    assert bag.import_errors == {}
    return bag.dags


@pytest.fixture(scope="module")
def plan():
    from etl.cutover.plan import load_plan

    return load_plan(ROOT / "mappings")


def test_every_wave_of_the_plan_has_its_cutover_dag_and_there_is_one_rollback_dag(dags, plan):
    assert set(dags) == {f"vardflytt_cutover_{w.wave}" for w in plan.waves} | {"vardflytt_rollback"}


def test_the_cutover_params_form_offers_the_phases_in_order(dags, plan):
    for wave in plan.waves:
        params = dags[f"vardflytt_cutover_{wave.wave}"].params
        assert sorted(params.keys()) == ["as_of_date", "phase"]
        phase = params.get_param("phase")
        assert phase.schema["enum"] == ["rehearsal", "initial", "delta", "final"]
        assert phase.value == "rehearsal"  # the default touches no core
        assert params.get_param("as_of_date").value is None  # empty: the run's date


def test_the_rollback_params_form_offers_the_plan_waves(dags, plan):
    params = dags["vardflytt_rollback"].params
    assert sorted(params.keys()) == ["batch_id", "cascade", "wave"]
    assert params.get_param("wave").schema["enum"] == [w.wave for w in plan.waves]
    assert params.get_param("batch_id").value is None  # empty: the whole wave
    assert params.get_param("cascade").value is False


def _graph(dag) -> dict[str, list[str]]:
    return {task.task_id: sorted(task.downstream_task_ids) for task in dag.tasks}


def test_each_cutover_dag_is_wired_as_designed(dags, plan):
    for wave in plan.waves:
        dag = dags[f"vardflytt_cutover_{wave.wave}"]
        assert _graph(dag) == cutover_graph(list(wave.criteria.approvers)), wave.wave
        assert dag.get_task("take_wave_lock").is_setup
        assert dag.get_task("release_wave_lock").is_teardown  # runs whatever failed before
        assert type(dag.get_task("choose_phase")).__name__ == "_BranchPythonDecoratedOperator"
        systems = {f"vardflytt_core_{system}" for system in wave.systems}
        for load in ("load_wave", "load_final_delta"):
            assert {asset.name for asset in dag.get_task(load).outlets} == systems


def test_the_branch_follows_the_whole_path_of_the_phase_and_skips_every_other_task(dags, plan):
    """choose_phase returns every task of the run's phase (an Airflow branch skips each of its
    direct downstream tasks it does not return): the other paths are skipped at once, and the
    wave's lease is released as soon as the chosen path is done."""
    for wave in plan.waves:
        branch = dags[f"vardflytt_cutover_{wave.wave}"].get_task("choose_phase")
        roles = [f"go_no_go_{role}" for role in wave.criteria.approvers]
        paths = {
            "rehearsal": ["rehearse"],
            "initial": ["load_wave", "reconcile_wave", "load_evidence"],
            "delta": ["load_wave", "reconcile_wave", "load_evidence"],
            "final": [
                "freeze",
                "load_final_delta",
                "verify",
                *roles,
                "record_decision",
                "cutover_evidence",
                "export_fhir",
            ],
        }
        for phase, path in paths.items():
            followed = branch.python_callable({"phase": phase})
            assert sorted(followed) == sorted(path), (wave.wave, phase)
            assert set(followed) <= branch.downstream_task_ids
        every_path = {task for path in paths.values() for task in path}
        assert every_path == branch.downstream_task_ids


def test_each_role_has_its_go_no_go_assigned_to_the_plan_users_only(dags, plan):
    from airflow.providers.standard.operators.hitl import HITLOperator

    from etl.cutover.ledger import LOCK_LEASE

    assert len(plan.wave("w1_skaraborg").criteria.approvers) == 2  # the demo's two-person rule
    for wave in plan.waves:
        dag = dags[f"vardflytt_cutover_{wave.wave}"]
        for role, accounts in wave.criteria.approvers.items():
            approval = dag.get_task(f"go_no_go_{role}")
            assert isinstance(approval, HITLOperator)
            assert approval.options == ["Approve", "Reject"] and not approval.multiple
            assert wave.wave in approval.subject and wave.title in approval.subject
            assert role in approval.subject
            assert "xcom_pull(task_ids='verify')" in approval.body
            # Airflow answers only to these users (403 for anyone else, admins included).
            assert approval.assigned_users == [
                {"id": user, "name": user} for user in accounts.airflow_users
            ]
            assert approval.assigned_users
            assert sorted(approval.params.keys()) == ["note"]
            # An unanswered go/no-go ends the run before the wave's lease could lapse under it.
            assert approval.response_timeout < LOCK_LEASE


def test_the_rollback_dag_is_wired_as_designed(dags):
    dag = dags["vardflytt_rollback"]
    assert _graph(dag) == ROLLBACK_GRAPH
    assert dag.get_task("take_wave_lock").is_setup
    assert dag.get_task("release_wave_lock").is_teardown


def test_importing_the_cutover_dags_loads_no_heavy_module():
    """Parsing reads the wave plan only: no pipeline, ledger, database or data libraries."""
    code = (
        "import sys; sys.path.insert(0, 'dags'); import vardflytt_cutover; "
        "heavy = [m for m in ('pandas', 'pyarrow', 'great_expectations', 'etl.pipeline', "
        "'etl.cutover.waves', 'etl.cutover.rehearsal', 'etl.cutover.wave_rollback', "
        "'etl.cutover.ledger', 'etl.core.database') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == ""
