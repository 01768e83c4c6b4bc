"""docker/: the image, the compose stack and the Helm values, checked without a container runtime
(images cannot be pulled on these machines): they agree with the lock and with the Celery
cluster the tests run (etl/cluster.py)."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from etl import cluster
from etl.airflow_main import AIRFLOW_COMMAND
from etl.settings import Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


def _locked(package: str) -> str:
    text = (ROOT / "requirements.lock").read_text("utf-8")
    return re.search(rf"^{re.escape(package)}==([^\s;]+)", text, re.M).group(1)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text("utf-8"))


def _stages(dockerfile: str) -> list[str]:
    return re.split(r"^FROM ", dockerfile, flags=re.M)[1:]


def test_the_image_is_the_official_airflow_image_at_the_locked_versions():
    dockerfile = (DOCKER / "Dockerfile").read_text("utf-8")
    assert re.search(
        rf"^ARG AIRFLOW_VERSION={re.escape(_locked('apache-airflow'))}$", dockerfile, re.M
    )
    assert re.search(r"^ARG PYTHON_VERSION=3\.11$", dockerfile, re.M)
    stages = _stages(dockerfile)
    assert len(stages) == 2
    for stage in stages:
        assert stage.startswith("apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}")
    final = stages[-1]
    # the final stage installs from the lock, offline, as the image's non-root user
    assert "--no-index" in final and "-r /tmp/requirements.lock" in final
    users = re.findall(r"^USER (\S+)", final, re.M)
    assert users and users[-1] == "airflow" and "root" not in users
    assert not re.search(r"build-essential|gcc|apt-get", final)


def test_the_stack_has_every_component_and_workers_as_the_cluster_runs_them(compose):
    services = compose["services"]
    commands = {
        "airflow-api-server": cluster.component_command("api-server"),
        "airflow-scheduler": cluster.component_command("scheduler"),
        "airflow-dag-processor": cluster.component_command("dag-processor"),
        "airflow-triggerer": cluster.component_command("triggerer"),
    }
    for service, command in commands.items():
        arguments = command[len(AIRFLOW_COMMAND) :]  # without how airflow is started
        # the same component and flags (the api-server's worker count is the deployment's own)
        assert services[service]["command"][0] == arguments[0], service
        assert [a for a in services[service]["command"] if a.startswith("--skip")] == [
            a for a in arguments if a.startswith("--skip")
        ], service
    worker = services["airflow-worker"]["command"]
    expected = cluster.worker_command("worker1")[len(AIRFLOW_COMMAND) :]
    assert worker[:2] == expected[:2] == ["celery", "worker"]
    assert {a for a in worker if a.startswith("--")} == {a for a in expected if a.startswith("--")}
    assert services["airflow-worker"]["deploy"]["replicas"] >= 2


def test_the_stack_runs_with_the_settings_the_celery_test_uses(compose, tmp_path, monkeypatch):
    monkeypatch.delenv(cluster.DATABASE_VARIABLE, raising=False)
    monkeypatch.delenv(cluster.BROKER_VARIABLE, raising=False)
    tested = cluster.cluster_environment(Settings(home=tmp_path), 8080, 2)
    environment = compose["x-airflow-common"]["environment"]
    for name in (
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__CELERY__TASK_ACKS_LATE",
        cluster.CELERY_CONFIG_VARIABLE,  # the workers import the task modules before forking
    ):
        assert environment[name] == tested[name], name
    for name, value in cluster.FAULT_TOLERANCE.items():  # how a dead worker's task recovers
        assert environment[name] == value, name
    # every secret the local cluster generates or configures comes from a file here
    for name in (
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC",
        "AIRFLOW__CELERY__BROKER_URL",
        "AIRFLOW__CELERY__RESULT_BACKEND",
    ):
        assert name in tested and name not in environment, name
        assert environment[f"{name}_CMD"].startswith("cat /run/secrets/"), name
    assert environment["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].endswith("/execution/")


def test_no_default_passwords_and_nothing_listens_beyond_loopback(compose):
    text = (DOCKER / "compose.yaml").read_text("utf-8")
    assert not re.search(r"(?i)password\s*[:=]\s*['\"]?\w", text)
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
        environment = service.get("environment", {})
        for variable in environment:
            if "PASSWORD" in variable:
                assert variable.endswith("_FILE"), (name, variable)
    assert all(
        "healthcheck" in service
        for name, service in compose["services"].items()
        if name != "airflow-init"
    )


def test_make_secrets_generates_every_secret_file_owner_only(compose, tmp_path):
    copy = tmp_path / "docker"
    shutil.copytree(DOCKER, copy, ignore=shutil.ignore_patterns("secrets"))
    subprocess.run(["sh", str(copy / "make-secrets.sh")], check=True, capture_output=True)
    first = {p.name: p.read_text() for p in (copy / "secrets").iterdir()}
    for name, secret in compose["secrets"].items():
        path = copy / secret["file"]
        assert path.is_file() and path.read_text().strip(), name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    subprocess.run(["sh", str(copy / "make-secrets.sh")], check=True, capture_output=True)
    assert {p.name: p.read_text() for p in (copy / "secrets").iterdir()} == first  # kept
    assert len(set(first.values())) == len(first)  # no secret reused
    assert (DOCKER / ".gitignore").read_text().split() == ["secrets/"]


def test_the_helm_values_are_a_kubernetes_executor_deployment_of_the_same_image():
    values = yaml.safe_load((DOCKER / "helm" / "values.yaml").read_text("utf-8"))
    assert values["executor"] == "KubernetesExecutor"
    assert values["airflowVersion"] == _locked("apache-airflow")
    assert values["defaultAirflowTag"] == f"{_locked('apache-airflow')}-python3.11"
    assert values["postgresql"]["enabled"] is False  # the region's database, not the chart's
    text = (DOCKER / "helm" / "values.yaml").read_text("utf-8")
    assert not re.search(r"(?i)(password|secret)\s*:\s*['\"]?[A-Za-z0-9]{12,}", text)


def test_the_docker_readme_says_what_was_not_run_here():
    readme = (DOCKER / "README.md").read_text("utf-8")
    assert "not run" in readme.lower()


def test_the_deployment_gets_the_pools_and_the_policy_that_routes_mapped_extracts(compose):
    """Without the pool sync, or the policy file in the image, a cluster's mapped extracts
    would all run in default_pool: no per-source limit but the lease."""
    from etl.airflow_pools import LOCAL_SETTINGS

    init = " ".join(compose["services"]["airflow-init"]["command"])
    assert re.search(r"airflow db migrate && python -m etl\.airflow_pools\b", init)
    dockerfile = (DOCKER / "Dockerfile").read_text("utf-8").replace("\\\n", "")
    assert "install_policy(pathlib.Path(os.environ['AIRFLOW_HOME']))" in dockerfile
    assert LOCAL_SETTINGS.as_posix() == "config/airflow_local_settings.py"
