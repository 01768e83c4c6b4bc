"""Approvers are identities, not text (issue 11, point 1).

The plan names, per role, the accounts that may approve; a role naming nobody, or two roles naming
the same people, is refused at load. The ledger refuses an approver not listed for the role and
one person answering for two roles of a wave. Through Airflow (a real api-server, SimpleAuthManager,
SQLite metadata database in a temporary home): each role's go/no-go task is assigned to its users,
so another user's token is refused with 403; the command line signs in with the user's own
password and answers with that token; a wrong password signs nobody in.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from etl.airflow_main import AIRFLOW_COMMAND
from etl.core.database import core_engine
from etl.cutover import airflow_hitl, ledger, waves
from etl.cutover.plan import PlanError, load_plan, one_wave_plan
from etl.dag_names import cutover_dag_id
from etl.settings import PROJECT_ROOT, Settings
from tests.commands import copy_migrated_airflow_db, invoke
from tests.cores import BOTH_CORES

WAVE = "t1"
SYSTEMS = ["elvis"]
AS_OF = "2026-07-01"
VARDFLYTT = str(Path(sys.executable).with_name("vardflytt"))
# anna leads; bo or anna (a deputy) may answer as medical safety officer: the lists differ, so
# the plan is valid, and only the ledger stops anna from answering for both roles.
APPROVERS = {
    "project_lead": {"airflow_users": ["anna"]},
    "medical_safety_officer": {"airflow_users": ["bo", "anna"]},
}


def _plan(approvers: dict, min_rehearsals: int = 0) -> dict:
    return one_wave_plan(
        WAVE, SYSTEMS, approvers, title="ELVIS test wave", min_rehearsals=min_rehearsals
    )


def _mappings(folder: Path, approvers: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in (*SYSTEMS, "crosswalks", "_archetypes"):
        if not (folder / name).exists():
            shutil.copytree(PROJECT_ROOT / "mappings" / name, folder / name)
    (folder / "waves.yaml").write_text(
        yaml.safe_dump(_plan(approvers), sort_keys=False), encoding="utf-8"
    )
    return folder


# --- The plan -----------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("approvers", "fragment"),
    [
        pytest.param(["project_lead"], "a bare list of role names", id="free-text-role-list"),
        pytest.param({}, "approvers", id="no-role"),
        pytest.param({"project_lead": {}}, "role 'project_lead' names no account", id="empty-role"),
        pytest.param(
            {"project_lead": {"dashboard_users": ["anna"]}, "cmio": {"airflow_users": ["bo"]}},
            "role 'project_lead' names no account",
            id="no-airflow-users",
        ),
        pytest.param(
            {
                "project_lead": {"airflow_users": ["anna", "bo"]},
                "cmio": {"airflow_users": ["bo", "anna"]},
            },
            "roles 'cmio' and 'project_lead' have the same airflow_users",
            id="duplicate-role-list",
        ),
        pytest.param(
            {
                "project_lead": {"airflow_users": ["anna"]},
                "cmio": {"dashboard_users": ["anna"], "airflow_users": ["bo"]},
                "dpo": {"dashboard_users": ["anna"], "airflow_users": ["cy"]},
            },
            "roles 'cmio' and 'dpo' have the same dashboard_users",
            id="duplicate-dashboard-list",
        ),
        pytest.param(
            {"project_lead": {"airflow_users": ["anna:ADMIN"]}},
            "airflow_users",
            id="account-that-smuggles-an-airflow-role",
        ),
        pytest.param(
            {"project_lead": {"airflow_groups": ["leads"]}},
            "airflow_groups is not supported",
            id="airflow-group",
        ),
        pytest.param(
            {"project_lead": {"airflow_users": ["anna"], "ldap_users": ["anna"]}},
            "ldap_users",
            id="unknown-account-kind",
        ),
        pytest.param(
            {"Project Lead": {"airflow_users": ["anna"]}}, "approvers", id="role-not-a-task-id"
        ),
    ],
)
def test_a_plan_without_named_distinct_approvers_is_refused_naming_wave_and_roles(
    tmp_path, approvers, fragment
):
    folder = _mappings(tmp_path / "mappings", approvers)
    with pytest.raises(PlanError) as refused:
        load_plan(folder)
    message = str(refused.value)
    assert "waves.yaml" in message and fragment in message
    if "role" in fragment:
        assert f"wave '{WAVE}'" in message


@pytest.mark.unit
def test_the_demo_plan_names_two_distinct_people_for_wave_one():
    plan = load_plan(PROJECT_ROOT / "mappings")
    roles = plan.wave("w1_skaraborg").criteria.approvers
    assert len(roles) == 2
    people = [set(accounts.airflow_users) for accounts in roles.values()]
    assert all(people) and not set.intersection(*people)
    for wave in plan.waves:
        assert all(a.airflow_users for a in wave.criteria.approvers.values()), wave.wave


# --- The ledger ---------------------------------------------------------------------------


@pytest.fixture(params=BOTH_CORES)
def verified(request, settings_for, tmp_path) -> Settings:
    """A wave walked to verified in a fresh core (SQLite or PostgreSQL)."""
    core_url = (
        f"sqlite:///{tmp_path / 'core.sqlite'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    settings = settings_for(
        core_url=core_url, mappings_dir=_mappings(tmp_path / "mappings", APPROVERS)
    )
    _walk_to_verified(settings)
    return settings


def _walk_to_verified(settings: Settings) -> None:
    """The ledger of a verified wave, with the reviewed plan its first load records."""
    with core_engine(settings.resolved_core_url).begin() as connection:
        plan = waves.plan_fingerprint(settings, WAVE)
        ledger.record_plan(connection, WAVE, plan.digest, plan.files, "initial_load", "ivar")
        for state in (ledger.INITIAL_LOAD, ledger.FROZEN, ledger.FINAL_DELTA, ledger.VERIFIED):
            ledger.transition(connection, WAVE, state, "ivar")


def _approvals(settings: Settings) -> list[tuple]:
    with core_engine(settings.resolved_core_url).connect() as connection:
        return [
            (a["role"], a["approver"], a["decision"])
            for a in ledger.approvals(connection, WAVE, current_only=True)
        ]


@pytest.mark.integration
def test_the_ledger_refuses_an_approver_not_listed_for_the_role(verified):
    for approver, role in [("mallory", "project_lead"), ("bo", "project_lead")]:
        with pytest.raises(ledger.LedgerError, match=f"'{approver}' is not listed"):
            waves.approve(verified, WAVE, approver, role, "approve", "cli")
    # Listed for Airflow is not listed for the dashboard.
    with pytest.raises(ledger.LedgerError, match="through dashboard"):
        waves.approve(verified, WAVE, "anna", "project_lead", "approve", "dashboard")
    with pytest.raises(ledger.LedgerError, match="does not approve wave"):
        waves.approve(verified, WAVE, "anna", "janitor", "approve", "cli")
    assert _approvals(verified) == []


@pytest.mark.integration
def test_one_person_cannot_fill_two_roles_of_a_wave(verified):
    waves.approve(verified, WAVE, "anna", "project_lead", "approve", "cli")
    with pytest.raises(ledger.LedgerError, match="distinct roles need distinct people"):
        waves.approve(verified, WAVE, "anna", "medical_safety_officer", "approve", "cli")
    with pytest.raises(ledger.LedgerError, match="no current approval from medical_safety_officer"):
        waves.cut_over(verified, WAVE)
    # Approvals written around waves.approve are checked again at cutover.
    with core_engine(verified.resolved_core_url).begin() as connection:
        ledger.record_approval(connection, WAVE, "medical_safety_officer", "anna", "approve", "cli")
    with pytest.raises(ledger.LedgerError, match="distinct roles need distinct people"):
        waves.cut_over(verified, WAVE)
    waves.approve(verified, WAVE, "bo", "medical_safety_officer", "approve", "cli")
    waves.cut_over(verified, WAVE)
    assert sorted(_approvals(verified)) == [
        ("medical_safety_officer", "bo", "approve"),
        ("project_lead", "anna", "approve"),
    ]


@pytest.mark.integration
def test_the_go_no_go_records_airflow_respondents_and_refuses_one_person_for_both(verified):
    def answer(user: str, option: str = airflow_hitl.APPROVE) -> dict:
        return {
            "chosen_options": [option],
            "params_input": {"note": ""},
            "responded_by_user": {"id": user, "name": user},
        }

    with pytest.raises(ledger.LedgerError, match="distinct roles need distinct people"):
        airflow_hitl.record_decision(
            verified,
            WAVE,
            {"project_lead": answer("anna"), "medical_safety_officer": answer("anna")},
            "run-1",
        )
    with pytest.raises(ledger.LedgerError, match="the plan asks"):
        airflow_hitl.record_decision(verified, WAVE, {"project_lead": answer("anna")}, "run-2")
    result = airflow_hitl.record_decision(
        verified,
        WAVE,
        {"project_lead": answer("anna"), "medical_safety_officer": answer("bo")},
        "run-3",
    )
    assert result["state"] == ledger.CUT_OVER
    assert result["answers"] == {
        "project_lead": {"approver": "anna", "decision": "approve"},
        "medical_safety_officer": {"approver": "bo", "decision": "approve"},
    }


@pytest.mark.integration
def test_approve_has_no_free_by_option(verified):
    from etl.cli import app

    result = CliRunner().invoke(
        app, ["cutover", "approve", WAVE, "--role", "project_lead", "--by", "anna"]
    )
    assert result.exit_code != 0 and "No such option" in result.output
    assert _approvals(verified) == []


# --- Airflow users and passwords ----------------------------------------------------------


@pytest.mark.unit
def test_airflow_users_come_from_the_plan_with_generated_owner_only_passwords(tmp_path):
    from etl.airflow_env import airflow_environment, passwords_file

    settings = Settings(home=tmp_path / "home", mappings_dir=_mappings(tmp_path / "m", APPROVERS))
    environment = airflow_environment(settings)
    assert environment["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == (
        "admin:ADMIN,anna:USER,bo:USER"
    )
    assert environment["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"
    path = passwords_file(settings)
    assert environment["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    passwords = json.loads(path.read_text())
    assert set(passwords) == {"admin", "anna", "bo"}
    assert len(set(passwords.values())) == 3 and all(len(p) >= 20 for p in passwords.values())
    # Kept when present; a widened file is narrowed again.
    path.chmod(0o644)
    airflow_environment(settings)
    assert json.loads(path.read_text()) == passwords
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --- Through a real Airflow api-server ----------------------------------------------------


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, small_estate, airflow_db_template):
    """One project home, migrated Airflow metadata database and api-server for the module."""
    from etl.airflow_env import airflow_environment, api_server

    root = tmp_path_factory.mktemp("approvers")
    settings = Settings(
        home=root / "home",
        mappings_dir=_mappings(root / "mappings", APPROVERS),
        estate_dir=small_estate,
        landing_dir=root / "landing",
        core_url=f"sqlite:///{root / 'core.sqlite'}",
    )
    environment = airflow_environment(settings)
    copy_migrated_airflow_db(airflow_db_template, settings.airflow_home)
    with api_server(environment, root / "api-server.log") as url:
        yield settings.model_copy(update={"airflow_url": url}), environment


def _password(settings: Settings, user: str) -> str:
    from etl.airflow_env import airflow_password

    return airflow_password(settings, user)


def _token(settings: Settings, user: str, password: str | None = None) -> httpx.Response:
    return httpx.post(
        f"{settings.airflow_url}/auth/token",
        json={"username": user, "password": password or _password(settings, user)},
    )


def _waiting(settings: Settings) -> set[str]:
    with sqlite3.connect(
        f"file:{settings.airflow_home / 'airflow.db'}?mode=ro", uri=True, timeout=30
    ) as connection:
        rows = connection.execute(
            "SELECT task_id FROM task_instance WHERE dag_id = ? AND state = 'awaiting_input'",
            (cutover_dag_id(WAVE),),
        ).fetchall()
    return {row[0] for row in rows}


def _patch(settings: Settings, user: str, role: str, run_id: str) -> httpx.Response:
    """``user``'s answer for ``role`` over REST, sent as ``vardflytt cutover approve`` sends it:
    again while Airflow's SQLite metadata database fails it (``answer_once_recorded``)."""
    token = _token(settings, user).json()["access_token"]
    with httpx.Client(
        base_url=settings.airflow_url, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        return airflow_hitl.answer_once_recorded(
            client,
            f"/api/v2/dags/{cutover_dag_id(WAVE)}/dagRuns/{run_id}/taskInstances/"
            f"{airflow_hitl.approval_task_id(role)}/-1/hitlDetails",
            {"chosen_options": [airflow_hitl.APPROVE], "params_input": {"note": ""}},
            user,
        )


def _run_id(settings: Settings) -> str:
    with sqlite3.connect(settings.airflow_home / "airflow.db", timeout=30) as connection:
        return connection.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = ? AND state = 'running'",
            (cutover_dag_id(WAVE),),
        ).fetchone()[0]


def _dags_test(environment: dict, phase: str) -> subprocess.Popen:
    conf = json.dumps({"phase": phase, "as_of_date": AS_OF})
    return subprocess.Popen(
        [*AIRFLOW_COMMAND, "dags", "test", cutover_dag_id(WAVE), "--conf", conf],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _until_asked(settings: Settings, run: subprocess.Popen, task_id: str) -> None:
    deadline = time.monotonic() + 300
    while task_id not in _waiting(settings):
        assert run.poll() is None, f"the run ended before asking:\n{run.stdout.read()[-4000:]}"
        assert time.monotonic() < deadline, f"the run never asked {task_id}"
        time.sleep(0.05)  # a read-only query: well under a millisecond of CPU


def _approve_cli(settings: Settings, role: str, user: str, password: str):
    environment = {
        **os.environ,
        "VARDFLYTT_HOME": str(settings.home),
        "VARDFLYTT_MAPPINGS_DIR": str(settings.mappings_dir),
        "VARDFLYTT_CORE_URL": settings.resolved_core_url,
        "VARDFLYTT_AIRFLOW_URL": settings.airflow_url,
        "VARDFLYTT_AIRFLOW_PASSWORD": password,
    }
    return subprocess.run(
        [VARDFLYTT, "cutover", "approve", WAVE, "--role", role, "--user", user],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _ledger(settings: Settings):
    with core_engine(settings.resolved_core_url).connect() as connection:
        return (
            ledger.wave_state(connection, WAVE),
            ledger.approvals(connection, WAVE, current_only=True),
        )


@pytest.mark.integration
def test_a_wrong_password_signs_nobody_in(airflow):
    settings, _ = airflow
    assert _token(settings, "anna").status_code == 201
    assert _token(settings, "anna", "not-her-password").status_code == 401
    assert _token(settings, "mallory", "anything").status_code == 401
    refused = _approve_cli(settings, "project_lead", "anna", "not-her-password")
    assert refused.returncode == 6  # refused by the cutover ledger
    assert "refused the sign-in of 'anna' (HTTP 401)" in refused.stdout
    assert "not-her-password" not in refused.stdout + refused.stderr


@pytest.mark.integration
def test_with_no_run_waiting_the_command_line_records_the_signed_in_user(airflow, tmp_path):
    settings, _ = airflow
    core = Settings(  # a core of its own (model_copy would keep the cached core URL)
        home=settings.home,
        mappings_dir=settings.mappings_dir,
        core_url=f"sqlite:///{tmp_path / 'core.sqlite'}",
        airflow_url=settings.airflow_url,
    )
    _walk_to_verified(core)

    unlisted = _approve_cli(core, "project_lead", "bo", _password(core, "bo"))
    assert unlisted.returncode == 6 and "'bo' is not listed" in unlisted.stdout
    answered = _approve_cli(core, "project_lead", "anna", _password(core, "anna"))
    assert answered.returncode == 0, answered.stdout + answered.stderr
    assert "recorded for t1 by anna (signed in to Airflow)" in answered.stdout
    twice = _approve_cli(core, "medical_safety_officer", "anna", _password(core, "anna"))
    assert twice.returncode == 6 and "distinct roles need distinct people" in twice.stdout
    state, approvals = _ledger(core)
    assert state == ledger.VERIFIED
    assert [(a["role"], a["approver"], a["channel"]) for a in approvals] == [
        ("project_lead", "anna", "cli")
    ]


@pytest.mark.integration
def test_only_the_assigned_people_answer_and_one_person_cannot_fill_both_roles(airflow):
    settings, environment = airflow
    # The wave's initial load, which the final runs build on: `vardflytt cutover load`, in this
    # process (the load the DAG's initial phase runs, waves.load_wave; an `airflow dags test` of
    # that phase cost ~7 CPU s). The go/no-go under test is in the final runs, through Airflow.
    project = {name: value for name, value in environment.items() if name.startswith("VARDFLYTT_")}
    invoke("cutover", "load", WAVE, "--phase", "initial", "--as-of", AS_OF, env=project)

    # First final run: anna answers for both roles (she is assigned to both, as a deputy).
    run = _dags_test(environment, "final")
    try:
        _until_asked(settings, run, "go_no_go_project_lead")
        run_id = _run_id(settings)
        # bo is not assigned to the project lead's task; nor is the administrator.
        wrong = _patch(settings, "bo", "project_lead", run_id)
        assert wrong.status_code == 403, wrong.text
        assert "is not a respondent" in wrong.text
        assert _patch(settings, "admin", "project_lead", run_id).status_code == 403
        answered = _approve_cli(settings, "project_lead", "anna", _password(settings, "anna"))
        assert answered.returncode == 0, answered.stdout + answered.stderr
        assert "answered the project_lead go/no-go" in answered.stdout
        _until_asked(settings, run, "go_no_go_medical_safety_officer")
        answered = _approve_cli(
            settings, "medical_safety_officer", "anna", _password(settings, "anna")
        )
        assert answered.returncode == 0, answered.stdout + answered.stderr
        output, _ = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode != 0  # record_decision refused: distinct roles need distinct people
    assert "distinct roles need distinct people" in output
    state, approvals = _ledger(settings)
    assert state == ledger.VERIFIED
    assert [a["approver"] for a in approvals] == ["anna"]  # for one role only

    # Second final run: anna and bo, each signed in with their own password: the wave cuts over.
    run = _dags_test(environment, "final")
    try:
        for role, user in [("project_lead", "anna"), ("medical_safety_officer", "bo")]:
            _until_asked(settings, run, airflow_hitl.approval_task_id(role))
            answered = _approve_cli(settings, role, user, _password(settings, user))
            assert answered.returncode == 0, answered.stdout + answered.stderr
            assert f"by {user}" in answered.stdout
        output, _ = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 0, output[-4000:]
    state, approvals = _ledger(settings)
    assert state == ledger.CUT_OVER
    assert sorted((a["role"], a["approver"], a["channel"]) for a in approvals) == [
        ("medical_safety_officer", "bo", airflow_hitl.CHANNEL),
        ("project_lead", "anna", airflow_hitl.CHANNEL),
    ]


@pytest.mark.unit
def test_check_mappings_refuses_two_roles_with_the_same_people(tmp_path, monkeypatch):
    from etl.cli import app

    same = {"project_lead": {"airflow_users": ["anna"]}, "cmio": {"airflow_users": ["anna"]}}
    monkeypatch.setenv("VARDFLYTT_MAPPINGS_DIR", str(_mappings(tmp_path / "mappings", same)))
    result = CliRunner().invoke(app, ["check-mappings"])
    assert result.exit_code == 1
    assert "distinct roles need distinct people" in " ".join(result.output.split())
