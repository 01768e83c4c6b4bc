"""A real, project-local Airflow API server for end-to-end tests: its own home with a migrated
SQLite metadata database, SimpleAuthManager users with generated passwords, bound to loopback only,
its logs kept in its home. Used as a context manager; one server per test module is enough.

It runs with this checkout first on ``PYTHONPATH``, so the ``airflow.plugins`` entry point loads
the dashboard plugin from the code under test.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from etl.airflow_env import airflow_environment
from etl.settings import PROJECT_ROOT, Settings

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

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / "api-server.log"

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


def _wait_healthy(url: str, process: subprocess.Popen, server: AirflowServer) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"airflow api-server exited with {process.returncode}:\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as response:
                health = json.load(response)
            if health["metadatabase"]["status"] == "healthy":
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            pass
        time.sleep(0.25)
    raise RuntimeError(f"airflow api-server not healthy in {START_SECONDS} s:\n{server.log_tail()}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's own process group (uvicorn's workers too), then SIGKILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _migrate_and_start(
    airflow: str, env: dict[str, str], home: Path, port: int, started: list, serialize_dags: bool
) -> None:
    """``airflow db migrate`` (and ``airflow dags reserialize`` if asked), then ``airflow
    api-server`` in its own process group; the process, or the error, is put in ``started``."""
    logs = home / "logs"
    steps = [["db", "migrate"], *([["dags", "reserialize"]] if serialize_dags else [])]
    try:
        for step in steps:
            with (logs / f"{'-'.join(step)}.log").open("w") as log:
                subprocess.run(
                    [airflow, *step],
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
    serialize_dags: bool = False,
) -> Iterator[AirflowServer]:
    """Migrate a fresh metadata database under ``settings.airflow_home`` and serve it with
    ``airflow api-server`` on a free loopback port until the block ends. ``while_starting`` runs
    meanwhile (seeding the data the server will show: it reads it only when asked).
    ``serialize_dags``: store the project's DAGs first, as the DAG processor would (the API server
    parses no DAG files), so Airflow's UI shows them and their forms."""
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
        args=(airflow, env, home, port, started, serialize_dags),
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
