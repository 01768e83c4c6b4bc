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


@pytest.fixture
def execution_api():
    """A loopback stand-in for the execution API: /execution/health answers 503 twice (its routes
    being generated), then 200; yields (its /execution/ URL, the paths asked)."""
    import http.server
    import threading

    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            status = 200 if self.path == "/execution/health" and len(asked) > 2 else 503
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/execution/", asked
    server.shutdown()
    thread.join()


def test_standalone_warms_the_execution_api_before_the_first_task(execution_api, monkeypatch):
    from etl.airflow_standalone import start_warming_execution_api

    url, asked = execution_api
    # The URL the executor gives its tasks ([core] execution_api_server_url).
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", url)
    said = []
    start_warming_execution_api(lambda name, line: said.append((name, line))).join(timeout=30)
    assert asked == ["/execution/health"] * 3  # until it answers, then no more
    assert said == [("standalone", "execution API ready for the first task")]


def test_the_warm_up_gives_up_on_an_api_that_never_answers():
    from etl.airflow_env import free_loopback_port
    from etl.airflow_standalone import warm_execution_api

    said = []
    url = f"http://127.0.0.1:{free_loopback_port()}/execution/"
    assert not warm_execution_api(url, said.append, seconds=0.5, poll_seconds=0.05)
    assert said == [f"execution API did not answer at {url}health within 0 s"]


def test_one_client_polls_until_ready_and_no_more(execution_api, monkeypatch):
    """``wait_until_ready``, which every "until the server answers" wait uses: one httpx client
    for all its probes (a client per probe cost ~20-40 ms CPU each), a 503 is not ready."""
    import httpx

    from etl.airflow_env import wait_until_ready

    url, asked = execution_api
    clients = []
    real_client = httpx.Client

    def client(*arguments, **options):
        clients.append(options)
        return real_client(*arguments, **options)

    monkeypatch.setattr(httpx, "Client", client)
    response = wait_until_ready(f"{url}health", timeout_seconds=30, poll_seconds=0.01)
    assert response.status_code == 200
    assert asked == ["/execution/health"] * 3
    assert len(clients) == 1


def test_the_wait_stops_when_its_check_says_the_server_died(execution_api):
    from etl.airflow_env import wait_until_ready

    url, asked = execution_api

    def died():
        raise RuntimeError("airflow api-server stopped (exit 1)")

    with pytest.raises(RuntimeError, match=r"stopped \(exit 1\)"):
        wait_until_ready(f"{url}health", timeout_seconds=30, check=died)
    assert asked == []


def test_a_wait_that_times_out_names_the_url_the_last_answer_and_what_to_do(execution_api):
    from etl.airflow_env import NotReadyError, wait_until_ready

    url, _asked = execution_api
    with pytest.raises(NotReadyError) as raised:
        wait_until_ready(
            f"{url}other",  # always 503
            timeout_seconds=0.2,
            poll_seconds=0.01,
            what="airflow api-server",
            hint="see its log api.log",
        )
    assert str(raised.value) == (
        f"airflow api-server not ready at {url}other within 0 s "
        "(last probe: HTTP 503, not ready); see its log api.log"
    )


def test_standalone_components_start_as_the_project_starts_airflow(monkeypatch):
    """The scheduler, dag-processor, triggerer and api-server of ``make airflow`` start through
    etl/airflow_main.py (a LocalExecutor scheduler then imports the task modules once, before it
    forks), not through the ``airflow`` script on the PATH; their output still reaches
    standalone's queue, line by line."""
    import io
    import sys
    import types

    import airflow.__main__
    from airflow.cli.commands import standalone_command as standalone

    from etl import airflow_standalone
    from etl.airflow_main import AIRFLOW_COMMAND

    monkeypatch.setattr(standalone, "StandaloneCommand", standalone.StandaloneCommand)
    monkeypatch.setattr(standalone, "SubCommand", standalone.SubCommand)
    started: list[list[str]] = []
    parent = types.SimpleNamespace(output_queue=[])

    def popen(command, **kwargs):
        started.append(command)
        return types.SimpleNamespace(stdout=io.BytesIO(b"scheduler up\n"))

    def run_one_component() -> None:  # what standalone does for each of its components
        standalone.SubCommand(parent, "scheduler", ["scheduler"], {"PATH": ""}).run()

    monkeypatch.setattr(airflow_standalone.subprocess, "Popen", popen)
    monkeypatch.setattr(airflow.__main__, "main", run_one_component)
    monkeypatch.setattr(sys, "argv", ["etl.airflow_standalone"])

    airflow_standalone.main()

    assert started == [[*AIRFLOW_COMMAND, "scheduler", "--skip-serve-logs"]]
    assert parent.output_queue == [("scheduler", b"scheduler up\n")]
