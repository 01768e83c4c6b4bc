"""A wave cut over through Airflow: ``vardflytt_cutover_<wave>`` and ``vardflytt_rollback`` run
with ``airflow dags test`` while a person answers the go/no-go from the command line.

``airflow dags test`` (Airflow 3.3) parks the human-in-the-loop task in ``awaiting_input`` and
waits until a response is recorded in its metadata database from outside. Here that response is
``vardflytt cutover approve``, run concurrently in its own process: it signs in to the module's
api-server as the approver (their generated password) and answers the waiting task through the
REST API with that token, as the Required Actions page does, so Airflow records who responded;
the DAG then writes the decision into the cutover ledger.

The plan holds one small wave (ELVIS only) and the mappings copy holds only ELVIS, so each
``dags test`` parses few DAGs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from etl.core.database import core_engine
from etl.cutover import ledger
from etl.cutover.airflow_hitl import CHANNEL, approval_task_id
from etl.cutover.plan import one_wave_plan
from etl.dag_names import cutover_dag_id
from etl.settings import PROJECT_ROOT
from tests.commands import VARDFLYTT, copy_migrated_airflow_db, run_vardflytt
from tests.core_fingerprint import core_fingerprint

pytestmark = pytest.mark.integration

WAVE = "t1"
SYSTEMS = ["elvis"]
AS_OF = "2026-07-01"


@pytest.fixture(scope="module")
def mappings(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mappings") / "mappings"
    folder.mkdir()
    for name in (*SYSTEMS, "crosswalks", "_archetypes"):
        shutil.copytree(PROJECT_ROOT / "mappings" / name, folder / name)
    plan = one_wave_plan(
        WAVE,
        SYSTEMS,
        {"project_lead": {"airflow_users": ["anna", "lena"]}},
        title="ELVIS test wave",
        site="SU",
        min_rehearsals=0,  # the rehearsal path is covered by test_waves.py
    )
    (folder / "waves.yaml").write_text(yaml.safe_dump(plan), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def home(tmp_path_factory, mappings, airflow_db_template) -> Path:
    """One project home, migrated Airflow metadata database and api-server for the module."""
    from etl.airflow_env import airflow_environment, api_server
    from etl.settings import Settings

    home = tmp_path_factory.mktemp("vardflytt_home")
    copy_migrated_airflow_db(airflow_db_template, home / "airflow")
    environment = airflow_environment(Settings(home=home, mappings_dir=mappings))
    with api_server(environment, home / "api-server.log") as url:
        os.environ["VARDFLYTT_AIRFLOW_URL"] = url  # for the approvers' commands
        try:
            yield home
        finally:
            del os.environ["VARDFLYTT_AIRFLOW_URL"]


def _vardflytt(home: Path, environment: dict[str, str], *arguments: str):
    return run_vardflytt(*arguments, home=home, environment=environment)


def _dags_test(home: Path, environment: dict[str, str], dag_id: str, conf: str):
    return _vardflytt(home, environment, "airflow", "dags", "test", dag_id, "--conf", conf)


def _awaiting_input(home: Path) -> bool:
    database = home / "airflow" / "airflow.db"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as connection:
        row = connection.execute(
            "SELECT count(*) FROM task_instance WHERE dag_id = ? AND task_id = ? "
            "AND state = 'awaiting_input'",
            (cutover_dag_id(WAVE), approval_task_id("project_lead")),
        ).fetchone()
    return row[0] > 0


def _final_run_answered(home: Path, environment: dict[str, str], user: str, *answer: str) -> str:
    """Run the final phase; when it asks for the go/no-go, ``user`` answers with
    ``cutover approve``, signed in with their own password."""
    from etl.airflow_env import airflow_password
    from etl.settings import Settings

    conf = json.dumps({"phase": "final", "as_of_date": AS_OF})
    run = subprocess.Popen(
        [VARDFLYTT, "airflow", "dags", "test", cutover_dag_id(WAVE), "--conf", conf],
        env={**os.environ, "VARDFLYTT_HOME": str(home), **environment},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not _awaiting_input(home):
            assert run.poll() is None, f"the run ended before asking:\n{run.stdout.read()[-4000:]}"
            assert time.monotonic() < deadline, "the run never asked for its go/no-go"
            time.sleep(0.05)  # a read-only query: well under a millisecond of CPU
        password = airflow_password(Settings(home=home), user)
        answered = _vardflytt(
            home,
            {**environment, "VARDFLYTT_AIRFLOW_PASSWORD": password},
            "cutover",
            "approve",
            WAVE,
            "--role",
            "project_lead",
            "--user",
            user,
            *answer,
        )
        output, _ = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 0, output[-4000:]
    assert "answered the project_lead go/no-go of Airflow run" in answered.stdout, answered.stdout
    return output


def _checksums(core_url: str) -> dict[str, str]:
    with core_engine(core_url).connect() as connection:
        return core_fingerprint(connection, systems=SYSTEMS)


def _ledger(core_url: str) -> tuple[str, list[dict], list[dict]]:
    with core_engine(core_url).connect() as connection:
        return (
            ledger.wave_state(connection, WAVE),
            ledger.transitions(connection, WAVE),
            ledger.approvals(connection, WAVE),
        )


def _reconciliation_methods(core_url: str) -> list[tuple[str, bool]]:
    """How each (system, entity) of the wave was reconciled, and whether it was reconciled."""
    from etl.core.tables import wave_reconciliation

    with core_engine(core_url).connect() as connection:
        rows = connection.execute(
            sa.select(wave_reconciliation.c.aggregates, wave_reconciliation.c.is_reconciled).where(
                wave_reconciliation.c.wave == WAVE
            )
        ).all()
    return [(json.loads(r.aggregates)["method"], bool(r.is_reconciled)) for r in rows]


def _respondents(home: Path) -> list[str]:
    with sqlite3.connect(home / "airflow" / "airflow.db") as connection:
        rows = connection.execute(
            "SELECT h.responded_by FROM hitl_detail h JOIN task_instance t ON t.id = h.ti_id "
            "WHERE t.dag_id = ? ORDER BY h.responded_at",
            (cutover_dag_id(WAVE),),
        ).fetchall()
    return [json.loads(r[0])["name"] for r in rows if r[0]]


def _data_docs_after(home: Path, history: list[dict], decided_at: dt.datetime) -> None:
    """Each batch of the last final delta: its summary, and Data Docs built after the decision
    (issue 15: they are left out of the freeze window), which the summary links."""
    decided = decided_at if decided_at.tzinfo else decided_at.replace(tzinfo=dt.UTC)
    final = [t for t in history if t["evidence"].get("phase") == "final"][-1]
    assert final["evidence"]["batches"]
    for batch in final["evidence"]["batches"].values():
        (summary,) = home.rglob(f"reports/validation/batches/{batch['batch_id']}/summary.json")
        index = summary.parent / "data_docs" / "index.html"
        assert index.is_file()
        assert json.loads(summary.read_text())["data_docs"] == "data_docs/index.html"
        built = dt.datetime.fromtimestamp(index.stat().st_mtime, dt.UTC)
        assert built >= decided - dt.timedelta(seconds=1)


def test_a_wave_is_cut_over_through_airflow_after_a_human_go_no_go_and_rolled_back(
    home, mappings, small_estate, tmp_path, core_url
):
    environment = {
        "VARDFLYTT_ESTATE_DIR": str(small_estate),
        "VARDFLYTT_MAPPINGS_DIR": str(mappings),
        "VARDFLYTT_CORE_URL": core_url,
        "VARDFLYTT_LANDING_DIR": str(tmp_path / "landing"),
    }
    before = _checksums(core_url)
    respondents_before = _respondents(home)
    # The home is the module's (both cores): the export of the other core's run is not this one's.
    shutil.rmtree(home / "export", ignore_errors=True)

    initial = json.dumps({"phase": "initial", "as_of_date": AS_OF})
    _dags_test(home, environment, cutover_dag_id(WAVE), initial)
    state, _, _ = _ledger(core_url)
    assert state == ledger.INITIAL_LOAD
    assert _checksums(core_url) != before
    # The reconciliation after the load compared the batch's hash aggregates with the core: the
    # source was not read a second time, and every entity added up.
    assert set(_reconciliation_methods(core_url)) == {("hash aggregates", True)}

    # No-go: the wave stays verified and the rejection is in the ledger, with who and why.
    _final_run_answered(home, environment, "lena", "--reject", "--note", "wait for Monday")
    state, history, approvals = _ledger(core_url)
    assert state == ledger.VERIFIED
    assert [t["to_state"] for t in history][-3:] == ["frozen", "final_delta", "verified"]
    rejection = approvals[-1]
    assert (rejection["approver"], rejection["decision"], rejection["channel"]) == (
        "lena",
        "reject",
        CHANNEL,
    )
    assert rejection["note"] == "wait for Monday" and rejection["run_id"] == history[-1]["run_id"]
    exported = home / "export" / "fhir" / WAVE
    assert not exported.exists()  # a rejected wave is not exported
    # The final delta's Data Docs were left out of the freeze window and built after the no-go.
    _data_docs_after(home, history, rejection["at"])

    # Go: the next final run skips the freeze (still frozen), verifies again and cuts over.
    _final_run_answered(home, environment, "anna")
    state, history, approvals = _ledger(core_url)
    assert state == ledger.CUT_OVER
    assert [t["to_state"] for t in history][-3:] == ["final_delta", "verified", "cut_over"]
    assert [t["to_state"] for t in history].count("frozen") == 1
    cut = history[-1]
    assert cut["actor"] == "anna" and cut["run_id"] == history[-2]["run_id"]
    approval = approvals[-1]
    assert (approval["approver"], approval["decision"], approval["channel"]) == (
        "anna",
        "approve",
        CHANNEL,
    )
    assert approval["run_id"] == cut["run_id"]
    _data_docs_after(home, history, cut["at"])  # after the commit
    # Airflow itself recorded who answered each go/no-go.
    assert _respondents(home)[len(respondents_before) :] == ["lena", "anna"]
    packs = {p.name.split("-manual")[0] for p in (home / "evidence" / WAVE).iterdir()}
    assert {"load", "go-no-go", "cutover"} <= packs
    # The DAG's last task before the lease goes: the cut-over wave as FHIR R4 NDJSON.
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["extension"]["wave"] == WAVE and manifest["extension"]["batches"]
    counts = {o["type"]: o["count"] for o in manifest["output"]}
    assert counts["Patient"] > 0
    patients = (exported / "Patient.ndjson").read_text().splitlines()
    assert len(patients) == counts["Patient"]

    rollback = json.dumps({"wave": WAVE})
    _dags_test(home, environment, "vardflytt_rollback", rollback)
    state, history, _ = _ledger(core_url)
    assert state == ledger.ROLLED_BACK
    assert history[-1]["evidence"]["checksum_equal_to_before_wave"] is True
    assert _checksums(core_url) == before
    with core_engine(core_url).connect() as connection:
        assert ledger.lock_holder(connection.engine, WAVE) is None
