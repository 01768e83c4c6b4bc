"""`make airflow` sized for the machine and on loopback (etl/airflow_env.py,
etl/airflow_standalone.py)."""

from __future__ import annotations

import pytest

from etl.airflow_env import airflow_environment, machine_settings
from etl.airflow_standalone import standalone_command

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("cores", "parallelism", "parsers", "api_workers"),
    [
        pytest.param(1, "2", "1", "1", id="1-core"),
        pytest.param(2, "2", "1", "1", id="2-cores"),
        pytest.param(8, "8", "4", "4", id="8-cores"),
        pytest.param(96, "32", "8", "4", id="96-cores"),
    ],
)
def test_process_counts_follow_the_cores(cores, parallelism, parsers, api_workers):
    values = machine_settings(cores)
    assert values["AIRFLOW__CORE__PARALLELISM"] == parallelism
    assert values["AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES"] == parsers
    assert values["AIRFLOW__API__WORKERS"] == api_workers


def test_the_environment_is_sized_by_os_cpu_count_and_on_loopback(settings_for, monkeypatch):
    for name in machine_settings(2):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    environment = airflow_environment(settings_for())

    assert environment["AIRFLOW__CORE__PARALLELISM"] == "2"  # Airflow's default: 32
    assert environment["AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES"] == "1"
    assert environment["AIRFLOW__API__WORKERS"] == "1"
    assert environment["AIRFLOW__API__HOST"] == "127.0.0.1"  # Airflow's default: 0.0.0.0
    assert environment["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST"] == "127.0.0.1"
    # A task whose start waits on a busy api-server is not killed after 5 s (Airflow's default).
    assert float(environment["AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT"]) >= 30
    # The SimpleAuthManager users stay configured alongside.
    assert environment["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].startswith("admin:ADMIN")


@pytest.mark.parametrize(
    ("host", "base_url"),
    [
        pytest.param(None, "http://127.0.0.1:8793", id="loopback"),
        pytest.param("0.0.0.0", "http://127.0.0.1:8793", id="every-interface"),
        pytest.param("10.1.2.3", "http://10.1.2.3:8793", id="an-address"),
        pytest.param("::1", "http://[::1]:8793", id="ipv6"),
    ],
)
def test_tasks_follow_an_api_server_on_another_port(settings_for, monkeypatch, host, base_url):
    # Tasks reach the execution API at [api] base_url, Airflow's default http://localhost:8080.
    monkeypatch.setenv("AIRFLOW__API__PORT", "8793")
    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
    if host is None:
        monkeypatch.delenv("AIRFLOW__API__HOST", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW__API__HOST", host)
    assert airflow_environment(settings_for())["AIRFLOW__API__BASE_URL"] == base_url


def test_without_a_port_airflow_s_default_address_stays(settings_for, monkeypatch):
    monkeypatch.delenv("AIRFLOW__API__PORT", raising=False)
    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
    assert "AIRFLOW__API__BASE_URL" not in airflow_environment(settings_for())


def test_the_operator_s_environment_wins(settings_for, monkeypatch):
    monkeypatch.setenv("AIRFLOW__API__HOST", "10.1.2.3")
    monkeypatch.setenv("AIRFLOW__CORE__PARALLELISM", "5")
    monkeypatch.setenv("AIRFLOW__API__PORT", "8793")
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.se")
    environment = airflow_environment(settings_for())
    assert environment["AIRFLOW__API__HOST"] == "10.1.2.3"
    assert environment["AIRFLOW__CORE__PARALLELISM"] == "5"
    assert environment["AIRFLOW__API__BASE_URL"] == "https://airflow.example.se"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["scheduler"], ["scheduler", "--skip-serve-logs"]),
        (["triggerer"], ["triggerer", "--skip-serve-logs"]),
        (["dag-processor"], ["dag-processor"]),
        (["api-server"], ["api-server"]),
    ],
)
def test_standalone_starts_no_log_server(command, expected):
    assert standalone_command(command) == expected


def test_vardflytt_airflow_standalone_runs_the_loopback_standalone(settings_for, monkeypatch):
    from typer.testing import CliRunner

    from etl import cli

    settings = settings_for()
    calls = []

    def call(command, env):
        calls.append((command, env))
        return 0

    monkeypatch.setattr(cli.subprocess, "call", call)
    result = CliRunner().invoke(cli.app, ["airflow", "standalone"])

    assert result.exit_code == 0, result.output
    [(command, environment)] = calls
    assert command[1:] == ["-m", "etl.airflow_standalone"]
    assert environment["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert "simple_auth_manager_passwords.json" in result.output
    assert (settings.home / "airflow" / "simple_auth_manager_passwords.json").exists()
