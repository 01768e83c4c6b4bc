"""What the cutover DAG's go/no-go tasks call (etl.cutover.airflow_hitl), on a real core ledger
without Airflow: the recorded decision, retries, the freeze on a re-run, and the command line
when Airflow cannot sign anyone in."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from etl.core.database import core_engine
from etl.cutover import airflow_hitl, ledger, waves
from etl.cutover.plan import one_wave_plan
from etl.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

WAVE = "t1"
RUN = "manual__2027-01-10T08:00:00+00:00"


@pytest.fixture
def settings(sqlite_core, settings_for, tmp_path):
    mappings = tmp_path / "mappings"
    shutil.copytree(PROJECT_ROOT / "mappings" / "elvis", mappings / "elvis")
    plan = one_wave_plan(WAVE, ["elvis"], {"project_lead": {"airflow_users": ["anna", "lena"]}})
    (mappings / "waves.yaml").write_text(yaml.safe_dump(plan), encoding="utf-8")
    return settings_for(core_url=sqlite_core(tmp_path), mappings_dir=mappings)


def _walk(settings, *states: str) -> None:
    with core_engine(settings.resolved_core_url).begin() as connection:
        if ledger.current_plan(connection, WAVE) is None:  # as the first load records it
            plan = waves.plan_fingerprint(settings, WAVE)
            ledger.record_plan(connection, WAVE, plan.digest, plan.files, "initial_load", "ivar")
        for state in states:
            ledger.transition(connection, WAVE, state, "ivar", RUN)


def _ledger(settings):
    with core_engine(settings.resolved_core_url).connect() as connection:
        return (
            ledger.wave_state(connection, WAVE),
            ledger.transitions(connection, WAVE),
            ledger.approvals(connection, WAVE),
        )


def _response(option: str, name: str | None = "anna", note: str | None = None) -> dict:
    """The approval tasks' results, by role, as the DAG hands them to record_decision (a note
    left empty in Airflow's form arrives as null: the Param is optional)."""
    return {
        "project_lead": {
            "chosen_options": [option],
            "params_input": {"note": note},
            "responded_by_user": {"id": name, "name": name} if name else None,
        }
    }


def test_the_decision_is_recorded_once_and_an_approval_cuts_over(settings):
    _walk(settings, ledger.INITIAL_LOAD, ledger.FROZEN, ledger.FINAL_DELTA, ledger.VERIFIED)

    rejected = _response(airflow_hitl.REJECT, "lena", "wait for Monday")
    for _attempt in range(2):  # a retried task records nothing twice
        result = airflow_hitl.record_decision(settings, WAVE, rejected, RUN)
        assert result["decision"] == "reject" and result["state"] == ledger.VERIFIED
    state, _, approvals = _ledger(settings)
    assert state == ledger.VERIFIED
    assert [(a["approver"], a["decision"], a["channel"], a["note"]) for a in approvals] == [
        ("lena", "reject", "airflow_hitl", "wait for Monday")
    ]

    for _attempt in range(2):
        result = airflow_hitl.record_decision(settings, WAVE, _response(airflow_hitl.APPROVE), RUN)
        assert result == {
            "wave": WAVE,
            "decision": "approve",
            "answers": {"project_lead": {"approver": "anna", "decision": "approve"}},
            "state": ledger.CUT_OVER,
        }
    state, history, approvals = _ledger(settings)
    assert [t["to_state"] for t in history].count(ledger.CUT_OVER) == 1
    assert (history[-1]["actor"], history[-1]["run_id"]) == ("anna", RUN)
    assert [(a["approver"], a["decision"], a["is_current"]) for a in approvals] == [
        ("lena", "reject", False),
        ("anna", "approve", True),
    ]
    assert approvals[-1]["note"] is None  # left empty


def test_a_response_without_a_respondent_records_nothing(settings):
    _walk(settings, ledger.INITIAL_LOAD, ledger.FROZEN, ledger.FINAL_DELTA, ledger.VERIFIED)
    with pytest.raises(ledger.LedgerError, match="no respondent"):
        airflow_hitl.record_decision(settings, WAVE, _response(airflow_hitl.APPROVE, None), RUN)
    assert _ledger(settings)[2] == []


def test_a_final_run_after_a_rejection_finds_the_wave_still_frozen(settings):
    _walk(settings, ledger.INITIAL_LOAD)
    assert airflow_hitl.freeze_unless_frozen(settings, WAVE, "ivar", RUN)["already_frozen"] is False
    assert airflow_hitl.freeze_unless_frozen(settings, WAVE, "ivar", RUN)["already_frozen"] is True
    _walk(settings, ledger.FINAL_DELTA, ledger.VERIFIED)
    assert airflow_hitl.freeze_unless_frozen(settings, WAVE, "ivar", RUN) == {
        "wave": WAVE,
        "state": ledger.VERIFIED,
        "already_frozen": True,
    }
    assert [t["to_state"] for t in _ledger(settings)[1]].count(ledger.FROZEN) == 1


def test_the_approval_request_lists_every_criterion_and_links_the_pack_in_the_dashboard(settings):
    links = airflow_hitl.evidence_links(settings, WAVE, "go-no-go-manual__2027_x")
    body = airflow_hitl.approval_body(
        WAVE,
        "test wave",
        [
            {"criterion": "every system loaded", "passed": True, "detail": "1 systems"},
            {"criterion": "reconciliation exact", "passed": False, "detail": "mismatch: x/y"},
        ],
        links,
    )
    assert "- PASS every system loaded: 1 systems" in body
    assert "- FAIL reconciliation exact: mismatch\\: x/y" in body  # inert Markdown (no link)
    # The dashboard (VARDFLYTT_DASHBOARD_URL, default loopback) serves it behind its sign-in.
    pack = "http://127.0.0.1:8765/waves/t1/evidence/go-no-go-manual__2027_x"
    assert links == {"page": f"{pack}/evidence.md", "zip": pack}
    assert f"[read it](<{pack}/evidence.md>)" in body
    assert f"[download the zip](<{pack}>)" in body
    assert str(settings.home) not in body  # no server path


def test_the_command_line_answers_only_when_airflow_signs_the_user_in(settings, monkeypatch):
    from etl.cli import app

    _walk(settings, ledger.INITIAL_LOAD, ledger.FROZEN, ledger.FINAL_DELTA, ledger.VERIFIED)
    with pytest.raises(ledger.LedgerError, match="does not approve wave"):
        airflow_hitl.respond_to_waiting_run(settings, WAVE, "approve", "janitor", "bo", "secret")

    # No api-server at the configured URL: nobody is signed in, nothing is recorded.
    monkeypatch.setenv("VARDFLYTT_AIRFLOW_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("VARDFLYTT_AIRFLOW_PASSWORD", "secret")
    result = CliRunner().invoke(
        app, ["cutover", "approve", WAVE, "--role", "project_lead", "--user", "anna"]
    )
    assert result.exit_code == 6  # refused by the cutover ledger (EXPECTED_STOPS)
    assert "cannot reach Airflow's api-server" in result.output
    assert "secret" not in result.output
    assert _ledger(settings)[2] == []


def test_verification_fails_with_the_failing_criteria_and_asks_nobody(
    settings_for, settings, small_estate
):
    settings = settings_for(
        small_estate,
        settings.resolved_core_url,
        mappings_dir=settings.mappings_dir,
        landing_dir=settings.home / "landing",
    )
    _walk(settings, ledger.INITIAL_LOAD, ledger.FROZEN, ledger.FINAL_DELTA)
    with pytest.raises(ledger.LedgerError, match="not verified: every system loaded: not loaded"):
        airflow_hitl.verify_for_approval(settings, WAVE, dt.date(2026, 7, 1), "ivar", RUN)
    assert _ledger(settings)[0] == ledger.FINAL_DELTA
    assert not (settings.home / "evidence" / WAVE).exists()
