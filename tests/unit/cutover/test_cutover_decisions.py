"""Decisions in view, without Airflow: approvers' notes are stored and shown without identity
numbers and escaped, an unreadable Airflow is never "nothing waiting", links are built from the
configured URLs. (tests/integration/test_cutover_waiting.py reads a real Airflow.)"""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from etl.core.tables import metadata
from etl.cutover import ledger
from etl.cutover.evidence import _markdown
from etl.cutover.waiting import (
    AirflowUnreadable,
    go_no_go_status,
    metadata_url,
    task_url,
    waiting_go_no_go,
)
from etl.settings import Settings
from etl.steward.screening import WITHHELD, has_identity_number, withhold_identity_numbers

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("note", "stored"),
    [
        ("wait for Monday", "wait for Monday"),
        ("rows 2026-12-04: 3 of 60", "rows 2026-12-04: 3 of 60"),
        ("patient 19121212-1212 is wrong", f"patient {WITHHELD} is wrong"),
        ("see 121212-1212.", f"see {WITHHELD}."),
        ("spaced 19 12 12 - 1212 too", f"spaced {WITHHELD} too"),
        ("reserve 19800101K123 here", f"reserve {WITHHELD} here"),
        ("full-width １９１２１２１２-１２１２", f"full-width {WITHHELD}"),
    ],
    ids=["plain", "date", "personnummer", "short", "spaced", "reserve", "full-width"],
)
def test_identity_numbers_are_withheld_and_the_rest_of_the_note_kept(note, stored):
    assert withhold_identity_numbers(note) == stored
    assert not has_identity_number(withhold_identity_numbers(note))


@pytest.fixture
def connection():
    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as connection:
        yield connection


def test_the_ledger_stores_a_note_without_identity_numbers(connection):
    ledger.record_approval(
        connection, "w", "project_lead", "lena", "reject", "airflow_hitl", "r1", "  "
    )
    ledger.record_approval(
        connection, "w", "project_lead", "lena", "reject", "airflow_hitl", "r1", "no: 191212-1212"
    )
    notes = [a["note"] for a in ledger.approvals(connection, "w")]
    assert notes == [None, f"no: {WITHHELD}"]


def test_evidence_lists_each_decision_with_its_note_escaped():
    content = {
        "wave": {"wave": "w", "title": "t", "window": {"start": "2027-01-01", "end": "2027-01-02"}},
        "state": "verified",
        "mapping_version": "abc",
        "generated_at": "2027-01-01T00:00:00",
        "accounting": [],
        "reconciliation": [],
        "transitions": [],
        "approvals": [
            {
                "at": "2027-01-01T10:00:00",
                "role": "project_lead",
                "decision": "reject",
                "approver": "lena",
                "channel": "airflow_hitl",
                "is_current": True,
                "note": "<b>no</b>\n# heading [x](http://evil)",
            },
            {
                "at": "2027-01-01T09:00:00",
                "role": "cmio",
                "decision": "approve",
                "approver": "bo",
                "channel": "cli",
                "is_current": False,
                "note": None,
            },
        ],
    }
    text = _markdown(content)
    assert (
        "- 2027-01-01T10:00:00 project\\_lead: reject by lena via airflow\\_hitl; note: "
        "&lt;b&gt;no&lt;/b&gt; \\# heading \\[x\\]\\(http\\://evil\\)\n"
    ) in text
    assert "- 2027-01-01T09:00:00 cmio: approve by bo via cli (superseded)\n" in text


def _settings(tmp_path, **values) -> Settings:
    return Settings(home=tmp_path / "home", **values)


def test_without_a_metadata_database_nothing_is_created_and_the_state_is_unknown(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)
    settings = _settings(tmp_path)
    assert metadata_url(settings) == f"sqlite:///{settings.airflow_home / 'airflow.db'}"
    status = go_no_go_status(settings, "w", {"project_lead": ["anna"]})
    assert status.waiting == [] and "no Airflow metadata database" in status.problem
    assert not (settings.airflow_home / "airflow.db").exists()


def test_a_database_without_airflows_tables_is_unreadable_not_empty(tmp_path, monkeypatch):
    settings = _settings(tmp_path)
    settings.airflow_home.mkdir(parents=True)
    sqlite3.connect(settings.airflow_home / "other.db").close()
    monkeypatch.setenv(
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{settings.airflow_home / 'other.db'}"
    )
    with pytest.raises(AirflowUnreadable, match="cannot read Airflow's metadata database"):
        waiting_go_no_go(settings, "w", {})


def test_a_metadata_database_on_a_host_not_allowed_is_never_connected(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "postgresql+psycopg://airflow:s3cret@db.elsewhere.example/airflow",
    )
    status = go_no_go_status(_settings(tmp_path), "w", {})
    assert "db.elsewhere.example" in status.problem and "s3cret" not in status.problem


def test_an_unreachable_server_fails_closed_without_its_password(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "postgresql+psycopg://airflow:s3cret@127.0.0.1:9/airflow",
    )
    status = go_no_go_status(_settings(tmp_path), "w", {})
    assert status.waiting == [] and "OperationalError" in status.problem
    assert "s3cret" not in status.problem


def test_links_go_to_the_configured_airflow_with_the_run_id_quoted(tmp_path):
    settings = _settings(tmp_path, airflow_url="https://airflow.region.local/")
    url = task_url(
        settings, "vardflytt_cutover_w1", "manual__2027-01-10T08:00:00+00:00", "go_no_go_x", -1
    )
    assert url == (
        "https://airflow.region.local/dags/vardflytt_cutover_w1/runs/"
        "manual__2027-01-10T08%3A00%3A00%2B00%3A00/tasks/go_no_go_x/required_actions?map_index=-1"
    )
