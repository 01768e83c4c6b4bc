"""The cluster's configuration, without starting it (etl/cluster.py)."""

from __future__ import annotations

import contextlib
import os
import stat
import sys

import pytest

from etl import cluster
from etl.core.residency import ResidencyError
from etl.settings import Settings

pytestmark = pytest.mark.unit


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("VARDFLYTT_HOME", str(tmp_path))
    monkeypatch.delenv(cluster.DATABASE_VARIABLE, raising=False)
    monkeypatch.delenv(cluster.BROKER_VARIABLE, raising=False)
    return Settings(home=tmp_path)


def test_secrets_are_generated_once_owner_only_and_shared_by_every_process(settings):
    first = cluster.cluster_environment(settings, 18080, 2)
    second = cluster.cluster_environment(settings, 18080, 2)
    path = cluster.cluster_root(settings) / cluster.SECRETS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for name in (
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
    ):
        assert first[name] and first[name] == second[name], name
    assert len(first["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 48


def test_the_environment_is_celery_on_postgres_and_redis_on_loopback(settings):
    environment = cluster.cluster_environment(settings, 18080, 2)
    assert environment["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == cluster.DEFAULT_DATABASE_URL
    assert environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"].startswith(
        "postgresql+psycopg_async://"
    )
    assert environment["AIRFLOW__CELERY__RESULT_BACKEND"] == f"db+{cluster.DEFAULT_DATABASE_URL}"
    assert environment["AIRFLOW__CELERY__TASK_ACKS_LATE"] == "True"
    assert environment["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert environment["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
        "http://127.0.0.1:18080/execution/"
    )
    assert environment["AIRFLOW_HOME"] == str(cluster.cluster_root(settings) / "airflow")


def test_a_broker_on_a_host_not_allowed_is_refused(settings, monkeypatch):
    monkeypatch.setenv(cluster.BROKER_VARIABLE, "redis://broker.cloud.example.com:6379/0")
    with pytest.raises(ResidencyError, match="BROKER_URL"):
        cluster.cluster_environment(settings, 18080, 2)


def test_no_component_starts_a_log_server_and_workers_are_named():
    for name in ("scheduler", "triggerer"):
        assert "--skip-serve-logs" in cluster.component_command(name)
    worker = cluster.worker_command("worker2")
    assert "--skip-serve-logs" in worker
    assert worker[worker.index("--celery-hostname") + 1] == "worker2@%h"
    assert cluster.worker_names(3) == ["worker1", "worker2", "worker3"]


def test_a_worker_reports_its_own_name_as_the_task_hostname(monkeypatch):
    monkeypatch.setenv(cluster.WORKER_NAME_VARIABLE, "worker7")
    assert cluster.worker_hostname() == "worker7"
    monkeypatch.delenv(cluster.WORKER_NAME_VARIABLE)
    assert cluster.worker_hostname() != "worker7"


def test_a_dead_workers_task_is_retried_with_production_values_the_operator_may_change(
    settings, monkeypatch
):
    environment = cluster.cluster_environment(settings, 18080, 2)
    for name, value in cluster.FAULT_TOLERANCE.items():
        assert environment[name] == value, name
    assert int(environment["AIRFLOW__CORE__DEFAULT_TASK_RETRIES"]) >= 1
    monkeypatch.setenv("AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT", "30")
    changed = cluster.cluster_environment(settings, 18080, 2)
    assert changed["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"] == "30"


def test_a_worker_imports_the_task_modules_before_it_forks_its_pool(settings):
    """Through Airflow's own configuration, as ``airflow celery worker`` builds its Celery app:
    the cluster's workers import the pipeline and Great Expectations when the worker initialises
    (in its main process, before the prefork pool starts), so no task imports them again; the
    scheduler's and api-server's Celery app, which never initialises a worker, does not."""
    import json
    import subprocess

    environment = cluster.cluster_environment(settings, 18080, 2)
    assert environment[cluster.CELERY_CONFIG_VARIABLE] == cluster.CELERY_CONFIG
    script = (
        "import json, sys\n"
        "from airflow.providers.celery.executors.celery_executor import app\n"
        "wanted = ('etl.pipeline', 'etl.validate.suites', 'great_expectations')\n"
        "before = [name for name in wanted if name in sys.modules]\n"
        "app.loader.init_worker()\n"
        "after = [name for name in wanted if name in sys.modules]\n"
        "print(json.dumps({'before': before, 'after': after, 'broker': app.conf.broker_url}))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    imported = json.loads(completed.stdout.strip().splitlines()[-1])
    assert imported == {
        "before": [],
        "after": ["etl.pipeline", "etl.validate.suites", "great_expectations"],
        # Airflow's own configuration, not replaced by it: the cluster's broker.
        "broker": environment["AIRFLOW__CELERY__BROKER_URL"],
    }


def test_kill_worker_ends_the_worker_and_a_task_runner_in_a_group_of_its_own(settings):
    """As Airflow's supervisor does, the worker's child runs in its own process group: killing
    the worker's group alone would leave it running, an orphan still writing."""
    import json
    import time

    import psutil

    root = cluster.cluster_root(settings)
    child_pid = root / "child.pid"
    code = (
        "import subprocess, sys, time, pathlib;"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'],"
        " process_group=0);"
        f"pathlib.Path({str(child_pid)!r}).write_text(str(child.pid)); time.sleep(300)"
    )
    worker = cluster._start("worker1", [sys.executable, "-c", code], dict(os.environ), root)
    state = cluster.ClusterState("http://127.0.0.1:1", "db", "broker", 1, time.time(), [worker])
    cluster._write_state(root, state)
    deadline = time.monotonic() + 30
    while not child_pid.exists():
        assert time.monotonic() < deadline, "the worker never started its child"
        time.sleep(0.05)
    child = psutil.Process(int(child_pid.read_text()))
    assert os.getpgid(child.pid) != os.getpgid(worker.pid)

    killed = cluster.kill_worker(settings, "worker1")

    assert killed.pid == worker.pid and not cluster.is_alive(worker.pid)
    with contextlib.suppress(psutil.NoSuchProcess):
        child.wait(timeout=10)  # not this process's child: its exit code is not ours to read
    assert not child.is_running()
    [health] = cluster.status(settings)
    assert (health.name, health.is_running, health.detail) == ("worker1", False, "not running")
    with pytest.raises(cluster.ClusterError, match="no worker 'scheduler'"):
        cluster.kill_worker(settings, "scheduler")
    assert json.loads((root / cluster.STATE_FILE).read_text())["workers"] == 1


@pytest.mark.parametrize("workers, concurrency", [(2, "1"), (4, "3")])
def test_the_scheduler_lets_every_workers_slots_run(settings, monkeypatch, workers, concurrency):
    """Parallelism caps running tasks across the whole cluster: below the workers' slots it
    would leave workers idle (it used to follow this machine's cores alone)."""
    monkeypatch.setenv(cluster.CONCURRENCY_VARIABLE, concurrency)
    environment = cluster.cluster_environment(settings, 18080, workers)
    assert environment["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == concurrency
    assert int(environment["AIRFLOW__CORE__PARALLELISM"]) >= workers * int(concurrency)
