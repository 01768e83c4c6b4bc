"""``make airflow`` in headless chromium, the way an operator and the approvers use it: Airflow's
own sign-in, trigger forms with their defaults, run pages and Required Actions (human in the loop).

One ``vardflytt airflow standalone`` (api-server, scheduler, DAG processor, triggerer;
LocalExecutor on SQLite; the plan's approvers and ``admin`` with their generated passwords) over
the shared small estate and a mappings folder holding two satellites and a one-wave plan, so the
DAG processor parses little. Its wave ``t1`` has two approving roles with one person each.

In order (the tests share the one Airflow and build on each other):

1. admin switches a migration DAG on and triggers it from its form; the other trigger forms open
   ready with their defaults (Trigger enabled);
2. the wave's final cutover run (started over REST as soon as Airflow is up, after an initial
   load made while Airflow started) waits at its go/no-go: a user who is not the role's approver
   is refused in the UI and over REST, the approvers approve in Required Actions with a note,
   the ledger records who decided and the run cuts the wave over;
3. admin starts a whole-wave rollback from its form; the core is back to before the wave;
4. the migration, which ran meanwhile (another system), has turned green.

The runs overlap rather than wait for each other: on two cores the module takes minutes, most of
them Airflow starting and its tasks importing the pipeline.

Screenshots go to ``var/test-artifacts/make-airflow/`` (gitignored); Airflow's logs stay in its
tmp home (``airflow/logs/standalone.log``), quoted when a wait fails.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from etl.core.batch_states import PROMOTED
from etl.core.database import core_engine
from etl.core.tables import promotion
from etl.cutover import ledger
from etl.cutover.airflow_hitl import (
    APPROVE,
    CHANNEL,
    WAITING_STATES,
    approval_task_id,
    cutover_dag_id,
)
from etl.cutover.plan import one_wave_plan
from etl.settings import PROJECT_ROOT, Settings
from tests.e2e.airflow_server import (
    LOCKED_ATTEMPTS,
    LOCKED_PAUSE_SECONDS,
    AirflowServer,
    airflow_standalone,
)
from tests.e2e.browser import (
    POLL_SECONDS,
    WAIT_SECONDS,
    is_navigating,
    open_page,
    require_browser,
    screenshots,
)

pytestmark = [pytest.mark.integration, pytest.mark.browser]

MIGRATED = "akut_kungalv"  # triggered from its own form
WAVE, WAVE_SYSTEM = "t1", "akut_skas"  # cut over, then rolled back
LEAD, SAFETY = "anna", "cecilia"
ROLES = {"project_lead": LEAD, "medical_safety_officer": SAFETY}
ADMIN = "admin"
AS_OF = "2026-07-01"
CUTOVER, ROLLBACK = cutover_dag_id(WAVE), "vardflytt_rollback"

OPEN_FORM = '[data-testid="trigger-dag-button"]'  # the DAG page's Trigger
SUBMIT = '[data-testid="trigger-dag-submit"]'  # the form's own Trigger
PAUSE_SWITCH = '[data-testid="toggle-pause"]'  # data-state: checked = switched on
RUN_STATE = '[data-testid="header-card"] [data-testid="state-badge"]'  # a run page's state
TOAST = '[data-scope="toast"][data-part="root"]'  # data-type: success | error
NOTE_FIELD = "element_note"  # the go/no-go's "note" Param in the response form

DAGS_SECONDS = 120  # the DAG processor's first parse, after the components are healthy
# A run of a few tasks on two busy cores (a validation task alone: up to a minute); two waits
# in one test stay within pytest's timeout (600 s).
RUN_SECONDS = 280
ENDED = {"success", "failed"}
# How often a REST wait asks again: each look is a call to the one api-server worker, which the
# runs' tasks need too, so not as often as the page's cheap WebDriver looks (POLL_SECONDS).
REST_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Standalone:
    server: AirflowServer
    settings: Settings
    final_run_id: str  # the wave's final cutover run, started when Airflow came up


def _mappings(folder: Path) -> Path:
    """Two satellites and a plan with one wave, two roles, one approver each."""
    mappings = folder / "mappings"
    for name in (MIGRATED, WAVE_SYSTEM, "crosswalks", "_archetypes"):
        shutil.copytree(PROJECT_ROOT / "mappings" / name, mappings / name)
    plan = one_wave_plan(
        WAVE,
        [WAVE_SYSTEM],
        {role: {"airflow_users": [user]} for role, user in ROLES.items()},
        title="browser test wave",
        max_quarantine_rate=0.06,
        tolerated_quarantined_rows=10,
        min_rehearsals=0,  # rehearsals: tests/integration/test_waves.py
    )
    (mappings / "waves.yaml").write_text(yaml.safe_dump(plan, sort_keys=False), "utf-8")
    return mappings


def _wait_rest(server: AirflowServer, what: str, seconds: float, probe):
    """Poll ``probe()`` until it returns something truthy; fail saying what was last seen."""
    deadline = time.monotonic() + seconds
    while True:
        found, seen = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what}: not within {seconds:.0f} s; last seen: {seen}\n"
                f"Airflow's log ends:\n{server.log_tail(3000)}"
            )
        time.sleep(REST_POLL_SECONDS)


def _task_states(server: AirflowServer, dag_id: str, run_id: str) -> dict[str, str]:
    status, body = server.api(
        ADMIN, f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances"
    )
    if status != 200:
        return {"(REST)": f"HTTP {status}: {body.get('detail')}"}
    return {t["task_id"]: t["state"] for t in body["task_instances"]}


def _run(server: AirflowServer, dag_id: str, run_id: str) -> dict:
    status, body = server.api(ADMIN, f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}")
    assert status == 200, f"{dag_id} run {run_id}: HTTP {status}: {body}"
    return body


@pytest.fixture(scope="module")
def airflow(small_estate, tmp_path_factory):
    """``make airflow`` over the small estate; the wave loaded (initial) while it starts, and its
    final run started as soon as it is up, so that run reaches its go/no-go while the browser
    works on the other DAGs (two cores: the runs overlap rather than queue behind each other)."""
    require_browser()
    folder = tmp_path_factory.mktemp("make_airflow")
    with pytest.MonkeyPatch.context() as environment:
        # In-process work (the initial load, the ledger checks) reads the same settings as the
        # tasks, which get them from `vardflytt airflow standalone`'s environment.
        environment.setenv("VARDFLYTT_HOME", str(folder / "home"))
        environment.setenv("VARDFLYTT_MAPPINGS_DIR", str(_mappings(folder)))
        environment.setenv("VARDFLYTT_ESTATE_DIR", str(small_estate))
        settings = Settings()

        def initial_load() -> None:
            from etl.cutover import waves

            waves.load_wave(settings, WAVE, "initial", dt.date.fromisoformat(AS_OF), "engineer")

        with airflow_standalone(settings, while_starting=initial_load) as server:
            expected = {f"vardflytt_{MIGRATED}", CUTOVER, ROLLBACK, "vardflytt_migrate"}

            def parsed():
                status, body = server.api(ADMIN, "/dags?limit=100")
                found = {d["dag_id"] for d in body.get("dags", [])} if status == 200 else set()
                return expected <= found, sorted(found) or f"HTTP {status}"

            _wait_rest(server, "the DAG processor stores the project's DAGs", DAGS_SECONDS, parsed)
            status, body = server.api(ADMIN, f"/dags/{CUTOVER}", "PATCH", {"is_paused": False})
            assert status == 200, body
            status, run = server.api(
                ADMIN,
                f"/dags/{CUTOVER}/dagRuns",
                "POST",
                {"logical_date": None, "conf": {"phase": "final", "as_of_date": AS_OF}},
            )
            assert status == 200, run
            yield Standalone(server, settings, run["dag_run_id"])


@pytest.fixture(scope="module")
def shot(browser):
    return screenshots(browser, "make-airflow")


def _page_text(browser, characters: int = 1500) -> str:
    from selenium.webdriver.common.by import By

    try:
        return browser.find_element(By.TAG_NAME, "body").text[-characters:]
    except Exception as error:  # the page is what failed: say so instead
        return f"(no page text: {type(error).__name__})"


def _wait(browser, what: str, condition, seconds: float = WAIT_SECONDS):
    """WebDriverWait whose failure says what was awaited and what the page showed."""
    from selenium.common.exceptions import (
        StaleElementReferenceException,
        TimeoutException,
        WebDriverException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    # Airflow's React pages re-render while loading: an element found a moment ago may be
    # replaced before it is checked; that is "not yet", not a failure. So is a look refused
    # while the page navigates; any other refusal fails the wait at once.
    ignored = (StaleElementReferenceException,)

    def looked(driver):
        try:
            return condition(driver)
        except WebDriverException as error:
            if is_navigating(error):
                return False
            raise

    try:
        return WebDriverWait(browser, seconds, POLL_SECONDS, ignored_exceptions=ignored).until(
            looked
        )
    except TimeoutException:
        raise AssertionError(
            f"{what}: not within {seconds:.0f} s at {browser.current_url}; the page showed:\n"
            f"{_page_text(browser)}"
        ) from None


def _go(browser, url: str) -> None:
    """Open ``url``, unless the browser shows it already (signed in and sent there): each load of
    Airflow's UI runs its whole 7 MB application again, seconds of chromium on two cores."""
    if browser.current_url.rstrip("/") != url.rstrip("/"):
        open_page(browser, url)


def _sign_in(browser, server: AirflowServer, user: str, page: str = "/") -> None:
    """Airflow's own sign-in page, as ``user`` with the password make airflow generated; then
    Airflow sends the browser on to ``page`` (a path), as after a link opened signed out."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as expected

    open_page(browser, f"{server.url}/api/v2/auth/logout")  # the previous user, if any, signs out
    browser.delete_all_cookies()
    target = server.url + page
    open_page(browser, f"{server.url}/auth/login?next={urllib.parse.quote(target)}")
    _wait(
        browser,
        "Airflow's sign-in form",
        expected.element_to_be_clickable((By.CSS_SELECTOR, 'input[name="username"]')),
    ).send_keys(user)
    browser.find_element(By.CSS_SELECTOR, 'input[name="password"]').send_keys(
        server.passwords[user]
    )
    browser.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
    _wait(
        browser,
        f"{user} signed in and sent on to {page}",
        lambda driver: (
            driver.get_cookie("_token") and driver.current_url.rstrip("/") == target.rstrip("/")
        ),
    )


def _open_form(browser, server: AirflowServer, dag_id: str):
    """The DAG's trigger form, rendered with its defaults; returns the form's Trigger button."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as expected

    _go(browser, f"{server.url}/dags/{dag_id}")
    _wait(
        browser,
        f"{dag_id}: the Trigger button",
        expected.element_to_be_clickable((By.CSS_SELECTOR, OPEN_FORM)),
        60,
    ).click()
    submit = _wait(
        browser,
        f"{dag_id}: the trigger form",
        expected.presence_of_element_located((By.CSS_SELECTOR, SUBMIT)),
    )
    # The fields (id element_<param>) validate as they render, before the button is read.
    _wait(
        browser,
        f"{dag_id}: the form's fields",
        lambda driver: driver.find_elements(By.CSS_SELECTOR, "[id^='element_']"),
    )
    return submit


def _switch_on(browser, server: AirflowServer, dag_id: str) -> None:
    """Switch the paused DAG on with the switch on its page (DAGs start paused)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as expected

    _go(browser, f"{server.url}/dags/{dag_id}")
    switch = _wait(
        browser,
        f"{dag_id}: the pause switch",
        expected.element_to_be_clickable((By.CSS_SELECTOR, PAUSE_SWITCH)),
        60,
    )
    assert switch.get_attribute("data-state") == "unchecked", f"{dag_id} did not start paused"
    switch.click()
    _wait(
        browser,
        f"{dag_id}: the switch turned on",
        lambda driver: (
            driver.find_element(By.CSS_SELECTOR, PAUSE_SWITCH).get_attribute("data-state")
            == "checked"
        ),
    )

    def unpaused():  # the switch turns at once; Airflow stores it a moment later
        paused = server.api(ADMIN, f"/dags/{dag_id}")[1].get("is_paused")
        return paused is False, f"is_paused: {paused}"

    _wait_rest(server, f"{dag_id} switched on, as Airflow stores it", WAIT_SECONDS, unpaused)


def _run_count(server: AirflowServer, dag_id: str) -> int:
    status, body = server.api(ADMIN, f"/dags/{dag_id}/dagRuns?limit=1")
    assert status == 200, body
    return body["total_entries"]


def _trigger_with_defaults(browser, server: AirflowServer, dag_id: str, shot) -> str:
    """Submit the DAG's form as it opens; the UI goes to the new run's page. Returns its id."""
    from selenium.webdriver.common.by import By

    submit = _open_form(browser, server, dag_id)
    shot(f"{dag_id}_form")
    assert submit.is_enabled(), f"{dag_id}: Trigger is disabled with the form's defaults"
    runs_before = _run_count(server, dag_id)
    submit.click()
    try:
        _wait(browser, f"{dag_id}: the new run's page", lambda d: "/runs/" in d.current_url)
    except AssertionError:
        # Seen once on a loaded machine: the click landed while the form re-rendered and React
        # dropped it (the dialog still open, no run made). Submitted again only then, never
        # when Airflow holds a run the first click made (that would be a second run).
        if _run_count(server, dag_id) != runs_before:
            raise
        shot(f"{dag_id}_form_again")
        browser.find_element(By.CSS_SELECTOR, SUBMIT).click()
        _wait(browser, f"{dag_id}: the new run's page", lambda d: "/runs/" in d.current_url)
    return urllib.parse.unquote(browser.current_url.rstrip("/").rsplit("/runs/", 1)[1])


def _wait_for_run_in_ui(browser, server: AirflowServer, dag_id: str, run_id: str) -> str:
    """The run page's state until the run ends; returns it (lower case). The page refreshes
    itself while a run is active; it is reloaded once a minute anyway."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    page = f"{server.url}/dags/{dag_id}/runs/{run_id}"
    if urllib.parse.unquote(browser.current_url) != page:
        open_page(browser, page)
    started = reloaded = time.monotonic()
    shown = ""
    while time.monotonic() - started < RUN_SECONDS:
        try:
            badges = browser.find_elements(By.CSS_SELECTOR, RUN_STATE)
            shown = badges[0].text.strip().lower() if badges else "(no state shown)"
        except WebDriverException:  # re-rendered while read
            shown = "(re-rendering)"
        if shown in ENDED:
            return shown
        if time.monotonic() - reloaded > 60:
            browser.refresh()
            reloaded = time.monotonic()
        time.sleep(POLL_SECONDS)
    raise AssertionError(
        f"{dag_id} run {run_id} did not end within {RUN_SECONDS} s: its page shows "
        f"{shown!r}; tasks (REST): {_task_states(server, dag_id, run_id)}\n"
        f"Airflow's log ends:\n{server.log_tail(3000)}"
    )


def _hitl(server: AirflowServer, user: str, run_id: str) -> dict[str, dict]:
    """The run's go/no-go tasks as ``user`` sees them over REST, by task id."""
    status, body = server.api(
        user, f"/dags/{CUTOVER}/dagRuns/{urllib.parse.quote(run_id)}/hitlDetails"
    )
    assert status == 200, f"{user} cannot list the go/no-go tasks: HTTP {status}: {body}"
    return {d["task_instance"]["task_id"]: d for d in body["hitl_details"]}


def _answer_in_required_actions(browser, server, user: str, role: str, note: str, shot):
    """As ``user`` (signed in), open Required Actions, the role's go/no-go, write the note and
    click Approve. Returns the toast Airflow shows: (type, text)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as expected

    task_id = approval_task_id(role)
    _go(browser, f"{server.url}/required_actions")
    _wait(
        browser,
        f"{user}'s Required Actions list the {role} go/no-go",
        expected.element_to_be_clickable(
            (By.CSS_SELECTOR, f'a[href$="/tasks/{task_id}/required_actions"]')
        ),
    ).click()
    _wait(
        browser,
        f"the {role} go/no-go form",
        expected.element_to_be_clickable(
            (By.CSS_SELECTOR, f'[data-testid="hitl-option-{APPROVE}"]')
        ),
    )
    assert f"Go/no-go as {role}" in _page_text(browser, 20_000)
    browser.find_element(By.ID, NOTE_FIELD).send_keys(note)
    shot(f"{user}_answers_{role}")
    browser.find_element(By.CSS_SELECTOR, f'[data-testid="hitl-option-{APPROVE}"]').click()
    toast = _wait(
        browser,
        f"Airflow's answer to {user}'s {role} go/no-go",
        expected.visibility_of_element_located((By.CSS_SELECTOR, TOAST)),
    )
    kind, text = toast.get_attribute("data-type"), toast.text
    shot(f"{user}_answered_{role}_{kind}")
    return kind, text


def _answer_until_served(browser, server, user: str, role: str, note: str, shot, run_id: str):
    """``_answer_in_required_actions``, made again (up to ``LOCKED_ATTEMPTS`` times in all) while
    Airflow fails it with an error that is not a refusal ("Access Denied") and records nothing:
    the SQLite metadata database of ``make airflow`` locked under load, as ``AirflowServer.api``
    retries over REST. A refusal, a success or a recorded answer is returned at once."""
    task_id = approval_task_id(role)
    for _ in range(LOCKED_ATTEMPTS - 1):
        kind, text = _answer_in_required_actions(browser, server, user, role, note, shot)
        if kind != "error" or text.splitlines()[:1] == ["Access Denied"]:
            return kind, text
        if _hitl(server, ADMIN, run_id)[task_id]["response_received"]:
            return kind, text  # recorded after all: the caller's checks say what it was
        time.sleep(LOCKED_PAUSE_SECONDS)
    return _answer_in_required_actions(browser, server, user, role, note, shot)


@pytest.fixture(scope="module")
def migration() -> dict:
    """The migration run the first test triggers and a later one waits for (``run_id``)."""
    return {}


def test_a_migration_is_switched_on_and_triggered_from_its_form(airflow, browser, shot, migration):
    server, dag_id = airflow.server, f"vardflytt_{MIGRATED}"
    _sign_in(browser, server, ADMIN, f"/dags/{dag_id}")
    _switch_on(browser, server, dag_id)
    migration["run_id"] = run_id = _trigger_with_defaults(browser, server, dag_id, shot)
    run = _run(server, dag_id, run_id)
    assert run["triggering_user_name"] == ADMIN
    assert run["conf"] == {"scope": "all", "dry_run": False, "batch_id": None, "as_of_date": None}


# While the migration runs: the other forms open ready to submit as they are.
@pytest.mark.parametrize("dag_id", ["vardflytt_migrate", CUTOVER])
def test_a_trigger_form_is_ready_with_its_defaults(airflow, browser, shot, dag_id):
    if not browser.get_cookie("_token"):
        _sign_in(browser, airflow.server, ADMIN)
    submit = _open_form(browser, airflow.server, dag_id)
    shot(f"{dag_id}_form")
    assert submit.is_enabled(), f"{dag_id}: Trigger is disabled with the form's defaults"


def test_the_go_no_go_is_answered_by_its_approvers_in_airflows_ui(airflow, browser, shot):
    server, run_id = airflow.server, airflow.final_run_id
    tasks = {approval_task_id(role) for role in ROLES}

    def asking():
        states = _task_states(server, CUTOVER, run_id)
        if {"failed", "upstream_failed"} & set(states.values()):
            raise AssertionError(f"the final run failed before its go/no-go: {states}")
        return all(states.get(task) in WAITING_STATES for task in tasks), states

    _wait_rest(server, f"{CUTOVER} run {run_id} asks for its go/no-go", RUN_SECONDS, asking)

    # The safety officer may not answer for the project lead: Airflow refuses her in the UI and
    # over REST, and the administrator too; nothing is recorded.
    _sign_in(browser, server, SAFETY, "/required_actions")
    kind, text = _answer_until_served(
        browser, server, SAFETY, "project_lead", "not my role", shot, run_id
    )
    assert (kind, text.splitlines()[0]) == ("error", "Access Denied"), (kind, text)
    lead_task = approval_task_id("project_lead")
    for user in (SAFETY, ADMIN):
        status, body = server.api(
            user,
            f"/dags/{CUTOVER}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/{lead_task}"
            "/-1/hitlDetails",
            "PATCH",
            {"chosen_options": [APPROVE], "params_input": {"note": "not my role"}},
        )
        assert status == 403, (
            f"{user} answered the project lead's go/no-go: {status} {body}\n"
            f"Airflow's log ends:\n{server.log_tail(3000)}"
        )
        assert "not a respondent" in body["detail"]
    assert _hitl(server, ADMIN, run_id)[lead_task]["response_received"] is False

    # Each approver answers their own role in Required Actions, with a note: the safety officer
    # (still signed in), then the project lead.
    notes = {role: f"{role}: criteria met, go" for role in ROLES}
    for role, user in [("medical_safety_officer", SAFETY), ("project_lead", LEAD)]:
        if user != SAFETY:
            _sign_in(browser, server, user, "/required_actions")
        kind, text = _answer_until_served(browser, server, user, role, notes[role], shot, run_id)
        assert kind == "success", f"{user}'s {role} answer: {kind}: {text}"
        _wait(
            browser,
            f"the page shows {user}'s answer",
            lambda driver, user=user: f"from {user}" in _page_text(driver, 20_000),
        )
    answered = _hitl(server, ADMIN, run_id)
    assert {task: answered[task]["responded_by_user"]["id"] for task in tasks} == {
        approval_task_id(role): user for role, user in ROLES.items()
    }

    # The run records the decisions in the ledger and cuts the wave over.
    shown = _wait_for_run_in_ui(browser, server, CUTOVER, run_id)
    shot(f"{CUTOVER}_run_{shown}")
    assert shown == "success", f"{CUTOVER}: {_task_states(server, CUTOVER, run_id)}"
    assert _run(server, CUTOVER, run_id)["state"] == "success"
    with core_engine(airflow.settings.resolved_core_url).connect() as connection:
        state = ledger.wave_state(connection, WAVE)
        history = ledger.transitions(connection, WAVE)
        approvals = ledger.approvals(connection, WAVE, current_only=True)
    assert state == ledger.CUT_OVER
    assert {
        a["role"]: (a["approver"], a["decision"], a["channel"], a["run_id"], a["note"])
        for a in approvals
    } == {role: (user, "approve", CHANNEL, run_id, notes[role]) for role, user in ROLES.items()}
    cut = history[-1]
    assert (cut["to_state"], cut["run_id"]) == (ledger.CUT_OVER, run_id)
    assert set(cut["actor"].split(", ")) == set(ROLES.values())


def test_a_wave_rollback_is_started_from_its_form(airflow, browser, shot):
    server = airflow.server
    # The rollback needs the wave's lock, which the final cutover run holds until it ends: if
    # the go/no-go test above failed, say so here instead of a lock error from the rollback.
    final = _run(server, CUTOVER, airflow.final_run_id)["state"]
    assert final in ENDED, (
        f"the wave's final cutover run {airflow.final_run_id} is still {final!r} (the go/no-go "
        "test did not finish it): it holds the wave's lock, so no rollback can start"
    )
    _sign_in(browser, server, ADMIN, f"/dags/{ROLLBACK}")
    _switch_on(browser, server, ROLLBACK)
    run_id = _trigger_with_defaults(browser, server, ROLLBACK, shot)
    # No batch id: the task rolls back the whole wave (dags/vardflytt_cutover.py, rollback).
    assert _run(server, ROLLBACK, run_id)["conf"] == {
        "wave": WAVE,
        "batch_id": None,
        "cascade": False,
    }

    shown = _wait_for_run_in_ui(browser, server, ROLLBACK, run_id)
    shot(f"{ROLLBACK}_run_{shown}")
    assert shown == "success", f"{ROLLBACK}: {_task_states(server, ROLLBACK, run_id)}"
    assert _run(server, ROLLBACK, run_id)["state"] == "success"
    engine = core_engine(airflow.settings.resolved_core_url)
    with engine.connect() as connection:
        state = ledger.wave_state(connection, WAVE)
        rolled_back = ledger.transitions(connection, WAVE)[-1]
    assert state == ledger.ROLLED_BACK
    assert (rolled_back["run_id"], rolled_back["actor"]) == (run_id, ADMIN)
    assert rolled_back["evidence"]["checksum_equal_to_before_wave"] is True
    assert len(rolled_back["evidence"]["rolled_back_batches"]) == 2  # initial and final delta
    assert ledger.lock_holder(engine, WAVE) is None


# Last: the migration ran alongside the cutover and the rollback (other systems).
def test_the_migration_turns_green(airflow, browser, shot, migration):
    server, dag_id = airflow.server, f"vardflytt_{MIGRATED}"
    assert "run_id" in migration, "no migration was triggered (see the first test)"
    run_id = migration["run_id"]
    shown = _wait_for_run_in_ui(browser, server, dag_id, run_id)
    shot(f"{dag_id}_run_{shown}")
    states = _task_states(server, dag_id, run_id)
    assert shown == "success", f"{dag_id} run {run_id} shows {shown!r}; tasks: {states}"
    assert _run(server, dag_id, run_id)["state"] == "success"
    assert set(states.values()) == {"success"}, states
    with core_engine(airflow.settings.resolved_core_url).connect() as connection:
        promoted = connection.execute(
            sa.select(promotion.c.batch_id, promotion.c.state).where(
                (promotion.c.source_system == MIGRATED) & (promotion.c.run_id == run_id)
            )
        ).all()
    assert [row.state for row in promoted] == [PROMOTED], promoted
