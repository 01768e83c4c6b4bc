"""tests/e2e/airflow_server.py makes a REST call again while Airflow answers it with a locked
SQLite metadata database ("Database error"), and only then: a refusal, a success or another
error comes back at once, and a lock that never clears comes back after ``LOCKED_ATTEMPTS``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e import airflow_server
from tests.e2e.airflow_server import LOCKED_ATTEMPTS, AirflowServer

pytestmark = pytest.mark.unit

LOCKED = (500, {"detail": {"reason": "Database error", "statement": "hidden"}})
REFUSED = (403, {"detail": "User=cecilia (id=cecilia) is not a respondent for the task."})
OTHER_500 = (500, {"detail": "Internal Server Error"})


@contextmanager
def _airflow(answers: list[tuple[int, dict]]) -> Iterator[tuple[AirflowServer, list[str]]]:
    """A stand-in api-server on loopback: a token for anyone, then ``answers`` in turn (the last
    one for ever); yields the server and the methods of the calls it got under /api/v2."""
    calls: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            if self.path == "/auth/token":
                status, body = 201, {"access_token": "t"}
            else:
                calls.append(self.command)
                status, body = answers[min(len(calls), len(answers)) - 1]
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _answer

        def log_message(self, *args) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{http.server_address[1]}"
        yield AirflowServer(url, Path("/nonexistent"), {"cecilia": "p"}, pid=0), calls
    finally:
        http.shutdown()
        http.server_close()


@pytest.fixture(autouse=True)
def _no_pause(monkeypatch):
    monkeypatch.setattr(airflow_server, "LOCKED_PAUSE_SECONDS", 0.0)


def test_a_locked_database_is_asked_again_until_it_answers():
    with _airflow([LOCKED, LOCKED, REFUSED]) as (server, calls):
        assert server.api("cecilia", "/x", "PATCH", {"a": 1}) == REFUSED
    assert calls == ["PATCH"] * 3


@pytest.mark.parametrize("answer", [REFUSED, OTHER_500, (200, {"ok": True})])
def test_any_other_answer_comes_back_at_once(answer):
    with _airflow([answer, (200, {"later": True})]) as (server, calls):
        assert server.api("cecilia", "/x", "PATCH", {}) == answer
    assert calls == ["PATCH"]


def test_a_lock_that_never_clears_comes_back_after_the_last_attempt():
    with _airflow([LOCKED]) as (server, calls):
        assert server.api("cecilia", "/x") == LOCKED
    assert calls == ["GET"] * LOCKED_ATTEMPTS
