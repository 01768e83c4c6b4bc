"""No link of the dashboard leads nowhere, and an error page keeps the way back.

A steward signs in over a small real estate (two rehearsal runs and a batch the quality gate
stopped, every batch with the report its run wrote), then every same-origin link and GET form of
every page reachable from the first is followed, breadth first, pages and reports alike (summaries,
GX Data Docs, mapping documentation): none may answer an error. Error pages (403, 404, 500) show
the same navigation as every other page to a signed-in viewer, and none to a stranger."""

from __future__ import annotations

import re
import shutil
from collections import deque
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import yaml
from fastapi.testclient import TestClient

from etl import pipeline
from etl.dashboard.app import create_app
from etl.dashboard.auth import DashboardUser, Role, TokenAuthenticator, token_digest
from etl.settings import Settings
from etl.validate.gate import DataQualityGateError
from tests.e2e.dashboard_history import AS_OF, FIRST_RUN, LEAD, STEWARD, seed_real_history

pytestmark = pytest.mark.integration

ORIGIN = "http://testserver"
STEWARD_TOKEN = "links-steward-token-0123456789"
LEAD_TOKEN = "links-lead-token-0123456789abc"
STOPPED_RUN = "rehearsal__20260703T0800"
STOPPED_BATCH = f"melior__{STOPPED_RUN}"
NAVIGATION = ("/", "/runs", "/steward", "/reports")


@pytest.fixture(scope="module")
def history(small_estate, tmp_path_factory) -> Settings:
    """The dashboard tests' history, and a third run of Melior that the quality gate stops."""
    from etl.settings import PROJECT_ROOT

    home = tmp_path_factory.mktemp("links_home")
    settings = Settings(home=home, estate_dir=small_estate)
    seed_real_history(settings)
    strict = home / "strict_expectations"
    shutil.copytree(PROJECT_ROOT / "expectations", strict)
    thresholds = yaml.safe_load((strict / "thresholds.yaml").read_text("utf-8"))
    thresholds["checks"]["source.unparseable_date"]["max_failure_rate"] = 0.001
    (strict / "thresholds.yaml").write_text(yaml.safe_dump(thresholds), "utf-8")
    stopping = settings.model_copy(update={"expectations_dir": strict})
    with pytest.raises(DataQualityGateError):
        pipeline.run_system("melior", STOPPED_BATCH, AS_OF, run_id=STOPPED_RUN, settings=stopping)
    return settings


def _app(settings: Settings):
    users = [
        DashboardUser(STEWARD, Role.STEWARD, token_digest(STEWARD_TOKEN)),
        DashboardUser(LEAD, Role.LEAD, token_digest(LEAD_TOKEN)),
    ]
    return create_app(
        settings, authenticator=lambda _s: TokenAuthenticator(users, b"links test secret 1234")
    )


def _signed_in(settings: Settings, **options) -> TestClient:
    client = TestClient(_app(settings), **options)
    signed = client.post(
        "/login", data={"name": STEWARD, "token": STEWARD_TOKEN}, follow_redirects=False
    )
    assert signed.status_code == 303, "the steward signs in"
    return client


class _Links(HTMLParser):
    """Where a page leads by GET: links, assets, frames and GET forms (not POST forms)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if tag in {"a", "link", "area"} and values.get("href"):
            self.found.append(values["href"])
        if tag in {"img", "script", "iframe", "source"} and values.get("src"):
            self.found.append(values["src"])
        if tag == "form" and (values.get("method") or "get").lower() == "get":
            self.found.append(values.get("action") or "")


def _links_of(url: str, page: str) -> set[str]:
    parser = _Links()
    parser.feed(page)
    return {urljoin(url, link).split("#", 1)[0] for link in parser.found}


def _crawl(client: TestClient, start: str) -> tuple[dict[str, int], set[str]]:
    """Every same-origin URL reachable from ``start`` and what it answered; other origins."""
    answered: dict[str, int] = {}
    elsewhere: set[str] = set()
    queue = deque([urljoin(ORIGIN, start)])
    while queue:
        url = queue.popleft()
        if url in answered:
            continue
        response = client.get(url, follow_redirects=False)
        answered[url] = response.status_code
        if response.is_redirect:
            queue.append(urljoin(url, response.headers["location"]))
            continue
        if "text/html" not in response.headers.get("content-type", ""):
            continue
        for link in _links_of(url, response.text):
            if urlsplit(link).netloc != urlsplit(ORIGIN).netloc or urlsplit(link).scheme != "http":
                elsewhere.add(link)
            elif link not in answered:
                queue.append(link)
    return answered, elsewhere


def test_every_link_of_every_page_reachable_answers(history):
    client = _signed_in(history)
    answered, elsewhere = _crawl(client, "/")

    broken = {url: status for url, status in answered.items() if status >= 400}
    assert not broken, broken
    assert not elsewhere, sorted(elsewhere)[:5]
    paths = {urlsplit(url).path for url in answered}
    assert set(NAVIGATION) <= paths
    assert {f"/runs/{FIRST_RUN}", f"/runs/{STOPPED_RUN}"} <= paths
    # Each batch's own report, the stopped one's too, with its Data Docs; the mapping docs.
    reports = "/files/reports/validation/batches"
    for batch in (f"elvis__{FIRST_RUN}", f"melior__{FIRST_RUN}", STOPPED_BATCH):
        assert f"{reports}/{batch}/summary.html" in paths, batch
        assert f"{reports}/{batch}/data_docs/index.html" in paths, batch
    assert any(p.startswith(f"{reports}/{STOPPED_BATCH}/data_docs/validations/") for p in paths)
    assert "/files/docs/index.html" in paths
    assert len(answered) > 100  # the crawl went deep: every filter, report page and doc


def test_the_run_page_links_each_of_its_batches_reports(history):
    client = _signed_in(history)
    page = client.get(f"/runs/{STOPPED_RUN}").text
    table = re.search(r'<table id="batch-reports">(.*?)</table>', page, re.S).group(1)
    row = re.search(rf'<tr data-batch="{STOPPED_BATCH}">(.*?)</tr>', table, re.S).group(1)
    summary = f"/files/reports/validation/batches/{STOPPED_BATCH}/summary.html"
    assert f'href="{summary}"' in row
    report = client.get(summary)
    assert report.status_code == 200 and "stopped by the quality gate" in report.text

    # The steward's view of one batch links that batch's report.
    steward = client.get("/steward", params={"batch": STOPPED_BATCH}).text
    link = re.search(r'<a href="([^"]+)" id="latest-report"', steward).group(1)
    assert link == f"/files/reports/validation/batches/{STOPPED_BATCH}/data_docs/index.html"
    # A batch without a report says so, and links nothing.
    none = client.get("/steward", params={"batch": "no_such_batch"}).text
    assert re.search(r'<span class="muted" id="latest-report">No validation report', none)


def _navigation(page: str) -> str:
    nav = re.search(r"<nav>(.*?)</nav>", page, re.S)
    assert nav, "no navigation on the page"
    return re.sub(r'\s+class="current"', "", nav.group(1))


def test_error_pages_keep_the_navigation(history, monkeypatch):
    client = _signed_in(history, raise_server_exceptions=False)
    expected = _navigation(client.get("/reports").text)
    assert all(f'href="{path}"' in expected for path in NAVIGATION)

    def boom(*_arguments, **_keywords):
        raise RuntimeError("the read model failed on 19121212-1212")

    monkeypatch.setattr("etl.dashboard.data.runs", boom)
    lead = {"Authorization": f"Bearer {LEAD_TOKEN}"}
    errors = {
        404: client.get("/runs/no_such_run"),
        "404 (no route)": client.get("/no/such/page"),
        "404 (bad path)": client.get("/runs/a%00b"),
        403: client.post("/steward/decide", headers=lead, data={"handle": "x" * 12}),
        500: client.get("/runs"),
    }
    for expected_status, response in errors.items():
        status = int(str(expected_status)[:3])
        assert response.status_code == status, (expected_status, response.status_code)
        assert _navigation(response.text) == expected, expected_status
        assert f"{STEWARD} (steward)" in response.text or LEAD in response.text
    # A server error says what to do, never what failed (its text can hold anything).
    assert "19121212-1212" not in errors[500].text and "log" in errors[500].text

    # A stranger's error page has no way in to offer.
    stranger = TestClient(_app(history)).get("/no/such/page")
    assert stranger.status_code == 404 and "<nav>" not in stranger.text


def test_the_reports_page_lists_every_batch_report_and_each_opens(history):
    client = _signed_in(history)
    page = client.get("/reports").text
    listed = re.search(r'<ul id="batch-reports">(.*?)</ul>', page, re.S).group(1)
    links = re.findall(r'href="([^"]+)"', listed)
    folders = sorted(
        p.name for p in (Path(history.home) / "reports" / "validation" / "batches").iterdir()
    )
    assert len(folders) == 4  # two systems in the first run, Melior twice after
    assert len(links) == 2 * len(folders)
    assert all(client.get(link).status_code == 200 for link in links)
    assert "batches" not in re.search(r'<ul id="validation-reports">(.*?)</ul>', page, re.S).group(
        1
    ), "the batch reports' folder is not a run"
