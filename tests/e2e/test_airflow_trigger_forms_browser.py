"""Airflow's own trigger forms, as an admin sees them in headless chromium: every field the help
calls optional may stay empty, so Trigger is enabled with the defaults (migration, cutover and
rollback), and a whole-wave rollback is started from its form. Screenshots go to
``var/test-artifacts/airflow-forms/`` (gitignored); the server's logs stay in its tmp home."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import pytest

from etl.settings import Settings
from tests.e2e.airflow_server import AirflowUser, airflow_api_server
from tests.e2e.browser import WAIT_SECONDS, require_browser, screenshots

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ADMIN = "forms_admin"
OPEN_FORM = '[data-testid="trigger-dag-button"]'  # the DAG page's Trigger
SUBMIT = '[data-testid="trigger-dag-submit"]'  # the form's own Trigger
FORMS = ["vardflytt_elvis", "vardflytt_migrate", "vardflytt_cutover_w1_skaraborg"]
ROLLBACK = "vardflytt_rollback"


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    """A real Airflow API server (no scheduler: runs stay queued) with the project's DAGs."""
    require_browser()
    settings = Settings(home=tmp_path_factory.mktemp("forms_home"))
    with airflow_api_server(settings, [AirflowUser(ADMIN, "admin")], serialize_dags=True) as server:
        yield server


@pytest.fixture(scope="module")
def shot(browser):
    return screenshots(browser, "airflow-forms")


def _sign_in(browser, server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as expected
    from selenium.webdriver.support.ui import WebDriverWait

    browser.delete_all_cookies()
    browser.get(f"{server.url}/auth/login?next={urllib.parse.quote(server.url + '/')}")
    WebDriverWait(browser, WAIT_SECONDS).until(
        expected.element_to_be_clickable((By.CSS_SELECTOR, 'input[name="username"]'))
    ).send_keys(ADMIN)
    browser.find_element(By.CSS_SELECTOR, 'input[name="password"]').send_keys(
        server.passwords[ADMIN]
    )
    browser.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
    WebDriverWait(browser, WAIT_SECONDS).until(lambda driver: driver.get_cookie("_token"))


def _open_form(browser, server, dag_id: str):
    """The DAG's trigger form, rendered with its defaults; returns the form's Trigger button."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as expected
    from selenium.webdriver.support.ui import WebDriverWait

    if not browser.get_cookie("_token"):
        _sign_in(browser, server)
    browser.get(f"{server.url}/dags/{dag_id}")
    WebDriverWait(browser, 60).until(
        expected.element_to_be_clickable((By.CSS_SELECTOR, OPEN_FORM))
    ).click()
    submit = WebDriverWait(browser, WAIT_SECONDS).until(
        expected.presence_of_element_located((By.CSS_SELECTOR, SUBMIT))
    )
    # The fields (id element_<param>) validate as they render, before the button is read.
    WebDriverWait(browser, WAIT_SECONDS).until(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, "[id^='element_']")
    )
    return submit


def _runs(server, dag_id: str) -> list[dict]:
    request = urllib.request.Request(
        f"{server.url}/api/v2/dags/{dag_id}/dagRuns",
        headers={"Authorization": f"Bearer {server.token(ADMIN)}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["dag_runs"]


@pytest.mark.parametrize("dag_id", FORMS)
def test_the_trigger_form_is_ready_with_its_defaults(airflow, browser, shot, dag_id):
    submit = _open_form(browser, airflow, dag_id)
    shot(f"{dag_id}_form")
    assert submit.is_enabled(), f"{dag_id}: Trigger is disabled with the form's defaults"


def test_a_whole_wave_rollback_is_started_from_its_form(airflow, browser, shot):
    submit = _open_form(browser, airflow, ROLLBACK)
    shot("rollback_form")
    assert submit.is_enabled(), "the rollback's Trigger is disabled with the form's defaults"
    submit.click()
    deadline = time.monotonic() + WAIT_SECONDS
    while not (runs := _runs(airflow, ROLLBACK)) and time.monotonic() < deadline:
        time.sleep(0.5)
    shot("rollback_triggered")
    [run] = runs
    # No batch id: the task rolls back the whole wave (dags/vardflytt_cutover.py, rollback).
    assert run["conf"]["batch_id"] is None
    assert run["conf"]["wave"] == "w1_skaraborg"
    assert run["conf"]["cascade"] is False
