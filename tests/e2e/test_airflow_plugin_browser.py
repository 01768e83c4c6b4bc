"""The dashboard plugin inside a real Airflow (``airflow api-server``, SimpleAuthManager), signed in
through Airflow's own login page in headless chromium: the same checks as the standalone dashboard
(``test_dashboard_browser.py``), plus what only Airflow provides: its login, its UI embedding the
dashboard, and its sign-out ending dashboard access. Screenshots go to
``var/test-artifacts/airflow-plugin/`` (gitignored); the server's logs stay in its tmp home."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

import pytest
import sqlalchemy as sa

from etl.core.database import core_engine
from etl.core.tables import quarantine_decision
from etl.dashboard.airflow_plugin import URL_PREFIX, VardflyttDashboardPlugin
from etl.settings import Settings
from tests.e2e.airflow_server import AirflowServer, AirflowUser, airflow_api_server
from tests.e2e.browser import (
    POLL_SECONDS,
    WAIT_SECONDS,
    check_every_link_resolves,
    check_pages_show_the_ledger,
    open_page,
    record_a_steward_decision,
    require_browser,
    screenshots,
    wait_for_title,
)
from tests.e2e.dashboard_history import LEAD, LINKED_PAGES, STEWARD, seed_real_history

pytestmark = [pytest.mark.integration, pytest.mark.browser]

# The steward is an ordinary Airflow user named in VARDFLYTT_DASHBOARD_STEWARDS; the lead may only
# read Airflow (role viewer) and is no steward.
USERS = [AirflowUser(STEWARD, "user"), AirflowUser(LEAD, "viewer")]
LOGIN_PATH = "/auth/login"  # SimpleAuthManager's sign-in page
VIEW_NAME = VardflyttDashboardPlugin.external_views[0]["name"]


@pytest.fixture(scope="module")
def airflow(small_estate, tmp_path_factory, airflow_db_template):
    """A real Airflow API server with the plugin over a small real history; (server, settings)."""
    require_browser()
    settings = Settings(home=tmp_path_factory.mktemp("plugin_home"), estate_dir=small_estate)
    with airflow_api_server(
        settings,
        USERS,
        environment={"VARDFLYTT_DASHBOARD_STEWARDS": STEWARD},
        while_starting=lambda: seed_real_history(settings),
        database_template=airflow_db_template,
    ) as server:
        yield server, settings


@pytest.fixture(scope="module")
def shot(browser):
    return screenshots(browser, "airflow-plugin")


def _fetch(url: str, **headers: str) -> int:
    """The HTTP status of a GET without following redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _wait_for_login_page(browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as expected
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, WAIT_SECONDS, POLL_SECONDS).until(
        expected.element_to_be_clickable((By.CSS_SELECTOR, 'input[name="username"]'))
    )
    assert urllib.parse.urlsplit(browser.current_url).path == LOGIN_PATH


def _sign_in(browser, server: AirflowServer, user: str, page: str, expected_title: str) -> None:
    """Open a dashboard page signed out, land on Airflow's login, sign in, get the page back."""
    from selenium.webdriver.common.by import By

    # A clean start, as Airflow's menu does it.
    open_page(browser, f"{server.url}/api/v2/auth/logout")
    browser.delete_all_cookies()
    open_page(browser, f"{server.url}{URL_PREFIX}{page}")
    _wait_for_login_page(browser)
    next_page = urllib.parse.parse_qs(urllib.parse.urlsplit(browser.current_url).query)["next"]
    assert urllib.parse.urlsplit(next_page[0]).path == f"{URL_PREFIX}{page.split('?')[0]}"
    browser.find_element(By.CSS_SELECTOR, 'input[name="username"]').send_keys(user)
    browser.find_element(By.CSS_SELECTOR, 'input[name="password"]').send_keys(
        server.passwords[user]
    )
    browser.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
    wait_for_title(browser, expected_title)
    assert browser.current_url.startswith(f"{server.url}{URL_PREFIX}{page}")
    assert browser.find_element(By.ID, "who").text.startswith(user)


def test_unauthenticated_requests_are_sent_to_airflows_login(airflow, browser, shot):
    server, _settings = airflow
    dashboard = f"{server.url}{URL_PREFIX}"
    # Programs are refused; a browser is sent to Airflow's own sign-in page.
    assert _fetch(f"{dashboard}/runs") == 401
    assert _fetch(f"{dashboard}/steward", Authorization="Bearer not-a-token") == 401
    browser.delete_all_cookies()
    browser.get(f"{dashboard}/runs")
    _wait_for_login_page(browser)
    shot("airflow_login")
    assert "Runs and trends" not in browser.title


def test_a_steward_signs_in_through_airflow_reads_the_ledger_and_acts(airflow, browser, shot):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as expected
    from selenium.webdriver.support.ui import WebDriverWait

    server, settings = airflow
    dashboard = f"{server.url}{URL_PREFIX}"
    _sign_in(browser, server, STEWARD, "/runs", "Runs and trends")
    assert "(steward)" in browser.find_element(By.ID, "who").text
    shot("steward_signed_in")

    check_pages_show_the_ledger(browser, dashboard, settings, shot)
    check_every_link_resolves(browser, dashboard, LINKED_PAGES)

    # Airflow's own UI links the dashboard in its navigation and shows it in a frame (which the
    # dashboard's frame-ancestors policy must allow).
    browser.get(f"{server.url}/")
    WebDriverWait(browser, 60, POLL_SECONDS).until(
        expected.element_to_be_clickable((By.CSS_SELECTOR, f'a[aria-label="{VIEW_NAME}"]'))
    ).click()
    frame = WebDriverWait(browser, WAIT_SECONDS, POLL_SECONDS).until(
        expected.presence_of_element_located((By.CSS_SELECTOR, f'iframe[title="{VIEW_NAME}"]'))
    )
    browser.switch_to.frame(frame)
    try:  # (a title is the top document's: look inside the frame instead)
        WebDriverWait(browser, WAIT_SECONDS, POLL_SECONDS).until(
            expected.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Waves")
        )
        assert browser.find_element(By.ID, "who").text.startswith(STEWARD)
        assert browser.find_element(By.ID, "card-core-rows")
    finally:
        browser.switch_to.default_content()
    shot("inside_airflow_ui")

    # A form whose CSRF token was altered is refused, and nothing is recorded.
    browser.get(f"{dashboard}/steward?system=melior")
    boxes = browser.find_elements(By.CSS_SELECTOR, '#queue input[name="handle"]')
    forged = boxes[-1].get_attribute("value")
    boxes[-1].click()
    browser.execute_script(
        "document.querySelector('form.actions input[name=csrf]').value = arguments[0];",
        "forged-token",
    )
    browser.find_element(By.ID, "decide").click()
    wait_for_title(browser, "Not allowed")
    shot("forged_csrf_refused")
    with core_engine(settings.resolved_core_url).connect() as connection:
        assert not connection.execute(
            sa.select(quarantine_decision).where(quarantine_decision.c.quarantine_id == forged)
        ).all()

    record_a_steward_decision(browser, dashboard, settings, STEWARD, shot)

    # Signing out of Airflow (its menu's address) ends dashboard access, in the browser and for
    # the cookie the browser held: Airflow revoked the token itself.
    token = browser.get_cookie("_token")["value"]
    assert _fetch(f"{dashboard}/steward", Cookie=f"_token={token}") == 200
    open_page(browser, f"{server.url}/api/v2/auth/logout")
    _wait_for_login_page(browser)
    open_page(browser, f"{dashboard}/steward")
    _wait_for_login_page(browser)
    shot("signed_out")
    assert _fetch(f"{dashboard}/steward", Cookie=f"_token={token}") == 401


def test_an_airflow_viewer_reads_but_cannot_act(airflow, browser, shot):
    from selenium.webdriver.common.by import By

    server, settings = airflow
    _sign_in(browser, server, LEAD, "/steward?system=melior", "Data steward")
    assert "(lead)" in browser.find_element(By.ID, "who").text
    assert not browser.find_elements(By.CSS_SELECTOR, '#queue input[name="handle"]')
    assert not browser.find_elements(By.ID, "decide")
    shot("viewer_reads_the_queue")

    # Posting the page's own form (a valid CSRF token for this viewer) with a row added by hand
    # is refused by the server, not only hidden by the page.
    handle = browser.find_element(By.CSS_SELECTOR, "#queue tr[data-handle]").get_attribute(
        "data-handle"
    )
    browser.execute_script(
        """
        const form = document.querySelector('form.actions');
        for (const [name, value] of [['handle', arguments[0]], ['decision', 'waived'],
                                     ['justification', 'see ticket 4711']]) {
          const input = document.createElement('input');
          input.type = 'hidden'; input.name = name; input.value = value;
          form.appendChild(input);
        }
        form.submit();
        """,
        handle,
    )
    wait_for_title(browser, "Not allowed")
    assert "only data stewards" in browser.find_element(By.TAG_NAME, "main").text
    shot("viewer_refused")
    with core_engine(settings.resolved_core_url).connect() as connection:
        decided_by_lead = connection.execute(
            sa.select(quarantine_decision).where(quarantine_decision.c.decided_by == LEAD)
        ).all()
    assert not decided_by_lead
