"""Airflow's components wait for a SQLite metadata database's write lock instead of failing after
sqlite3's 5 s (etl/airflow_metadata.py): CI saw an approver's answer fail with HTTP 500 so."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from etl.airflow_env import airflow_environment
from etl.airflow_metadata import SQLITE_BUSY_TIMEOUT_SECONDS

pytestmark = pytest.mark.integration

# What Airflow's own engines (sync, and the api-server's async one) were given and report.
PROBE = """
import asyncio, json
from airflow import settings
from etl import airflow_metadata

def busy_ms(connection):
    return connection.exec_driver_sql("PRAGMA busy_timeout").scalar()

async def async_busy_ms():
    async with settings.async_engine.connect() as connection:
        found = (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar()
    await settings.async_engine.dispose()
    return found

settings.configure_orm()
found = {"connect_args": airflow_metadata.ASYNC_CONNECT_ARGS}
if settings.engine.dialect.name == "sqlite":
    with settings.engine.connect() as connection:
        found["sync_ms"] = busy_ms(connection)
    found["async_ms"] = asyncio.run(async_busy_ms())
print("FOUND", json.dumps(found))
"""


def _probe(environment: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=environment, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("FOUND ")]
    return json.loads(line.removeprefix("FOUND "))


def test_a_sqlite_metadata_writer_waits_for_the_lock(settings_for, monkeypatch):
    for name in (
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC",
    ):
        monkeypatch.delenv(name, raising=False)
    # Airflow's default metadata database: airflow.db in its home.
    environment = airflow_environment(settings_for())

    found = _probe(environment)

    expected_ms = int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)
    assert expected_ms >= 30_000  # sqlite3's own 5 s failed a request on a busy machine
    assert found == {
        "connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
        "sync_ms": expected_ms,
        "async_ms": expected_ms,
    }


def test_a_server_metadata_database_gets_no_sqlite_arguments(settings_for, monkeypatch):
    environment = airflow_environment(settings_for())
    environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = "postgresql+psycopg://airflow@127.0.0.1/x"
    environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = (
        "postgresql+psycopg://airflow@127.0.0.1/x"
    )

    # Engines are created without connecting: psycopg would refuse an unknown "timeout".
    assert _probe(environment) == {"connect_args": {}}
