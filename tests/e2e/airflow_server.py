"""A real, project-local Airflow for end-to-end tests, bound to loopback only, its logs kept in its
home. Used as context managers; one Airflow per test module is enough.

- ``airflow_api_server``: the API server alone (no scheduler: triggered runs stay queued) over a
  freshly migrated SQLite metadata database, with the SimpleAuthManager users the test names.
- ``airflow_standalone``: ``make airflow`` itself (``vardflytt airflow standalone``: api-server,
  scheduler, DAG processor and triggerer, LocalExecutor on SQLite) with the project's own users,
  the plan's approvers and ``admin``, and their generated passwords; only the port is free.

Both run with this checkout first on ``PYTHONPATH``, so the ``airflow.plugins`` entry point loads
the dashboard plugin, and the tasks the pipeline, from the code under test.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from etl.airflow_env import NotReadyError, airflow_environment, wait_until_ready
from etl.cutover.airflow_hitl import LOCKED_ATTEMPTS, LOCKED_PAUSE_SECONDS, is_database_failure
from etl.settings import PROJECT_ROOT, Settings
from tests.e2e.reaping import adopting_orphans, reap

LOOPBACK = "127.0.0.1"
START_SECONDS = 90


@dataclass(frozen=True)
class AirflowUser:
    """A SimpleAuthManager user: name and Airflow role (viewer, user, op, admin)."""

    name: str
    role: str


@dataclass(frozen=True)
class AirflowServer:
    url: str  # http://127.0.0.1:<port>, no trailing slash
    home: Path  # AIRFLOW_HOME: airflow.cfg, airflow.db, logs/
    passwords: dict[str, str]
    pid: int
    log_name: str = "api-server.log"  # under home/logs/
    tokens: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / self.log_name

    def log_tail(self, characters: int = 4000) -> str:
        try:
            return self.log_file.read_text("utf-8", errors="replace")[-characters:]
        except FileNotFoundError:
            return "(no log)"

    def token(self, user: str) -> str:
        """A JWT for ``user`` from Airflow's own token endpoint, as the login page gets it."""
        request = urllib.request.Request(
            f"{self.url}/auth/token",
            data=json.dumps({"username": user, "password": self.passwords[user]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)["access_token"]

    def _token(self, user: str) -> str:
        self.tokens[user] = self.token(user)
        return self.tokens[user]

    def api(self, user: str, path: str, method: str = "GET", body: dict | None = None):
        """``(status, JSON body)`` of a REST call under ``/api/v2`` as ``user`` (their own token,
        signed in once); an error status is returned, not raised.

        A call Airflow fails on its metadata database (``is_database_failure``: HTTP 500
        "Database error") is made again, up to ``LOCKED_ATTEMPTS`` times in all, as ``vardflytt
        cutover approve`` makes its answer again (etl/cutover/airflow_hitl.py): on SQLite (``make
        airflow``) the api-server can lock itself out of the file until its busy timeout fails the
        request (etl/airflow_metadata.py); the request's transaction is rolled back, nothing of
        it is recorded, and a person would press the button again. Any other answer, a refusal
        included, is returned at once."""
        for attempt in range(1, LOCKED_ATTEMPTS + 1):
            status, answer = self._api(user, path, method, body)
            if not is_database_failure(status, answer):
                return status, answer
            if attempt < LOCKED_ATTEMPTS:
                time.sleep(LOCKED_PAUSE_SECONDS)
        return status, answer

    def _api(self, user: str, path: str, method: str, body: dict | None):
        request = urllib.request.Request(
            f"{self.url}/api/v2{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self.tokens.get(user) or self._token(user)}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            text = error.read().decode("utf-8", errors="replace")
            try:
                return error.code, json.loads(text)
            except ValueError:
                return error.code, {"detail": text[:500]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def server_environment(
    settings: Settings, users: list[AirflowUser], passwords_file: Path, port: int
) -> dict[str, str]:
    """The project's Airflow environment, made hermetic: this home's SQLite database, loopback
    only, SimpleAuthManager with exactly these users, fresh signing keys."""
    environment = airflow_environment(settings)
    home = settings.airflow_home
    environment.update(
        {
            "PYTHONPATH": os.pathsep.join(
                [str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            # Never a developer's own metadata database, executor or auth manager.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
                f"{user.name}:{user.role}" for user in users
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
            "AIRFLOW__API__HOST": LOOPBACK,
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://{LOOPBACK}:{port}",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        }
    )
    return environment


def _listening_addresses(pid: int) -> set[str]:
    """Addresses that the server process and its workers listen on."""
    import psutil

    root = psutil.Process(pid)
    addresses = set()
    for process in [root, *root.children(recursive=True)]:
        try:
            connections = process.net_connections(kind="inet")
        except psutil.Error:
            continue
        addresses |= {c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN}
    return addresses


def _wait_healthy(
    url: str,
    process: subprocess.Popen,
    server: AirflowServer,
    components: tuple[str, ...] = ("metadatabase",),
    seconds: float = START_SECONDS,
) -> None:
    """Until Airflow's health check reports these components healthy."""
    health: dict = {}

    def running() -> None:
        if process.poll() is not None:
            raise RuntimeError(
                f"airflow ({server.log_name}) exited with {process.returncode}:\n"
                f"{server.log_tail()}"
            )

    def healthy(response) -> bool:
        if response.status_code != 200:
            return False
        health.clear()
        health.update(response.json())
        return all((health.get(c) or {}).get("status") == "healthy" for c in components)

    try:
        wait_until_ready(
            f"{url}/api/v2/monitor/health",
            timeout_seconds=seconds,
            poll_seconds=0.25,
            is_ready=healthy,
            check=running,
            what=f"airflow ({server.log_name})",
        )
    except NotReadyError as error:
        raise RuntimeError(
            f"{error} (last health check: {health}):\n{server.log_tail()}"
        ) from error


def _stop(process: subprocess.Popen) -> None:
    """SIGKILL to the server's whole process tree: its own process group (uvicorn's worker,
    standalone's components) and every descendant outside it (Airflow runs each task in a process
    group of its own, which a signal to the server's group never reaches). The group is stopped
    (SIGSTOP) first, so nothing forks while the tree is listed. A test's home needs no clean
    shutdown: on SIGTERM the api-server spent ~2 CPU s in its interpreter's final garbage
    collection (6 s on the busy machine) and standalone's triggerer 10 s or more, while the test
    waited for them, up to 5 s. The killed processes are reaped here (tests/e2e/reaping.py)."""
    import psutil

    with adopting_orphans():
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGSTOP)
        try:
            tree = psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        groups = {process.pid}
        for child in tree:
            with suppress(psutil.NoSuchProcess):
                groups.add(os.getpgid(child.pid))
        groups.discard(os.getpgrp())  # (never this test process's own group)
        for group in groups:  # a task's group too: what its process forked while being listed
            with suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        for child in tree:
            with suppress(psutil.NoSuchProcess):
                child.kill()
        process.wait(timeout=10)
        reap({child.pid for child in tree})


def _migrate_and_start(
    airflow: str,
    env: dict[str, str],
    home: Path,
    port: int,
    started: list,
    database_template: Path | None = None,
) -> None:
    """``airflow db migrate`` (or a copy of ``database_template``, a database it made), then
    ``airflow api-server`` in its own process group; the process, or the error, is put in
    ``started``."""
    logs = home / "logs"
    try:
        if database_template is not None:
            shutil.copyfile(database_template, home / "airflow.db")
        else:
            with (logs / "db-migrate.log").open("w") as log:
                subprocess.run(
                    [airflow, "db", "migrate"],
                    env=env,
                    cwd=home,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=True,
                    timeout=300,
                )
        with (logs / "api-server.log").open("w") as log:
            started.append(
                subprocess.Popen(
                    [airflow, "api-server", "--host", LOOPBACK, "--port", f"{port}", "-w", "1"],
                    env=env,
                    cwd=home,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # its own process group, stopped as one
                )
            )
    except Exception as error:  # handed to the caller's thread
        started.append(error)


@contextmanager
def airflow_api_server(
    settings: Settings,
    users: list[AirflowUser],
    environment: dict[str, str] | None = None,
    while_starting: Callable[[], None] | None = None,
    database_template: Path | None = None,
) -> Iterator[AirflowServer]:
    """Migrate a fresh metadata database under ``settings.airflow_home`` (or copy
    ``database_template``, one ``airflow db migrate`` made: the ``airflow_db_template`` fixture,
    ~9 CPU s less) and serve it with ``airflow api-server`` on a free loopback port until the
    block ends. ``while_starting`` runs meanwhile (seeding the data the server will show: it reads
    it only when asked). It parses no DAG files: for DAGs and their runs, use
    ``airflow_standalone``."""
    home = settings.airflow_home
    (home / "logs").mkdir(parents=True, exist_ok=True)
    passwords = {user.name: secrets.token_urlsafe(18) for user in users}
    passwords_file = home / "simple_auth_manager_passwords.json"
    _write_private(passwords_file, json.dumps(passwords))
    port = free_port()
    env = server_environment(settings, users, passwords_file, port)
    env.update(environment or {})
    airflow = str(Path(sys.executable).with_name("airflow"))

    started: list = []
    starter = threading.Thread(
        target=_migrate_and_start,
        args=(airflow, env, home, port, started, database_template),
        daemon=True,
    )
    starter.start()
    try:
        if while_starting is not None:
            while_starting()
    except BaseException:
        starter.join()
        if started and isinstance(started[0], subprocess.Popen):
            _stop(started[0])
        raise
    starter.join()
    if isinstance(started[0], Exception):
        raise started[0]
    process: subprocess.Popen = started[0]
    url = f"http://{LOOPBACK}:{port}"
    server = AirflowServer(url=url, home=home, passwords=passwords, pid=process.pid)
    try:
        _wait_healthy(server.url, process, server)
        listening = _listening_addresses(process.pid)
        if listening != {LOOPBACK}:
            raise RuntimeError(f"airflow api-server listens on {sorted(listening)}, not loopback")
        yield server
    finally:
        _stop(process)


VARDFLYTT = str(Path(sys.executable).with_name("vardflytt"))
STANDALONE_LOG = "standalone.log"
STANDALONE_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
STANDALONE_START_SECONDS = 240  # db migrate, four components and a first heartbeat each


def standalone_environment(settings: Settings, port: int) -> dict[str, str]:
    """The shell ``make airflow`` would be started from, for these settings: none of this test
    process's Airflow or vardflytt variables, the settings as ``VARDFLYTT_*``, and the port."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIRFLOW", "VARDFLYTT_"))
    }
    environment.update(
        {
            "PYTHONPATH": os.pathsep.join(
                [str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            "VARDFLYTT_HOME": str(settings.home),
            "AIRFLOW__API__PORT": str(port),
        }
    )
    for name in ("estate_dir", "landing_dir", "core_url", "mappings_dir", "expectations_dir"):
        value = getattr(settings, name)
        if value is not None:
            environment[f"VARDFLYTT_{name.upper()}"] = str(value)
    return environment


@contextmanager
def airflow_standalone(
    settings: Settings, while_starting: Callable[[], None] | None = None
) -> Iterator[AirflowServer]:
    """``make airflow`` (``vardflytt airflow standalone``) for these settings on a free loopback
    port, until the block ends: its own SQLite metadata database and LocalExecutor under
    ``settings.airflow_home``, the plan's approvers and ``admin`` with the passwords it generated.
    Yields once every component reports healthy and nothing listens beyond loopback.
    ``while_starting`` runs meanwhile (preparing data the DAG runs will read)."""
    from etl.airflow_env import passwords_file

    home = settings.airflow_home
    (home / "logs").mkdir(parents=True, exist_ok=True)
    port = free_port()
    with (home / "logs" / STANDALONE_LOG).open("w") as log:
        process = subprocess.Popen(
            [VARDFLYTT, "airflow", "standalone"],
            env=standalone_environment(settings, port),
            cwd=home,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: every component stopped as one
        )
    try:
        if while_starting is not None:
            while_starting()
        server = AirflowServer(
            url=f"http://{LOOPBACK}:{port}",
            home=home,
            passwords={},
            pid=process.pid,
            log_name=STANDALONE_LOG,
        )
        _wait_healthy(server.url, process, server, STANDALONE_COMPONENTS, STANDALONE_START_SECONDS)
        passwords = json.loads(passwords_file(settings).read_text(encoding="utf-8"))
        server = AirflowServer(
            url=server.url,
            home=home,
            passwords=passwords,
            pid=process.pid,
            log_name=STANDALONE_LOG,
        )
        listening = _listening_addresses(process.pid)
        if listening != {LOOPBACK}:
            raise RuntimeError(f"make airflow listens on {sorted(listening)}, not only loopback")
        yield server
    finally:
        _stop(process)
