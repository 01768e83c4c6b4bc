"""OpenLineage events of a real DAG run: ``airflow dags test vardflytt_migrate`` (the mapped DAG,
whose load knows its system only at run time) for Melior, with Airflow's OpenLineage provider
writing to a file transport. The load's COMPLETE event carries, for every
core table, the column lineage of the mappings, so a core column is traced to its legacy source
columns in any OpenLineage consumer; and the events name columns, never a patient's values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etl.dag_names import SELECTION_DAG_ID
from etl.report.lineage import CORE_NAMESPACE, legacy_namespace
from tests.commands import copy_migrated_airflow_db, mappings_of, run_vardflytt

pytestmark = pytest.mark.integration

SYSTEM = "melior"


def _patient_values(estate: Path) -> set[str]:
    """Identity numbers and family names of the estate's Melior register (fixed width)."""
    values = set()
    for line in (estate / SYSTEM / "PATREG.DAT").read_text(encoding="cp1252").splitlines():
        number, family = line[9:19].strip(), line[19:49].strip()
        values |= {v for v in (number, family) if len(v) >= 4}
    return values


def test_a_dag_run_emits_column_lineage_from_the_mappings(
    tmp_path, small_estate, airflow_db_template
):
    home = tmp_path / "home"
    copy_migrated_airflow_db(airflow_db_template, home / "airflow")
    events_file = tmp_path / "openlineage" / "events.jsonl"
    events_file.parent.mkdir()
    environment = {
        "VARDFLYTT_ESTATE_DIR": str(small_estate),
        "VARDFLYTT_MAPPINGS_DIR": str(mappings_of(tmp_path / "mappings", [SYSTEM])),
        "VARDFLYTT_CORE_URL": f"sqlite:///{tmp_path / 'core.sqlite'}",
        "VARDFLYTT_LANDING_DIR": str(tmp_path / "landing"),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
    }
    conf = json.dumps({"as_of_date": "2026-07-01", "systems": [SYSTEM]})
    run_vardflytt(
        "airflow", "dags", "test", SELECTION_DAG_ID, "--conf", conf,
        home=home, environment=environment,
    )  # fmt: skip

    text = events_file.read_text(encoding="utf-8")
    events = [json.loads(line) for line in text.splitlines()]
    load = [
        e
        for e in events
        if e["job"]["name"] == f"{SELECTION_DAG_ID}.system.load" and e["eventType"] == "COMPLETE"
    ]
    assert len(load) == 1
    assert load[0]["job"]["namespace"] == "vardflytt"  # the project's Airflow environment
    outputs = {(o["namespace"], o["name"]): o for o in load[0]["outputs"]}
    diagnosis = outputs[(CORE_NAMESPACE, "diagnosis")]["facets"]["columnLineage"]["fields"]
    (source,) = diagnosis["icd10_code"]["inputFields"]
    assert (source["namespace"], source["name"], source["field"]) == (
        legacy_namespace(SYSTEM),
        "diagnos",
        "DIAGNOSKOD",
    )
    assert source["transformations"][0]["description"].startswith("normalise_icd10_se")
    patient = outputs[(CORE_NAMESPACE, "patient")]["facets"]["columnLineage"]["fields"]
    assert {f["field"] for f in patient["identity_number"]["inputFields"]} == {"PNR", "SEKEL"}
    inputs = {(i["namespace"], i["name"]) for i in load[0]["inputs"]}
    assert (legacy_namespace(SYSTEM), "patient") in inputs

    # Names only: no identity number or family name of the estate is in any event.
    leaked = sorted(v for v in _patient_values(small_estate) if v in text)
    assert leaked == []
