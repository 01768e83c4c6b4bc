"""The go/no-go in Airflow: the approval request, the recorded decision, and answering it.

The cutover DAG (``dags/vardflytt_cutover.py``) verifies a wave, writes its evidence pack and asks
for a decision with Airflow 3's human-in-the-loop ``HITLOperator``. On Airflow 3.3 the approval
task waits in ``awaiting_input``; a response through the Required Actions page, the REST API
(``PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails``) or
``vardflytt cutover approve`` resumes it, and Airflow records who responded. The DAG's next task
then writes that decision into our ledger and, on approval, cuts the wave over.

Module level stays cheap (the DAG file imports it while Airflow parses): everything heavy is
imported inside the functions.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

from etl.settings import Settings

APPROVE = "Approve"
REJECT = "Reject"
CHANNEL = "airflow_hitl"
APPROVAL_TASK_ID = "go_no_go"
# The DAG's answer line on stdout when ``python -m etl.cutover.airflow_hitl`` responds.
ANSWER_PREFIX = "vardflytt-hitl-answer: "


def cutover_dag_id(wave: str) -> str:
    return f"vardflytt_cutover_{wave}"


def run_label(prefix: str, run_id: str) -> str:
    """An evidence-pack folder name for an Airflow run (run ids hold ':' and '+')."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return f"{prefix}-{safe}"


def _state(settings: Settings, wave: str) -> str:
    from etl.core.database import core_engine
    from etl.cutover import ledger

    with core_engine(settings.resolved_core_url).connect() as connection:
        return ledger.wave_state(connection, wave)


def freeze_unless_frozen(
    settings: Settings, wave: str, actor: str | None = None, run_id: str | None = None
) -> dict:
    """Freeze the wave's legacy systems, unless they already are.

    A final run after a rejection (or a retried task) finds the wave frozen, final_delta or
    verified: the legacy systems stayed read-only, so the run goes on to the next final delta."""
    from etl.cutover import ledger, waves

    state = _state(settings, wave)
    if state in (ledger.FROZEN, ledger.FINAL_DELTA, ledger.VERIFIED):
        return {"wave": wave, "state": state, "already_frozen": True}
    waves.freeze(settings, wave, actor, run_id)
    return {"wave": wave, "state": ledger.FROZEN, "already_frozen": False}


def approval_body(wave: str, title: str, criteria: list[dict], pack: str) -> str:
    """The go/no-go request a project lead reads (Markdown): each criterion and the pack."""
    lines = [
        f"**{wave}**: {title}",
        "",
        "Go/no-go criteria, evaluated after the final delta:",
        "",
    ]
    for criterion in criteria:
        mark = "PASS" if criterion["passed"] else "FAIL"
        lines.append(f"- {mark} {criterion['criterion']}: {criterion['detail']}")
    lines += [
        "",
        f"Evidence pack: `{pack}` (evidence.md, evidence.json, SHA256SUMS; `{pack}.zip`).",
        "",
        f"**{APPROVE}** commits the cutover: the wave goes live. **{REJECT}** leaves it "
        "verified; the rejection is recorded in the ledger.",
    ]
    return "\n".join(lines)


def verify_for_approval(
    settings: Settings,
    wave: str,
    as_of_date: dt.date,
    actor: str | None = None,
    run_id: str | None = None,
) -> dict:
    """Verify the wave (raises with the failing criteria), write the evidence pack to sign off,
    and return the approval request's body. Counts, criteria and the pack path only."""
    from etl.core.database import core_engine
    from etl.cutover import ledger, waves
    from etl.cutover.evidence import write_pack

    with core_engine(settings.resolved_core_url).connect() as connection:
        history = ledger.transitions(connection, wave)
    already = bool(history) and history[-1]["to_state"] == ledger.VERIFIED
    if already and run_id is not None and history[-1]["run_id"] == run_id:
        results = waves.evaluate_criteria(settings, wave)  # this run verified it: a retry
    else:
        results = waves.verify(settings, wave, as_of_date, actor, run_id)
    criteria = [c.as_dict() for c in results]
    pack = write_pack(
        settings,
        wave,
        run_label("go-no-go", run_id or "command-line"),
        extra={"criteria": criteria, "run_id": run_id},
    )
    return {
        "wave": wave,
        "criteria_passed": sum(c["passed"] for c in criteria),
        "criteria_total": len(criteria),
        "pack": str(pack),
        "body": approval_body(wave, waves.wave_of(settings, wave).title, criteria, str(pack)),
    }


def record_decision(settings: Settings, wave: str, response: dict, run_id: str) -> dict:
    """Write the human's answer to the go/no-go into the ledger; on approval, cut over.

    ``response`` is the approval task's result: ``chosen_options``, ``params_input`` and
    ``responded_by_user`` as Airflow recorded them. Safe to retry: an answer this run already
    recorded is not recorded twice, and a wave already cut over stays so."""
    from etl.core.database import core_engine
    from etl.cutover import ledger, waves

    user = response.get("responded_by_user") or {}
    approver = user.get("name") or user.get("id")
    if not approver:
        raise ledger.LedgerError(
            f"the go/no-go of wave {wave} has no respondent (run {run_id}); nothing recorded"
        )
    chosen = list(response.get("chosen_options") or [])
    decision = "approve" if chosen == [APPROVE] else "reject"
    params = response.get("params_input") or {}
    role = params.get("role") or waves.wave_of(settings, wave).criteria.approvers[0]
    note = params.get("note") or None
    with core_engine(settings.resolved_core_url).connect() as connection:
        recorded = [
            a
            for a in ledger.approvals(connection, wave, current_only=True)
            if (a["run_id"], a["channel"], a["role"]) == (run_id, CHANNEL, role)
            and (a["approver"], a["decision"]) == (approver, decision)
        ]
        state = ledger.wave_state(connection, wave)
    if not recorded and state != ledger.CUT_OVER:
        waves.approve(settings, wave, approver, role, decision, CHANNEL, run_id, note)
    if decision == "approve" and state != ledger.CUT_OVER:
        waves.cut_over(settings, wave, actor=approver, run_id=run_id)
    return {
        "wave": wave,
        "decision": decision,
        "approver": approver,
        "role": role,
        "state": _state(settings, wave),
    }


# --- Answering from the command line -------------------------------------------------------


def airflow_in_use(settings: Settings) -> bool:
    """Whether this project's Airflow has been set up (its home holds a config)."""
    import os

    return (settings.airflow_home / "airflow.cfg").exists() or bool(
        os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    )


def respond_to_waiting_run(
    settings: Settings,
    wave: str,
    decision: str,
    approver: str,
    role: str,
    note: str | None = None,
) -> dict | None:
    """Answer the go/no-go of the wave's cutover run if one is waiting; None if none is.

    Runs in a child process with this project's Airflow environment (``etl.airflow_env``), so
    Airflow reads its own configuration and metadata database, not whatever this process has."""
    from etl.airflow_env import airflow_environment
    from etl.cutover import ledger, waves

    approvers = waves.wave_of(settings, wave).criteria.approvers
    if role not in approvers:
        raise ledger.LedgerError(
            f"role '{role}' does not approve wave {wave}; approvers: {', '.join(approvers)}"
        )
    if decision not in {"approve", "reject"}:
        raise ledger.LedgerError(f"a decision is 'approve' or 'reject', not '{decision}'")
    if not airflow_in_use(settings):
        return None
    request = {
        "dag_id": cutover_dag_id(wave),
        "option": APPROVE if decision == "approve" else REJECT,
        "user": approver,
        "role": role,
        "note": note or "",
    }
    completed = subprocess.run(
        [sys.executable, "-m", "etl.cutover.airflow_hitl", json.dumps(request)],
        env=airflow_environment(settings),
        capture_output=True,
        text=True,
        timeout=300,
    )
    answers = [
        line[len(ANSWER_PREFIX) :]
        for line in completed.stdout.splitlines()
        if line.startswith(ANSWER_PREFIX)
    ]
    if completed.returncode != 0 or not answers:
        raise ledger.LedgerError(
            f"could not answer the go/no-go of wave {wave} in Airflow: "
            + (completed.stderr.strip().splitlines() or ["no answer"])[-1]
        )
    answer = json.loads(answers[-1])
    if "error" in answer:
        raise ledger.LedgerError(answer["error"])
    if answer.get("running_run_id"):
        # Recording it in the ledger now would race the run's own go/no-go.
        raise ledger.LedgerError(
            f"Airflow run {answer['running_run_id']} of {request['dag_id']} is in progress but "
            "not waiting for its go/no-go yet; answer when it asks (Required Actions, or this "
            "command again)"
        )
    return answer if answer["waiting"] else None


def _respond_in_airflow(request: dict) -> dict:
    """In Airflow's environment: find the waiting approval and answer it as the UI does.

    Calls the Core API's own handler of ``PATCH .../hitlDetails`` with a metadata-database
    session: it records the respondent, the chosen option and the form, and resumes the parked
    task (``handle_event_submit``). The identity is the one given on the command line, trusted
    as the ledger's command-line channel trusts ``--by``; an HTTP client of a remote
    api-server would authenticate instead (Airflow 3.3; re-check this call when upgrading)."""
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.models.dagrun import DagRun
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from fastapi import HTTPException
    from sqlalchemy import select
    from sqlalchemy.exc import OperationalError, ProgrammingError

    class CommandLineUser(BaseUser):
        def __init__(self, name: str) -> None:
            self.name = name

        def get_id(self) -> str:
            return self.name

        def get_name(self) -> str:
            return self.name

    query = (
        select(TaskInstance.run_id, TaskInstance.map_index, HITLDetail.params)
        .join(HITLDetail, HITLDetail.ti_id == TaskInstance.id)
        .where(
            (TaskInstance.dag_id == request["dag_id"])
            & (TaskInstance.task_id == APPROVAL_TASK_ID)
            & TaskInstance.state.in_([TaskInstanceState.AWAITING_INPUT, TaskInstanceState.DEFERRED])
            & HITLDetail.responded_at.is_(None)
        )
        .order_by(TaskInstance.start_date.desc())
    )
    running = select(DagRun.run_id).where(
        (DagRun.dag_id == request["dag_id"]) & (DagRun.state == DagRunState.RUNNING)
    )
    try:
        with create_session() as session:
            waiting = session.execute(query).first()
            running_run_id = session.scalars(running).first()
    except (OperationalError, ProgrammingError):  # no metadata database (yet): nothing waits
        return {"waiting": False}
    if waiting is None:
        return {"waiting": False, "running_run_id": running_run_id}
    # Like the Required Actions form, answer every field the request asks (defaults kept).
    form = {name: field.get("value") for name, field in (waiting.params or {}).items()}
    form.update({k: request[k] for k in ("role", "note") if k in form})
    try:
        with create_session() as session:
            response = update_hitl_detail(
                dag_id=request["dag_id"],
                dag_run_id=waiting.run_id,
                task_id=APPROVAL_TASK_ID,
                update_hitl_detail_payload=UpdateHITLDetailPayload(
                    chosen_options=[request["option"]],
                    params_input=form,
                ),
                user=CommandLineUser(request["user"]),
                session=session,
                map_index=waiting.map_index,
            )
    except HTTPException as error:
        return {"error": f"Airflow refused the answer: {error.detail}"}
    return {
        "waiting": True,
        "dag_id": request["dag_id"],
        "run_id": waiting.run_id,
        "chosen_options": response.chosen_options,
        "responded_by": response.responded_by.name,
    }


if __name__ == "__main__":
    print(ANSWER_PREFIX + json.dumps(_respond_in_airflow(json.loads(sys.argv[1]))), flush=True)
