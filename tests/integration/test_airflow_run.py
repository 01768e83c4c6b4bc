"""The real thing: each source system's DAG runs through Airflow (``airflow dags test``) on a
project-local Airflow home, and the core it loads reconciles with the estate's ground truth.

The mappings hold ELVIS and Melior only (``SYSTEMS``): Airflow parses and serialises their DAGs,
not every system's, at each ``dags test``."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from etl.batch import safe_batch_id
from tests.commands import VARDFLYTT, copy_migrated_airflow_db, mappings_of, run_vardflytt
from tests.cores import BOTH_CORES
from tests.integration.defects import actual_quarantine, expected_quarantine

pytestmark = pytest.mark.integration

SYSTEMS = ("elvis", "melior")
AS_OF = dt.date(2026, 7, 1)


@pytest.fixture(scope="module")
def mappings(tmp_path_factory) -> Path:
    return mappings_of(tmp_path_factory.mktemp("mappings") / "mappings", SYSTEMS)


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory, airflow_db_template) -> Path:
    """One project home for the module, with the run's migrated Airflow metadata database."""
    home = tmp_path_factory.mktemp("vardflytt_home")
    copy_migrated_airflow_db(airflow_db_template, home / "airflow")
    return home


def _vardflytt(
    home: Path, environment: dict[str, str], *arguments: str
) -> subprocess.CompletedProcess:
    return run_vardflytt(*arguments, home=home, environment=environment)


@pytest.mark.parametrize("backend", BOTH_CORES)
def test_dags_migrate_the_estate_and_reconcile(
    backend, airflow_home, mappings, small_estate, tmp_path, request
):
    core_url = (
        f"sqlite:///{tmp_path / 'core.sqlite'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    environment = {
        "VARDFLYTT_ESTATE_DIR": str(small_estate),
        "VARDFLYTT_MAPPINGS_DIR": str(mappings),
        "VARDFLYTT_CORE_URL": core_url,
        "VARDFLYTT_LANDING_DIR": str(tmp_path / "landing"),
    }
    conf = json.dumps({"as_of_date": "2026-07-01"})
    for system in SYSTEMS:
        _vardflytt(
            airflow_home,
            environment,
            "airflow",
            "dags",
            "test",
            f"vardflytt_{system}",
            "--conf",
            conf,
        )

    status = _vardflytt(airflow_home, environment, "status", "--check")
    assert "every source row is accounted for" in status.stdout

    engine = sa.create_engine(core_url)
    with engine.connect() as connection:
        residues = connection.exec_driver_sql(
            "SELECT sum(residue), count(*) FROM batch_accounting"
        ).one()
        patients = connection.exec_driver_sql("SELECT count(*) FROM patient").scalar_one()
        batch_ids, dag_ids = {}, {}
        for batch_id, system, dag_id in connection.exec_driver_sql(
            "SELECT batch_id, source_system, dag_id FROM load_batch"
        ):
            batch_ids[system], dag_ids[system] = batch_id, dag_id
    engine.dispose()
    assert residues[0] == 0 and residues[1] == 14  # 6 ELVIS + 8 Melior entities
    # Each batch records the DAG that ran it (from Airflow's task context), for the dashboard.
    assert dag_ids == {"elvis": "vardflytt_elvis", "melior": "vardflytt_melior"}
    assert patients > 0
    assert actual_quarantine(core_url) == expected_quarantine(small_estate, ("elvis", "melior"))
    # Each batch's validation report, written by the run's own report task.
    reports = airflow_home / "reports" / "validation" / "batches"
    for system in ("elvis", "melior"):
        # The Airflow home is shared by both backends' runs: take this core's batch.
        folder = reports / safe_batch_id(batch_ids[system])
        assert folder.is_dir(), sorted(p.name for p in reports.iterdir())
        summary = json.loads((folder / "summary.json").read_text("utf-8"))
        assert [s["status"] for s in summary["systems"]] == ["loaded"]
        assert summary["run_id"].startswith("manual__")
        assert (folder / "data_docs" / "index.html").is_file()


def test_a_batch_the_gate_stops_in_airflow_gets_its_report(
    airflow_home, mappings, small_estate, tmp_path
):
    """The report task is the batch's teardown: the gate fails, the load never runs, the
    report is written all the same and the run is still failed."""
    import os
    import shutil

    import yaml

    from etl.settings import PROJECT_ROOT

    strict = tmp_path / "expectations"
    shutil.copytree(PROJECT_ROOT / "expectations", strict)
    thresholds = yaml.safe_load((strict / "thresholds.yaml").read_text("utf-8"))
    thresholds["checks"]["source.unparseable_date"]["max_failure_rate"] = 0.001
    (strict / "thresholds.yaml").write_text(yaml.safe_dump(thresholds), "utf-8")
    environment = {
        **os.environ,
        "VARDFLYTT_HOME": str(airflow_home),
        "VARDFLYTT_ESTATE_DIR": str(small_estate),
        "VARDFLYTT_MAPPINGS_DIR": str(mappings),
        "VARDFLYTT_LANDING_DIR": str(tmp_path / "landing"),
        "VARDFLYTT_CORE_URL": f"sqlite:///{tmp_path / 'core.sqlite'}",
        "VARDFLYTT_EXPECTATIONS_DIR": str(strict),
    }
    conf = json.dumps({"as_of_date": "2026-07-01", "batch_id": "melior_gate_stopped"})
    completed = subprocess.run(
        [VARDFLYTT, "airflow", "dags", "test", "vardflytt_melior", "--conf", conf],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = completed.stdout + completed.stderr
    assert "is not promoted" in output, output[-4000:]
    folder = airflow_home / "reports" / "validation" / "batches" / "melior_gate_stopped"
    summary = json.loads((folder / "summary.json").read_text("utf-8"))
    [system] = summary["systems"]
    assert (system["gate"], system["status"]) == (
        "breach",
        "not promoted: stopped by the quality gate",
    )
    assert (folder / "data_docs" / "index.html").is_file()
    engine = sa.create_engine(environment["VARDFLYTT_CORE_URL"])
    with engine.connect() as connection:
        patients = connection.exec_driver_sql("SELECT count(*) FROM patient").scalar_one()
    engine.dispose()
    assert patients == 0, "nothing of the stopped batch was promoted"


def test_selection_dag_runs_only_the_chosen_systems(airflow_home, mappings, small_estate, tmp_path):
    landing = tmp_path / "landing"
    environment = {
        "VARDFLYTT_ESTATE_DIR": str(small_estate),
        "VARDFLYTT_MAPPINGS_DIR": str(mappings),
        "VARDFLYTT_LANDING_DIR": str(landing),
        "VARDFLYTT_CORE_URL": f"sqlite:///{tmp_path / 'core.sqlite'}",
    }
    conf = json.dumps(
        {"systems": ["melior"], "dry_run": True, "batch_id": "pick", "as_of_date": "2026-07-01"}
    )
    _vardflytt(
        airflow_home, environment, "airflow", "dags", "test", "vardflytt_migrate", "--conf", conf
    )

    assert (landing / "melior__pick" / "melior" / "validated").is_dir()
    assert not (landing / "elvis__pick").exists()
    # The dry run's batch has its report (the checks it ran); the skipped system has none.
    reports = airflow_home / "reports" / "validation" / "batches"
    assert (reports / "melior__pick" / "summary.html").is_file()
    assert not (reports / "elvis__pick").exists()
    engine = sa.create_engine(environment["VARDFLYTT_CORE_URL"])
    with engine.connect() as connection:
        assert (
            connection.exec_driver_sql("SELECT count(*) FROM patient").scalar_one() == 0
        )  # dry run
        entries = connection.exec_driver_sql(
            "SELECT DISTINCT user_name, process, run_id FROM access_log "
            "WHERE action = 'extract_started'"
        ).all()
    engine.dispose()
    # Read in Airflow's task context: the run's triggering person (`airflow dags test` is the
    # person running it, the OS user), never the DAG's owner "airflow".
    import getpass

    [(user, process, run_id)] = entries
    assert (user, process) == (getpass.getuser(), "airflow:extract_started")
    assert run_id and run_id.startswith("manual__")


def _migrate_selection(
    home: Path, mappings: Path, estate: Path, folder: Path, conf: dict, **variables: str
) -> tuple[str, subprocess.CompletedProcess]:
    """``airflow dags test vardflytt_migrate`` on a fresh SQLite core in ``folder``: that core's
    URL and the command (a failed run is returned, not raised)."""
    core_url = f"sqlite:///{folder / 'core.sqlite'}"
    environment = {
        "VARDFLYTT_ESTATE_DIR": str(estate),
        "VARDFLYTT_MAPPINGS_DIR": str(mappings),
        "VARDFLYTT_LANDING_DIR": str(folder / "landing"),
        "VARDFLYTT_CORE_URL": core_url,
        **variables,
    }
    completed = run_vardflytt(
        "airflow", "dags", "test", "vardflytt_migrate", "--conf",
        json.dumps({**conf, "as_of_date": AS_OF.isoformat()}),
        home=home, environment=environment, check=False,
    )  # fmt: skip
    return core_url, completed


def _flagged_references(core_url: str) -> dict[tuple[str, str], tuple[int, int]]:
    """Each system's reference checks: ``(system, check) -> (rows evaluated, rows failed)``."""
    engine = sa.create_engine(core_url)
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT source_system, check_name, rows_evaluated, rows_failed FROM dq_result "
            "WHERE check_name LIKE '%.references_%'"
        ).all()
    engine.dispose()
    return {(system, check): (evaluated, failed) for system, check, evaluated, failed in rows}


def test_the_mapped_dag_flags_the_references_one_system_after_another_flags(
    airflow_home, mappings, small_estate, tmp_path, without_batch_reports
):
    """Melior's encounters and procedures name their care units by HSA-id, which resolve
    against every system's promoted care units, ELVIS's among them: ELVIS is a provider, loaded
    before Melior validates, so the mapped run flags what ELVIS then Melior one after another
    (``run_system``) flag, whichever map index Airflow runs first. The reference runs in this
    process without its batch reports (nothing here reads them); the DAG run writes its own."""
    from etl import pipeline
    from etl.settings import Settings

    reference = Settings(
        home=tmp_path / "one_after_another",
        estate_dir=small_estate,
        mappings_dir=mappings,
        landing_dir=tmp_path / "one_after_another" / "landing",
        core_url=f"sqlite:///{tmp_path / 'one_after_another.sqlite'}",
    )
    for system in ("elvis", "melior"):
        pipeline.run_system(system, f"{system}-alone", AS_OF, settings=reference)
    conf = {"systems": ["melior", "elvis"], "batch_id": "order"}
    core_url, completed = _migrate_selection(airflow_home, mappings, small_estate, tmp_path, conf)
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-4000:]

    expected = _flagged_references(str(reference.resolved_core_url))
    by_hsa_id = {k: v for k, v in expected.items() if k[0] == "melior" and "hsa_id" in k[1]}
    assert by_hsa_id and all(evaluated for evaluated, _failed in by_hsa_id.values()), expected
    assert _flagged_references(core_url) == expected


def test_a_failed_provider_stops_alone_as_in_vardflytt_run(
    airflow_home, mappings, small_estate, tmp_path
):
    """ELVIS cannot read its source: it stops, and Melior, whose validation waited for it,
    validates and loads all the same (etl/parallel.py counts a stopped system's tasks as done
    for those waiting on it), its HSA-ids unresolved since no care unit was loaded."""
    core_url, completed = _migrate_selection(
        airflow_home, mappings, small_estate, tmp_path,
        {"systems": ["elvis", "melior"], "batch_id": "down"},
        VARDFLYTT_SOURCE_ELVIS_URL=f"sqlite:///{tmp_path / 'missing' / 'elvis.sqlite'}",
    )  # fmt: skip
    assert completed.returncode != 0  # the run is failed: one of its systems stopped

    engine = sa.create_engine(core_url)
    with engine.connect() as connection:
        loaded = connection.exec_driver_sql("SELECT source_system FROM load_batch").scalars().all()
    engine.dispose()
    assert loaded == ["melior"]
    flagged = _flagged_references(core_url)
    by_hsa_id = [v for k, v in flagged.items() if k[0] == "melior" and "hsa_id" in k[1]]
    assert by_hsa_id and all(failed == evaluated > 0 for evaluated, failed in by_hsa_id)
