"""Refusals around the access log: no number gets in as a patient, no page is shown unlogged,
failed sign-ins are on record without their tokens, a rewritten entry is caught, and an
Airflow task is never attributed to the DAG's owner."""

from __future__ import annotations

import datetime as dt
import json
import zipfile

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from etl.cli import app
from etl.core import audit
from etl.core.audit import drop_guard, entry_hash, record_access
from etl.core.audit_review import verify_chain
from etl.core.database import core_engine
from etl.core.tables import access_log
from etl.dashboard.app import create_app
from etl.dashboard.auth import DashboardUser, Role, TokenAuthenticator, token_digest
from tests.cores import BOTH_CORES

pytestmark = pytest.mark.integration


def as_database_owner(connection) -> None:
    """What only the database's owner can do: drop the append-only triggers (to tamper)."""
    for name in ("access_log_no_update", "access_log_no_delete", "access_log_no_truncate"):
        drop_guard(connection, name)


LEAD, LEAD_TOKEN = "lena.lead", "lead-token-0123456789abcdef"
WRONG_TOKEN = "wrong-token-0123456789abcdef"


@pytest.fixture
def settings(settings_for, tmp_path, monkeypatch):
    for name in ("AIRFLOW_CTX_DAG_RUN_ID", "AIRFLOW_CTX_DAG_OWNER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VARDFLYTT_PSEUDONYM_KEY", "security-test-key-0123456789")
    return settings_for(core_url=f"sqlite:///{tmp_path / 'core.sqlite'}")


def _log(settings) -> list[dict]:
    with core_engine(settings.resolved_core_url).connect() as connection:
        query = sa.select(access_log).order_by(access_log.c.sequence)
        return [dict(row) for row in connection.execute(query).mappings()]


def _client(settings, **options) -> TestClient:
    users = [DashboardUser(LEAD, Role.LEAD, token_digest(LEAD_TOKEN))]
    secret = b"a test secret of enough length"
    return TestClient(
        create_app(settings, authenticator=lambda _s: TokenAuthenticator(users, secret)), **options
    )


def test_an_identity_number_is_refused_as_a_logged_patient(settings):
    for raw in ("198001011234", "19800101-1234", "key-e1"):
        with pytest.raises(ValueError, match="pseudonyms"):
            record_access(settings, "steward_list", "melior", "b1", 1, subjects=[raw])
    assert _log(settings) == []


def test_failed_sign_ins_are_logged_without_the_token(settings):
    client = _client(settings)
    assert client.post("/login", data={"token": WRONG_TOKEN}).status_code == 401
    assert (
        client.get("/reports", headers={"Authorization": f"Bearer {WRONG_TOKEN}"}).status_code
        == 401
    )
    client.cookies.set("vardflytt_dashboard", "forged.cookie.value")
    assert client.get("/runs").status_code == 401
    client.cookies.clear()
    assert client.get("/login").status_code == 200  # no credential tried: not a failed sign-in
    failed = _log(settings)
    assert [entry["action"] for entry in failed] == ["dashboard_sign_in_failed"] * 3
    assert {entry["user_name"] for entry in failed} == {"unauthenticated"}
    assert [json.loads(entry["detail"])["path"] for entry in failed] == [
        "/login",
        "/reports",
        "/runs",
    ]
    assert WRONG_TOKEN not in json.dumps(failed, default=str)


def test_page_views_and_evidence_downloads_are_logged_as_the_signed_in_user(settings):
    packs = settings.home / "evidence" / "w1_skaraborg"
    packs.mkdir(parents=True)
    with zipfile.ZipFile(packs / "rehearsal_1.zip", "w") as pack:
        pack.writestr("summary.json", "{}")
    client = _client(settings)
    bearer = {"Authorization": f"Bearer {LEAD_TOKEN}"}
    assert client.get("/reports?secret=never-logged", headers=bearer).status_code == 200
    download = client.get("/waves/w1_skaraborg/evidence/rehearsal_1", headers=bearer)
    assert download.status_code == 200
    view, evidence = _log(settings)
    assert (view["user_name"], view["action"], view["process"]) == (
        LEAD,
        "dashboard_view",
        "dashboard:dashboard_view",
    )
    assert json.loads(view["detail"])["path"] == "/reports"
    assert "never-logged" not in json.dumps(view, default=str)
    assert (evidence["user_name"], evidence["action"]) == (LEAD, "dashboard_evidence_download")
    assert json.loads(evidence["detail"])["pack"] == "rehearsal_1"


def test_a_page_that_cannot_be_logged_is_not_shown(settings, monkeypatch):
    import etl.dashboard.access

    def broken(*_args, **_kwargs):
        raise RuntimeError("the core is read-only")

    monkeypatch.setattr(etl.dashboard.access, "record_access", broken)
    client = _client(settings, raise_server_exceptions=False)
    response = client.get("/reports", headers={"Authorization": f"Bearer {LEAD_TOKEN}"})
    assert response.status_code == 500
    # the error page keeps the menu (a link named "Reports"), but never the page's own content
    assert "<h1>500</h1>" in response.text and "<h1>Reports</h1>" not in response.text


def test_a_rewritten_entry_with_a_recomputed_hash_breaks_the_next_link(settings):
    for rows in range(4):
        record_access(settings, "read_source", "melior", "b1", rows)
    engine = core_engine(settings.resolved_core_url)
    with engine.begin() as connection:
        as_database_owner(connection)
        row = dict(
            connection.execute(sa.select(access_log).where(access_log.c.sequence == 2))
            .mappings()
            .one()
        )
        row["user_name"] = "someone.else"
        connection.execute(
            access_log.update()
            .where(access_log.c.sequence == 2)
            .values(user_name="someone.else", entry_hash=entry_hash(row["previous_hash"], row))
        )
    with engine.connect() as connection:
        report = verify_chain(connection)
    assert (report.is_intact, report.broken_at) == (False, 3)
    result = CliRunner().invoke(app, ["audit", "verify"])
    assert result.exit_code == 1 and "entry 3" in result.output


def test_an_airflow_task_is_never_attributed_to_the_dag_owner(settings, monkeypatch):
    import airflow.sdk

    def no_context():
        raise RuntimeError("not in a task")

    monkeypatch.setenv("AIRFLOW_CTX_DAG_OWNER", "airflow")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "scheduled__2026-12-04")
    monkeypatch.setattr(airflow.sdk, "get_current_context", no_context)
    entry = record_access(settings, "read_source", "melior", "b1", 1)
    assert entry["user_name"] != "airflow" and entry["user_name"].startswith("airflow:")
    assert audit.current_user() != "airflow"


def test_an_invalid_typed_number_is_not_echoed(settings):
    typed = "19800101-123X"
    result = CliRunner().invoke(app, ["audit", "patient"], input=f"{typed}\n")
    assert result.exit_code == 2
    assert typed not in result.output and "123X" not in result.output
    assert typed not in json.dumps(_log(settings), default=str)


def test_rows_a_steward_page_shows_are_logged_as_its_viewer(settings):
    from tests.integration.test_access_log import _quarantined

    _quarantined(settings, ["189001019802"])
    client = _client(settings)
    page = client.get(
        "/steward?batch=melior-b1&status=all", headers={"Authorization": f"Bearer {LEAD_TOKEN}"}
    )
    assert page.status_code == 200
    listed = [entry for entry in _log(settings) if entry["action"] == "steward_list"]
    assert [(entry["user_name"], entry["process"]) for entry in listed] == [
        (LEAD, "dashboard:steward_list")
    ]
    [shown] = json.loads(listed[0]["subjects"])
    assert shown.startswith("ps_") and shown in page.text
    assert "189001019802" not in json.dumps(_log(settings), default=str)


@pytest.mark.parametrize("database", BOTH_CORES)
def test_the_log_refuses_updates_and_deletes_but_a_purge_goes_through(
    database, request, settings_for, tmp_path, monkeypatch
):
    from etl.core.audit_review import purge

    monkeypatch.delenv("AIRFLOW_CTX_DAG_RUN_ID", raising=False)
    url = (
        f"sqlite:///{tmp_path / 'guarded.sqlite'}"
        if database == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    settings = settings_for(core_url=url)
    for rows in range(3):
        record_access(settings, "read_source", "melior", "b1", rows)
    engine = core_engine(url)
    tampering = [
        access_log.update().values(user_name="someone.else"),
        access_log.delete().where(access_log.c.sequence == 3),
    ]
    if database == "postgres":
        tampering.append(sa.text("TRUNCATE access_log"))
    for statement in tampering:
        with (
            pytest.raises(sa.exc.DatabaseError, match="append-only"),
            engine.begin() as connection,
        ):
            connection.execute(statement)
    assert len(_log(settings)) == 3
    with engine.begin() as connection:
        assert purge(connection, 1, audit.utc_now() + dt.timedelta(days=2)).purged == 3
    with (
        pytest.raises(sa.exc.DatabaseError, match="append-only"),  # the guard is back
        engine.begin() as connection,
    ):
        connection.execute(access_log.delete())
    with engine.connect() as connection:
        assert verify_chain(connection).is_intact
