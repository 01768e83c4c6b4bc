"""The dashboard refuses what an attacker would try: a cookie or CSRF token from a session that
ended or belongs to someone else, guessing tokens, framing, paths no page can have, banner text
from a link, and markup smuggled into Markdown evidence. Issue 11, point 6."""

from __future__ import annotations

import html
import json
import re
import time
from pathlib import Path
from urllib.parse import urljoin

import pytest
from fastapi.testclient import TestClient

from etl.cutover import evidence
from etl.dashboard import sessions
from etl.dashboard.app import create_app, is_bad_path
from etl.dashboard.auth import (
    SESSION_COOKIE,
    DashboardUser,
    Role,
    TokenAuthenticator,
    token_digest,
)
from etl.dashboard.sessions import SessionStore
from etl.settings import Settings

LEAD, STEWARD = "lena.lead", "sara.steward"
LEAD_TOKEN = "lead-token-0123456789abcdef"
STEWARD_TOKEN = "steward-token-0123456789abcdef"
SECRET = b"a test secret of enough length"
USERS = [
    DashboardUser(LEAD, Role.LEAD, token_digest(LEAD_TOKEN)),
    DashboardUser(STEWARD, Role.STEWARD, token_digest(STEWARD_TOKEN)),
]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """One home (and SQLite core) for the module: the core's schema is made once."""
    return tmp_path_factory.mktemp("hardening_home")


def _app(home: Path, store_path: Path, **options):
    settings = Settings(home=home)
    return create_app(
        settings,
        authenticator=lambda _s: TokenAuthenticator(USERS, SECRET, SessionStore(store_path)),
        **options,
    )


@pytest.fixture
def store_path(tmp_path) -> Path:
    return tmp_path / "dashboard" / "sessions.sqlite"


@pytest.fixture
def client(home, store_path) -> TestClient:
    return TestClient(_app(home, store_path), raise_server_exceptions=False)


def _sign_in(client: TestClient, name: str = STEWARD, token: str = STEWARD_TOKEN):
    return client.post("/login", data={"name": name, "token": token}, follow_redirects=False)


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


# --- sessions live server-side ----------------------------------------------------------------


@pytest.mark.integration
def test_a_cookie_reused_after_sign_out_is_refused(client, home, store_path):
    assert _sign_in(client).status_code == 303
    cookie = client.cookies.get(SESSION_COOKIE)
    assert cookie
    page = client.get("/reports")
    assert page.status_code == 200 and STEWARD in page.text

    # The session outlives a restart of the dashboard (the store is a file)...
    restarted = TestClient(_app(home, store_path), raise_server_exceptions=False)
    restarted.cookies.set(SESSION_COOKIE, cookie)
    assert restarted.get("/reports").status_code == 200

    # ...but not signing out: a copy of the cookie opens nothing afterwards.
    out = client.post("/logout", data={"csrf": _csrf(page.text)}, follow_redirects=False)
    assert out.status_code == 303
    replay = TestClient(_app(home, store_path), raise_server_exceptions=False)
    replay.cookies.set(SESSION_COOKIE, cookie)
    refused = replay.get("/reports")
    assert refused.status_code == 401 and "Sign in" in refused.text
    # The store keeps no session id, only its digest.
    assert cookie.encode() not in store_path.read_bytes()
    assert store_path.stat().st_mode & 0o077 == 0, "the session store is owner-only"


@pytest.mark.integration
def test_a_csrf_token_from_another_or_an_ended_session_is_refused(home, store_path):
    first = TestClient(_app(home, store_path), raise_server_exceptions=False)
    second = TestClient(_app(home, store_path), raise_server_exceptions=False)
    _sign_in(first), _sign_in(second)  # the same user, two sessions
    token_of_first = _csrf(first.get("/reports").text)

    # Replayed into the other session of the same user: refused.
    replayed = second.post("/logout", data={"csrf": token_of_first}, follow_redirects=False)
    assert replayed.status_code == 403
    assert second.get("/reports").status_code == 200, "and that session is still signed in"

    # From a session that has ended: refused in the new session too.
    assert first.post("/logout", data={"csrf": token_of_first}).status_code == 200
    _sign_in(first)
    stale = first.post("/steward/decide", data={"csrf": token_of_first, "decision": "waived"})
    assert stale.status_code == 403 and "expired" in stale.text
    fresh = _csrf(first.get("/reports").text)
    assert fresh != token_of_first
    assert first.post("/logout", data={"csrf": fresh}, follow_redirects=False).status_code == 303


@pytest.mark.integration
@pytest.mark.parametrize("path", ["/logout", "/steward/decide"])
def test_a_file_posted_as_the_csrf_token_is_refused_not_a_server_error(client, path):
    _sign_in(client)
    posted = client.post(
        path,
        data={"decision": "waived"},
        files={"csrf": ("token.txt", _csrf(client.get("/reports").text).encode(), "text/plain")},
        follow_redirects=False,
    )
    assert posted.status_code == 403 and "expired" in posted.text
    assert client.get("/reports").status_code == 200, "and the session is still signed in"


@pytest.mark.integration
def test_a_session_ends_when_idle_or_old(store_path, monkeypatch):
    store = SessionStore(store_path)
    session = store.start(STEWARD, "fingerprint")
    assert store.find(session.session_id) is not None
    now = time.time()
    monkeypatch.setattr(sessions.time, "time", lambda: now + sessions.IDLE_SECONDS + 5)
    assert store.find(session.session_id) is None
    session = store.start(STEWARD, "fingerprint")
    assert store.find("not-" + session.session_id) is None


# --- sign-in is rate limited --------------------------------------------------------------


@pytest.mark.integration
def test_sign_in_is_rate_limited_per_user_and_says_when_to_retry(client):
    for _ in range(sessions.MAX_FAILURES_PER_USER):
        wrong = _sign_in(client, STEWARD, "not-the-token-0123456789")
        assert wrong.status_code == 401
        assert "do not match" in wrong.text
    locked = _sign_in(client)  # even the right token, now
    assert locked.status_code == 429
    assert SESSION_COOKIE not in locked.cookies
    retry_after = int(locked.headers["retry-after"])
    assert 0 < retry_after <= sessions.ATTEMPT_WINDOW_SECONDS + 1
    assert re.search(r"Try again after \d\d:\d\d:\d\d UTC \(in \d+ min\)", locked.text)
    assert "for this user" in locked.text
    # Another user is not locked out by it.
    assert _sign_in(client, LEAD, LEAD_TOKEN).status_code == 303


@pytest.mark.integration
def test_sign_in_is_rate_limited_per_client_address(home, store_path):
    attacker = TestClient(_app(home, store_path), client=("203.0.113.9", 4000))
    for attempt in range(sessions.MAX_FAILURES_PER_ADDRESS):
        assert _sign_in(attacker, f"user{attempt}", "guess-0123456789abcdef").status_code == 401
    locked = _sign_in(attacker, LEAD, LEAD_TOKEN)
    assert locked.status_code == 429 and "from this address" in locked.text
    elsewhere = TestClient(_app(home, store_path), client=("198.51.100.7", 4000))
    assert _sign_in(elsewhere, LEAD, LEAD_TOKEN).status_code == 303


@pytest.mark.integration
def test_a_valid_token_under_another_users_name_is_refused(client):
    assert _sign_in(client, LEAD, STEWARD_TOKEN).status_code == 401
    assert _sign_in(client, "", STEWARD_TOKEN).status_code == 401


# --- headers ------------------------------------------------------------------------------


@pytest.mark.integration
def test_every_response_carries_the_security_headers(client):
    responses = {
        "page": client.get("/reports", headers={"Authorization": f"Bearer {LEAD_TOKEN}"}),
        "sign-in form": client.get("/login"),
        "refusal": client.get("/runs"),
        "not found": client.get("/no/such/page"),
        "redirect": _sign_in(client),
    }
    for what, response in responses.items():
        headers = response.headers
        assert headers["x-frame-options"] == "DENY", what
        assert "frame-ancestors 'none'" in headers["content-security-policy"], what
        assert headers["x-content-type-options"] == "nosniff", what
        assert headers["referrer-policy"] == "no-referrer", what
        assert "strict-transport-security" not in headers, what  # not configured for TLS
    cookie = responses["redirect"].headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie


@pytest.mark.integration
def test_behind_tls_cookies_are_secure_and_hsts_is_sent(home, store_path, monkeypatch):
    monkeypatch.setenv("VARDFLYTT_DASHBOARD_TLS", "1")
    client = TestClient(_app(home, store_path))
    signed_in = _sign_in(client)
    assert "secure" in signed_in.headers["set-cookie"].lower()
    assert signed_in.headers["strict-transport-security"].startswith("max-age=")
    assert client.get("/login").headers["strict-transport-security"].startswith("max-age=")


@pytest.mark.integration
def test_inside_airflow_only_airflows_own_ui_may_frame_the_dashboard(home, store_path):
    client = TestClient(_app(home, store_path, is_framed_by_host=True))
    response = client.get("/login")
    assert response.headers["x-frame-options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in response.headers["content-security-policy"]
    plugin = Path(__file__).parents[2] / "etl" / "dashboard" / "airflow_plugin.py"
    assert "is_framed_by_host=True" in plugin.read_text("utf-8")


# --- paths no page can have -----------------------------------------------------------------

BAD_PATHS = [
    "/reports/%00",
    "/files/docs/%00",
    "/files/docs/a%00b.html",
    "/files/reports/validation/%00/",
    "/files/validation/..%2f%00",
    "/evidence/..%2f",
    "/waves/w%00/evidence/x",
    "/waves/w/evidence/%00",
    "/runs/%00",
    "/files/docs/%ff",
    "/files/docs/%c0%af",
    "/files/docs/%zz",
    "/files/docs/x%",
    "/files/docs/%0a",
    "/steward?batch=%00",
    "/steward?system=%ff",
]


@pytest.mark.integration
@pytest.mark.parametrize("path", BAD_PATHS)
def test_a_nul_or_invalid_byte_in_a_path_is_a_404_never_a_500(client, path):
    for headers in ({"Authorization": f"Bearer {LEAD_TOKEN}"}, {}):
        response = client.get(path, headers=headers)
        assert response.status_code == 404, (path, response.status_code)
        assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.unit
def test_what_counts_as_a_bad_path():
    def scope(path: str, raw: bytes, query: bytes = b"") -> dict:
        return {"path": path, "raw_path": raw, "query_string": query}

    assert is_bad_path(scope("/a\x00", b"/a%00"))
    assert is_bad_path(scope("/a\ufffd", b"/a%ff"))
    assert is_bad_path(scope("/a", b"/a%f"))
    assert is_bad_path(scope("/a", b"/a", b"x=%00"))
    assert not is_bad_path(scope("/waves/vår 1", b"/waves/v%C3%A5r%201", b"system=elvis&x=a+b"))
    assert not is_bad_path(scope("/files/docs/index.html", b"/files/docs/index.html"))


# --- report links resolve -------------------------------------------------------------------


def _hrefs(page: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"?#]+)"', page)]


@pytest.mark.integration
def test_every_report_link_the_dashboard_renders_resolves(tmp_path, store_path):
    home = tmp_path / "home"
    client = TestClient(_app(home, store_path))
    bearer = {"Authorization": f"Bearer {LEAD_TOKEN}"}

    # No report yet: text, not a link that would 404.
    page = client.get("/steward", headers=bearer).text
    assert 'id="latest-report"' in page and "No validation report yet" in page
    assert "/files/" not in page

    (home / "docs").mkdir(parents=True)
    (home / "docs" / "index.html").write_text("<p>mapping docs</p>", "utf-8")
    for name, has_data_docs in (("run-1", False), ("latest", True)):
        folder = home / "reports" / "validation" / name
        (folder / "data_docs").mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps({"run_label": name}), "utf-8")
        # As etl/report/validation.py writes it: a relative link to the mapping docs.
        (folder / "summary.html").write_text(
            '<a href="../../../docs/index.html">mapping</a>', "utf-8"
        )
        if has_data_docs:
            (folder / "data_docs" / "index.html").write_text("<p>data docs</p>", "utf-8")
        time.sleep(0.02)  # "latest" is written last

    checked = 0
    for path in ("/reports", "/steward"):
        page = client.get(path, headers=bearer).text
        for href in _hrefs(page):
            if "/files/" in href:
                assert client.get(href, headers=bearer).status_code == 200, href
                checked += 1
    assert checked >= 5
    steward = client.get("/steward", headers=bearer).text
    latest = re.search(r'<a href="([^"]+)" id="latest-report"', steward).group(1)
    assert latest.endswith("/latest/data_docs/index.html")
    assert "data docs" in client.get(latest, headers=bearer).text

    # The summary's own relative link to the mapping docs resolves under the dashboard too.
    summary = next(h for h in _hrefs(client.get("/reports", headers=bearer).text) if "summary" in h)
    target = urljoin(f"http://testserver{summary}", "../../../docs/index.html")
    assert client.get(target, headers=bearer).text == "<p>mapping docs</p>"
    # Old links to validation reports still lead to the report.
    old = client.get("/files/validation/latest/summary.html", headers=bearer)
    assert old.status_code == 200 and "mapping" in old.text


# --- the steward banner ---------------------------------------------------------------------


@pytest.mark.integration
def test_the_steward_page_shows_no_banner_text_from_a_link(client):
    _sign_in(client)
    injected = "Waived by the lead: <b>sign in again at evil.example</b>"
    for query in (
        {"notice": injected},
        {"error": injected},
        {"message": injected},
        {"result": injected},
    ):
        page = client.get("/steward", params=query).text
        assert "evil.example" not in page, query
        assert 'id="notice"' not in page and 'id="error"' not in page

    # A real outcome is shown: the dashboard signed it for this viewer.
    page = client.get("/steward").text
    decided = client.post("/steward/decide", data={"csrf": _csrf(page), "decision": "waived"})
    assert decided.status_code == 200
    assert re.search(r'<p class="error" id="error">choose at least one row</p>', decided.text)
    signed = re.search(r"result=([^&\"']+)", str(decided.url)).group(1)

    # The same signed outcome forwarded to another person shows them nothing.
    lead = TestClient(client.app)
    _sign_in(lead, LEAD, LEAD_TOKEN)
    assert 'id="error"' not in lead.get(f"/steward?result={signed}").text
    # And a tampered one shows nothing either.
    assert 'id="error"' not in client.get(f"/steward?result={signed[:-2]}xx").text


# --- Markdown evidence ----------------------------------------------------------------------


def _content(title: str, approver: str) -> dict:
    return {
        "wave": {
            "wave": "wave_1",
            "title": title,
            "window": {"start": "2026-09-01", "end": "2026-09-02"},
        },
        "state": "rehearsal",
        "mapping_version": "abc123`<b>",
        "plan_digest": "d1",
        "generated_at": "2026-09-01T10:00:00+00:00",
        "criteria": [{"criterion": "every system loaded", "passed": True, "detail": title}],
        "accounting": [
            {
                "source_system": "elvis",
                "entity": "patient | injected | cell",
                "extracted": 10,
                "loaded": 9,
                "quarantined": 1,
                "excluded": 0,
                "merged": 0,
                "residue": 0,
            }
        ],
        "reconciliation": [],
        "transitions": [
            {
                "at": "2026-09-01T10:00:00",
                "from_state": "planned",
                "to_state": "rehearsal",
                "actor": approver,
                "run_id": None,
                "mapping_version": None,
            }
        ],
        "approvals": [
            {
                "at": "2026-09-01T11:00:00",
                "role": "project_lead",
                "decision": "go",
                "approver": approver,
                "channel": "dashboard",
                "is_current": True,
            }
        ],
    }


@pytest.mark.unit
def test_titles_names_and_notes_are_escaped_in_markdown_evidence():
    from markdown_it import MarkdownIt

    title = (
        "Wave 1 <script>alert(1)</script> <img src=x onerror=alert(2)> "
        "[click](javascript:alert(3)) ![i](http://evil.example/x.png) **loud** www.evil.example"
        "\n# A fake heading\n| a | fake | row |"
    )
    approver = "eve\n- GO by the region's director <a href='http://evil.example'>x</a>"
    text = evidence._markdown(_content(title, approver))
    rendered = MarkdownIt("gfm-like").render(text)

    assert "<script" not in rendered and "<img" not in rendered and "<strong>loud" not in rendered
    assert "<a " not in rendered and "evil.example</a>" not in rendered
    assert rendered.count("<h1>") == 1 and "A fake heading</h1>" not in rendered
    assert rendered.count("<td>") == 8, "one accounting row of eight cells, no injected cells"
    # No value starts a line: the four facts, one criterion, one transition, one approval.
    assert len([line for line in text.splitlines() if line.startswith("- ")]) == 7
    # The text still reads as written.
    assert "&lt;script&gt;alert" in rendered and "patient | injected | cell" in rendered
    assert "abc123'&lt;b&gt;" in rendered
