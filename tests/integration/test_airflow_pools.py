"""The pool sync against a real Airflow metadata database (the run's migrated metadata
database, copied), and the rows behind the priorities read from a real core."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from etl.dag_names import (
    CORE_WRITE_POOL,
    PRIORITIES_FILE,
    PROVIDER_GROUP,
    SELECTION_TASKS,
    SYSTEM_GROUP,
    read_system_rows,
    source_pool,
)
from etl.layout import list_system_entities
from tests.commands import copy_migrated_airflow_db, mappings_of

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# The mapped run's: two systems, two pools, one in each mapped group (ELVIS provides the care
# units Orbit's operation requests name by HSA-id).
SYSTEMS = ["orbit", "elvis"]


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory, airflow_db_template) -> Path:
    """A vardflytt home with the run's migrated Airflow metadata database."""
    home = tmp_path_factory.mktemp("vardflytt_home")
    copy_migrated_airflow_db(airflow_db_template, home / "airflow")
    return home


@pytest.fixture(scope="module")
def synced_home(airflow_home) -> Path:
    """The home after `vardflytt airflow pools sync` with the repository's mappings."""
    _vardflytt(airflow_home, {}, "airflow", "pools", "sync")
    return airflow_home


def _vardflytt(home: Path, environment: dict[str, str], *arguments: str) -> str:
    env = {**os.environ, "VARDFLYTT_HOME": str(home), **environment}
    env.pop("AIRFLOW_HOME", None)  # the project's Airflow home under VARDFLYTT_HOME
    completed = subprocess.run(
        [sys.executable, "-m", "etl.cli", *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, (
        f"vardflytt {' '.join(arguments)} failed:\n"
        f"{completed.stdout[-4000:]}\n{completed.stderr[-4000:]}"
    )
    return completed.stdout


def _pools(home: Path) -> dict[str, int]:
    """The pools in Airflow's metadata database, the rows ``airflow pools list`` prints (read
    here directly: these tests are about the sync, and an ``airflow`` command to list them cost
    ~2.3 CPU s each)."""
    with sqlite3.connect(f"file:{home / 'airflow' / 'airflow.db'}?mode=ro", uri=True) as database:
        return dict(database.execute("SELECT pool, slots FROM slot_pool"))


def test_sync_creates_a_pool_per_source_and_one_for_core_writes(synced_home):
    airflow_home = synced_home
    pools = _pools(airflow_home)
    systems = list_system_entities(ROOT / "mappings")
    assert {name for name in pools if name.startswith("vardflytt_source_")} == {
        source_pool(system) for system in systems
    }
    assert pools[source_pool("elvis")] == 2  # declared in mappings/elvis/system.yaml
    assert {pools[source_pool(s)] for s in systems if s != "elvis"} == {1}  # not declared
    assert pools[CORE_WRITE_POOL] == 1  # a SQLite core: one writer
    # The DAG files' priorities: nothing has run and there is no estate, so nothing measured.
    rows = read_system_rows(airflow_home / PRIORITIES_FILE)
    assert set(rows) == set(systems) and set(rows.values()) == {0}


def test_a_second_sync_resizes_the_pools_it_made(airflow_home, tmp_path):
    mappings = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", mappings)
    melior = mappings / "melior" / "system.yaml"
    melior.write_text(melior.read_text("utf-8") + "\nmax_parallel_reads: 4\n", "utf-8")
    environment = {"VARDFLYTT_MAPPINGS_DIR": str(mappings), "VARDFLYTT_CORE_WRITE_SLOTS": "3"}

    _vardflytt(airflow_home, environment, "airflow", "pools", "sync")

    pools = _pools(airflow_home)
    assert pools[source_pool("melior")] == 4
    assert pools[CORE_WRITE_POOL] == 3
    assert pools[source_pool("elvis")] == 2
    assert len([name for name in pools if name.startswith("vardflytt_")]) == (
        len(list_system_entities(mappings)) + 1
    )


def test_each_mapped_extract_runs_in_its_systems_pool(synced_home, small_estate, tmp_path):
    """The policy the sync installs, in a real run of the mapped DAG: each map index of
    ``provider.extract`` and ``system.extract`` is in the pool of the system its map index
    carries; every load in the core pool. The run's mappings hold its two systems only (Airflow
    parses and serialises their DAGs, not every system's): a provider and a system that
    references it, small ones (the pools do not depend on the rows, and Melior's eight files cost
    ~2 CPU s more); the pools are the ones the sync made for every system."""
    environment = {
        "VARDFLYTT_MAPPINGS_DIR": str(mappings_of(tmp_path / "mappings", SYSTEMS)),
        "VARDFLYTT_ESTATE_DIR": str(small_estate),
        "VARDFLYTT_LANDING_DIR": str(tmp_path / "landing"),
        "VARDFLYTT_CORE_URL": f"sqlite:///{tmp_path / 'core.sqlite'}",
    }
    conf = json.dumps({"systems": SYSTEMS, "dry_run": True, "as_of_date": "2026-07-01"})
    _vardflytt(
        synced_home, environment, "airflow", "dags", "test", "vardflytt_migrate", "--conf", conf
    )

    engine = sa.create_engine(f"sqlite:///{synced_home / 'airflow' / 'airflow.db'}")
    with engine.connect() as connection:
        selected = dict(
            connection.exec_driver_sql(
                "SELECT task_id, value FROM xcom WHERE dag_id = 'vardflytt_migrate' "
                "AND task_id LIKE 'selected_%' AND key = 'return_value'"
            ).all()
        )
        tasks = connection.exec_driver_sql(
            "SELECT task_id, map_index, pool, state FROM task_instance "
            "WHERE dag_id = 'vardflytt_migrate' "
            "AND (task_id LIKE '%.extract' OR task_id LIKE '%.load')"
        ).all()
    engine.dispose()
    groups = {group: json.loads(selected[task]) for group, task in SELECTION_TASKS.items()}
    assert {g: [a["system"] for a in arguments] for g, arguments in groups.items()} == {
        PROVIDER_GROUP: ["elvis"],
        SYSTEM_GROUP: ["orbit"],
    }
    for group, arguments in groups.items():
        extracts = {i: pool for task, i, pool, _state in tasks if task == f"{group}.extract"}
        assert extracts == {i: source_pool(a["system"]) for i, a in enumerate(arguments)}
    loads = {pool for task, _index, pool, _state in tasks if task.endswith(".load")}
    assert loads == {CORE_WRITE_POOL}
    assert {state for *_rest, state in tasks} == {"success"}
    assert len(tasks) == 4


def _record_batch(connection, batch_id: str, system: str, started_at, rows: dict[str, int]):
    from etl.core.tables import batch_accounting, load_batch

    connection.execute(
        load_batch.insert().values(
            batch_id=batch_id,
            source_system=system,
            status="promoted",
            is_dry_run=False,
            started_at=started_at,
        )
    )
    for entity, extracted in rows.items():
        connection.execute(
            batch_accounting.insert().values(
                batch_id=batch_id,
                source_system=system,
                entity=entity,
                dataset=entity,
                extracted=extracted,
                loaded=extracted,
                quarantined=0,
                excluded=0,
                merged=0,
                residue=0,
                is_verified=True,
                recorded_at=started_at,
            )
        )


def test_rows_come_from_the_latest_batch_then_the_estate_manifest(tmp_path):
    from etl.airflow_pools import measured_rows
    from etl.catalog import load_catalog
    from etl.core.database import core_engine
    from etl.estate.manifest import EstateManifest
    from etl.settings import Settings

    settings = Settings(
        home=tmp_path, core_url=f"sqlite:///{tmp_path / 'core.sqlite'}", estate_dir=tmp_path
    )
    engine = core_engine(settings.resolved_core_url)
    earlier = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    with engine.begin() as connection:
        _record_batch(connection, "elvis_1", "elvis", earlier, {"patient": 900})
        later = earlier + dt.timedelta(days=1)
        _record_batch(connection, "elvis_2", "elvis", later, {"patient": 40, "encounter": 60})
    engine.dispose()
    EstateManifest(
        seed=1,
        patients=1,
        extract_date=dt.date(2026, 3, 1),
        elvis_url="sqlite:///{estate_dir}/elvis/elvis.sqlite",
        files=[],
        row_counts={"elvis": {"patient": 5}, "melior": {"patient": 7, "diagnosis": 8}},
        people={},
        defect_rows=0,
        defect_classes={},
    ).write(tmp_path)

    measured = measured_rows(load_catalog(ROOT / "mappings"), settings, echo=lambda _m: None)

    assert measured["elvis"] == {"rows": 100, "from": "core accounting"}  # its latest batch
    assert measured["melior"] == {"rows": 15, "from": "estate manifest"}
    assert measured["orbit"] == {"rows": 0, "from": "not measured"}


def test_no_core_yet_is_not_created_by_measuring(tmp_path):
    from etl.airflow_pools import measured_rows
    from etl.catalog import load_catalog
    from etl.settings import Settings

    settings = Settings(home=tmp_path, core_url=None, estate_dir=tmp_path / "no_estate")
    measured = measured_rows(load_catalog(ROOT / "mappings"), settings, echo=lambda _m: None)

    assert {entry["from"] for entry in measured.values()} == {"not measured"}
    assert not Path(settings.resolved_core_url.removeprefix("sqlite:///")).exists()
    assert sa.make_url(settings.resolved_core_url).get_backend_name() == "sqlite"
