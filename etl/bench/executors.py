"""``vardflytt bench --cluster``: one generated estate migrated by ``vardflytt_migrate`` three
ways, the LocalExecutor, the Celery cluster with one worker and with two, side by side.

Each run gets what nothing else touches: a fresh core schema and a fresh Airflow metadata
database on the PostgreSQL server (both dropped afterwards), its own Celery queue on the Redis
broker (so a worker of another cluster on the same Redis database never takes its tasks), and its
own home. Every worker has one task slot (``VARDFLYTT_CLUSTER_WORKER_CONCURRENCY=1``), so going
from one worker to two doubles the slots and the speedup measures scaling; the LocalExecutor has
the machine's ``[core] parallelism`` (``etl.airflow_env.machine_settings``). The runs share one
batch id, so the three cores must have identical checksums: a check, not a figure.

Nothing is judged on time: figures are reported (see ``cluster_report.CLUSTER_DEFINITIONS``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl.batch import write_json
from etl.bench.cluster_report import build_cluster_results, summarize_mode
from etl.bench.environment import git_info, machine_info
from etl.bench.figures import BENCH_SEED, bench_schema_name, redact_url, url_with_search_path
from etl.bench.migration import bench_settings
from etl.bench.run import _generate
from etl.dag_names import SELECTION_DAG_ID
from etl.layout import list_system_entities
from etl.settings import Settings, get_settings

CLUSTER_RESULTS_FILE = "cluster_results.json"
CLUSTER_MARKDOWN_FILE = "cluster.md"
# Four systems, two of each reading path (SQL databases, exported files), about two thirds of
# the estate's rows: all 49 take too long on two cores three times over (see the README).
CLUSTER_SYSTEMS = ("elvis", "melior", "asynjavisph", "obstetrix")
BATCH_LABEL = "bench"
LOCAL_COMPONENTS = ("api-server", "scheduler", "dag-processor")
RUN_TIMEOUT_SECONDS = 3600.0
BROKER_ENV = "VARDFLYTT_BENCH_BROKER_URL"


class ClusterBenchError(RuntimeError):
    """A server the cluster bench needs is missing or unreachable."""


@dataclass(frozen=True)
class Mode:
    label: str
    executor: str
    workers: int  # Celery workers; 0 for the LocalExecutor


MODES = (
    Mode("local", "LocalExecutor", 0),
    Mode("celery_1", "CeleryExecutor", 1),
    Mode("celery_2", "CeleryExecutor", 2),
)


def broker_from_environment() -> str | None:
    """The bench's Redis: ``VARDFLYTT_BENCH_BROKER_URL``, else the tests' Redis."""
    return os.environ.get(BROKER_ENV) or os.environ.get("VARDFLYTT_TEST_REDIS_URL")


def require_servers(postgres_url: str | None, broker_url: str | None) -> None:
    """Fail closed, and say what to set, when PostgreSQL or Redis is not given or not reachable."""
    if not postgres_url:
        raise ClusterBenchError(
            "the cluster bench needs PostgreSQL (core and Airflow metadata): set "
            "VARDFLYTT_BENCH_POSTGRES_URL or pass --postgres-url"
        )
    if not broker_url:
        raise ClusterBenchError(
            f"the cluster bench needs Redis (the Celery broker): set {BROKER_ENV} (or "
            "VARDFLYTT_TEST_REDIS_URL), or pass --broker-url"
        )
    import redis
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except sa.exc.SQLAlchemyError as error:
        raise ClusterBenchError(
            f"PostgreSQL at {redact_url(postgres_url)} is not reachable: {type(error).__name__}"
        ) from None
    finally:
        engine.dispose()
    client = redis.Redis.from_url(broker_url, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        raise ClusterBenchError(
            f"Redis at {redact_url(broker_url)} is not reachable: {type(error).__name__}"
        ) from None
    finally:
        client.close()


def run_cluster_benchmark(
    patients: int,
    *,
    postgres_url: str | None,
    broker_url: str | None,
    systems: tuple[str, ...] = CLUSTER_SYSTEMS,
    work_dir: Path | None = None,
    seed: int = BENCH_SEED,
    run_timeout: float = RUN_TIMEOUT_SECONDS,
    keep_files: bool = False,
    log: Callable[[str], None] = lambda _message: None,
) -> dict[str, Any]:
    """Generate once, migrate three ways, check the cores agree; write and return the results."""
    settings = get_settings()
    known = list_system_entities(settings.mappings_dir)
    unknown = sorted(set(systems) - set(known))
    if unknown or not systems:
        raise ClusterBenchError(
            f"no such system in {settings.mappings_dir}: {', '.join(unknown) or '(none given)'}"
        )
    require_servers(postgres_url, broker_url)
    assert postgres_url and broker_url  # checked above
    work_dir = Path(work_dir or settings.home / "bench").resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = Path(tempfile.mkdtemp(prefix=f"cluster_{stamp}_", dir=work_dir))
    started_at = dt.datetime.now(dt.UTC).isoformat()
    wall_started = time.perf_counter()
    generation, as_of = _generate(run_dir, run_dir / "estate", patients, seed, log)
    source_rows = sum(generation["source_rows"].get(system, 0) for system in systems)
    problems: list[str] = []
    modes, verify = [], None
    servers = Servers(postgres_url, broker_url)
    for mode in MODES:
        try:
            figures, measured = _run_mode(
                mode, servers, run_dir, systems, as_of, source_rows, run_timeout, log
            )
        except Exception as error:  # report and go on: the other runs are still worth having
            figures = {
                "label": mode.label,
                "executor": mode.executor,
                "workers": mode.workers,
                "slots": _slots(mode),
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(),
            }
            problems.append(f"{mode.label} run failed: {type(error).__name__}: {error}")
            log(figures["traceback"])
            measured = None
        modes.append(figures)
        verify = verify or measured
    results = build_cluster_results(
        parameters={
            "patients": patients,
            "seed": seed,
            "systems": list(systems),
            "as_of_date": as_of.isoformat(),
            "postgres_url": redact_url(postgres_url),
            "broker_url": redact_url(broker_url),
            "work_dir": str(work_dir),
            "run_dir": str(run_dir),
            "worker_concurrency": 1,
        },
        machine={**machine_info(), "load_average": list(os.getloadavg())},
        git=git_info(),
        generation=generation,
        modes=modes,
        verify=verify,
        started_at=started_at,
        wall_seconds=time.perf_counter() - wall_started,
        problems=problems,
    )
    write_json(work_dir / CLUSTER_RESULTS_FILE, results)
    if keep_files or results["problems"]:
        write_json(run_dir / CLUSTER_RESULTS_FILE, results)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    return results


@dataclass(frozen=True)
class Servers:
    postgres_url: str
    broker_url: str


def _slots(mode: Mode) -> int:
    from etl.airflow_env import machine_settings

    return mode.workers or int(machine_settings()["AIRFLOW__CORE__PARALLELISM"])


def _run_mode(
    mode: Mode,
    servers: Servers,
    run_dir: Path,
    systems: tuple[str, ...],
    as_of: dt.date,
    source_rows: int,
    run_timeout: float,
    log: Callable[[str], None],
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One executor on a fresh core schema and metadata database; both dropped afterwards."""
    import sqlalchemy as sa

    token = secrets.token_hex(4)
    schema = bench_schema_name(token)
    metadata = (
        sa.make_url(servers.postgres_url)
        .set(database=f"vardflytt_bench_airflow_{token}")
        .render_as_string(hide_password=False)
    )
    core_url = url_with_search_path(servers.postgres_url, schema)
    settings = bench_settings(
        run_dir / mode.label, run_dir / "estate", get_settings().chunk_rows, core_url
    )
    _execute(servers.postgres_url, f'CREATE SCHEMA "{schema}"')
    queue = f"vardflytt_bench_{token}"
    variables = {
        "VARDFLYTT_CLUSTER_DATABASE_URL": metadata,
        "VARDFLYTT_CLUSTER_BROKER_URL": servers.broker_url,
        "VARDFLYTT_CLUSTER_WORKER_CONCURRENCY": "1",
        # A queue of the run's own: another cluster's worker on the same Redis never takes it.
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
    }
    try:
        with _environ(variables):
            log(f"{mode.label}: starting {mode.executor} ({mode.workers or 'no'} Celery workers)")
            started = time.perf_counter()
            environment, stop = _start(mode, settings, log)
            startup = time.perf_counter() - started
            try:
                run = _trigger_and_wait(
                    environment, metadata, mode, systems, as_of, run_timeout, log
                )
            finally:
                stop()
        figures = summarize_mode(
            mode.label,
            mode.executor,
            mode.workers,
            _slots(mode),
            source_rows,
            run["dag_run"],
            run["tasks"],
            wall_seconds=run["wall_seconds"],
            task_instances=[_task_record(row) for row in run["tasks"]],
            startup_seconds=startup,
            **_core_figures(settings),
        )
        verify = (
            _measure_verify(settings, systems, as_of, source_rows, log)
            if not mode.workers
            else None
        )
        return figures, verify
    finally:
        from etl.core.database import core_engine

        core_engine(core_url).dispose()  # pooled connections closed before the schema goes
        _execute(servers.postgres_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        _drop_database(metadata)
        _forget_queue(servers.broker_url, queue)
        log(f"{mode.label}: core schema, metadata database and queue removed")


def _start(
    mode: Mode, settings: Settings, log: Callable[[str], None]
) -> tuple[dict[str, str], Callable[[], None]]:
    """Start the executor's processes; the environment for ``airflow`` calls and a stopper."""
    from etl import cluster

    if mode.workers:
        cluster.up(settings, workers=mode.workers, echo=log)
        return cluster.running_environment(settings), lambda: _stop_cluster(settings)
    return _local_up(settings, log)


def _stop_cluster(settings: Settings) -> None:
    from etl import cluster

    cluster.down(settings, echo=lambda _message: None)


def _airflow_binary() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def _local_up(
    settings: Settings, log: Callable[[str], None], timeout: float = 240
) -> tuple[dict[str, str], Callable[[], None]]:
    """The cluster's environment and metadata database with the LocalExecutor instead: an
    api-server, a scheduler (which runs the tasks) and a dag-processor."""
    from etl import cluster
    from etl.airflow_env import free_loopback_port

    port = free_loopback_port()
    environment = cluster.cluster_environment(settings, port, workers=1)
    environment["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
    cluster.ensure_database(environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    root = settings.home / "local"
    (root / "logs").mkdir(parents=True, exist_ok=True)
    with (root / "logs" / "db-migrate.log").open("w") as handle:
        code = subprocess.call(
            [_airflow_binary(), "db", "migrate"], env=environment, stdout=handle, stderr=handle
        )
    if code != 0:
        raise ClusterBenchError(f"airflow db migrate failed (exit {code}); see {root / 'logs'}")
    processes = []
    for name in LOCAL_COMPONENTS:
        directory = root / "processes" / name
        directory.mkdir(parents=True, exist_ok=True)
        with (root / "logs" / f"{name}.log").open("a") as handle:
            processes.append(
                subprocess.Popen(
                    cluster.component_command(name),
                    cwd=directory,
                    env=environment,
                    stdin=subprocess.DEVNULL,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def stop() -> None:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log(f"local: pid {process.pid} did not stop within 30 s: killed")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

    from etl.airflow_env import NotReadyError, wait_until_ready

    def running() -> None:
        if any(p.poll() is not None for p in processes):
            raise NotReadyError("a component stopped")

    try:
        wait_until_ready(
            f"{environment['AIRFLOW__API__BASE_URL']}{cluster.HEALTH_PATH}",
            timeout_seconds=timeout,
            poll_seconds=2,
            check=running,
            what="the LocalExecutor's api-server",
        )
    except NotReadyError as error:
        stop()
        raise ClusterBenchError(
            f"the LocalExecutor did not start ({error}); see {root / 'logs'}"
        ) from error
    return environment, stop


def _airflow(environment: dict[str, str], *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_airflow_binary(), *arguments],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )


def _trigger_and_wait(
    environment: dict[str, str],
    metadata: str,
    mode: Mode,
    systems: tuple[str, ...],
    as_of: dt.date,
    timeout: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Unpause (once the DAG is parsed), trigger with the shared batch id, wait for the end."""
    deadline = time.monotonic() + 240
    while (unpaused := _airflow(environment, "dags", "unpause", SELECTION_DAG_ID)).returncode:
        if time.monotonic() > deadline:
            raise ClusterBenchError(f"{SELECTION_DAG_ID} not parsed: {unpaused.stderr[-1000:]}")
        time.sleep(3)
    run_id = f"bench_{mode.label}"
    conf = {"systems": list(systems), "as_of_date": as_of.isoformat(), "batch_id": BATCH_LABEL}
    log(f"{mode.label}: triggering {SELECTION_DAG_ID} over {', '.join(systems)}")
    started = time.perf_counter()
    triggered = _airflow(
        environment, "dags", "trigger", SELECTION_DAG_ID, "--run-id", run_id, "--conf",
        json.dumps(conf),
    )  # fmt: skip
    if triggered.returncode:
        raise ClusterBenchError(f"trigger failed: {triggered.stderr[-2000:]}")
    dag_run = _wait_for_run(metadata, run_id, timeout)
    wall = time.perf_counter() - started
    log(f"{mode.label}: {dag_run['state']} after {wall:.1f} s")
    if dag_run["state"] != "success":
        raise ClusterBenchError(f"{SELECTION_DAG_ID} run {run_id} ended {dag_run['state']}")
    return {"dag_run": dag_run, "tasks": _task_rows(metadata, run_id), "wall_seconds": wall}


def _wait_for_run(metadata: str, run_id: str, timeout: float) -> dict[str, Any]:
    import sqlalchemy as sa

    engine = sa.create_engine(metadata)
    deadline = time.monotonic() + timeout
    query = sa.text(
        "SELECT state, start_date, end_date FROM dag_run WHERE dag_id = :dag AND run_id = :run"
    )
    try:
        while True:
            with engine.connect() as connection:
                row = connection.execute(query, {"dag": SELECTION_DAG_ID, "run": run_id}).first()
            if row is not None and row.state in ("success", "failed"):
                return dict(row._mapping)
            if time.monotonic() > deadline:
                return {"state": "timed out", "start_date": None, "end_date": None}
            time.sleep(2)
    finally:
        engine.dispose()


def _task_rows(metadata: str, run_id: str) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    engine = sa.create_engine(metadata)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT task_id, map_index, hostname, state, duration, start_date, end_date "
                    "FROM task_instance "
                    "WHERE dag_id = :dag AND run_id = :run"
                ),
                {"dag": SELECTION_DAG_ID, "run": run_id},
            ).all()
    finally:
        engine.dispose()
    from etl.cluster import worker_names

    workers = set(worker_names(16))
    # The LocalExecutor's tasks carry the machine's name: reported as where they ran, not named.
    return [
        {**row._mapping, "hostname": row.hostname if row.hostname in workers else "scheduler"}
        for row in rows
    ]


def _task_record(row: dict[str, Any]) -> dict[str, Any]:
    """A task instance for the results file (ids, worker, state and times; no data)."""
    return {
        key: value.isoformat() if isinstance(value, dt.datetime) else value
        for key, value in row.items()
    }


def _core_figures(settings: Settings) -> dict[str, Any]:
    """The core after the run: accounting residue, and one checksum over every table."""
    import sqlalchemy as sa

    from etl.core.database import core_engine
    from etl.load.promote import core_checksums

    engine = core_engine(settings.resolved_core_url)
    with engine.connect() as connection:
        residue, systems = connection.execute(
            sa.text("SELECT sum(residue), count(DISTINCT source_system) FROM batch_accounting")
        ).one()
        started = time.perf_counter()
        sums = core_checksums(connection)
        seconds = time.perf_counter() - started
    core_rows = sum(int(value.split(":", 1)[0]) for value in sums.values())
    return {
        "residue": None if residue is None else int(residue),
        "systems_accounted": int(systems),
        "core_rows": core_rows,
        "core_checksum": hashlib.sha256(json.dumps(sums, sort_keys=True).encode()).hexdigest(),
        "checksum_seconds": seconds,
    }


def _measure_verify(
    settings: Settings,
    systems: tuple[str, ...],
    as_of: dt.date,
    source_rows: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """What ``cutover verify`` reads, timed in this process: each system's source again through
    the mapping, compared with the core (no wave named, so nothing is recorded)."""
    from etl import pipeline
    from etl.cutover.reconcile import reconcile_system

    log("verify: reconciling each system against the core in this process (timed)")
    catalog = pipeline.catalog(settings)
    # The scratch batch's quarantine lines were already logged by the run itself.
    stage_log = logging.getLogger("etl.validate.stage")
    level = stage_log.level
    stage_log.setLevel(logging.ERROR)
    try:
        started = time.perf_counter()
        for system in systems:
            reconcile_system(catalog, system, settings, as_of, label="bench")
        seconds = time.perf_counter() - started
    finally:
        stage_log.setLevel(level)
    return {
        "source_rows": source_rows,
        "seconds": seconds,
        "rows_per_second": source_rows / seconds if seconds > 0 else None,
    }


def _execute(url: str, statement: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(statement)
    finally:
        engine.dispose()


def _drop_database(url: str) -> None:
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    engine = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            quoted = connection.dialect.identifier_preparer.quote(str(parsed.database))
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
    finally:
        engine.dispose()


def _forget_queue(broker_url: str, queue: str) -> None:
    """Remove the run's queue and kombu's binding for it from Redis (nothing else is touched)."""
    import redis

    client = redis.Redis.from_url(broker_url)
    try:
        client.delete(queue, f"_kombu.binding.{queue}")
    finally:
        client.close()


@contextlib.contextmanager
def _environ(variables: dict[str, str]) -> Iterator[None]:
    """The cluster module reads its servers from the environment: set them for the block."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
