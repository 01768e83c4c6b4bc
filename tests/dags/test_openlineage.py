"""OpenLineage on the DAGs: the load tasks give Airflow's OpenLineage provider the column lineage
of their systems' mappings (etl/airflow_lineage.py), read the way the provider reads it; parsing
stays light, and nothing is emitted unless a transport is configured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from etl.report.lineage import CORE_NAMESPACE, legacy_namespace
from etl.settings import PROJECT_ROOT

pytestmark = pytest.mark.dags

MAPPINGS = PROJECT_ROOT / "mappings"


@pytest.fixture(scope="module")
def cutover_dags():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "vardflytt_cutover.py"))
    assert bag.import_errors == {}
    return bag.dags


def test_the_provider_reads_the_column_lineage_of_a_cutover_load(cutover_dags, tmp_path):
    """The provider's own extraction (ExtractorManager, as its listener calls it on success) and
    its file transport: the event written names the wave's systems' source columns."""
    from airflow.providers.openlineage.extractors.manager import ExtractorManager
    from airflow.utils.state import TaskInstanceState
    from openlineage.client.client import OpenLineageClient
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.transport.file import FileConfig, FileTransport
    from openlineage.client.uuid import generate_new_uuid

    from etl.cutover.plan import load_plan
    from etl.dag_names import cutover_dag_id

    wave = load_plan(MAPPINGS).waves[0]
    dag = cutover_dags[cutover_dag_id(wave.wave)]
    systems = set()
    for task_id in ("load_wave", "load_final_delta"):
        task = dag.get_task(task_id)
        run = SimpleNamespace(run_id="manual__test")
        lineage = ExtractorManager().extract_metadata(
            run, task, TaskInstanceState.SUCCESS, SimpleNamespace(task=task)
        )
        assert {o.namespace for o in lineage.outputs} == {CORE_NAMESPACE}
        systems |= {i.namespace.rsplit("/", 1)[1] for i in lineage.inputs}
    assert systems == set(wave.systems)  # every system of the wave, no other

    log = tmp_path / "events.jsonl"
    client = OpenLineageClient(
        transport=FileTransport(FileConfig(log_file_path=str(log), append=True))
    )
    client.emit(
        RunEvent(
            eventType=RunState.COMPLETE,
            eventTime="2026-12-04T00:00:00Z",
            run=Run(runId=str(generate_new_uuid())),
            job=Job(namespace="vardflytt", name=f"{dag.dag_id}.load_wave"),
            producer="tests",
            inputs=lineage.inputs,
            outputs=lineage.outputs,
        )
    )
    event = json.loads(log.read_text().splitlines()[0])
    fields = {
        (o["name"], column): {(f["namespace"], f["name"], f["field"]) for f in spec["inputFields"]}
        for o in event["outputs"]
        for column, spec in o["facets"]["columnLineage"]["fields"].items()
    }
    patient_keys = {namespace for namespace, _, _ in fields[("patient", "patient_id")]}
    assert patient_keys == {legacy_namespace(s) for s in wave.systems if _maps_patients(s)}


def _maps_patients(system: str) -> bool:
    from etl.layout import list_system_entities

    return "patient" in list_system_entities(MAPPINGS)[system]


def test_load_tasks_of_system_dags_carry_lineage_and_parsing_stays_light():
    """Parsing imports neither the lineage builder nor the OpenLineage client (they load in the
    task, at its end, only when a transport is configured)."""
    code = (
        "import sys; sys.path.insert(0, 'dags'); import vardflytt_migration as m; "
        "load = m.vardflytt_melior.get_task('load'); "
        "heavy = [x for x in ('etl.report.lineage', 'openlineage.client', 'etl.catalog') "
        "if x in sys.modules]; "
        "print(callable(getattr(load, 'get_openlineage_facets_on_complete', None)), heavy)"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == "True []"


def test_openlineage_is_off_unless_a_transport_is_configured(tmp_path):
    """No network, no file: without [openlineage] configuration the provider stays disabled."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENLINEAGE", "AIRFLOW__OPENLINEAGE"))
    }
    env["AIRFLOW_HOME"] = str(tmp_path)
    code = "from airflow.providers.openlineage import conf; print(conf.is_disabled())"
    off = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert off.stdout.strip().splitlines()[-1] == "True", off.stderr[-2000:]
    env["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(
        {"type": "file", "log_file_path": str(Path(tmp_path) / "events.jsonl")}
    )
    on = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert on.stdout.strip().splitlines()[-1] == "False", on.stderr[-2000:]


def test_the_provider_reads_the_column_lineage_of_a_system_dags_load():
    """A system DAG's load (the mapped DAG's is run for real in
    tests/integration/test_openlineage_events.py): its own system's source columns only."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers.openlineage.extractors.manager import ExtractorManager
    from airflow.utils.state import TaskInstanceState

    from etl.dag_names import system_dag_id

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "vardflytt_migration.py"))
    assert bag.import_errors == {}
    task = bag.dags[system_dag_id("melior")].get_task("load")
    lineage = ExtractorManager().extract_metadata(
        SimpleNamespace(run_id="manual__test"),
        task,
        TaskInstanceState.SUCCESS,
        SimpleNamespace(task=task),
    )
    assert {i.namespace for i in lineage.inputs} == {legacy_namespace("melior")}
    outputs = {o.name: o for o in lineage.outputs}
    (source,) = outputs["diagnosis"].facets["columnLineage"].fields["icd10_code"].inputFields
    assert (source.name, source.field) == ("diagnos", "DIAGNOSKOD")
