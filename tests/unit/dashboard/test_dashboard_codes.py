"""The dashboard's unmapped-codes page: codes and counts per system, never patient data."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from etl.dashboard.app import create_app
from etl.dashboard.auth import DashboardUser, Role, TokenAuthenticator, token_digest
from tests.unit.report.test_report_codes import _write_fixture

pytestmark = pytest.mark.unit

STEWARD, TOKEN = "steward-codes", "codes-steward-token-0123456789"


@pytest.fixture
def client(sqlite_core, tmp_path):
    settings, _catalog = _write_fixture(tmp_path)
    settings = settings.model_copy(update={"core_url": sqlite_core(tmp_path)})
    users = [DashboardUser(STEWARD, Role.STEWARD, token_digest(TOKEN))]
    app = create_app(
        settings, authenticator=lambda _s: TokenAuthenticator(users, b"codes test secret 1234")
    )
    return TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"})


def test_the_page_lists_codes_counts_and_crosswalks_without_patient_data(client):
    page = client.get("/codes")
    assert page.status_code == 200
    html = page.text
    assert 'id="unmapped-codes"' in html
    assert "<code>X-NEW</code>" in html and "<code>Y-OLD</code>" in html
    assert "mappings/crosswalks/kod_lab.csv" in html
    assert "codes-batch): 8 rows with an unmapped or unapproved code" in html
    # Free text typed into the code field, identity numbers, other columns: never on the page.
    for secret in ("hemolyserat", "19121212", "P1"):
        assert secret not in html


def test_the_system_filter_and_an_unknown_system(client):
    assert "X-NEW" in client.get("/codes", params={"system": "kod"}).text
    # An unknown name is not echoed back; every system is listed instead.
    page = client.get("/codes", params={"system": "<script>nope</script>"})
    assert page.status_code == 200 and "nope" not in page.text and "X-NEW" in page.text


def test_the_reports_page_links_to_the_list(client):
    page = client.get("/reports")
    assert page.status_code == 200
    assert 'id="unmapped-codes-link"' in page.text and 'href="/codes"' in page.text
