"""A go/no-go waiting in a real Airflow, as the wave page shows it: who may answer, since when,
where to answer; the approvers' notes beside it; and the evidence pack it links to.

Airflow itself writes the waiting request: a one-task DAG with the cutover DAG's id and its
go/no-go task (``go_no_go_<role>``, a ``HITLOperator`` assigned to the plan's users) runs with
``airflow dags test`` against a metadata database ``airflow db migrate`` made, and parks in
``awaiting_input`` as the real final run does (tests/integration/test_cutover_dag.py runs that
one end to end). The dashboard then reads the same database.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from fastapi.testclient import TestClient

from etl.airflow_main import AIRFLOW_COMMAND
from etl.core.database import core_engine
from etl.core.tables import access_log
from etl.cutover import ledger
from etl.cutover.airflow_hitl import approval_task_id, evidence_links
from etl.cutover.evidence import write_pack
from etl.cutover.plan import one_wave_plan
from etl.cutover.waiting import AirflowUnreadable, waiting_go_no_go
from etl.dag_names import cutover_dag_id
from etl.dashboard.app import create_app
from etl.dashboard.auth import DashboardUser, Role, TokenAuthenticator, token_digest
from etl.settings import PROJECT_ROOT, Settings
from tests.commands import copy_migrated_airflow_db

pytestmark = pytest.mark.integration

WAVE = "t1"
ROLE = "project_lead"
APPROVERS = ["anna", "lena"]
LEAD, LEAD_TOKEN = "lead.lars", "lead-token-0123456789abcdef"
# A note as a person might type it: a personnummer, markup and a Markdown link.
NOTE = "Patient 19121212-1212 <script>alert(1)</script> see [x](javascript:alert(1))"

GO_NO_GO_DAG = textwrap.dedent(
    f'''
    """The cutover DAG's go/no-go task alone, assigned as the plan assigns it."""
    import datetime as dt

    from airflow.providers.standard.operators.hitl import HITLOperator
    from airflow.sdk import dag
    from airflow.sdk.execution_time.hitl import HITLUser


    @dag(dag_id="{cutover_dag_id(WAVE)}", schedule=None, start_date=dt.datetime(2026, 1, 1))
    def go_no_go():
        HITLOperator(
            task_id="{approval_task_id(ROLE)}",
            subject="Go/no-go as {ROLE}: cut over wave {WAVE}?",
            body="verified",
            options=["Approve", "Reject"],
            assigned_users=[HITLUser(id=u, name=u) for u in {APPROVERS!r}],
        )


    go_no_go()
    '''
)


@pytest.fixture
def settings(sqlite_core, settings_for, tmp_path) -> Settings:
    mappings = tmp_path / "mappings"
    shutil.copytree(PROJECT_ROOT / "mappings" / "elvis", mappings / "elvis")
    plan = one_wave_plan(WAVE, ["elvis"], {ROLE: {"airflow_users": APPROVERS}})
    (mappings / "waves.yaml").write_text(yaml.safe_dump(plan), encoding="utf-8")
    return settings_for(
        core_url=sqlite_core(tmp_path),
        mappings_dir=mappings,
        airflow_url="http://airflow.test:8080",
        dashboard_url="http://dashboard.test:8765",
    )


def _client(settings: Settings) -> TestClient:
    users = [DashboardUser(LEAD, Role.LEAD, token_digest(LEAD_TOKEN))]
    secret = b"a test secret of enough length"
    return TestClient(
        create_app(settings, authenticator=lambda _s: TokenAuthenticator(users, secret))
    )


def _page(settings: Settings, path: str) -> str:
    response = _client(settings).get(path, headers={"Authorization": f"Bearer {LEAD_TOKEN}"})
    assert response.status_code == 200, response.text[-2000:]
    return response.text


def _table(page: str, table_id: str) -> str:
    found = re.search(rf'<table id="{table_id}">(.*?)</table>', page, re.S)
    assert found, f"no table {table_id}"
    return found.group(1)


def _field(row_html: str, field: str) -> str:
    cell = re.search(rf'data-field="{field}"[^>]*>(.*?)</(?:td|a)>', row_html, re.S)
    assert cell, f"no {field}"
    return html.unescape(re.sub(r"<[^>]+>", "", cell.group(1))).strip()


def _waiting_task_ids(database: Path) -> set[str]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as connection:
        rows = connection.execute(
            "SELECT task_id FROM task_instance WHERE dag_id = ? AND state = 'awaiting_input'",
            (cutover_dag_id(WAVE),),
        ).fetchall()
    return {row[0] for row in rows}


def _record_rejection(settings: Settings) -> None:
    with core_engine(settings.resolved_core_url).begin() as connection:
        ledger.transition(connection, WAVE, ledger.INITIAL_LOAD, "ivar", "run-1")
        ledger.record_approval(
            connection, WAVE, ROLE, "lena", "reject", "airflow_hitl", "run-1", NOTE
        )


def test_a_waiting_go_no_go_is_read_from_airflow_and_shown_with_the_notes(
    settings, tmp_path, airflow_db_template
):
    from etl.airflow_env import airflow_environment

    _record_rejection(settings)
    # Before Airflow ever ran here: the page says it cannot tell, not that nothing waits.
    with pytest.raises(AirflowUnreadable, match="no Airflow metadata database"):
        waiting_go_no_go(settings, WAVE, {ROLE: APPROVERS})
    page = _page(settings, f"/waves/{WAVE}")
    assert 'id="go-no-go-unreadable"' in page and "Airflow unreachable" in page
    assert 'id="go-no-go-none"' not in page

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "go_no_go.py").write_text(GO_NO_GO_DAG, encoding="utf-8")
    environment = airflow_environment(settings) | {"AIRFLOW__CORE__DAGS_FOLDER": str(dags)}
    environment.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
    copy_migrated_airflow_db(airflow_db_template, settings.airflow_home)
    database = settings.airflow_home / "airflow.db"
    assert waiting_go_no_go(settings, WAVE, {ROLE: APPROVERS}) == []  # migrated, nothing asked
    assert 'id="go-no-go-none"' in _page(settings, f"/waves/{WAVE}")

    asked_after = time.time()
    run = subprocess.Popen(
        [*AIRFLOW_COMMAND, "dags", "test", cutover_dag_id(WAVE)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: stopped as one below
    )
    try:
        deadline = time.monotonic() + 300
        while approval_task_id(ROLE) not in _waiting_task_ids(database):
            assert run.poll() is None, f"the run ended before asking:\n{run.stdout.read()[-4000:]}"
            assert time.monotonic() < deadline, "the run never asked for its go/no-go"
            time.sleep(0.2)

        (waiting,) = waiting_go_no_go(settings, WAVE, {ROLE: APPROVERS})
        assert (waiting.role, waiting.task_id, waiting.state) == (
            ROLE,
            approval_task_id(ROLE),
            "awaiting_input",
        )
        assert waiting.airflow_users == tuple(APPROVERS) and waiting.is_as_planned
        assert asked_after - 5 <= waiting.waiting_since.timestamp() <= time.time()
        assert waiting.url.startswith(f"http://airflow.test:8080/dags/{cutover_dag_id(WAVE)}/runs/")
        assert waiting.url.endswith(
            f"/tasks/{approval_task_id(ROLE)}/required_actions?map_index=-1"
        )
        assert ":" not in waiting.url.split("/runs/")[1].split("/")[0]  # the run id is quoted

        page = _page(settings, f"/waves/{WAVE}")
        row = re.search(rf'<tr data-role="{ROLE}">(.*?)</tr>', _table(page, "go-no-go-waiting"))
        assert row, "the waiting role is not listed"
        assert _field(row.group(1), "answerers") == "anna, lena"
        assert _field(row.group(1), "since") == waiting.waiting_since.strftime("%Y-%m-%d %H:%M UTC")
        assert f'href="{html.escape(waiting.url)}"' in row.group(1)
        assert 'href="http://airflow.test:8080/required_actions?response_received=false"' in page
        assert "Airflow unreachable" not in page
    finally:
        # SIGKILL at once: `dags test` parked on a go/no-go does not end on SIGTERM (it waited
        # out a 30 s timeout every run), and this throwaway home needs no clean shutdown.
        os.killpg(run.pid, signal.SIGKILL)
        run.communicate(timeout=30)

    # The rejection's note, on the page and in the evidence the go/no-go request links to:
    # escaped, and without the identity number.
    approvals = _table(page, "approvals")
    note = _field(approvals, "note")
    assert "19121212" not in page and "1212-1212" not in page
    assert note.startswith("Patient [identity number withheld] <script>")
    assert "<script>" not in approvals and "&lt;script&gt;" in approvals

    label = "go-no-go-run_1"
    write_pack(settings, WAVE, label)
    links = evidence_links(settings, WAVE, label)
    assert links["page"] == f"http://dashboard.test:8765/waves/{WAVE}/evidence/{label}/evidence.md"
    evidence = _page(settings, links["page"].removeprefix("http://dashboard.test:8765"))
    text = html.unescape(re.search(r'<pre id="evidence-md">(.*?)</pre>', evidence, re.S).group(1))
    assert "reject by lena via airflow\\_hitl; note: Patient \\[identity number withheld\\]" in text
    assert "&lt;script&gt;" in text and "<script>" not in text  # inert in any Markdown viewer
    assert "\\[x\\]\\(javascript\\:alert\\(1\\)\\)" in text
    assert "19121212" not in evidence
    assert f'href="/waves/{WAVE}/evidence/{label}"' in evidence  # the zip
    # Behind the sign-in like every page, and on record as a view of the evidence.
    stranger = _client(settings).get(f"/waves/{WAVE}/evidence/{label}/evidence.md")
    assert stranger.status_code == 401 and "Patient" not in stranger.text
    with core_engine(settings.resolved_core_url).connect() as connection:
        views = connection.execute(
            sa.select(access_log.c.user_name, access_log.c.detail).where(
                access_log.c.action == "dashboard_evidence_view"
            )
        ).all()
    assert [(v.user_name, json.loads(v.detail)["pack"]) for v in views] == [(LEAD, label)]
