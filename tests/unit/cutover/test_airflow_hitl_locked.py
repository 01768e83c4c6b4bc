"""``vardflytt cutover approve`` (and the demo) send a go/no-go answer again while Airflow fails
it on its metadata database, and only then (etl/cutover/airflow_hitl.py): a refusal or a
success comes back at once, a lock that never clears comes back after ``LOCKED_ATTEMPTS``, and
an answer recorded by an attempt that reported a failure is not mistaken for a refusal."""

from __future__ import annotations

import json

import httpx
import pytest

from etl.cutover import airflow_hitl
from etl.cutover.airflow_hitl import (
    APPROVE,
    LOCKED_ATTEMPTS,
    REJECT,
    answer_once_recorded,
    is_database_failure,
)

pytestmark = pytest.mark.unit

PATH = "/api/v2/dags/d/dagRuns/r/taskInstances/go_no_go_project_lead/-1/hitlDetails"
ANSWER = {"chosen_options": [APPROVE], "params_input": {"note": "go"}}
LOCKED = (500, {"detail": {"reason": "Database error", "statement": "hidden"}})
LOCKED_503 = (503, {"detail": "Database is locked; retry, or use PostgreSQL or MySQL"})
REFUSED = (403, {"detail": "User=cecilia (id=cecilia) is not a respondent for the task."})
ALREADY = (409, {"detail": "Human-in-the-loop detail has already been updated"})
DONE = (200, {"chosen_options": [APPROVE], "responded_by": {"id": "lena", "name": "lena"}})


def _recorded(user: str, options: list[str]) -> tuple[int, dict]:
    return 200, {
        "response_received": True,
        "responded_by_user": {"id": user, "name": user},
        "chosen_options": options,
        "params_input": {"note": "go"},
    }


def _client(patches: list[tuple[int, dict]], get=None) -> tuple[httpx.Client, list[str]]:
    """A client whose PATCHes get ``patches`` in turn (the last for ever) and whose GET of the
    task's detail gets ``get``; the list records the methods called."""
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path == PATH
        calls.append(request.method)
        if request.method == "GET":
            status, body = get
        else:
            assert json.loads(request.content) == ANSWER
            status, body = patches[min(calls.count("PATCH"), len(patches)) - 1]
        return httpx.Response(status, json=body)

    return httpx.Client(transport=httpx.MockTransport(handle), base_url="http://airflow"), calls


@pytest.fixture(autouse=True)
def _no_pause(monkeypatch):
    monkeypatch.setattr(airflow_hitl, "LOCKED_PAUSE_SECONDS", 0.0)


@pytest.mark.parametrize("locked", [LOCKED, LOCKED_503])
def test_an_answer_the_database_failed_is_sent_again_until_it_is_recorded(locked):
    client, calls = _client([locked, locked, DONE])
    response = answer_once_recorded(client, PATH, ANSWER, "lena")
    assert (response.status_code, response.json()) == DONE
    assert calls == ["PATCH"] * 3


@pytest.mark.parametrize("answer", [REFUSED, DONE, ALREADY, (500, {"detail": "Internal error"})])
def test_any_other_answer_comes_back_at_once(answer):
    client, calls = _client([answer, DONE])
    response = answer_once_recorded(client, PATH, ANSWER, "lena")
    assert (response.status_code, response.json()) == answer
    assert calls == ["PATCH"]


def test_a_lock_that_never_clears_comes_back_after_the_last_attempt():
    client, calls = _client([LOCKED])
    response = answer_once_recorded(client, PATH, ANSWER, "lena")
    assert (response.status_code, response.json()) == LOCKED
    assert calls == ["PATCH"] * LOCKED_ATTEMPTS


def test_a_failed_attempt_that_was_recorded_after_all_is_the_success_it_was():
    client, calls = _client([LOCKED, ALREADY], get=_recorded("lena", [APPROVE]))
    response = answer_once_recorded(client, PATH, ANSWER, "lena")
    assert response.status_code == 200
    assert response.json()["responded_by"]["id"] == "lena"
    assert response.json()["chosen_options"] == [APPROVE]
    assert calls == ["PATCH", "PATCH", "GET"]


@pytest.mark.parametrize(
    "recorded", [_recorded("cecilia", [APPROVE]), _recorded("lena", [REJECT]), (404, {})]
)
def test_someone_elses_or_another_recorded_answer_stays_a_conflict(recorded):
    client, calls = _client([LOCKED, ALREADY], get=recorded)
    response = answer_once_recorded(client, PATH, ANSWER, "lena")
    assert (response.status_code, response.json()) == ALREADY
    assert calls == ["PATCH", "PATCH", "GET"]


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (*LOCKED, True),
        (*LOCKED_503, True),
        (500, {"detail": {"reason": "Unique constraint violation"}}, False),
        (500, {"detail": "Internal Server Error"}, False),
        (503, {"detail": "Service unavailable"}, False),
        (403, {"detail": {"reason": "Database error"}}, False),
        (500, None, False),
        (500, ["Database error"], False),
    ],
)
def test_only_a_metadata_database_failure_counts(status, body, expected):
    assert is_database_failure(status, body) is expected
