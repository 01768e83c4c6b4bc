"""Headless Debian chromium for the browser tests, and the checks both dashboard hosts share
(standalone and inside Airflow): the pages show the ledger's numbers, a steward's decision is
recorded with who and when. ``base`` is the dashboard's root URL without a trailing slash
(``http://127.0.0.1:<port>`` standalone, ``.../vardflytt`` inside Airflow), so links that only
work at the root of a host fail here."""

from __future__ import annotations

import itertools
import os
import re
import shutil
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import pytest
import sqlalchemy as sa

from etl.core.database import core_engine
from etl.core.tables import ENTITY_TABLES, batch_accounting, quarantine_decision
from etl.settings import Settings
from tests.e2e.dashboard_history import SECOND_RUN, WAVE

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT_SECONDS = 30
# How often a wait looks again (Selenium's default: every 0.5 s, up to half a second late for
# each of the many page steps; a look is one cheap WebDriver call).
POLL_SECONDS = 0.1
REPORT_DEPTH = 4  # dashboard page -> report summary -> Data Docs index -> a validation's page

Shot = Callable[[str], None]


def require_browser() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if not missing:
        return
    message = f"{', '.join(missing)} missing: apt-get install chromium chromium-driver"
    if os.environ.get("VARDFLYTT_REQUIRE_SERVERS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def start_chromium(user_data_dir: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    require_browser()
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
        f"--user-data-dir={user_data_dir}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver


def is_navigating(error: Exception) -> bool:
    """Chrome refused a command because the page was being replaced (a sign-in's redirect, the
    application loading again): "aborted by navigation", "Inspected target navigated or
    closed". The page is on its way, not broken; on a busy machine such a window is longer."""
    message = str(getattr(error, "msg", None) or error).lower()
    return "aborted by navigation" in message or "inspected target navigated" in message


def open_page(driver, url: str) -> None:
    """``driver.get(url)``; asked again once if Chrome aborted it because the page it left was
    still navigating (:func:`is_navigating`), any other error raised as it is."""
    import time

    from selenium.common.exceptions import WebDriverException

    try:
        driver.get(url)
    except WebDriverException as error:
        if not is_navigating(error):
            raise
        time.sleep(POLL_SECONDS)
        driver.get(url)


def quit_chromium(driver) -> None:
    """``driver.quit()``, with chromium's processes reaped here (tests/e2e/reaping.py): its
    renderers, orphaned when chromium exits, took their CPU seconds to init; whatever of them is
    left once chromium has quit is killed."""
    import psutil

    from tests.e2e.reaping import adopting_orphans, reap

    with adopting_orphans():
        try:
            tree = psutil.Process(driver.service.process.pid).children(recursive=True)
        except (AttributeError, psutil.NoSuchProcess):
            tree = []
        driver.quit()
        for process in tree:
            with suppress(psutil.NoSuchProcess):
                process.kill()
        reap({process.pid for process in tree})


def screenshots(driver, folder: str) -> Shot:
    """A function saving screenshots, numbered in order, under ``var/test-artifacts/<folder>/``."""
    artifacts = ROOT / "var" / "test-artifacts" / folder
    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    taken = itertools.count(1)

    def shot(name: str) -> None:
        driver.save_screenshot(str(artifacts / f"{next(taken):02d}_{name}.png"))

    return shot


def wait_for_title(driver, text: str) -> None:
    from selenium.webdriver.support import expected_conditions as expected
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_SECONDS, POLL_SECONDS).until(expected.title_contains(text))


def number(text: str) -> int:
    return int(re.sub(r"\D", "", text))


def check_pages_show_the_ledger(driver, base: str, settings: Settings, shot: Shot) -> None:
    """Runs with its charts and styles, waves with the ledger's numbers, a wave by its link."""
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/runs")
    wait_for_title(driver, "Runs and trends")
    assert len(driver.find_elements(By.CSS_SELECTOR, "svg.chart")) >= 4
    # The inlined stylesheet passed the Content-Security-Policy (its hash matched).
    header = driver.find_element(By.CSS_SELECTOR, "header.top")
    assert header.value_of_css_property("background-color") == "rgba(31, 59, 87, 1)"
    shot("runs_and_trends")

    # The navigation leads to the waves page under this host's prefix.
    driver.find_element(By.CSS_SELECTOR, "header.top nav").find_element(
        By.LINK_TEXT, "Waves"
    ).click()
    wait_for_title(driver, "Waves")
    assert driver.current_url == f"{base}/"
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
        in_core = sum(
            connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in ENTITY_TABLES.values()
        )
    # The headline is what the core tables hold now, not what the latest batches loaded.
    assert number(driver.find_element(By.ID, "card-core-rows").text) == in_core
    row = driver.find_element(By.CSS_SELECTOR, f'tr[data-batch="melior__{SECOND_RUN}"]')
    cell = row.find_element(By.CSS_SELECTOR, 'td[data-field="loaded"]')
    assert number(cell.text) == loaded[f"melior__{SECOND_RUN}"]
    wave_row = driver.find_element(By.CSS_SELECTOR, f'tr[data-wave="{WAVE}"]')
    assert wave_row.find_element(By.CSS_SELECTOR, 'td[data-field="state"]').text == "rehearsal"
    shot("waves")

    wave_row.find_element(By.LINK_TEXT, WAVE).click()
    wait_for_title(driver, f"Wave {WAVE}")
    assert driver.current_url.startswith(f"{base}/waves/")
    assert driver.find_element(By.ID, "wave-state").text == "rehearsal"
    assert driver.find_element(By.ID, "criteria")
    shot("wave")


def record_a_steward_decision(
    driver, base: str, settings: Settings, steward: str, shot: Shot
) -> str:
    """Choose the first open Melior row, mark it fixed at source through the form (CSRF token
    included); the decision is in the core with who and when. Returns the row's handle."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as expected
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base}/steward?system=melior")
    first = driver.find_element(By.CSS_SELECTOR, '#queue input[name="handle"]')
    handle = first.get_attribute("value")
    first.click()
    driver.find_element(By.ID, "decide").click()
    WebDriverWait(driver, WAIT_SECONDS, POLL_SECONDS).until(
        expected.presence_of_element_located((By.ID, "notice"))
    )
    assert f"1 row(s) recorded by {steward}" in driver.find_element(By.ID, "notice").text
    assert driver.current_url.startswith(f"{base}/steward")
    shot("steward_decided")
    with core_engine(settings.resolved_core_url).connect() as connection:
        decision = connection.execute(
            sa.select(quarantine_decision).where(quarantine_decision.c.quarantine_id == handle)
        ).one()
    assert (decision.decision, decision.decided_by) == ("fixed_at_source", steward)
    assert decision.decided_at is not None
    assert steward in driver.find_element(By.ID, "decisions").text
    return handle


def check_every_link_resolves(driver, base: str, pages: list[str]) -> set[str]:
    """Every link and asset on these pages, and on the reports they link to, stays under the
    dashboard's root and answers 200 to the signed-in browser's cookies. Links differing only in
    their query values (the steward's filters) are followed once. Returns the links followed."""
    import html
    import urllib.error
    import urllib.parse
    import urllib.request

    cookies = "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())
    root = urllib.parse.urlsplit(base)

    def get(url: str) -> tuple[int, str]:
        request = urllib.request.Request(url, headers={"Cookie": cookies, "Accept": "text/html"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                body = response.read()
                is_html = response.headers.get_content_type() == "text/html"
                return response.status, body.decode("utf-8") if is_html else ""
        except urllib.error.HTTPError as error:
            return error.code, ""

    def links_of(url: str, text: str) -> set[str]:
        found = set()
        for reference in re.findall(r'(?:href|src)="([^"#]+)', text):
            link = urllib.parse.urljoin(url, html.unescape(reference))
            parts = urllib.parse.urlsplit(link)
            assert (parts.scheme, parts.netloc) == (root.scheme, root.netloc), (url, reference)
            assert parts.path.startswith(f"{root.path}/"), f"{url}: {reference} leaves the root"
            found.add(link)
        return found

    def shape(link: str) -> tuple[str, tuple[str, ...]]:
        parts = urllib.parse.urlsplit(link)
        return parts.path, tuple(sorted(urllib.parse.parse_qs(parts.query)))

    followed: dict[tuple, str] = {}
    pending = [(f"{base}{page}", 0) for page in pages]
    broken = {}
    while pending:
        url, depth = pending.pop(0)
        if shape(url) in followed:
            continue
        followed[shape(url)] = url
        status, text = get(url)
        if status != 200:
            broken[url] = status
            continue
        # Pages are followed one level; reports (under /files/: summaries, Data Docs, mapping
        # documentation) as deep as they go here.
        if depth == 0 or (depth < REPORT_DEPTH and "/files/" in url):
            pending += [(link, depth + 1) for link in sorted(links_of(url, text))]
    assert not broken, broken
    reached = set(followed.values())
    assert any(link.endswith("/data_docs/index.html") for link in reached), "no Data Docs link"
    mapping_docs = f"{root.path}/files/docs/index.html"
    assert any(urllib.parse.urlsplit(link).path == mapping_docs for link in reached)
    return reached
