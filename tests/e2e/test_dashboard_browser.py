"""The dashboard in a real browser: headless Debian chromium, driven by Selenium, against the app
served over HTTP from a real (small) rehearsal history. Screenshots of every step are kept under
``var/test-artifacts/dashboard/`` (gitignored) for a person to look at. The same checks run
against the plugin inside a real Airflow in ``test_airflow_plugin_browser.py``."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import pytest

from etl.dashboard.app import create_app
from etl.dashboard.auth import DashboardUser, Role, TokenAuthenticator, token_digest
from etl.settings import Settings
from tests.e2e.airflow_server import free_port
from tests.e2e.browser import (
    check_every_link_resolves,
    check_pages_show_the_ledger,
    record_a_steward_decision,
    require_browser,
    screenshots,
    wait_for_title,
)
from tests.e2e.dashboard_history import LINKED_PAGES, STEWARD, seed_real_history

pytestmark = [pytest.mark.integration, pytest.mark.browser]

STEWARD_TOKEN = "browser-steward-token-0123456789"


@pytest.fixture(scope="module")
def served(small_estate, tmp_path_factory):
    """The dashboard over HTTP on loopback, serving a real history; yields (url, settings)."""
    import uvicorn

    require_browser()
    settings = Settings(home=tmp_path_factory.mktemp("browser_home"), estate_dir=small_estate)
    seed_real_history(settings)
    users = [DashboardUser(STEWARD, Role.STEWARD, token_digest(STEWARD_TOKEN))]
    app = create_app(
        settings, authenticator=lambda _s: TokenAuthenticator(users, b"browser test secret 123")
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the dashboard did not start"
    yield f"http://127.0.0.1:{port}", settings
    server.should_exit = True
    thread.join(timeout=10)


def test_a_steward_signs_in_reads_the_ledger_and_records_a_decision(served, browser):
    from selenium.webdriver.common.by import By

    url, settings = served
    shot = screenshots(browser, "dashboard")
    # Unauthenticated: refused over HTTP, and the browser is shown the sign-in form.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}/runs", timeout=10)
    assert refused.value.code == 401
    browser.get(f"{url}/runs")
    assert browser.find_element(By.ID, "token")
    assert "Runs and trends" not in browser.title
    shot("refused_sign_in")

    browser.find_element(By.ID, "name").send_keys(STEWARD)
    browser.find_element(By.ID, "token").send_keys(STEWARD_TOKEN)
    browser.find_element(By.ID, "sign-in").click()
    # Sign-in returns to the page asked for.
    wait_for_title(browser, "Runs and trends")
    shot("signed_in")

    check_pages_show_the_ledger(browser, url, settings, shot)
    check_every_link_resolves(browser, url, LINKED_PAGES)
    record_a_steward_decision(browser, url, settings, STEWARD, shot)

    browser.find_element(By.CSS_SELECTOR, "header form button").click()
    wait_for_title(browser, "Sign in")
    browser.get(f"{url}/steward")
    assert browser.find_element(By.ID, "token"), "signed out: refused again"
