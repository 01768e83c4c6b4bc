"""The dashboard in a real browser: headless Debian chromium, driven by Selenium, against the app
served over HTTP from a real (small) rehearsal history. Screenshots of every step are kept under
``var/test-artifacts/dashboard/`` (gitignored) for a person to look at."""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

from etl.core.database import core_engine
from etl.core.tables import batch_accounting, quarantine_decision
from etl.dashboard.app import create_app
from etl.dashboard.auth import DashboardUser, Role, TokenAuthenticator, token_digest
from etl.settings import Settings
from tests.e2e.dashboard_history import FIRST_RUN, SECOND_RUN, STEWARD, WAVE, seed_real_history

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "var" / "test-artifacts" / "dashboard"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
STEWARD_TOKEN = "browser-steward-token-0123456789"


def _require_browser() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if not missing:
        return
    message = f"{', '.join(missing)} missing: apt-get install chromium chromium-driver"
    if os.environ.get("VARDFLYTT_REQUIRE_SERVERS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(small_estate, tmp_path_factory):
    """The dashboard over HTTP on loopback, serving a real history; yields (url, settings)."""
    import uvicorn

    _require_browser()
    settings = Settings(home=tmp_path_factory.mktemp("browser_home"), estate_dir=small_estate)
    seed_real_history(settings)
    users = [DashboardUser(STEWARD, Role.STEWARD, token_digest(STEWARD_TOKEN))]
    app = create_app(
        settings, authenticator=lambda _s: TokenAuthenticator(users, b"browser test secret 123")
    )
    port = _free_port()
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


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    _require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # Flags from this machine's notes: no sandbox as root, and no background calls to the internet.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1800",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _shot(driver, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def _number(text: str) -> int:
    return int(re.sub(r"\D", "", text))


def test_a_steward_signs_in_reads_the_ledger_and_records_a_decision(served, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as expected
    from selenium.webdriver.support.ui import WebDriverWait

    url, settings = served
    # Unauthenticated: refused over HTTP, and the browser is shown the sign-in form.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}/runs", timeout=10)
    assert refused.value.code == 401
    browser.get(f"{url}/runs")
    assert browser.find_element(By.ID, "token")
    assert "Runs and trends" not in browser.title
    _shot(browser, "01_refused_sign_in")

    browser.find_element(By.ID, "name").send_keys(STEWARD)
    browser.find_element(By.ID, "token").send_keys(STEWARD_TOKEN)
    browser.find_element(By.ID, "sign-in").click()
    # Sign-in returns to the page asked for.
    WebDriverWait(browser, 30).until(expected.title_contains("Runs and trends"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.chart")) >= 4
    # The inlined stylesheet passed the Content-Security-Policy (its hash matched).
    header = browser.find_element(By.CSS_SELECTOR, "header.top")
    assert header.value_of_css_property("background-color") == "rgba(31, 59, 87, 1)"
    _shot(browser, "02_runs_and_trends")

    # Numbers on the waves page are the ledger's.
    browser.get(f"{url}/")
    with core_engine(settings.resolved_core_url).connect() as connection:
        loaded = {
            row.batch_id: row.loaded
            for row in connection.execute(
                sa.select(
                    batch_accounting.c.batch_id,
                    sa.func.sum(batch_accounting.c.loaded).label("loaded"),
                ).group_by(batch_accounting.c.batch_id)
            )
        }
    latest = loaded[f"elvis__{FIRST_RUN}"] + loaded[f"melior__{SECOND_RUN}"]
    assert _number(browser.find_element(By.ID, "card-loaded").text) == latest
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-batch="melior__{SECOND_RUN}"]')
    cell = row.find_element(By.CSS_SELECTOR, 'td[data-field="loaded"]')
    assert _number(cell.text) == loaded[f"melior__{SECOND_RUN}"]
    wave_row = browser.find_element(By.CSS_SELECTOR, f'tr[data-wave="{WAVE}"]')
    assert wave_row.find_element(By.CSS_SELECTOR, 'td[data-field="state"]').text == "rehearsal"
    _shot(browser, "03_waves")

    wave_row.find_element(By.LINK_TEXT, WAVE).click()
    WebDriverWait(browser, 30).until(expected.title_contains(f"Wave {WAVE}"))
    assert browser.find_element(By.ID, "wave-state").text == "rehearsal"
    assert browser.find_element(By.ID, "criteria")
    _shot(browser, "04_wave")

    # A steward action through the form, recorded with who and when.
    browser.get(f"{url}/steward?system=melior")
    first = browser.find_element(By.CSS_SELECTOR, '#queue input[name="handle"]')
    handle = first.get_attribute("value")
    first.click()
    browser.find_element(By.ID, "decide").click()
    WebDriverWait(browser, 30).until(expected.presence_of_element_located((By.ID, "notice")))
    notice = browser.find_element(By.ID, "notice").text
    assert f"1 row(s) recorded by {STEWARD}" in notice
    _shot(browser, "05_steward_decided")
    with core_engine(settings.resolved_core_url).connect() as connection:
        decision = connection.execute(
            sa.select(quarantine_decision).where(quarantine_decision.c.quarantine_id == handle)
        ).one()
    assert (decision.decision, decision.decided_by) == ("fixed_at_source", STEWARD)
    assert decision.decided_at is not None
    assert STEWARD in browser.find_element(By.ID, "decisions").text

    browser.find_element(By.CSS_SELECTOR, "header form button").click()
    WebDriverWait(browser, 30).until(expected.title_contains("Sign in"))
    browser.get(f"{url}/steward")
    assert browser.find_element(By.ID, "token"), "signed out: refused again"
