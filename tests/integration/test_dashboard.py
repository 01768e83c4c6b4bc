"""The dashboard over a real (small) history: every route refuses strangers, pages show the
ledger's own numbers, stewards act and are recorded, leads only read, nothing identifying leaks,
and inside Airflow the plugin routes demand Airflow's login."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import re
import subprocess
import sys
import textwrap
import zipfile

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from etl.core.database import core_engine
from etl.core.tables import ENTITY_TABLES, batch_accounting, quarantine, quarantine_decision
from etl.dashboard.app import create_app
from etl.dashboard.auth import DashboardUser, Role, TokenAuthenticator, token_digest
from etl.settings import Settings
from tests.commands import copy_migrated_airflow_db
from tests.e2e.dashboard_history import (
    FIRST_RUN,
    LEAD,
    SECOND_RUN,
    STEWARD,
    WAVE,
    seed_real_history,
)

pytestmark = pytest.mark.integration

LEAD_TOKEN = "lead-token-0123456789abcdef"
STEWARD_TOKEN = "steward-token-0123456789abcdef"
GET_ROUTES = [
    "/",
    f"/waves/{WAVE}",
    f"/waves/{WAVE}/evidence",
    "/runs",
    f"/runs/{FIRST_RUN}",
    "/steward",
    "/reports",
    "/files/docs/index.html",
    "/files/reports/validation/x/",
]
# Personnummer / samordningsnummer (10 or 12 digits) and VGR-format reservnummer.
IDENTITY_NUMBER = re.compile(r"\b(?:19|20)?\d{6}[-+]?\d{4}\b|\b\d{8}[KMX]\d{3}\b")


@pytest.fixture(scope="module")
def history(small_estate, tmp_path_factory) -> Settings:
    home = tmp_path_factory.mktemp("dashboard_home")
    settings = Settings(home=home, estate_dir=small_estate)
    seed_real_history(settings)
    return settings


def _authenticator(settings: Settings) -> TokenAuthenticator:
    users = [
        DashboardUser(LEAD, Role.LEAD, token_digest(LEAD_TOKEN)),
        DashboardUser(STEWARD, Role.STEWARD, token_digest(STEWARD_TOKEN)),
    ]
    return TokenAuthenticator(users, b"a test secret of enough length")


@pytest.fixture
def client(history) -> TestClient:
    return TestClient(create_app(history, authenticator=_authenticator))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _cell(page: str, table_id: str, row_attribute: str, field: str) -> str:
    table = re.search(rf'<table id="{table_id}">(.*?)</table>', page, re.S)
    assert table, f"no table {table_id}"
    row = re.search(rf"<tr {row_attribute}[^>]*>(.*?)</tr>", table.group(1), re.S)
    assert row, f"no row {row_attribute} in {table_id}"
    cell = re.search(rf'data-field="{field}">(.*?)</td>', row.group(1), re.S)
    assert cell, f"no {field} in {row_attribute}"
    text = re.sub(r"<[^>]+>", "", cell.group(1))
    return html.unescape(text).strip()


def _number(text: str) -> int:
    return int(re.sub(r"\D", "", text))


def test_every_route_refuses_a_request_without_valid_credentials(client):
    for path in GET_ROUTES:
        for headers in ({}, _bearer("not-a-token-at-all-0000")):
            response = client.get(path, headers=headers)
            assert response.status_code == 401, path
            assert "Sign in" in response.text
            assert LEAD_TOKEN not in response.text
    client.cookies.set("vardflytt_dashboard", "forged.cookie.value")
    assert client.get("/").status_code == 401
    client.cookies.clear()
    response = client.post("/steward/decide", data={"handle": "x" * 12, "decision": "waived"})
    assert response.status_code == 401
    # A lead's valid token opens every page.
    assert client.get("/", headers=_bearer(LEAD_TOKEN)).status_code == 200


def test_pages_show_the_numbers_of_the_ledger(client, history):
    with core_engine(history.resolved_core_url).connect() as connection:
        sums = {
            (row.batch_id, row.source_system): row
            for row in connection.execute(
                sa.select(
                    batch_accounting.c.batch_id,
                    batch_accounting.c.source_system,
                    sa.func.sum(batch_accounting.c.extracted).label("extracted"),
                    sa.func.sum(batch_accounting.c.loaded).label("loaded"),
                    sa.func.sum(batch_accounting.c.quarantined).label("quarantined"),
                ).group_by(batch_accounting.c.batch_id, batch_accounting.c.source_system)
            )
        }
    page = client.get("/", headers=_bearer(LEAD_TOKEN)).text
    latest = {"elvis": f"elvis__{FIRST_RUN}", "melior": f"melior__{SECOND_RUN}"}
    for system, batch_id in latest.items():
        expected = sums[(batch_id, system)]
        row = f'data-system="{system}" data-batch="{batch_id}"'
        for field in ("extracted", "loaded", "quarantined"):
            assert _number(_cell(page, "latest", row, field)) == getattr(expected, field)
        assert _cell(page, "latest", row, "accounted") == "yes"
    assert _cell(page, "waves", f'data-wave="{WAVE}"', "state") == "rehearsal"

    run_page = client.get(f"/runs/{FIRST_RUN}", headers=_bearer(LEAD_TOKEN)).text
    total = sum(sums[(f"{s}__{FIRST_RUN}", s)].loaded for s in ("elvis", "melior"))
    assert _number(_cell(run_page, "run-batches", 'data-system="__total__"', "loaded")) == total

    runs_page = client.get("/runs", headers=_bearer(LEAD_TOKEN)).text
    assert runs_page.count("<svg") >= 4, "trend charts are drawn"
    assert _number(_cell(runs_page, "runs", f'data-run="{SECOND_RUN}"', "loaded")) == (
        sums[(f"melior__{SECOND_RUN}", "melior")].loaded
    )


def test_the_wave_page_shows_ledger_criteria_approvals_and_the_evidence_pack(client, history):
    page = client.get(f"/waves/{WAVE}", headers=_bearer(LEAD_TOKEN)).text
    assert 'id="wave-state">rehearsal<' in page
    assert page.count("</tr>", page.index('id="transitions"')) >= 2
    assert LEAD in page and "reject" in page
    assert 'id="criteria"' in page and "every system loaded" in page
    # criteria not yet recorded by a verification say they are the dashboard's own evaluation
    assert re.search(r'id="criteria-as-of">The cutover.s own evaluation', page)
    assert "no-go" in page  # 2 of 28 systems loaded, and the page says why

    evidence = client.get(f"/waves/{WAVE}/evidence", headers=_bearer(LEAD_TOKEN))
    assert evidence.status_code == 200
    assert "attachment" in evidence.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(evidence.content)) as pack:
        assert {"evidence.json", "evidence.md", "SHA256SUMS"} <= set(pack.namelist())
        content = json.loads(pack.read("evidence.json"))
    assert content["downloaded_by"] == LEAD
    assert WAVE in json.dumps(content) and f"melior__{SECOND_RUN}" in json.dumps(content)
    assert client.get("/waves/no_such_wave", headers=_bearer(LEAD_TOKEN)).status_code == 404


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_a_steward_decides_with_who_and_when_recorded_and_a_lead_cannot(client, history):
    page = client.get("/steward?system=melior", headers=_bearer(LEAD_TOKEN)).text
    assert 'name="handle"' not in page, "a lead sees no action controls"
    handles = re.findall(r'<tr data-handle="([0-9a-f]+)">', page)
    assert handles
    refused = client.post(
        "/steward/decide",
        headers=_bearer(LEAD_TOKEN),
        data={"handle": handles[0], "decision": "fixed_at_source"},
    )
    assert refused.status_code == 403

    # The steward signs in with a token and acts through the session (CSRF-checked).
    login = client.post(
        "/login", data={"name": STEWARD, "token": STEWARD_TOKEN}, follow_redirects=False
    )
    assert login.status_code == 303
    page = client.get("/steward?system=melior").text
    assert 'name="handle"' in page
    no_csrf = client.post(
        "/steward/decide", data={"handle": handles[0], "decision": "fixed_at_source"}
    )
    assert no_csrf.status_code == 403
    thin = client.post(
        "/steward/decide",
        data={"handle": handles[0], "decision": "waived", "csrf": _csrf(page)},
    )
    # A refused decision (no justification, or a check stewards may not waive) says why.
    assert thin.status_code == 200 and 'id="error"' in thin.text
    done = client.post(
        "/steward/decide",
        data={
            "handle": handles[:2],
            "decision": "fixed_at_source",
            "csrf": _csrf(page),
            "back": "/steward?system=melior",
        },
    )
    assert done.status_code == 200
    assert f"2 row(s) recorded by {STEWARD}" in done.text
    with core_engine(history.resolved_core_url).connect() as connection:
        decisions = connection.execute(
            sa.select(quarantine_decision).where(
                quarantine_decision.c.quarantine_id.in_(handles[:2])
            )
        ).all()
    assert {d.decided_by for d in decisions} == {STEWARD}
    assert {d.decision for d in decisions} == {"fixed_at_source"}
    assert all(d.decided_at is not None and d.is_current for d in decisions)
    assert re.search(r'data-field="by">steward\.sara<', done.text), "latest decisions list who"


def test_no_page_shows_an_identity_number_name_or_source_key(client, history):
    with core_engine(history.resolved_core_url).connect() as connection:
        patient = ENTITY_TABLES["patient"]
        secrets = {
            value
            for row in connection.execute(
                sa.select(patient.c.identity_number, patient.c.family_name, patient.c.given_name)
            )
            for value in row
            if value and len(value) >= 4
        }
        secrets |= {
            key
            for key in connection.execute(sa.select(quarantine.c.source_key)).scalars()
            if key and IDENTITY_NUMBER.search(key)
        }
    assert secrets, "the demo run has identities to leak"
    pages = [client.get(path, headers=_bearer(STEWARD_TOKEN)).text for path in GET_ROUTES[:7]]
    pages += [client.get("/steward?status=all&kind=flagged", headers=_bearer(STEWARD_TOKEN)).text]
    for page in pages:
        text = html.unescape(re.sub(r"<[^>]+>", " ", page))
        assert not IDENTITY_NUMBER.search(text), IDENTITY_NUMBER.search(text)
        leaked = [value for value in secrets if value in text]
        assert not leaked, leaked[:3]
    # And pages may load nothing from anywhere.
    response = client.get("/", headers=_bearer(LEAD_TOKEN))
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "http://" not in response.text and "https://" not in response.text
    # The one inline stylesheet is allowed by its exact hash, so it must be inlined verbatim.
    style = re.search(r"<style>(.*?)</style>", response.text, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in response.headers["content-security-policy"]


def test_report_files_are_served_only_from_their_folders(client, history):
    docs = history.home / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "index.html").write_text("<p>mapping docs</p>", encoding="utf-8")
    ok = client.get("/files/docs/index.html", headers=_bearer(LEAD_TOKEN))
    assert ok.status_code == 200 and "mapping docs" in ok.text
    assert "Mapping documentation" in client.get("/reports", headers=_bearer(LEAD_TOKEN)).text
    escape = client.get("/files/docs/..%2Fsecrets%2Fpseudonym.key", headers=_bearer(LEAD_TOKEN))
    assert escape.status_code == 404


AIRFLOW_PROBE = textwrap.dedent(
    """
    import json
    from fastapi.testclient import TestClient
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    client = TestClient(create_app())
    manager = get_auth_manager()
    result = {"anonymous": client.get("/vardflytt/").status_code}
    page = client.get("/vardflytt/runs?x=1", headers={"Accept": "text/html"},
                      follow_redirects=False)
    result["browser"] = [page.status_code, page.headers.get("location")]
    for name, role in (("admin", "admin"), ("viewer1", "viewer")):
        token = manager.generate_jwt(SimpleAuthManagerUser(username=name, role=role))
        client.cookies.set("_token", token)  # Airflow's own session cookie, as the UI sends it
        page = client.get("/vardflytt/steward")
        result[name] = [page.status_code, 'name="handle"' in page.text,
                        'href="/vardflytt/runs"' in page.text]
        client.cookies.clear()
    plugins = client.get(
        "/api/v2/plugins",
        headers={"Authorization": "Bearer " + manager.generate_jwt(
            SimpleAuthManagerUser(username="admin", role="admin"))},
    ).json()["plugins"]
    result["views"] = [v for p in plugins for v in p["external_views"]]
    print("RESULT " + json.dumps(result))
    """
)


def test_inside_airflow_the_plugin_demands_airflows_login(history, tmp_path, airflow_db_template):
    import os

    environment = dict(os.environ)
    environment.update(
        {
            "AIRFLOW_HOME": str(tmp_path / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "VARDFLYTT_HOME": str(history.home),
            "VARDFLYTT_ESTATE_DIR": str(history.estate_dir),
            "VARDFLYTT_DASHBOARD_STEWARDS": "admin",
        }
    )
    copy_migrated_airflow_db(airflow_db_template, tmp_path / "airflow")
    probe = subprocess.run(
        [sys.executable, "-c", AIRFLOW_PROBE],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = next((x for x in probe.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, probe.stderr[-3000:]
    result = json.loads(line.removeprefix("RESULT "))
    assert result["anonymous"] == 401
    # A browser is sent to Airflow's sign-in page, which brings it back to the page it asked for.
    assert result["browser"] == [303, "/auth/login?next=%2Fvardflytt%2Fruns%3Fx%3D1"]
    assert result["admin"] == [200, True, True]  # a configured steward gets the actions
    assert result["viewer1"] == [200, False, True]  # any other Airflow user reads
    assert {"name": "Cutover dashboard", "href": "vardflytt/"}.items() <= result["views"][0].items()


def test_the_bench_history_renders_every_page(tmp_path):
    from etl.dashboard.bench import dashboard_table, measure_dashboard

    figures = measure_dashboard(tmp_path, repeats=1)
    assert figures["history"]["systems"] >= 40 and figures["history"]["runs"] >= 24
    assert all(page["median_seconds"] > 0 for page in figures["pages"].values())
    assert dashboard_table(figures).row_count == len(figures["pages"])
