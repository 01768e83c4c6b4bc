"""The demo's last screen lists every wave of the plan as the ledger has it, and says exactly how
to answer the go/no-go of a wave left waiting (etl/demo_waves.py, etl.cli demo)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from etl import cli
from etl.core.tables import metadata
from etl.cutover import ledger
from etl.demo_waves import describe, wave_outcomes

pytestmark = pytest.mark.unit

TO_VERIFIED = [
    ledger.REHEARSAL,
    ledger.INITIAL_LOAD,
    ledger.FROZEN,
    ledger.FINAL_DELTA,
    ledger.VERIFIED,
]
WAVES = ["w1_skaraborg", "w2_hospital_care", "w3_primary_care"]


@pytest.fixture
def demo_ledger(settings_for, tmp_path):
    """A core whose ledger has what a default demo leaves: w1 and w2 approved and cut over by the
    demo approvers, w3 verified with no answer yet."""
    core = tmp_path / "core.sqlite"
    settings = settings_for(core_url=f"sqlite:///{core}")
    engine = sa.create_engine(f"sqlite:///{core}")
    metadata.create_all(engine)
    approvers = {
        "w1_skaraborg": {"project_lead": "demo-lead", "medical_safety_officer": "demo-cmio"},
        "w2_hospital_care": {"project_lead": "demo-lead"},
    }
    with engine.begin() as connection:
        for wave in WAVES:
            for state in TO_VERIFIED:
                ledger.transition(connection, wave, state, actor="demo")
        for wave, roles in approvers.items():
            for role, user in roles.items():
                ledger.record_approval(connection, wave, role, user, "approve", "airflow_hitl")
            ledger.transition(connection, wave, ledger.CUT_OVER, actor="demo")
    engine.dispose()
    return settings


def test_each_wave_is_listed_with_its_state_and_approvals(demo_ledger):
    outcomes = {o.wave: o for o in wave_outcomes(demo_ledger, WAVES)}

    assert describe(outcomes["w1_skaraborg"], demo_ledger) == [
        "w1_skaraborg: cut over; go/no-go: project_lead approve by demo-lead; "
        "medical_safety_officer approve by demo-cmio"
    ]
    assert describe(outcomes["w2_hospital_care"], demo_ledger) == [
        "w2_hospital_care: cut over; go/no-go: project_lead approve by demo-lead"
    ]
    assert outcomes["w3_primary_care"].state == ledger.VERIFIED
    assert outcomes["w3_primary_care"].waiting == {"project_lead": ["demo-lead"]}


def test_a_wave_at_its_go_no_go_says_how_to_answer_it(demo_ledger):
    (outcome,) = wave_outcomes(demo_ledger, ["w3_primary_care"])
    lines = describe(outcome, demo_ledger)

    assert (
        lines[0]
        == "w3_primary_care: verified, waiting for its go/no-go from project_lead (demo-lead)"
    )
    in_airflow, on_the_command_line = lines[1], lines[2]
    for expected in (
        "make airflow",
        "as demo-lead",
        str(demo_ledger.airflow_home / "simple_auth_manager_passwords.json"),
        "vardflytt_cutover_w3_primary_care",
        "phase final",
        "go_no_go_project_lead under Required Actions",
    ):
        assert expected in in_airflow
    assert (
        ".venv/bin/vardflytt cutover approve w3_primary_care --role project_lead --user demo-lead"
        in on_the_command_line
    )
    assert on_the_command_line.endswith(".venv/bin/vardflytt cutover commit w3_primary_care")


def test_a_wave_with_one_role_answered_waits_only_for_the_other(demo_ledger):
    """w1 needs two roles: after a rejection and a new verification, one approval is not enough."""
    engine = sa.create_engine(demo_ledger.resolved_core_url)
    with engine.begin() as connection:
        ledger.transition(connection, "w1_skaraborg", ledger.ROLLED_BACK, actor="demo")
        for state in (ledger.INITIAL_LOAD, ledger.FROZEN, ledger.FINAL_DELTA, ledger.VERIFIED):
            ledger.transition(connection, "w1_skaraborg", state, actor="demo")
        ledger.invalidate_approvals(connection, "w1_skaraborg")
        ledger.record_approval(
            connection, "w1_skaraborg", "project_lead", "demo-lead", "approve", "cli"
        )
    engine.dispose()

    (outcome,) = wave_outcomes(demo_ledger, ["w1_skaraborg"])
    lines = describe(outcome, demo_ledger)

    assert outcome.waiting == {"medical_safety_officer": ["demo-cmio"]}
    assert lines[0] == (
        "w1_skaraborg: verified, waiting for its go/no-go from medical_safety_officer "
        "(demo-cmio); go/no-go: project_lead approve by demo-lead"
    )
    assert "--role medical_safety_officer --user demo-cmio" in lines[2]


def test_a_wave_the_demo_did_not_reach_shows_its_state(settings_for, tmp_path):
    core = tmp_path / "other.sqlite"
    settings = settings_for(core_url=f"sqlite:///{core}")
    engine = sa.create_engine(f"sqlite:///{core}")
    metadata.create_all(engine)
    engine.dispose()

    (outcome,) = wave_outcomes(settings, ["w3_primary_care"])

    assert outcome.waiting == {}
    assert describe(outcome, settings) == ["w3_primary_care: planned"]


def test_the_demo_prints_every_wave_before_where_to_look(demo_ledger):
    with cli.console.capture() as captured:
        cli._print_demo_next_steps(demo_ledger, WAVES)
    output = captured.get()

    positions = [output.index(f"{wave}: ") for wave in WAVES]
    assert positions == sorted(positions)
    assert "w1_skaraborg: cut over" in output
    assert "w2_hospital_care: cut over" in output
    assert "w3_primary_care: verified, waiting for its go/no-go" in output
    assert "cutover approve w3_primary_care --role project_lead --user demo-lead" in output
    assert output.index("w3_primary_care: verified") < output.index("core database:")
