"""Airflow on the CeleryExecutor (``vardflytt cluster``) against this machine's Redis and
PostgreSQL: a migration spread over two workers, one of them SIGKILLed in the middle of a task,
ends with every source row accounted for and a core byte-identical to an undisturbed run.

One cluster start serves the whole test (a start costs a minute or two on two cores). The mappings
hold the two systems the run selects only, so the DAG processor, the scheduler and the workers
parse and serialise their DAGs, not every system's."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from etl import cluster
from etl.core.database import core_engine
from etl.load.promote import core_checksums
from etl.settings import Settings
from tests.commands import copy_migrated_airflow_db, mappings_of
from tests.conftest import _server_url

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

SYSTEMS = ["lab_skas", "ris_skas"]
# A fixed batch id: both runs write the same batch ids into the core rows' lineage, so the cores
# compare byte for byte with nothing normalised (entity rows carry no run id or time).
CONF = json.dumps({"systems": SYSTEMS, "as_of_date": "2026-07-01", "batch_id": "faults"})
DAG_ID = "vardflytt_migrate"
RUN_TIMEOUT_SECONDS = 900
# The task to kill: the load writes the core (test_promotion_kill.py kills it at exact points
# of its transaction; here it dies wherever it is). Late in the run, so the surviving worker
# alone has little left to do.
VICTIM_TASK = "system.load"
# Recovery in seconds instead of minutes (etl.cluster.FAULT_TOLERANCE has the production values
# and why): a live try heartbeats every 2 s (Airflow's default: 5), one without a heartbeat for
# 15 s (seven missed) is dead, the scheduler looks every 2 s, and the retry is queued 2 s later.
# The killed worker's try is found dead within ~17 s of the kill instead of ~35.
FAST_RECOVERY = {
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "15",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "2",
}
REDIS_LOCK = "vardflytt-test-lock:{number}"
# Compare-and-delete: a claim is released only by the run that holds it.
REDIS_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)
VARDFLYTT = [sys.executable, "-m", "etl.cli"]


@pytest.fixture
def cluster_settings(small_estate, tmp_path, monkeypatch, postgres_url):
    """Settings for a cluster with its own metadata database, on a fresh core schema."""
    server = _server_url("VARDFLYTT_TEST_POSTGRES_URL")
    metadata = (
        sa.make_url(server)
        .set(database=f"vardflytt_airflow_{uuid.uuid4().hex[:8]}")
        .render_as_string(hide_password=False)
    )
    monkeypatch.setenv("VARDFLYTT_HOME", str(tmp_path))
    monkeypatch.setenv(cluster.DATABASE_VARIABLE, metadata)
    for name, value in FAST_RECOVERY.items():
        monkeypatch.setenv(name, value)
    settings = Settings(
        home=tmp_path,
        estate_dir=small_estate,
        mappings_dir=mappings_of(tmp_path / "mappings", SYSTEMS),
        core_url=postgres_url,
        landing_dir=tmp_path / "l",
    )
    with _claimed_redis_database(_server_url("VARDFLYTT_TEST_REDIS_URL")) as broker:
        monkeypatch.setenv(cluster.BROKER_VARIABLE, broker)
        try:
            yield settings, metadata
        finally:
            cluster.down(settings, echo=lambda _message: None)
            _drop_database(metadata)


@contextlib.contextmanager
def _claimed_redis_database(url: str):
    """A Redis database (1-15) of this test's own, emptied first (no message left by an earlier,
    aborted run). Claimed with ``SET NX`` on a lock key in the URL's database, so two test
    processes (pytest-xdist, two checkouts) never pick, and flush, the same one; the claim
    expires after an hour if this process dies without releasing it."""
    import redis

    base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    token = uuid.uuid4().hex
    locks = redis.Redis.from_url(url)
    claimed = None
    try:
        for number in range(1, 16):
            if locks.set(REDIS_LOCK.format(number=number), token, nx=True, ex=3600):
                claimed = number
                break
        if claimed is None:
            pytest.fail(f"Redis databases 1-15 at {base} are all claimed by other test runs")
        fresh = f"{base}/{claimed}"
        client = redis.Redis.from_url(fresh)
        try:
            client.flushdb()
        finally:
            client.close()
        yield fresh
    finally:
        if claimed is not None:
            locks.eval(REDIS_RELEASE, 1, REDIS_LOCK.format(number=claimed), token)
        locks.close()


def _drop_database(url: str) -> None:
    parsed = sa.make_url(url)
    engine = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
    engine.dispose()


def _rows(metadata: sa.Engine, query: str) -> list[sa.Row]:
    with metadata.connect() as connection:
        return list(connection.execute(sa.text(query), {"d": DAG_ID}).all())


def _run_state(metadata: sa.Engine) -> str | None:
    rows = _rows(metadata, "SELECT state FROM dag_run WHERE dag_id = :d")
    return rows[0][0] if rows else None


def _wait_for_run(metadata: sa.Engine) -> str:
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        state = _run_state(metadata)
        if state in ("success", "failed"):
            return state
        time.sleep(0.2)
    return "timed out"


def _wait_for_a_task_to_kill(metadata: sa.Engine, workers: list[str]) -> sa.Row:
    """A load running on one worker, once every worker has finished a task: the moment to kill
    that worker (the run is under way on both, this task is not finished)."""
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        instances = _rows(
            metadata,
            "SELECT task_id, map_index, try_number, hostname, state FROM task_instance "
            "WHERE dag_id = :d",
        )
        busy = {i.hostname for i in instances if i.state == "success"}
        running = [i for i in instances if i.state == "running" and i.task_id == VICTIM_TASK]
        if set(workers) <= busy and running:
            return running[0]
        assert _run_state(metadata) not in ("success", "failed"), "the run ended before a kill"
        time.sleep(0.2)
    pytest.fail(f"no {VICTIM_TASK} ran on a worker in time")


def _core_state(url: str) -> tuple[dict[str, str], list[tuple]]:
    """The core's table checksums and its accounting, without ``recorded_at`` (a time)."""
    with core_engine(url).connect() as connection:
        sums = core_checksums(connection)
        accounting = connection.exec_driver_sql(
            "SELECT batch_id, source_system, entity, dataset, extracted, loaded, quarantined, "
            "excluded, merged, residue, is_verified FROM batch_accounting "
            "ORDER BY batch_id, entity"
        ).all()
    return sums, [tuple(row) for row in accounting]


def _reference_run(
    settings: Settings, home: Path, core_url: str, airflow_db: Path
) -> tuple[dict[str, str], list]:
    """The same selection, batch, estate and mappings undisturbed: ``airflow dags test`` on an
    Airflow home of its own (a copy of the run's migrated SQLite metadata database), every task
    in one process; the core state it leaves."""
    environment = {
        **os.environ,
        "VARDFLYTT_HOME": str(home),
        "VARDFLYTT_ESTATE_DIR": str(settings.estate_dir),
        "VARDFLYTT_MAPPINGS_DIR": str(settings.mappings_dir),
        "VARDFLYTT_CORE_URL": core_url,
        "VARDFLYTT_LANDING_DIR": str(home / "landing"),
    }
    for name in (cluster.DATABASE_VARIABLE, cluster.BROKER_VARIABLE, *FAST_RECOVERY):
        environment.pop(name, None)
    copy_migrated_airflow_db(airflow_db, home / "airflow")
    completed = subprocess.run(
        [*VARDFLYTT, "airflow", "dags", "test", DAG_ID, "--conf", CONF],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return _core_state(core_url)


def test_a_worker_killed_mid_run_changes_nothing_in_the_core(
    cluster_settings, postgres_schema, tmp_path_factory, airflow_db_template
):
    settings, metadata_url = cluster_settings
    with postgres_schema() as reference_url, ThreadPoolExecutor(1) as background:
        # The reference runs while the cluster starts and works (both wait for much of it).
        reference = background.submit(
            _reference_run,
            settings,
            tmp_path_factory.mktemp("reference"),
            reference_url,
            airflow_db_template,
        )
        _kill_a_worker_mid_run(settings, metadata_url, reference)


def _kill_a_worker_mid_run(settings, metadata_url, reference: Future) -> None:
    said: list[str] = []
    state = cluster.up(settings, workers=2, echo=said.append)
    # The execution API's routes are built before the first task asks (not inside its start).
    assert "execution API ready for the first task" in said
    health = cluster.status(settings)
    workers = cluster.worker_names(2)
    assert [h.name for h in health] == [*cluster.COMPONENTS, *workers]
    assert all(h.is_running for h in health), health
    with pytest.raises(cluster.ClusterError, match="already running"):
        cluster.up(settings, workers=1, echo=lambda _message: None)

    # Both commands at once (each a process importing Airflow): a run triggered while the DAG
    # is still paused starts once it is unpaused.
    with ThreadPoolExecutor(2) as commands:
        unpaused = commands.submit(cluster.airflow_call, settings, "dags", "unpause", DAG_ID)
        triggered = cluster.airflow_call(
            settings, "dags", "trigger", DAG_ID, "--conf", CONF, capture=True
        )
        assert unpaused.result().returncode == 0
    assert triggered.returncode == 0, triggered.stderr[-2000:]

    metadata = sa.create_engine(metadata_url)
    try:
        victim = _wait_for_a_task_to_kill(metadata, workers)
        killed = cluster.kill_worker(settings, victim.hostname, signal.SIGKILL)
        health = {h.name: h for h in cluster.status(settings)}
        assert not health[victim.hostname].is_running
        assert all(h.is_running for name, h in health.items() if name != victim.hostname)

        assert _wait_for_run(metadata) == "success"
        instances = _rows(
            metadata,
            "SELECT task_id, map_index, try_number, hostname, state FROM task_instance "
            "WHERE dag_id = :d",
        )
        history = _rows(
            metadata,
            "SELECT task_id, map_index, try_number, hostname, state "
            "FROM task_instance_history WHERE dag_id = :d",
        )
    finally:
        metadata.dispose()

    # The killed try failed for want of a heartbeat; its retry ran, and succeeded, elsewhere.
    [retried] = [i for i in instances if (i.task_id, i.map_index) == victim[:2]]
    survivor = next(name for name in workers if name != victim.hostname)
    assert (retried.state, retried.hostname) == ("success", survivor), retried
    assert retried.try_number > victim.try_number
    assert (victim.task_id, victim.map_index, victim.try_number, victim.hostname) in {
        tuple(row[:4]) for row in history
    }, history
    # Both workers ran tasks of the run (each names itself: hostname_callable); the join after
    # the providers is an EmptyOperator, which the scheduler marks done without a worker.
    ran = {i.hostname for i in instances if i.state == "success" and i.task_id != "providers_done"}
    assert ran == set(workers), instances

    sums, accounting = _core_state(settings.resolved_core_url)
    assert accounting and all(row[9] == 0 for row in accounting), accounting  # residue 0
    assert {row[1] for row in accounting} == set(SYSTEMS)
    assert (sums, accounting) == reference.result(timeout=RUN_TIMEOUT_SECONDS)

    # down stops every process left (workers' pool children included: each has its own group)
    pids = [p.pid for p in state.processes]
    stopped = cluster.down(settings, echo=lambda _message: None)
    assert sorted(stopped) == sorted(
        name for name in [*cluster.COMPONENTS, *workers] if name != killed.name
    )
    assert not any(cluster.is_alive(pid) for pid in pids)
    assert cluster.status(settings) == []
