"""The project-local Airflow: its home, DAG folder, settings and users, as environment variables.

Users: Airflow 3's default SimpleAuthManager reads its users from ``[core]
simple_auth_manager_users`` ("name:ROLE,...") and their passwords from ``[core]
simple_auth_manager_passwords_file`` (JSON ``{name: password}``), on every sign-in. The users are
the approvers the wave plan names (``airflow_users``, Airflow role USER: they may read DAGs and
answer the go/no-go tasks assigned to them) and one ``admin`` (role ADMIN) for the operator.
Passwords are generated here, random, into an owner-only file in the Airflow home, when missing:
never a default password, never printed. Airflow would generate and print missing ones itself;
generating them first keeps them off the console. ``simple_auth_manager_all_admins`` stays off:
with it on, everyone is an anonymous admin and the go/no-go tasks' assigned users are ignored.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from etl.core.files import private_file, write_private_json
from etl.settings import PROJECT_ROOT, Settings

if TYPE_CHECKING:
    import httpx

ADMIN_USER = "admin"
APPROVER_ROLE = "USER"
PASSWORDS_FILE = "simple_auth_manager_passwords.json"


class AirflowUsersError(ValueError):
    """The plan's approvers cannot be configured as Airflow users."""


def airflow_users(settings: Settings) -> dict[str, str]:
    """Airflow user name -> SimpleAuthManager role: the plan's approvers and the admin."""
    from etl.cutover.plan import PLAN_FILE, load_plan

    users = {ADMIN_USER: "ADMIN"}
    if (settings.mappings_dir / PLAN_FILE).exists():
        for name in load_plan(settings.mappings_dir).airflow_users():
            if name == ADMIN_USER:
                raise AirflowUsersError(
                    f"'{ADMIN_USER}' is the Airflow administrator's account; an approver in "
                    f"{PLAN_FILE} needs a personal account"
                )
            users[name] = APPROVER_ROLE
    return users


def passwords_file(settings: Settings) -> Path:
    return settings.airflow_home / PASSWORDS_FILE


def ensure_passwords(path: Path, users: list[str]) -> None:
    """Give every user without a password a random one; the file stays owner-only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    passwords = json.loads(path.read_text(encoding="utf-8") or "{}") if path.exists() else {}
    missing = [user for user in users if not passwords.get(user)]
    if missing:
        passwords.update({user: secrets.token_urlsafe(18) for user in missing})
        write_private_json(path, passwords)
    private_file(path)


def airflow_password(settings: Settings, user: str) -> str:
    """A user's generated password (the demo signs its approvers in with it)."""
    passwords = json.loads(passwords_file(settings).read_text(encoding="utf-8"))
    return passwords[user]


def airflow_environment(settings: Settings) -> dict[str, str]:
    """Environment for any ``airflow`` command run by this project (nothing global is touched)."""
    home = settings.airflow_home
    home.mkdir(parents=True, exist_ok=True)
    users = airflow_users(settings)
    ensure_passwords(passwords_file(settings), list(users))
    environment = dict(os.environ)
    environment.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
            # Who may sign in (see the module docstring); approvers answer as themselves.
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
                f"{name}:{role}" for name, role in users.items()
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file(settings)),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            # Data residency: nothing may call home, not even anonymous usage statistics.
            "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
            "GX_ANALYTICS_ENABLED": "False",
            "SCARF_ANALYTICS": "false",
            "DO_NOT_TRACK": "1",
            # Tasks must see the same vardflytt settings as the command that started Airflow.
            "VARDFLYTT_HOME": str(settings.home),
            # `airflow standalone` starts its components as `airflow ...` found on PATH.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        }
    )
    # Sized for this machine and on loopback, unless the operator's environment says otherwise.
    for name, value in machine_settings().items():
        environment.setdefault(name, value)
    # OpenLineage jobs under one namespace; events go nowhere until the operator configures a
    # transport (AIRFLOW__OPENLINEAGE__TRANSPORT; README, "Lineage").
    environment.setdefault("AIRFLOW__OPENLINEAGE__NAMESPACE", "vardflytt")
    # A SQLite metadata database: a writer waits for another's lock (etl/airflow_metadata.py).
    for name, value in METADATA_CONNECT_ARGS.items():
        environment.setdefault(name, value)
    if "AIRFLOW__API__PORT" in environment:
        # Tasks reach the execution API at [api] base_url, by default http://localhost:8080: an
        # api-server on another port takes its tasks along, or every task fails to start.
        environment.setdefault("AIRFLOW__API__BASE_URL", api_base_url(environment))
    # (VARDFLYTT_STORAGE_OPTIONS, which may hold the store's key, reaches tasks as inherited.)
    for name in (
        "estate_dir",
        "landing_dir",
        "storage_root",
        "core_url",
        "mappings_dir",
        "expectations_dir",
    ):
        value = getattr(settings, name)
        if value is not None:
            environment[f"VARDFLYTT_{name.upper()}"] = str(value)
    # Data residency (etl/core/residency.py): tasks get the same lists, and Airflow's metadata
    # database and AIRFLOW_CONN_* connections must be on allowed hosts. Airflow and its tasks
    # inherit this process's owner-only umask (etl/core/files.py).
    from etl.core import residency

    for name in ("allowed_hosts", "allowed_storage_roots", "landing_retention_days"):
        if getattr(settings, name) is not None:
            environment[f"VARDFLYTT_{name.upper()}"] = str(getattr(settings, name))
    residency.check_airflow(environment, settings)
    return environment


# Objects Airflow imports as its metadata engines' connect arguments (airflow_environment).
METADATA_CONNECT_ARGS = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "etl.airflow_metadata.CONNECT_ARGS",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": "etl.airflow_metadata.ASYNC_CONNECT_ARGS",
}
# Seconds a task's supervisor waits for each execution API call (machine_settings).
EXECUTION_API_TIMEOUT_SECONDS = 30.0
# Seconds between a supervisor's looks at its task process (an integer setting; machine_settings).
MIN_HEARTBEAT_INTERVAL_SECONDS = 1
# Seconds between probes of a starting api-server (api_server): a refused probe costs well under
# a millisecond, and the server is used a twentieth of a second after it answers, not a quarter.
READY_POLL_SECONDS = 0.05
# Seconds one probe may wait for its answer (wait_until_ready).
PROBE_TIMEOUT_SECONDS = 5.0


class NotReadyError(RuntimeError):
    """What ``wait_until_ready`` waited for did not answer as ready before its deadline."""


def status_ok(response: httpx.Response) -> bool:
    return response.status_code == 200


def wait_until_ready(
    url: str,
    *,
    timeout_seconds: float,
    poll_seconds: float = READY_POLL_SECONDS,
    is_ready: Callable[[httpx.Response], bool] = status_ok,
    check: Callable[[], None] | None = None,
    probe_timeout_seconds: float = PROBE_TIMEOUT_SECONDS,
    what: str = "the server",
    hint: str = "",
) -> httpx.Response:
    """Ask ``url`` every ``poll_seconds`` until ``is_ready`` says its answer is ready (by
    default: HTTP 200); returns that answer. ``check`` runs before each probe and raises to stop
    waiting (the server's process died). A probe that fails (refused, timed out, an answer
    ``is_ready`` cannot read) counts as not ready. After ``timeout_seconds``: ``NotReadyError``
    naming ``what``, the URL, the last answer and ``hint`` (what to do, where the log is).

    One client for every probe: ``httpx.get`` builds a client (and its SSL context) per call,
    ~20-40 ms CPU a probe, which made probing often cost more than it saved."""
    import httpx

    deadline = time.monotonic() + timeout_seconds
    last = "no answer"
    with httpx.Client(timeout=probe_timeout_seconds) as client:
        while True:
            if check is not None:
                check()
            try:
                response = client.get(url)
                if is_ready(response):
                    return response
                last = f"HTTP {response.status_code}, not ready"
            except (httpx.HTTPError, ValueError) as error:  # ValueError: an unreadable answer
                last = type(error).__name__
            if time.monotonic() >= deadline:
                advice = f"; {hint}" if hint else ""
                raise NotReadyError(
                    f"{what} not ready at {url} within {timeout_seconds:.0f} s "
                    f"(last probe: {last}){advice}"
                )
            time.sleep(poll_seconds)


def machine_settings(cores: int | None = None) -> dict[str, str]:
    """Airflow's process counts from the machine's cores, and every listener on loopback.

    Airflow's defaults suit a server: the LocalExecutor of ``airflow standalone`` starts
    ``[core] parallelism`` (32) worker processes at once, each importing the pipeline. Here:
    one task per core (at least 2, so a long load leaves room; at most Airflow's 32), half the
    cores parsing DAG files (at most 8: the DAG folder is small) and serving the API (at most
    4, as Airflow advises scaling out instead). Listeners: the api-server and the scheduler's
    health check bind 127.0.0.1; the log servers, which cannot be bound to an address, are not
    started by ``vardflytt airflow standalone`` (etl/airflow_standalone.py). Celery is not used.

    A task's supervisor waits ``[workers] execution_api_timeout`` for each call to the execution
    API (Airflow's default 5 s, five tries) before it kills the task. One api-server worker on a
    saturated small machine, writing to SQLite beside the DAG processor and scheduler, can take
    longer than that: a cutover's ``take_wave_lock`` was killed so before it ran (load 11 on 2
    cores) and failed the whole run. Airflow's advice for high load is a longer timeout: 30 s.

    A task's supervisor notices that its task process exited only when it next wakes, every
    ``[workers] min_heartbeat_interval`` (Airflow's default 5 s, also how often it heartbeats):
    the process closes its sockets just before it exits, and when the supervisor looks in between,
    it sleeps the whole interval before it looks again. Meanwhile the executor slot stays taken,
    so with every slot busy the next task (a cutover's ``record_decision`` after its go/no-go
    tasks) waited 5 s for nothing, about every second task. Here 1 s: one heartbeat a second for
    each of at most ``parallelism`` running tasks is little for one machine's API server.
    """
    cores = cores or os.cpu_count() or 1
    half = max(1, cores // 2)
    return {
        "AIRFLOW__CORE__PARALLELISM": str(min(32, max(2, cores))),
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": str(min(8, half)),
        "AIRFLOW__API__WORKERS": str(min(4, half)),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": str(EXECUTION_API_TIMEOUT_SECONDS),
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": str(MIN_HEARTBEAT_INTERVAL_SECONDS),
    }


def api_base_url(environment: dict[str, str]) -> str:
    """The api-server's address as its tasks and users reach it (a wildcard host: loopback)."""
    host = environment.get("AIRFLOW__API__HOST", "127.0.0.1")
    host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{environment.get('AIRFLOW__API__PORT', '8080')}"


def free_loopback_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def api_server(environment: dict[str, str], log: Path, timeout_seconds: float = 180):
    """A project-local ``airflow api-server`` on loopback and a free port, for the block; yields
    its base URL and stops it afterwards (the demo signs its approvers in there). Started as the
    project starts any ``airflow`` command (etl/airflow_main.py): the collector does not walk the
    app's routes and models again and again while they are built, nor once more when the server
    stops (~2.3 CPU s less per server); it serves every API version, as Airflow builds it."""
    from etl.airflow_main import AIRFLOW_COMMAND

    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    command = [*AIRFLOW_COMMAND, "api-server", "--host", "127.0.0.1", "--port", str(port)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as handle:
        server = subprocess.Popen(
            [*command, "--workers", "1", "--apps", "core"],
            env=environment,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        try:

            def running() -> None:
                if server.poll() is not None:
                    raise RuntimeError(f"airflow api-server stopped (exit {server.returncode})")

            wait_until_ready(
                f"{url}/api/v2/monitor/health",
                timeout_seconds=timeout_seconds,
                check=running,
                what="airflow api-server",
                hint=f"see its log {log}",
            )
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
