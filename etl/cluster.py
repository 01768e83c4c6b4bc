"""Airflow 3 on the CeleryExecutor, on this machine: ``vardflytt cluster up|status|down``.

The operators run Airflow as a cluster; this starts the same shape locally so that it is tested
here: an api-server, a scheduler, a dag-processor, a triggerer and N Celery workers, each a
separate process with its own name, working directory and log, on the machine's Redis (the
broker) and PostgreSQL (Airflow's metadata database, which is also Celery's result backend).
Everything lives under ``<home>/cluster`` (``VARDFLYTT_HOME``, ``var/`` by default): the Airflow
home, the generated secrets (owner-only, never defaults, never printed), one folder per process
and ``cluster.json`` (what runs, with its process ids). ``down`` stops every process group,
TERM first and KILL after a grace period.

Where it runs:
``VARDFLYTT_CLUSTER_DATABASE_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/
vardflytt_airflow``, created when missing) and ``VARDFLYTT_CLUSTER_BROKER_URL`` (default
``redis://127.0.0.1:6379/0``); both must be on hosts the data residency rules allow.

Each worker sets ``[core] hostname_callable`` to :func:`worker_hostname`, so a task instance's
``hostname`` is the worker that ran it (``worker1``), not the machine's name that every local
worker shares: the tests read from it which worker ran what.

A worker that dies (SIGKILL, a lost host) takes its running task with it. Airflow 3 recovers it
as a retry, not as a redelivery: the dead try stays ``running`` in the metadata database, so
the execution API refuses to start it a second time (409) even when the broker hands its message
to another worker; the scheduler fails the try once no heartbeat came for
``[scheduler] task_instance_heartbeat_timeout``, and the next try (a new task instance id) is
queued to any worker after ``[core] default_task_retry_delay``. Every task is idempotent per
batch, so a retry converges to the core an undisturbed run gives (tests/integration/
test_cluster.py proves it byte for byte). See :data:`FAULT_TOLERANCE` for the values.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from etl.core.files import private_file, write_private_json
from etl.settings import Settings

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/vardflytt_airflow"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
DATABASE_VARIABLE = "VARDFLYTT_CLUSTER_DATABASE_URL"
BROKER_VARIABLE = "VARDFLYTT_CLUSTER_BROKER_URL"
WORKER_NAME_VARIABLE = "VARDFLYTT_WORKER_NAME"
# Task slots per worker when set (the bench fixes one, so 1 -> 2 workers measures scaling).
CONCURRENCY_VARIABLE = "VARDFLYTT_CLUSTER_WORKER_CONCURRENCY"
CELERY_CONFIG_VARIABLE = "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"
CELERY_CONFIG = "etl.airflow_celery.CELERY_CONFIG"
STATE_FILE = "cluster.json"
SECRETS_FILE = "secrets.json"
# The components besides the workers, in start order: the api-server first, since every other
# component (and every task) talks to its execution API.
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
STOP_GRACE_SECONDS = 30.0
# How often ``up`` checks whether the api-server and the workers answer while they start.
READY_POLL_SECONDS = 0.5
HEALTH_PATH = "/api/v2/monitor/health"
# How a dead worker's task is recovered (module docstring), for a region's production cluster.
# Each is only a default: the operator's environment (and the fault test, which wants seconds
# instead of minutes) may set the variable itself.
FAULT_TOLERANCE = {
    # A try whose worker died fails, and runs again on a live worker (tasks are idempotent per
    # batch). Two retries: one lost host, and one more for a second fault while it recovers.
    "AIRFLOW__CORE__DEFAULT_TASK_RETRIES": "2",
    # Airflow's default (300 s) waits five minutes per retry; a freeze window is hours.
    "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "60",
    # Airflow's default: a try without a heartbeat for 5 minutes is dead. Shorter risks failing
    # a live try whose supervisor was stalled (a long garbage collection, a saturated host).
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "300",
    # With late acknowledgement Redis hands a message nobody acknowledged to another worker
    # after this long. It plays no part in recovering a dead worker's task (the two settings
    # above do): the killed try's message, redelivered, finds the try still running (Airflow
    # drops such a duplicate) or already retried under a new id (it fails to start, harmlessly).
    # So it only has to exceed the longest task, or a live task's message is handed out again
    # for nothing. Celery's default is 1 h, Airflow's 24 h; 6 h is above any one task at region
    # scale (a system's load): raise it if a task can run longer.
    "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "21600",
}


class ClusterError(RuntimeError):
    """The cluster cannot be started, or a process of it is not running."""


@dataclass
class Process:
    name: str
    pid: int
    command: list[str]
    directory: str
    log: str


@dataclass
class ClusterState:
    api_url: str
    database_url: str
    broker_url: str
    workers: int
    started_at: float
    processes: list[Process] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> ClusterState:
        raw = json.loads(text)
        raw["processes"] = [Process(**item) for item in raw.get("processes", [])]
        return cls(**raw)


def cluster_root(settings: Settings) -> Path:
    return settings.home / "cluster"


def database_url(environment: dict[str, str] | None = None) -> str:
    return (environment or os.environ).get(DATABASE_VARIABLE) or DEFAULT_DATABASE_URL


def broker_url(environment: dict[str, str] | None = None) -> str:
    return (environment or os.environ).get(BROKER_VARIABLE) or DEFAULT_BROKER_URL


def worker_hostname() -> str:
    """``[core] hostname_callable`` of a cluster worker: its own name, else the machine's."""
    import socket

    return os.environ.get(WORKER_NAME_VARIABLE) or socket.getfqdn()


def worker_names(count: int) -> list[str]:
    return [f"worker{number}" for number in range(1, count + 1)]


def cluster_secrets(root: Path) -> dict[str, str]:
    """The cluster's shared secrets, generated once into an owner-only file (never defaults).

    Every component must share them: the Fernet key encrypts connections in the metadata
    database, the JWT secret signs the tokens tasks present to the execution API."""
    from cryptography.fernet import Fernet

    path = root / SECRETS_FILE
    values = json.loads(path.read_text("utf-8")) if path.exists() else {}
    wanted = {
        "fernet_key": lambda: Fernet.generate_key().decode("ascii"),
        "jwt_secret": lambda: secrets.token_urlsafe(48),
        "api_secret_key": lambda: secrets.token_urlsafe(48),
    }
    missing = {name: make() for name, make in wanted.items() if not values.get(name)}
    if missing:
        values.update(missing)
        write_private_json(path, values)
    private_file(path)
    return values


def cluster_environment(settings: Settings, api_port: int, workers: int) -> dict[str, str]:
    """The environment every process of the cluster runs with (workers add their name)."""
    from etl.airflow_env import airflow_environment

    root = cluster_root(settings)
    environment = airflow_environment(settings)
    values = cluster_secrets(root)
    metadata = database_url(environment)
    broker = broker_url(environment)
    api_url = f"http://127.0.0.1:{api_port}"
    environment.update(
        {
            "AIRFLOW_HOME": str(root / "airflow"),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
            # Airflow's async engine would take asyncpg for PostgreSQL; psycopg 3 does both.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": async_url(metadata),
            "AIRFLOW__CELERY__BROKER_URL": broker,
            # Celery's database result backend takes an SQLAlchemy URL behind "db+".
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata}",
            # A worker that dies mid-task leaves its message unacknowledged: the broker gives it
            # to another worker (the task itself is idempotent per batch).
            "AIRFLOW__CELERY__TASK_ACKS_LATE": "True",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(max(1, (os.cpu_count() or 2) // workers)),
            "AIRFLOW__CORE__FERNET_KEY": values["fernet_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": values["jwt_secret"],
            "AIRFLOW__API__SECRET_KEY": values["api_secret_key"],
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": api_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(root / "logs" / "airflow"),
        }
    )
    if environment.get(CONCURRENCY_VARIABLE):
        environment["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = environment[CONCURRENCY_VARIABLE]
    # The scheduler's cap on running tasks covers every worker's slots, never fewer.
    slots = workers * int(environment["AIRFLOW__CELERY__WORKER_CONCURRENCY"])
    parallelism = int(environment.get("AIRFLOW__CORE__PARALLELISM", "0"))
    environment["AIRFLOW__CORE__PARALLELISM"] = str(max(parallelism, slots))
    for name, value in FAULT_TOLERANCE.items():
        environment.setdefault(name, value)
    # Airflow's Celery configuration, with the task modules each worker imports before it forks
    # its pool, so that no task imports them again (etl/airflow_celery.py).
    environment.setdefault(CELERY_CONFIG_VARIABLE, CELERY_CONFIG)
    from etl.core import residency

    residency.check_airflow(environment, settings)
    return environment


def async_url(url: str) -> str:
    """The metadata URL for Airflow's async engine (``postgresql+psycopg_async``)."""
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    if parsed.drivername in ("postgresql", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+psycopg_async")
    return parsed.render_as_string(hide_password=False)


def ensure_database(url: str) -> None:
    """Create the metadata database on its server when it does not exist (PostgreSQL)."""
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    if not parsed.drivername.startswith("postgresql") or not parsed.database:
        return
    server = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as connection:
            exists = connection.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": parsed.database},
            ).first()
            if not exists:
                quoted = connection.dialect.identifier_preparer.quote(parsed.database)
                connection.execute(sa.text(f"CREATE DATABASE {quoted}"))
    finally:
        server.dispose()


def _airflow() -> list[str]:
    """How the project starts any ``airflow`` command (etl/airflow_main.py): Airflow's command
    line with the collector tuned, for the one-off commands and the long-running processes."""
    from etl.airflow_main import AIRFLOW_COMMAND

    return list(AIRFLOW_COMMAND)


def component_command(name: str) -> list[str]:
    """The ``airflow`` command of a component; log servers are not started (they bind every
    interface; on one machine the api-server reads the shared log folder)."""
    if name == "api-server":
        return [*_airflow(), "api-server", "--workers", "1"]
    if name in ("scheduler", "triggerer"):
        return [*_airflow(), name, "--skip-serve-logs"]
    return [*_airflow(), name]


def worker_command(name: str) -> list[str]:
    return [
        *_airflow(),
        "celery",
        "worker",
        "--celery-hostname",
        f"{name}@%h",
        "--skip-serve-logs",
        "--without-gossip",
        "--without-mingle",
    ]


def running_environment(settings: Settings) -> dict[str, str]:
    """The environment of the running cluster, for any ``airflow`` command run against it."""
    from urllib.parse import urlsplit

    state = read_state(settings)
    if state is None:
        raise ClusterError("no cluster: start one with `vardflytt cluster up`")
    port = urlsplit(state.api_url).port or 8080
    return cluster_environment(settings, port, state.workers)


def airflow_call(settings: Settings, *arguments: str, capture: bool = False):
    """Run ``airflow <arguments>`` against the running cluster."""
    return subprocess.run(
        [*_airflow(), *arguments],
        env=running_environment(settings),
        capture_output=capture,
        text=True,
        check=False,
    )


def read_state(settings: Settings) -> ClusterState | None:
    path = cluster_root(settings) / STATE_FILE
    return ClusterState.from_json(path.read_text("utf-8")) if path.exists() else None


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of this process is not running
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return waited == 0


def _start(name: str, command: list[str], environment: dict, root: Path) -> Process:
    directory = root / "processes" / name
    directory.mkdir(parents=True, exist_ok=True)
    log = root / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as handle:
        started = subprocess.Popen(
            command,
            cwd=directory,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: down stops its children too
        )
    return Process(name, started.pid, command, str(directory), str(log))


def up(
    settings: Settings,
    workers: int = 2,
    api_port: int | None = None,
    timeout_seconds: float = 240,
    echo=print,
) -> ClusterState:
    """Start the cluster (migrating the metadata database first) and wait until it is ready."""
    from etl import airflow_pools
    from etl.airflow_env import free_loopback_port
    from etl.airflow_standalone import warm_execution_api

    if workers < 1:
        raise ClusterError("a cluster needs at least one worker")
    current = read_state(settings)
    if current and any(is_alive(p.pid) for p in current.processes):
        raise ClusterError(
            f"a cluster is already running (api {current.api_url}): `vardflytt cluster status`, "
            "or `vardflytt cluster down` first"
        )
    root = cluster_root(settings)
    port = api_port or free_loopback_port()
    environment = cluster_environment(settings, port, workers)
    ensure_database(environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    echo("migrating Airflow's metadata database")
    migrate_log = root / "logs" / "db-migrate.log"
    migrate_log.parent.mkdir(parents=True, exist_ok=True)
    with migrate_log.open("w", encoding="utf-8") as handle:
        code = subprocess.call(
            [*_airflow(), "db", "migrate"], env=environment, stdout=handle, stderr=subprocess.STDOUT
        )
    if code != 0:
        raise ClusterError(f"airflow db migrate failed (exit {code}); see {migrate_log}")
    airflow_pools.sync(environment, settings, echo)  # before the scheduler queues any task
    state = ClusterState(
        api_url=environment["AIRFLOW__API__BASE_URL"],
        database_url=_masked(environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]),
        broker_url=_masked(environment["AIRFLOW__CELERY__BROKER_URL"]),
        workers=workers,
        started_at=time.time(),
    )
    try:
        for name in COMPONENTS:
            state.processes.append(_start(name, component_command(name), environment, root))
            _write_state(root, state)
        for name in worker_names(workers):
            worker_environment = {**environment, WORKER_NAME_VARIABLE: name}
            worker_environment["AIRFLOW__CORE__HOSTNAME_CALLABLE"] = "etl.cluster.worker_hostname"
            state.processes.append(_start(name, worker_command(name), worker_environment, root))
            _write_state(root, state)
        echo(f"started {len(state.processes)} processes; waiting until they are ready")
        wait_ready(settings, state, environment["AIRFLOW__CELERY__BROKER_URL"], timeout_seconds)
        # The execution API generates every version's routes at its first request, inside the
        # api-server's event loop (etl/airflow_standalone.py): here, not at the first task.
        warm_execution_api(
            environment["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"], echo, timeout_seconds
        )
    except BaseException:
        down(settings, echo=lambda _message: None)
        raise
    return state


def _write_state(root: Path, state: ClusterState) -> None:
    path = root / STATE_FILE
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(state.to_json(), "utf-8")
    os.replace(temporary, path)


def _masked(url: str) -> str:
    import sqlalchemy as sa

    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def api_healthy(api_url: str) -> bool:
    """One look at the api-server's health (``status``); ``wait_ready`` polls it."""
    import httpx

    try:
        response = httpx.get(f"{api_url}{HEALTH_PATH}", timeout=5)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def workers_online(broker: str, timeout: float = 2.0, expected: int | None = None) -> list[str]:
    """The names of the Celery workers answering a ping on the broker (``worker1``...): those
    answering within ``timeout``, or as soon as ``expected`` of them have answered."""
    from celery import Celery

    app = Celery(broker=broker)
    try:
        replies = app.control.ping(timeout=timeout, limit=expected) or []
    finally:
        app.close()
    return sorted(name.split("@", 1)[0] for reply in replies for name in reply)


def wait_ready(settings: Settings, state: ClusterState, broker: str, timeout: float) -> None:
    """Until the api-server answers its health check and every worker answers a ping on the
    broker; ``ClusterError`` when a process dies meanwhile or after ``timeout`` seconds."""
    from etl.airflow_env import NotReadyError, status_ok, wait_until_ready

    wanted = set(worker_names(state.workers))

    def alive() -> None:
        dead = [p.name for p in state.processes if not is_alive(p.pid)]
        if dead:
            logs = ", ".join(str(cluster_root(settings) / "logs" / f"{name}.log") for name in dead)
            raise ClusterError(f"stopped while starting: {', '.join(dead)}; see {logs}")

    answering: list[str] = []

    def ready(response) -> bool:
        if not status_ok(response):
            return False
        answering[:] = workers_online(broker, expected=len(wanted))
        return wanted <= set(answering)

    try:
        wait_until_ready(
            f"{state.api_url}{HEALTH_PATH}",
            timeout_seconds=timeout,
            poll_seconds=READY_POLL_SECONDS,
            is_ready=ready,
            check=alive,
            what=f"the cluster (workers wanted {sorted(wanted)})",
            hint=f"see {cluster_root(settings) / 'logs'}",
        )
    except NotReadyError as error:
        raise ClusterError(
            f"{error}. Workers answering the broker: {answering or 'none'}"
        ) from error


@dataclass
class Health:
    name: str
    pid: int | None
    is_running: bool
    detail: str = ""


def status(settings: Settings) -> list[Health]:
    """Each process: running or not; the api-server's health; each worker's answer to a ping."""
    state = read_state(settings)
    if state is None:
        return []
    online: list[str] | None = None
    broker = broker_url()
    health = []
    for process in state.processes:
        running = is_alive(process.pid)
        detail = "" if running else "not running"
        if running and process.name == "api-server":
            running = api_healthy(state.api_url)
            detail = state.api_url if running else f"{state.api_url} does not answer"
        elif running and process.name in worker_names(state.workers):
            if online is None:
                try:
                    online = workers_online(broker)
                except Exception as error:  # the broker is down: no worker can be reached
                    online, detail = [], f"broker unreachable ({type(error).__name__})"
            running = process.name in online
            detail = detail or ("answers on the broker" if running else "no answer on the broker")
        health.append(Health(process.name, process.pid, running, detail))
    return health


def kill_worker(
    settings: Settings, name: str, signal_number: int = signal.SIGKILL, timeout: float = 30.0
) -> Process:
    """Send ``signal_number`` to a worker and every process under it, as a lost host would end
    them, and wait until its main process is gone. For fault tests and drills; ``status`` then
    reports it down.

    The worker's process group is not enough: Airflow's task supervisor puts each task's runner
    in a group of its own, which would outlive the worker as an orphan still writing. So the
    group is stopped first (nothing forks any more), then every descendant and the group get
    the signal."""
    import psutil

    state = read_state(settings)
    if state is None:
        raise ClusterError("no cluster: start one with `vardflytt cluster up`")
    workers = {p.name: p for p in state.processes if p.name in worker_names(state.workers)}
    if name not in workers:
        raise ClusterError(f"no worker {name!r} in this cluster (workers: {', '.join(workers)})")
    process = workers[name]
    _signal_group(process.pid, signal.SIGSTOP)
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    for child in descendants:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            child.suspend()
    for child in descendants:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            child.send_signal(signal_number)
    _signal_group(process.pid, signal_number)
    if signal_number != signal.SIGKILL:  # a stopped process acts on other signals once resumed
        _signal_group(process.pid, signal.SIGCONT)
        for child in descendants:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                child.resume()
    deadline = time.monotonic() + timeout
    while is_alive(process.pid):
        if time.monotonic() > deadline:
            raise ClusterError(f"{name} (pid {process.pid}) still runs {timeout:.0f} s after it")
        time.sleep(0.1)
    return process


def down(settings: Settings, grace_seconds: float = STOP_GRACE_SECONDS, echo=print) -> list[str]:
    """Stop every process group of the cluster (TERM, then KILL after the grace period)."""
    root = cluster_root(settings)
    state = read_state(settings)
    if state is None:
        return []
    stopped = []
    for process in reversed(state.processes):  # workers first, the api-server last
        if is_alive(process.pid):
            _signal_group(process.pid, signal.SIGTERM)
            stopped.append(process.name)
    deadline = time.monotonic() + grace_seconds
    while any(is_alive(p.pid) for p in state.processes) and time.monotonic() < deadline:
        time.sleep(0.5)
    for process in state.processes:
        if is_alive(process.pid):
            echo(f"{process.name} did not stop within {grace_seconds:.0f} s: killed")
        _signal_group(process.pid, signal.SIGKILL)  # also any child left in its group
    (root / STATE_FILE).unlink(missing_ok=True)
    return stopped


def _signal_group(pid: int, signal_number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal_number)
