"""The wave plan, the cutover state machine and the wave lock (etl.cutover.plan / ledger)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from etl.core.tables import metadata
from etl.cutover import ledger
from etl.cutover.plan import PlanError, load_plan
from etl.layout import list_system_entities

pytestmark = pytest.mark.unit

MAPPINGS = Path(__file__).resolve().parents[3] / "mappings"


def test_the_demo_plan_has_three_waves_covering_every_system_once():
    plan = load_plan(MAPPINGS)
    assert len(plan.waves) >= 3
    placed = [system for wave in plan.waves for system in wave.systems]
    assert sorted(placed) == sorted(list_system_entities(MAPPINGS))
    for wave in plan.waves:
        assert wave.window.start <= wave.window.end
        assert wave.criteria.approvers
    assert plan.wave_of("melior") and plan.wave_of("lab_skas") != plan.wave_of("melior")


def _plan_copy(tmp_path: Path, change) -> Path:
    folder = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, folder)
    content = yaml.safe_load((folder / "waves.yaml").read_text("utf-8"))
    change(content)
    (folder / "waves.yaml").write_text(yaml.safe_dump(content), encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda c: c["waves"][0]["systems"].append("no_such_system"), "'no_such_system'"),
        (
            lambda c: c["waves"][1]["systems"].append(c["waves"][0]["systems"][0]),
            "exactly one wave",
        ),
        (lambda c: c["waves"][0]["window"].update(end="2000-01-01"), "before it starts"),
        (lambda c: c["waves"][0]["criteria"].update(approvers=[]), "approvers"),
    ],
)
def test_a_wrong_plan_is_refused_naming_the_problem(tmp_path, change, fragment):
    folder = _plan_copy(tmp_path, change)
    with pytest.raises(PlanError) as excinfo:
        load_plan(folder)
    assert "waves.yaml" in str(excinfo.value)
    assert fragment in str(excinfo.value)


@pytest.fixture
def engine(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'core.sqlite'}")
    metadata.create_all(engine)
    return engine


def test_transitions_follow_the_state_machine_and_record_who_when_run_and_evidence(engine):
    path = [
        ledger.REHEARSAL,
        ledger.REHEARSAL,
        ledger.INITIAL_LOAD,
        ledger.DELTA_LOAD,
        ledger.FROZEN,
        ledger.FINAL_DELTA,
        ledger.VERIFIED,
        ledger.CUT_OVER,
        ledger.ROLLED_BACK,
    ]
    with engine.begin() as connection:
        for state in path:
            ledger.transition(
                connection, "w", state, "anna", "run-1", "abc123", {"rows": 5}, plan_digest="d"
            )
        history = ledger.transitions(connection, "w")
        assert [t["to_state"] for t in history] == path
        assert history[0]["from_state"] == ledger.PLANNED
        assert {t["actor"] for t in history} == {"anna"}
        assert history[3]["evidence"] == {"rows": 5}
        assert history[3]["mapping_version"] == "abc123"
        assert ledger.wave_state(connection, "w") == ledger.ROLLED_BACK


@pytest.mark.parametrize(
    ("path", "illegal", "allowed"),
    [
        ([], ledger.CUT_OVER, "rehearsal, initial_load"),
        ([ledger.INITIAL_LOAD], ledger.VERIFIED, "initial_load, delta_load, frozen, rolled_back"),
        ([ledger.INITIAL_LOAD, ledger.FROZEN], ledger.DELTA_LOAD, "final_delta, rolled_back"),
        ([ledger.REHEARSAL], ledger.ROLLED_BACK, "rehearsal, initial_load"),
    ],
)
def test_an_illegal_transition_is_refused_with_the_allowed_ones(engine, path, illegal, allowed):
    with engine.begin() as connection:
        for state in path:
            ledger.transition(connection, "w", state, "anna")
        before = ledger.transitions(connection, "w")
        with pytest.raises(ledger.LedgerError) as excinfo:
            ledger.transition(connection, "w", illegal, "anna")
        assert f"cannot go to {illegal}" in str(excinfo.value)
        assert f"may go to: {allowed}" in str(excinfo.value)
        assert ledger.transitions(connection, "w") == before


def test_approvals_supersede_and_are_invalidated_by_new_data(engine):
    with engine.begin() as connection:
        ledger.record_approval(connection, "w", "project_lead", "anna", "reject", "cli")
        ledger.record_approval(connection, "w", "project_lead", "bo", "approve", "airflow_hitl")
        current = ledger.approvals(connection, "w", current_only=True)
        assert [(a["approver"], a["decision"]) for a in current] == [("bo", "approve")]
        assert len(ledger.approvals(connection, "w")) == 2
        ledger.invalidate_approvals(connection, "w")
        assert ledger.approvals(connection, "w", current_only=True) == []
        with pytest.raises(ledger.LedgerError):
            ledger.record_approval(connection, "w", "project_lead", "bo", "maybe", "cli")


def test_a_second_run_of_a_wave_is_refused_while_the_first_holds_it(engine):
    holder, taken = ledger.acquire_lock(engine, "w", "run-1")
    assert taken and holder.startswith("run-1 by ")
    with pytest.raises(ledger.WaveLockedError) as excinfo:
        ledger.acquire_lock(engine, "w", "run-2")
    assert "held by run-1" in str(excinfo.value)
    assert "vardflytt cutover unlock w" in str(excinfo.value)
    # The same Airflow run's later tasks hold it without taking it again.
    assert ledger.acquire_lock(engine, "w", "run-1") == (holder, False)
    with ledger.wave_lock(engine, "w", "run-1"):
        pass
    assert ledger.lock_holder(engine, "w") is not None, (
        "a later task must not release the run's lease"
    )
    assert ledger.release_lock(engine, "w", run_id="run-1")
    with ledger.wave_lock(engine, "w", None) as held:
        assert ledger.lock_holder(engine, "w").holder == held
    assert ledger.lock_holder(engine, "w") is None
