"""Airflow on the CeleryExecutor (``vardflytt cluster``) against this machine's Redis and
PostgreSQL: a migration spread over two workers ends with every source row accounted for."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import sqlalchemy as sa

from etl import cluster
from etl.settings import Settings
from tests.conftest import _server_url

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

SYSTEMS = ["lab_skas", "ris_skas"]
RUN_TIMEOUT_SECONDS = 900


@pytest.fixture
def cluster_settings(small_estate, tmp_path, monkeypatch, postgres_url):
    """Settings for a cluster with its own metadata database, on a fresh core schema."""
    server = _server_url("VARDFLYTT_TEST_POSTGRES_URL")
    # A Redis database of its own, emptied first: no message left by an earlier, aborted run.
    broker = _fresh_redis_database(_server_url("VARDFLYTT_TEST_REDIS_URL"))
    metadata = (
        sa.make_url(server)
        .set(database=f"vardflytt_airflow_{uuid.uuid4().hex[:8]}")
        .render_as_string(hide_password=False)
    )
    monkeypatch.setenv("VARDFLYTT_HOME", str(tmp_path))
    monkeypatch.setenv(cluster.DATABASE_VARIABLE, metadata)
    monkeypatch.setenv(cluster.BROKER_VARIABLE, broker)
    settings = Settings(
        home=tmp_path, estate_dir=small_estate, core_url=postgres_url, landing_dir=tmp_path / "l"
    )
    try:
        yield settings, metadata
    finally:
        cluster.down(settings, echo=lambda _message: None)
        _drop_database(metadata)


def _fresh_redis_database(url: str) -> str:
    import random

    import redis

    base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    fresh = f"{base}/{random.SystemRandom().randint(1, 15)}"
    client = redis.Redis.from_url(fresh)
    try:
        client.flushdb()
    finally:
        client.close()
    return fresh


def _drop_database(url: str) -> None:
    parsed = sa.make_url(url)
    engine = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
    engine.dispose()


def _wait_for_run(metadata: str, dag_id: str) -> str:
    engine = sa.create_engine(metadata)
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    try:
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                state = connection.execute(
                    sa.text("SELECT state FROM dag_run WHERE dag_id = :d"), {"d": dag_id}
                ).scalar()
            if state in ("success", "failed"):
                return state
            time.sleep(5)
    finally:
        engine.dispose()
    return "timed out"


def test_a_migration_spreads_over_two_workers_and_down_stops_everything(cluster_settings):
    settings, metadata = cluster_settings
    state = cluster.up(settings, workers=2, echo=lambda _message: None)
    health = cluster.status(settings)
    assert [h.name for h in health] == [*cluster.COMPONENTS, "worker1", "worker2"]
    assert all(h.is_running for h in health), health
    with pytest.raises(cluster.ClusterError, match="already running"):
        cluster.up(settings, workers=1, echo=lambda _message: None)

    conf = json.dumps({"systems": SYSTEMS, "as_of_date": "2026-07-01"})
    assert cluster.airflow_call(settings, "dags", "unpause", "vardflytt_migrate").returncode == 0
    triggered = cluster.airflow_call(
        settings, "dags", "trigger", "vardflytt_migrate", "--conf", conf, capture=True
    )
    assert triggered.returncode == 0, triggered.stderr[-2000:]
    assert _wait_for_run(metadata, "vardflytt_migrate") == "success"

    engine = sa.create_engine(metadata)
    with engine.connect() as connection:
        hosts = dict(
            connection.execute(
                sa.text(
                    "SELECT hostname, count(*) FROM task_instance "
                    "WHERE dag_id = 'vardflytt_migrate' AND state = 'success' GROUP BY hostname"
                )
            ).all()
        )
    engine.dispose()
    # Each worker names itself (hostname_callable), and both ran tasks of the run.
    assert {"worker1", "worker2"} <= set(hosts), hosts

    core = sa.create_engine(settings.resolved_core_url)
    with core.connect() as connection:
        residue, systems = connection.execute(
            sa.text("SELECT sum(residue), count(DISTINCT source_system) FROM batch_accounting")
        ).one()
    core.dispose()
    assert (residue, systems) == (0, len(SYSTEMS))

    # down stops every process (workers' pool children included: each has its own group)
    pids = [p.pid for p in state.processes]
    stopped = cluster.down(settings, echo=lambda _message: None)
    assert sorted(stopped) == sorted([*cluster.COMPONENTS, "worker1", "worker2"])
    assert not any(cluster.is_alive(pid) for pid in pids)
    assert cluster.status(settings) == []
