"""The cluster's configuration, without starting it (etl/cluster.py)."""

from __future__ import annotations

import stat

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
