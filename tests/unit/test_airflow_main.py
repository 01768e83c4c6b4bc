"""``airflow`` as the project starts it (etl/airflow_main.py): Airflow's own command line, named
``airflow``, with the collector set for a short command and no collection at exit; in ``dags
test`` and ``tasks test``, an in-process execution API serving only the task SDK client's API
version (etl/airflow_inprocess_api.py). The tests that build Airflow's execution API are
``integration`` (real Airflow, ~2 CPU s to import it, ~3.5 to build every version once)."""

from __future__ import annotations

import atexit
import gc
import os
import subprocess
import sys
import types

import pytest

from etl import airflow_inprocess_api
from etl.airflow_inprocess_api import install
from etl.airflow_main import (
    AIRFLOW_COMMAND,
    TASK_PRELOAD,
    YOUNG_THRESHOLD,
    dag_file_arguments,
    main,
    task_preload,
)


@pytest.mark.unit
def test_airflow_runs_its_own_command_line_with_the_collector_set(monkeypatch, unsettled_heap):
    seen = {}

    def airflow_main():
        seen["argv0"] = sys.argv[0]
        seen["threshold"] = gc.get_threshold()
        seen["frozen"] = gc.get_freeze_count()
        return 3

    module = types.ModuleType("airflow.__main__")
    module.main = airflow_main
    monkeypatch.setitem(sys.modules, "airflow.__main__", module)
    monkeypatch.setattr(
        airflow_inprocess_api, "install", lambda argv: seen.setdefault("installed", list(argv))
    )
    monkeypatch.setattr(sys, "argv", ["/somewhere/etl/airflow_main.py", "version"])
    threshold = gc.get_threshold()
    registered = []
    monkeypatch.setattr(atexit, "register", registered.append)
    try:
        with pytest.raises(SystemExit) as ended:
            main()
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()

    assert ended.value.code == 3  # Airflow's exit code
    assert seen["argv0"].endswith("/airflow")  # the command line Airflow records in its log
    assert seen["threshold"] == (YOUNG_THRESHOLD, *threshold[1:])
    assert seen["frozen"] > 0  # what was alive once Airflow was imported
    assert registered == [gc.freeze]  # at exit: no collection of what is left
    assert seen["installed"] == [seen["argv0"], "version"]  # decides by Airflow's command


@pytest.mark.unit
def test_the_command_is_airflows_command_line():
    completed = subprocess.run(
        [*AIRFLOW_COMMAND, "--help"], capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.startswith("Usage: airflow "), completed.stdout[:200]
    assert "dags" in completed.stdout.split()


@pytest.mark.unit
def test_the_api_server_starts_as_the_project_starts_airflow(monkeypatch, tmp_path):
    """etl.airflow_env.api_server runs ``airflow api-server`` through AIRFLOW_COMMAND, so it too
    skips the collections of a heap it keeps until it stops (~2.3 CPU s per server)."""
    from etl import airflow_env

    started = []

    def popen(command, **_options):
        started.append(command)
        raise OSError("not started in this test")

    monkeypatch.setattr(airflow_env.subprocess, "Popen", popen)
    with pytest.raises(OSError), airflow_env.api_server({}, tmp_path / "api-server.log"):
        pass
    [command] = started
    assert command[: len(AIRFLOW_COMMAND)] == list(AIRFLOW_COMMAND)
    assert command[len(AIRFLOW_COMMAND)] == "api-server"


@pytest.fixture
def execution_api(monkeypatch):
    """Airflow's execution API module (airflow/api_fastapi/execution_api/app.py), with its
    ``create_task_execution_api_app`` put back after the test."""
    from airflow.api_fastapi.execution_api import app

    monkeypatch.setattr(app, "create_task_execution_api_app", app.create_task_execution_api_app)
    return app


def _sdk_client(api):
    """The task SDK's client on an in-process API, as ``dags test`` makes it
    (InProcessTestSupervisor._api_client in airflow/sdk/execution_time/supervisor.py)."""
    from airflow.sdk.api.client import Client

    client = Client(base_url=None, token="", dry_run=True, transport=api.transport)
    client.base_url = "http://in-process.invalid./"
    return client


def _full_bundle():
    from airflow.api_fastapi.execution_api.versions import bundle

    return bundle


@pytest.mark.integration
def test_dags_test_serves_the_sdk_clients_api_version_only(execution_api):
    from airflow.sdk.api.client import API_VERSION

    assert install(["airflow", "dags", "test", "vardflytt_elvis"])
    api = execution_api.InProcessExecutionAPI()

    health = _sdk_client(api).get("health")

    assert health.request.headers["airflow-api-version"] == API_VERSION
    assert health.json() == {"status": "healthy"}
    assert api.app.versions.version_values == (API_VERSION,)
    assert list(api.app.router.versioned_routers) == [API_VERSION]  # no older version generated
    assert len(_full_bundle().version_values) > 1  # which Airflow's own app would generate


@pytest.mark.integration
def test_the_clients_version_has_the_routes_and_document_airflow_gives_it(execution_api):
    """Airflow's own in-process app (every version) and the trimmed one answer the client's
    version alike: the same routes to the same endpoints, the same OpenAPI document."""

    def served(api):
        client = _sdk_client(api)
        answers = {  # Cadwyn generates the routes at the first request
            "health": client.get("health").json(),
            "openapi": client.get("openapi.json").json(),
        }
        routes = api.app.router.versioned_routers[client.headers["airflow-api-version"]].routes
        return answers | {
            "routes": sorted(
                (route.path, sorted(getattr(route, "methods", None) or ()), route.name)
                for route in routes
            )
        }

    airflows = served(execution_api.InProcessExecutionAPI())
    assert len(airflows["routes"]) > 40
    install(["airflow", "dags", "test"])
    trimmed = served(execution_api.InProcessExecutionAPI())

    assert trimmed == airflows


@pytest.mark.integration
@pytest.mark.parametrize("expectation", ["client speaks an older version", "no version constant"])
def test_anything_unexpected_leaves_airflows_app_with_every_version(
    expectation, execution_api, monkeypatch
):
    import airflow.sdk.api.client as sdk_client

    if expectation == "client speaks an older version":
        monkeypatch.setattr(sdk_client, "API_VERSION", _full_bundle().version_values[1])
    else:
        monkeypatch.delattr(sdk_client, "API_VERSION")
    assert install(["airflow", "tasks", "test"])

    app = execution_api.InProcessExecutionAPI().app

    assert app.versions is _full_bundle()
    assert list(app.router.versioned_routers) == list(_full_bundle().version_values)


@pytest.mark.integration
def test_a_route_generation_error_leaves_airflows_app_with_every_version(
    execution_api, monkeypatch
):
    import cadwyn.applications
    from cadwyn.exceptions import RouterGenerationError

    def generation_fails(*arguments, **options):
        raise RouterGenerationError("as a route marked only_exists_in_older_versions makes it")

    monkeypatch.setattr(cadwyn.applications, "generate_versioned_routers", generation_fails)
    assert install(["airflow", "dags", "test"])

    app = execution_api.InProcessExecutionAPI().app

    assert app.versions is _full_bundle()


@pytest.mark.integration
def test_the_api_server_and_other_commands_keep_every_version(execution_api):
    create = execution_api.create_task_execution_api_app

    assert not install(["airflow", "api-server"])
    assert execution_api.create_task_execution_api_app is create
    assert install(["airflow", "dags", "test"])
    # the api-server's app: created with the module's own lifespan (airflow/api_fastapi/app.py)
    app = execution_api.create_task_execution_api_app()

    assert app.versions is _full_bundle()


@pytest.mark.unit
@pytest.mark.parametrize(
    ("argv", "executor", "preloaded"),
    [
        (["airflow", "scheduler"], "LocalExecutor", True),
        (
            ["airflow", "scheduler", "--skip-serve-logs"],
            "airflow.executors.local_executor.LocalExecutor",
            True,
        ),
        (["airflow", "scheduler"], "CeleryExecutor", False),  # its Celery workers preload
        (["airflow", "dags", "test", "vardflytt_elvis"], "LocalExecutor", False),  # one process
        (["airflow", "api-server"], "LocalExecutor", False),
        (["airflow"], "LocalExecutor", False),
    ],
)
def test_a_scheduler_that_forks_task_runners_imports_the_task_modules_first(
    argv, executor, preloaded
):
    assert task_preload(argv, executor) == (TASK_PRELOAD if preloaded else ())
    assert "etl.pipeline" in TASK_PRELOAD and "etl.validate.gx_import" in TASK_PRELOAD


@pytest.mark.integration
@pytest.mark.parametrize(
    ("executor", "imported"), [("LocalExecutor", True), ("CeleryExecutor", False)]
)
def test_the_scheduler_process_has_the_task_modules_before_airflow_starts(
    executor, imported, tmp_path
):
    """Through Airflow's own configuration (``AIRFLOW__CORE__EXECUTOR``), in a fresh process."""
    script = (
        "import sys; from etl.airflow_main import _preload; _preload(['airflow', 'scheduler']); "
        "print(all(m in sys.modules for m in ('etl.pipeline', 'etl.validate.gx_import')))"
    )
    environment = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__EXECUTOR": executor,
    }
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environment, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip().splitlines()[-1] == str(imported)


@pytest.mark.unit
def test_dags_test_of_a_project_dag_parses_the_file_that_defines_it_only(monkeypatch, tmp_path):
    """``--dagfile-path`` is added for the project's DAG ids in the default DAG folder bundle;
    never when the command names a file or a bundle, for another id or command, for a file the
    folder does not hold, under other bundles, nor when the command line does not parse."""
    folder = tmp_path / "dags"
    folder.mkdir()
    for name in ("vardflytt_cutover.py", "vardflytt_migration.py", "vardflytt_identity.py"):
        (folder / name).touch()
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(folder))

    def added(*arguments: str) -> list[str]:
        return dag_file_arguments(["airflow", *arguments])

    cutover = ["--dagfile-path", str(folder / "vardflytt_cutover.py")]
    assert added("dags", "test", "vardflytt_cutover_t1", "--conf", "{}") == cutover
    assert added("dags", "test", "vardflytt_rollback") == cutover
    assert added("dags", "test", "vardflytt_elvis", "2026-07-01") == [
        "--dagfile-path",
        str(folder / "vardflytt_migration.py"),
    ]
    assert added("dags", "test", "identity_resolution")[1].endswith("vardflytt_identity.py")
    assert added("dags", "test", "vardflytt_coexistence") == []  # not in this folder
    assert added("dags", "test", "someone_elses_dag") == []
    assert added("dags", "test", "-f", str(folder / "x.py"), "vardflytt_elvis") == []
    assert added("dags", "test", "-B", "dags-folder", "vardflytt_elvis") == []
    assert added("dags", "test", "--no-such-option", "vardflytt_elvis") == []
    assert added("dags", "list") == [] and added("tasks", "test", "vardflytt_elvis") == []
    monkeypatch.setenv(
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
        '[{"name": "git", "classpath": "airflow.providers.git.bundles.git.GitDagBundle"}]',
    )
    assert added("dags", "test", "vardflytt_elvis") == []
