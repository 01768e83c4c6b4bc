"""The go/no-go in Airflow: the approval request, the recorded decision, and answering it.

The cutover DAG (``dags/vardflytt_cutover.py``) verifies a wave, writes its evidence pack and asks
each approving role for a decision with Airflow 3's human-in-the-loop ``HITLOperator``: one task
per role (``go_no_go_<role>``), assigned to the role's Airflow users from the wave plan, so
Airflow itself refuses an answer from anyone else (403). On Airflow 3.3 an approval task waits in
``awaiting_input``; a response through the Required Actions page or the REST API
(``PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails``, which
``vardflytt cutover approve`` calls with the user's own token) resumes it, and Airflow records
who responded. The DAG's next task writes every role's answer into our ledger and, when every
role approved, cuts the wave over.

Module level stays cheap (the DAG file imports it while Airflow parses): everything heavy is
imported inside the functions.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from etl.dag_names import cutover_dag_id
from etl.settings import Settings

if TYPE_CHECKING:
    import httpx

APPROVE = "Approve"
REJECT = "Reject"
CHANNEL = "airflow_hitl"
APPROVAL_TASK_PREFIX = "go_no_go_"
API = "/api/v2"
WAITING_STATES = ("awaiting_input", "deferred")
# An answer Airflow failed on its metadata database is sent again: at most this many times in all,
# this many seconds apart (``answer_once_recorded``).
LOCKED_ATTEMPTS = 4
LOCKED_PAUSE_SECONDS = 2.0


def approval_task_id(role: str) -> str:
    """The go/no-go task of one approving role."""
    return APPROVAL_TASK_PREFIX + role


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
) -> dict[str, Any]:
    """Freeze the wave's legacy systems, unless they already are.

    A final run after a rejection (or a retried task) finds the wave frozen, final_delta or
    verified: the legacy systems stayed read-only, so the run goes on to the next final delta."""
    from etl.cutover import ledger, waves

    state = _state(settings, wave)
    if state in (ledger.FROZEN, ledger.FINAL_DELTA, ledger.VERIFIED):
        return {"wave": wave, "state": state, "already_frozen": True}
    waves.freeze(settings, wave, actor, run_id)
    return {"wave": wave, "state": ledger.FROZEN, "already_frozen": False}


def evidence_links(settings: Settings, wave: str, label: str) -> dict[str, str]:
    """Where an approver opens a recorded evidence pack: the dashboard (``dashboard_url``), which
    asks them to sign in and logs the view, never a path on the server that ran the task."""
    from urllib.parse import quote

    base = f"{settings.dashboard_url.rstrip('/')}/waves/{quote(wave, safe='')}/evidence/"
    pack = base + quote(label, safe="")
    return {"page": f"{pack}/evidence.md", "zip": pack}


def approval_body(
    wave: str, title: str, criteria: list[dict[str, Any]], links: dict[str, str]
) -> str:
    """The go/no-go request a project lead reads (Markdown): each criterion and links to the
    evidence pack in the dashboard (``evidence_links``)."""
    from etl.cutover.evidence import md

    lines = [
        f"**{md(wave)}**: {md(title)}",
        "",
        "Go/no-go criteria, evaluated after the final delta:",
        "",
    ]
    for criterion in criteria:
        mark = "PASS" if criterion["passed"] else "FAIL"
        lines.append(f"- {mark} {md(criterion['criterion'])}: {md(criterion['detail'])}")
    lines += [
        "",
        f"Evidence pack (sign in to the dashboard): [read it]({_link_target(links['page'])}) · "
        f"[download the zip]({_link_target(links['zip'])}) (evidence.md, evidence.json, "
        "SHA256SUMS).",
        "",
        f"**{APPROVE}** commits the cutover: the wave goes live. **{REJECT}** leaves it "
        "verified; the rejection is recorded in the ledger.",
    ]
    return "\n".join(lines)


def _link_target(url: str) -> str:
    """A URL as a Markdown link target: angle-bracketed, so no character of it ends the link."""
    return "<" + url.replace("<", "%3C").replace(">", "%3E").replace(" ", "%20") + ">"


def verify_for_approval(
    settings: Settings,
    wave: str,
    as_of_date: dt.date,
    actor: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Verify the wave (raises with the failing criteria), write the evidence pack to sign off,
    and return the approval request's body. Counts, criteria and the pack path only."""
    from etl.core.database import core_engine
    from etl.cutover import ledger, waves
    from etl.cutover.evidence import pack_key, write_pack

    with core_engine(settings.resolved_core_url).connect() as connection:
        history = ledger.transitions(connection, wave)
    already = bool(history) and history[-1]["to_state"] == ledger.VERIFIED
    if already and run_id is not None and history[-1]["run_id"] == run_id:
        results = waves.evaluate_criteria(settings, wave)  # this run verified it: a retry
    else:
        results = waves.verify(settings, wave, as_of_date, actor, run_id)
    criteria = [c.as_dict() for c in results]
    label = run_label("go-no-go", run_id or "command-line")
    pack = write_pack(settings, wave, label, extra={"criteria": criteria, "run_id": run_id})
    links = evidence_links(settings, wave, label)
    return {
        "wave": wave,
        "criteria_passed": sum(c["passed"] for c in criteria),
        "criteria_total": len(criteria),
        "pack": pack_key(wave, pack.name),  # a key under the storage root, not a path
        "evidence_url": links["page"],
        "body": approval_body(wave, waves.wave_of(settings, wave).title, criteria, links),
    }


def record_decision(
    settings: Settings, wave: str, responses: dict[str, dict[str, Any]], run_id: str
) -> dict[str, Any]:
    """Write every role's answer to the go/no-go into the ledger; when all approve, cut over.

    ``responses``: role -> that role's approval task result (``chosen_options``,
    ``params_input`` and ``responded_by_user`` as Airflow recorded them). The approver is
    Airflow's respondent id; the ledger refuses one not listed for the role, or one person for two
    roles. Safe to retry: an answer this run already recorded is not recorded twice, and a wave
    already cut over stays so."""
    from etl.core.database import core_engine
    from etl.cutover import ledger, waves

    roles = list(waves.wave_of(settings, wave).criteria.approvers)
    unknown = sorted(set(responses) - set(roles))
    if unknown or set(responses) != set(roles):
        raise ledger.LedgerError(
            f"the go/no-go of wave {wave} answered roles {sorted(responses)}, the plan asks "
            f"{roles}; nothing recorded (run {run_id})"
        )
    answers = {}
    for role in roles:
        response = responses[role] or {}
        user = response.get("responded_by_user") or {}
        approver = user.get("id")
        if not approver:
            raise ledger.LedgerError(
                f"the go/no-go of wave {wave} as {role} has no respondent (run {run_id}); "
                "nothing recorded"
            )
        chosen = list(response.get("chosen_options") or [])
        answers[role] = {
            "approver": approver,
            "decision": "approve" if chosen == [APPROVE] else "reject",
            "note": (response.get("params_input") or {}).get("note") or None,
        }
    with core_engine(settings.resolved_core_url).connect() as connection:
        recorded = {
            (a["role"], a["approver"], a["decision"])
            for a in ledger.approvals(connection, wave, current_only=True)
            if (a["run_id"], a["channel"]) == (run_id, CHANNEL)
        }
        state = ledger.wave_state(connection, wave)
    if state != ledger.CUT_OVER:
        for role, answer in answers.items():
            if (role, answer["approver"], answer["decision"]) not in recorded:
                waves.approve(
                    settings,
                    wave,
                    answer["approver"],
                    role,
                    answer["decision"],
                    CHANNEL,
                    run_id,
                    answer["note"],
                    data_docs=False,  # built once, below, after every answer is recorded
                )
    approved = all(a["decision"] == "approve" for a in answers.values())
    if approved and state != ledger.CUT_OVER:
        approvers = ", ".join(a["approver"] for a in answers.values())
        waves.cut_over(settings, wave, actor=approvers, run_id=run_id, data_docs=False)
    # Go or no-go, decided: the final deltas' Data Docs now, as the command line builds them
    # after its commit or rejection (again on a retry: only those still missing).
    waves.data_docs_after_decision(settings, wave)
    return {
        "wave": wave,
        "decision": "approve" if approved else "reject",
        "answers": {
            role: {"approver": a["approver"], "decision": a["decision"]}
            for role, a in answers.items()
        },
        "state": _state(settings, wave),
    }


# --- Answering from the command line, through Airflow's REST API as the signed-in user --------


def sign_in(client: httpx.Client, username: str, password: str) -> str:
    """A JWT for ``username`` from the api-server (SimpleAuthManager ``POST /auth/token``)."""
    from etl.cutover.ledger import LedgerError

    response = client.post("/auth/token", json={"username": username, "password": password})
    if response.status_code != 201:
        raise LedgerError(
            f"Airflow at {client.base_url} refused the sign-in of '{username}' "
            f"(HTTP {response.status_code}); nothing recorded"
        )
    token: str = response.json()["access_token"]
    return token


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail"))
    except ValueError:
        return str(response.text[:200])


def is_database_failure(status_code: int, body: object) -> bool:
    """Whether Airflow answered that its metadata database failed the request: HTTP 500 with
    ``{"detail": {"reason": "Database error", ...}}`` (Airflow 3.3's answer to any SQLAlchemy
    error), or 503 saying the database is locked (newer Airflow, apache/airflow#67900).

    On SQLite (``make airflow``, the demo) the api-server can lock itself out of the file for its
    busy timeout (etl/airflow_metadata.py): the request's transaction is rolled back, nothing of
    it is recorded, and the same request made again succeeds."""
    if status_code not in (500, 503) or not isinstance(body, dict):
        return False
    detail = body.get("detail")
    if isinstance(detail, dict):
        return detail.get("reason") == "Database error"
    return isinstance(detail, str) and "database is locked" in detail.lower()


def _body(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def answer_once_recorded(
    client: httpx.Client, path: str, answer: dict[str, Any], username: str
) -> httpx.Response:
    """``PATCH`` the go/no-go ``answer`` at ``path`` (a task's ``hitlDetails``), made again while
    Airflow fails it on its metadata database (``is_database_failure``), up to
    ``LOCKED_ATTEMPTS`` times in all. Any other answer (success, a refusal) is returned as it
    came; so is the last failure. If an attempt that failed was recorded after all, the next one
    gets 409 "already updated": then the task's recorded response, if it is this user's and this
    answer, is returned as the success it was (as Airflow's own 200 gives it)."""
    import time

    import httpx

    failed_before = False
    for attempt in range(1, LOCKED_ATTEMPTS + 1):
        response = client.patch(path, json=answer)
        if failed_before and response.status_code == 409:
            recorded = client.get(path)
            detail = _body(recorded) if recorded.status_code == 200 else None
            if (
                isinstance(detail, dict)
                and detail.get("response_received")
                and (detail.get("responded_by_user") or {}).get("id") == username
                and detail.get("chosen_options") == answer["chosen_options"]
            ):
                recorded_answer = {**detail, "responded_by": detail["responded_by_user"]}
                return httpx.Response(200, json=recorded_answer, request=response.request)
            return response
        if not is_database_failure(response.status_code, _body(response)):
            return response
        failed_before = True
        if attempt < LOCKED_ATTEMPTS:
            time.sleep(LOCKED_PAUSE_SECONDS)
    return response


def _waiting_task(
    client: httpx.Client, dag_id: str, task_id: str, role: str, username: str
) -> dict[str, Any] | None:
    """The task instance of the wave's run that waits for ``role``'s answer, or None when no run
    is under way. A run under way that does not ask for it yet is an error: recording the
    decision in the ledger then would race the run's own go/no-go."""
    from etl.cutover.ledger import LedgerError

    listed = client.get(
        f"{API}/dags/{dag_id}/dagRuns/~/hitlDetails",
        params={"task_id": task_id, "response_received": "false"},
    )
    if listed.status_code not in (200, 404):  # 404: Airflow does not know the DAG (yet)
        raise LedgerError(
            f"Airflow refused to list the go/no-go of {dag_id} for '{username}' "
            f"(HTTP {listed.status_code}: {_detail(listed)})"
        )
    details = listed.json()["hitl_details"] if listed.status_code == 200 else []
    waiting = [d["task_instance"] for d in details if d["task_instance"]["state"] in WAITING_STATES]
    if waiting:
        task: dict[str, Any] = waiting[0]
        return task
    running = client.get(f"{API}/dags/{dag_id}/dagRuns", params={"state": "running"})
    runs = running.json().get("dag_runs", []) if running.status_code == 200 else []
    if runs:
        raise LedgerError(
            f"Airflow run {runs[0]['dag_run_id']} of {dag_id} is in progress but not "
            f"waiting for the {role} go/no-go; answer when it asks (Required "
            "Actions, or this command again)"
        )
    return None


def _checked_answer(
    answered: httpx.Response, dag_id: str, role: str, username: str
) -> dict[str, Any]:
    """Airflow's record of the answer; an error saying why when it did not record it."""
    from etl.cutover.ledger import LedgerError

    if is_database_failure(answered.status_code, _body(answered)):
        raise LedgerError(
            f"Airflow's metadata database failed the {role} answer of '{username}' to {dag_id} "
            f"{LOCKED_ATTEMPTS} times (HTTP {answered.status_code}: {_detail(answered)}); nothing "
            "recorded. Answer again; on SQLite (make airflow) this is a lock that passes, and a "
            "production Airflow runs on PostgreSQL"
        )
    if answered.status_code != 200:
        raise LedgerError(
            f"Airflow refused the {role} answer of '{username}' to {dag_id} "
            f"(HTTP {answered.status_code}: {_detail(answered)})"
        )
    body: dict[str, Any] = answered.json()
    return body


def respond_to_waiting_run(
    settings: Settings,
    wave: str,
    decision: str,
    role: str,
    username: str,
    password: str,
    note: str | None = None,
) -> dict[str, Any]:
    """Sign in to Airflow as ``username`` and answer ``role``'s go/no-go of the wave's waiting
    cutover run with that user's own token; Airflow checks the user is assigned to it.

    Returns ``{"waiting": True, ...}`` with the run and Airflow's respondent, or
    ``{"waiting": False, "user": username}`` when no run waits: the user is then authenticated (the
    api-server accepted the password) and the caller records the decision in the ledger."""
    import httpx

    from etl.cutover import ledger, waves

    roles = waves.wave_of(settings, wave).criteria.approvers
    if role not in roles:
        raise ledger.LedgerError(
            f"role '{role}' does not approve wave {wave}; approvers: {', '.join(roles)}"
        )
    if decision not in {"approve", "reject"}:
        raise ledger.LedgerError(f"a decision is 'approve' or 'reject', not '{decision}'")
    dag_id, task_id = cutover_dag_id(wave), approval_task_id(role)
    try:
        with httpx.Client(base_url=settings.airflow_url.rstrip("/"), timeout=60) as client:
            client.headers["Authorization"] = f"Bearer {sign_in(client, username, password)}"
            task = _waiting_task(client, dag_id, task_id, role, username)
            if task is None:
                return {"waiting": False, "user": username}
            answered = answer_once_recorded(
                client,
                f"{API}/dags/{dag_id}/dagRuns/{task['dag_run_id']}/taskInstances/{task_id}/"
                f"{task['map_index']}/hitlDetails",
                {
                    "chosen_options": [APPROVE if decision == "approve" else REJECT],
                    "params_input": {"note": note or ""},
                },
                username,
            )
    except httpx.HTTPError as error:
        raise ledger.LedgerError(
            f"cannot reach Airflow's api-server at {settings.airflow_url} "
            f"({type(error).__name__}); set VARDFLYTT_AIRFLOW_URL"
        ) from error
    body = _checked_answer(answered, dag_id, role, username)
    return {
        "waiting": True,
        "dag_id": dag_id,
        "run_id": task["dag_run_id"],
        "role": role,
        "chosen_options": body["chosen_options"],
        "responded_by": body["responded_by"]["id"],
    }
