"""``vardflytt_migrate`` orders systems where they meet in the core, as ``vardflytt run`` does.

A reference by natural key (a care unit's or practitioner's HSA-id) resolves against every
system's promoted rows: the systems that provide such targets load before the others validate,
so what a run flags does not depend on which map index Airflow ran first
(tests/integration/test_airflow_run.py runs it and compares with one system after another)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from etl.dag_names import SELECTION_DAG_ID

pytestmark = pytest.mark.dags

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def selection_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "vardflytt_migration.py"))
    return bag.dags[SELECTION_DAG_ID]


def _upstream(dag, task_id: str) -> set[str]:
    return {t.task_id for t in dag.get_task(task_id).get_flat_relatives(upstream=True)}


def test_a_systems_validation_waits_for_every_providers_load(selection_dag):
    assert "provider.load" in _upstream(selection_dag, "system.validate")
    # Only the validation waits: the others extract and transform beside the providers.
    for task_id in ("system.open_batch", "system.extract", "system.transform"):
        assert not any(t.startswith("provider.") for t in _upstream(selection_dag, task_id))
    # And the providers wait for nothing of the others.
    for task_id in selection_dag.task_dict:
        if task_id.startswith("provider."):
            assert not any(t.startswith("system.") for t in _upstream(selection_dag, task_id))


def test_a_failed_or_absent_provider_lets_the_others_go_on(selection_dag):
    """As ``vardflytt run`` (etl/parallel.py: a stopped system's tasks count as done for the
    systems that wait on it), a provider that fails stops itself only; and a selection with no
    provider (the group mapped over nothing is skipped) must not skip the others."""
    from airflow.task.trigger_rule import TriggerRule

    join = selection_dag.get_task("providers_done")
    assert join.trigger_rule == TriggerRule.ALL_DONE
    assert join.upstream_task_ids == {"provider.load"}
    assert join.downstream_task_ids == {"system.validate"}
    # No task of one group is wired to the other's: the join is the only link.
    crossing = {
        (task.task_id, down)
        for task in selection_dag.tasks
        for down in task.downstream_task_ids
        if task.task_id.split(".")[0] != down.split(".")[0] and "." in task.task_id and "." in down
    }
    assert crossing == set()


def test_providers_outrank_the_other_systems(selection_dag):
    weights = {t.task_id: t.priority_weight for t in selection_dag.tasks}
    provider = {w for task_id, w in weights.items() if task_id.startswith("provider.")}
    other = {w for task_id, w in weights.items() if task_id.startswith("system.")}
    assert min(provider) > max(other)


@pytest.mark.parametrize(
    ("chosen", "providers"),
    [
        pytest.param(["melior", "elvis"], ["elvis"], id="elvis-care-units-for-melior"),
        pytest.param(["elvis"], [], id="alone-no-provider"),
        pytest.param(["melior", "lab_su"], [], id="no-one-provides"),
        pytest.param(["asynjavisph", "elvis", "orbit"], ["asynjavisph", "elvis"], id="both"),
    ],
)
def test_the_selection_is_split_by_the_suites_references(monkeypatch, chosen, providers):
    monkeypatch.syspath_prepend(str(ROOT / "dags"))
    module = importlib.import_module("vardflytt_migration")
    monkeypatch.setattr(module, "get_current_context", lambda: {"params": {"systems": chosen}})
    dag = module.vardflytt_migrate

    first = [a["system"] for a in dag.get_task("selected_providers").python_callable()]
    others = [a["system"] for a in dag.get_task("selected_systems").python_callable()]

    assert sorted(first) == providers
    assert sorted(first + others) == sorted(chosen)
