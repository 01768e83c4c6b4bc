"""Pools and priorities, without Airflow: which pools with how many slots, and which systems
weigh most. (The sync into a real Airflow is tests/integration/test_airflow_pools.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etl.airflow_pools import core_write_slots, pool_definitions
from etl.catalog import MappingError, load_catalog
from etl.dag_names import (
    CORE_WRITE_POOL,
    PRIORITIES_FILE,
    by_priority,
    read_system_rows,
    source_pool,
    system_weights,
)
from etl.settings import Settings
from tests.unit.test_archetypes import root  # noqa: F401  (the archetype folder fixture)
from tests.unit.test_catalog import write_mappings

pytestmark = pytest.mark.unit


def _settings(tmp_path: Path, **values) -> Settings:
    return Settings(home=tmp_path / "home", **values)


def test_a_source_without_a_declared_limit_gets_one_read_at_a_time(tmp_path):
    catalog = load_catalog(write_mappings(tmp_path, {}))

    assert catalog.system("demo").spec.max_parallel_reads == 1
    pools = pool_definitions(catalog, _settings(tmp_path))
    assert pools[source_pool("demo")]["slots"] == 1


def test_the_declared_limit_is_the_source_pools_slots(tmp_path):
    catalog = load_catalog(
        write_mappings(
            tmp_path,
            {"demo/system.yaml": ("format: files\n", "format: files\nmax_parallel_reads: 3\n")},
        )
    )

    pools = pool_definitions(catalog, _settings(tmp_path))
    assert set(pools) == {source_pool("demo"), CORE_WRITE_POOL}
    assert pools[source_pool("demo")]["slots"] == 3
    assert "mappings/demo/system.yaml" in pools[source_pool("demo")]["description"]


@pytest.mark.parametrize("declared", ["0", "-1", "two"])
def test_a_limit_below_one_or_not_a_number_names_the_file_and_field(tmp_path, declared):
    root_folder = write_mappings(
        tmp_path,
        {
            "demo/system.yaml": (
                "format: files\n",
                f"format: files\nmax_parallel_reads: {declared}\n",
            )
        },
    )
    with pytest.raises(MappingError, match=r"system\.yaml.*\n.*max_parallel_reads"):
        load_catalog(root_folder)


def test_an_archetype_sets_the_default_and_a_satellite_may_change_it(root):  # noqa: F811
    archetype = root / "_archetypes" / "lab_demo" / "system.yaml"
    archetype.write_text("max_parallel_reads: 2\n" + archetype.read_text("utf-8"), "utf-8")
    west = root / "lab_west" / "system.yaml"
    west.write_text(west.read_text("utf-8") + "max_parallel_reads: 5\n", "utf-8")

    catalog = load_catalog(root)

    assert catalog.system("lab_east").spec.max_parallel_reads == 2
    assert catalog.system("lab_west").spec.max_parallel_reads == 5


def test_the_repositorys_elvis_declares_two_reads_and_every_other_source_fails_closed():
    catalog = load_catalog(Path(__file__).resolve().parents[2] / "mappings")

    limits = {name: system.spec.max_parallel_reads for name, system in catalog.systems.items()}
    assert limits.pop("elvis") == 2
    assert set(limits.values()) == {1}


@pytest.mark.parametrize(
    ("core_url", "declared", "slots"),
    [
        (None, None, 1),  # the default SQLite core: one writer at a time
        ("postgresql+psycopg://core@127.0.0.1/core", None, 4),
        ("postgresql+psycopg://core@127.0.0.1/core", 8, 8),
        (None, 2, 2),  # declared wins, even on SQLite
    ],
    ids=["sqlite", "postgresql", "postgresql-declared", "sqlite-declared"],
)
def test_core_write_slots(tmp_path, core_url, declared, slots):
    settings = _settings(tmp_path, core_url=core_url, core_write_slots=declared)
    assert core_write_slots(settings) == slots


def test_core_write_slots_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VARDFLYTT_CORE_WRITE_SLOTS", "3")
    assert core_write_slots(Settings(home=tmp_path)) == 3


@pytest.mark.parametrize(
    ("rows", "weights"),
    [
        ({}, {"a": 1, "b": 1, "c": 1}),  # nothing measured: Airflow's default for all
        ({"a": 10, "b": 5_000_000, "c": 300}, {"a": 1, "b": 3, "c": 2}),
        ({"a": 300, "b": 300, "c": 7}, {"a": 2, "b": 2, "c": 1}),  # equal rows, equal weight
        ({"b": 40}, {"a": 1, "b": 2, "c": 1}),  # never measured counts as no rows
    ],
    ids=["unmeasured", "ranked", "ties", "partly-measured"],
)
def test_systems_with_more_rows_weigh_more(rows, weights):
    assert system_weights(rows, ["a", "b", "c"]) == weights


def test_heaviest_first_keeps_the_mappings_order_among_equals():
    assert by_priority({"a": 1, "b": 3, "c": 1, "d": 3}) == ["b", "d", "a", "c"]


def test_rows_are_read_from_the_priorities_file(tmp_path):
    path = tmp_path / PRIORITIES_FILE
    path.write_text(json.dumps({"systems": {"elvis": {"rows": 12, "from": "core accounting"}}}))
    assert read_system_rows(path) == {"elvis": 12}


@pytest.mark.parametrize("content", [None, "not json", '{"systems": {"a": {}}}', "[]"])
def test_a_missing_or_damaged_priorities_file_means_nothing_measured(tmp_path, content):
    path = tmp_path / PRIORITIES_FILE
    if content is not None:
        path.write_text(content)
    assert read_system_rows(path) == {}


def test_standalone_syncs_the_pools_once_its_database_is_ready(monkeypatch):
    """``make airflow``: the pools exist before the scheduler starts (a task in a missing pool
    is never queued). Airflow's own command runs, with its database step followed by the sync."""
    import airflow.__main__
    from airflow.cli.commands import standalone_command as standalone

    from etl import airflow_standalone

    steps: list[str] = []
    monkeypatch.setattr(standalone, "StandaloneCommand", standalone.StandaloneCommand)
    monkeypatch.setattr(standalone, "SubCommand", standalone.SubCommand)
    monkeypatch.setattr(standalone.db, "initdb", lambda: steps.append("database"))
    monkeypatch.setattr(airflow_standalone, "with_pools", lambda _print: steps.append("pools"))
    # then the execution API is warmed (tests/unit/test_airflow_machine.py)
    monkeypatch.setattr(
        airflow_standalone, "start_warming_execution_api", lambda _print: steps.append("warm")
    )
    monkeypatch.setattr(
        airflow.__main__, "main", lambda: standalone.StandaloneCommand().initialize_database()
    )
    monkeypatch.setattr("sys.argv", ["etl.airflow_standalone"])

    airflow_standalone.main()

    assert steps == ["database", "pools", "warm"]


class _TaskInstance:
    def __init__(self, dag_id: str, task_id: str, map_index: int):
        self.dag_id, self.task_id, self.map_index = dag_id, task_id, map_index
        self.run_id, self.pool = "manual__1", "default_pool"


@pytest.mark.parametrize(
    ("dag_id", "task_id", "map_index", "pool"),
    [
        ("vardflytt_migrate", "system.extract", 1, "vardflytt_source_orbit"),
        ("vardflytt_migrate", "system.extract", 0, "vardflytt_source_melior"),
        ("vardflytt_migrate", "provider.extract", 0, "vardflytt_source_elvis"),
        ("vardflytt_migrate", "provider.extract", 1, "default_pool"),  # no such argument
        ("vardflytt_migrate", "system.extract", 5, "default_pool"),  # no such argument
        ("vardflytt_migrate", "system.extract", -1, "default_pool"),  # not expanded yet
        ("vardflytt_migrate", "system.transform", 0, "default_pool"),
        ("vardflytt_migrate", "provider.load", 0, "default_pool"),
        ("vardflytt_orbit", "extract", -1, "default_pool"),  # pooled in its DAG already
    ],
)
def test_the_policy_moves_each_mapped_extract_into_its_systems_pool(
    monkeypatch, dag_id, task_id, map_index, pool
):
    from etl import airflow_policy

    arguments = {
        "selected_systems": [{"system": "melior"}, {"system": "orbit"}],
        "selected_providers": [{"system": "elvis"}],
    }

    def mapped_system(_run, index, selection):
        chosen = arguments[selection]
        return chosen[index]["system"] if index < len(chosen) else None

    monkeypatch.setattr(airflow_policy, "mapped_system", mapped_system)
    task_instance = _TaskInstance(dag_id, task_id, map_index)

    airflow_policy.task_instance_mutation_hook(task_instance)

    assert task_instance.pool == pool


def test_a_failed_lookup_leaves_the_extract_where_it_was(monkeypatch):
    from etl import airflow_policy

    def unreadable(_run, _index, _selection):
        raise RuntimeError("metadata database unreachable")

    monkeypatch.setattr(airflow_policy, "mapped_system", unreadable)
    task_instance = _TaskInstance("vardflytt_migrate", "system.extract", 0)

    airflow_policy.task_instance_mutation_hook(task_instance)

    assert task_instance.pool == "default_pool"


def test_the_policy_is_installed_but_an_operators_own_local_settings_are_kept(tmp_path):
    from etl.airflow_pools import LOCAL_SETTINGS, PoolSyncError, install_policy

    path = install_policy(tmp_path)
    assert "from etl.airflow_policy import task_instance_mutation_hook" in path.read_text()
    assert install_policy(tmp_path) == path  # ours: rewritten

    (tmp_path / LOCAL_SETTINGS).write_text("STATE_COLORS = {}\n")
    with pytest.raises(PoolSyncError, match=r"airflow_local_settings\.py is not vardflytt's"):
        install_policy(tmp_path)
    assert (tmp_path / LOCAL_SETTINGS).read_text() == "STATE_COLORS = {}\n"
