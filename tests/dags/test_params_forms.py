"""Every Params form triggers with its defaults, in Airflow's UI and in its API.

Airflow 3's trigger form (and the go/no-go form of a human-in-the-loop task) marks a field
required when its schema has a ``type`` that does not include ``"null"``, and keeps Trigger
disabled while a required field is empty (``null`` or ``""``): an optional field must be nullable.
The API server validates a run's conf by merging it into the DAG's serialized params, the path
tested here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.dags

ROOT = Path(__file__).resolve().parents[2]
DATE_PARAMS = ("as_of_date",)


@pytest.fixture(scope="module")
def dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


@pytest.fixture(scope="module")
def served_dags(dag_bag) -> dict:
    """Each DAG as the API server sees it: serialized, then deserialized."""
    from airflow.serialization.serialized_objects import DagSerialization

    return {
        dag_id: DagSerialization.from_dict(DagSerialization.to_dict(dag))
        for dag_id, dag in sorted(dag_bag.dags.items())
    }


def form_requires(schema: dict) -> bool:
    """The UI's rule for a required field (FlexibleForm, airflow/ui, 3.3)."""
    kind = schema.get("type")
    return bool(kind) and not (isinstance(kind, list) and "null" in kind)


def fields_blocking_trigger(params) -> list[str]:
    """The fields that keep the form's Trigger (or Respond) button disabled with defaults."""
    return [
        name
        for name in params
        if form_requires(params.get_param(name).schema)
        and params.get_param(name).value in (None, "")
    ]


def test_the_forms_cover_migration_cutover_and_rollback(served_dags):
    assert {"vardflytt_migrate", "vardflytt_elvis", "vardflytt_rollback"} <= set(served_dags)
    assert any(dag_id.startswith("vardflytt_cutover_") for dag_id in served_dags)


def test_every_dag_form_can_be_triggered_with_its_defaults(served_dags):
    blocked = {
        dag_id: fields
        for dag_id, dag in served_dags.items()
        if (fields := fields_blocking_trigger(dag.params))
    }
    assert blocked == {}


def test_every_go_no_go_form_can_be_answered_without_a_note(served_dags):
    approvals = [
        (dag_id, task)
        for dag_id, dag in served_dags.items()
        for task in dag.tasks
        if task.task_id.startswith("go_no_go_")
    ]
    assert approvals
    for dag_id, task in approvals:
        assert fields_blocking_trigger(task.params) == [], (dag_id, task.task_id)
        assert task.params.deep_merge({"note": None}).validate()["note"] is None


def test_every_dag_validates_its_defaults_as_the_api_server_does(served_dags):
    for dag_id, dag in served_dags.items():
        resolved = dag.params.deep_merge(None).validate()
        assert set(resolved) == set(dag.params), dag_id
        for name in ("batch_id", *DATE_PARAMS):
            if name in resolved:
                assert resolved[name] is None, (dag_id, name)  # empty: the task decides


@pytest.mark.parametrize("date_text", ["2026-13-40", "04/12/2026", "2026-12-4", "today"])
def test_date_params_reject_what_is_not_a_date(served_dags, date_text):
    from airflow.sdk.exceptions import ParamValidationError

    checked = 0
    for dag_id, dag in served_dags.items():
        for name in DATE_PARAMS:
            if name in dag.params:
                assert dag.params.get_param(name).schema.get("format") == "date", (dag_id, name)
                with pytest.raises(ParamValidationError):
                    dag.params.deep_merge({name: date_text}).validate()
                checked += 1
    assert checked >= 2  # the migration and the cutover DAGs at least


def test_date_params_accept_a_date_or_nothing(served_dags):
    for dag_id, dag in served_dags.items():
        for name in DATE_PARAMS:
            if name in dag.params:
                for value in ("2026-12-04", None):
                    assert dag.params.deep_merge({name: value}).validate()[name] == value, dag_id


def test_a_whole_wave_rollback_triggers_without_a_batch_id(served_dags):
    rollback = served_dags["vardflytt_rollback"].params
    resolved = rollback.deep_merge({"wave": rollback["wave"]}).validate()
    assert resolved["batch_id"] is None
    assert rollback.deep_merge({"batch_id": "b-1"}).validate()["batch_id"] == "b-1"
