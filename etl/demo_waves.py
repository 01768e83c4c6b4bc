"""What the demo did with each cutover wave, read back from the ledger, and how to answer a wave
left at its go/no-go.

``make demo`` takes every wave of ``mappings/waves.yaml`` through its cutover DAG in plan order
(rehearsal, initial load, then freeze, final delta and verify) and has the demo approvers answer
the go/no-go of every wave but the last, which it leaves verified for a person to answer: an
``airflow dags test`` run would block while it waits, so the demo runs the last wave's final phase
up to the go/no-go in its own process, with the functions the DAG's tasks call. What it prints
comes from the ledger, not from what the demo meant to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from etl.settings import Settings


@dataclass
class WaveOutcome:
    """One wave as the ledger has it after the demo."""

    wave: str
    state: str
    approvals: list[str] = field(default_factory=list)  # "project_lead approve by demo-lead"
    waiting: dict[str, list[str]] = field(default_factory=dict)  # role -> its Airflow users


def wave_outcomes(settings: Settings, names: list[str]) -> list[WaveOutcome]:
    """Each wave's state and current approvals; for a verified wave, the roles still to answer."""
    from etl.core.database import core_engine
    from etl.cutover import ledger
    from etl.cutover.plan import load_plan

    plan = load_plan(settings.mappings_dir, settings.wave_plan)
    outcomes = []
    with core_engine(settings.resolved_core_url).connect() as connection:
        for name in names:
            state = ledger.wave_state(connection, name)
            current = ledger.approvals(connection, name, current_only=True)
            approved = {a["role"] for a in current if a["decision"] == "approve"}
            roles = plan.wave(name).criteria.approvers
            outcomes.append(
                WaveOutcome(
                    wave=name,
                    state=state,
                    approvals=[f"{a['role']} {a['decision']} by {a['approver']}" for a in current],
                    waiting={
                        role: list(accounts.airflow_users)
                        for role, accounts in roles.items()
                        if state == ledger.VERIFIED and role not in approved
                    },
                )
            )
    return outcomes


def describe(outcome: WaveOutcome, settings: Settings) -> list[str]:
    """Lines for the demo's last screen: the wave's state and, if it waits, how to answer."""
    from etl.airflow_env import passwords_file
    from etl.cutover import ledger
    from etl.cutover.airflow_hitl import approval_task_id
    from etl.dag_names import cutover_dag_id

    wave = outcome.wave
    approvals = f"; go/no-go: {'; '.join(outcome.approvals)}" if outcome.approvals else ""
    if outcome.state == ledger.CUT_OVER:
        return [f"{wave}: cut over{approvals}"]
    if not outcome.waiting:
        return [f"{wave}: {outcome.state}{approvals}"]
    asked = ", ".join(f"{role} ({' or '.join(users)})" for role, users in outcome.waiting.items())
    first_role, first_users = next(iter(outcome.waiting.items()))
    tasks = ", ".join(approval_task_id(role) for role in outcome.waiting)
    command = ".venv/bin/vardflytt cutover"
    return [
        f"{wave}: verified, waiting for its go/no-go from {asked}{approvals}",
        f"  answer it in Airflow: make airflow, sign in at {settings.airflow_url}/ as "
        f"{first_users[0]} with the password in {passwords_file(settings)}, switch on "
        f"{cutover_dag_id(wave)}, trigger it with phase final and answer {tasks} under Required "
        "Actions (the run verifies again and cuts the wave over once every role approved)",
        f"  or, while make airflow runs: {command} approve {wave} --role {first_role} --user "
        f"{first_users[0]}"
        + (" (and each other role)" if len(outcome.waiting) > 1 else "")
        + f", then {command} commit {wave}",
    ]
