"""Pools and priorities of the DAGs, read from the DAG objects themselves.

Which tasks read a legacy source or bulk-write the core is found from each task's callable: the
``etl`` entry points it calls (``pipeline.extract``, ``waves.load_wave``, ...), following the DAG
module's own helpers. A task added tomorrow that calls one of them is checked without editing
this file.
"""

from __future__ import annotations

import dis
import importlib
import json
import os
import sys
import types
from pathlib import Path

import pytest

from etl.dag_names import (
    CORE_WRITE_POOL,
    PRIORITIES_FILE,
    SELECTION_DAG_ID,
    WEIGHT_RULE,
    source_pool,
)

pytestmark = pytest.mark.dags

ROOT = Path(__file__).resolve().parents[2]
# The etl entry points that open a legacy source, and those that bulk-write a core database.
READS_SOURCE = {"pipeline.extract", "rehearsal.rehearse", "waves.load_wave"}
WRITES_CORE = {
    "pipeline.load",
    "rehearsal.rehearse",
    "waves.load_wave",
    "wave_rollback.rollback_wave",
    "wave_rollback.rollback_one_batch",
}
# A wave's tasks read every system of the wave, one after another under each system's lease: no
# single source pool fits them (etl/airflow_pools.py).
MULTI_SOURCE_CALLS = {"rehearsal.rehearse", "waves.load_wave"}


@pytest.fixture(scope="module")
def dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def _calls(function, seen: set | None = None) -> set[str]:
    """``module.attribute`` names a function uses, with those of the helpers of its own module
    (and nested functions) that it calls."""
    seen = set() if seen is None else seen
    if not isinstance(function, types.FunctionType) or function.__code__ in seen:
        return set()
    seen.add(function.__code__)
    found: set[str] = set()
    codes = [function.__code__]
    while codes:
        code = codes.pop()
        previous = None
        for instruction in dis.get_instructions(code):
            if instruction.opname in ("LOAD_ATTR", "LOAD_METHOD") and previous:
                found.add(f"{previous}.{instruction.argval}")
            loads_name = instruction.opname in ("LOAD_FAST", "LOAD_GLOBAL", "LOAD_DEREF")
            previous = instruction.argval if loads_name else None
            if instruction.opname == "LOAD_GLOBAL":
                helper = function.__globals__.get(instruction.argval)
                if getattr(helper, "__module__", None) == function.__module__:
                    found |= _calls(helper, seen)
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return found


def _tasks(dag_bag):
    for dag in dag_bag.dags.values():
        for task in dag.tasks:
            yield dag, task, _calls(getattr(task, "python_callable", None))


def test_the_call_analysis_finds_the_entry_points(dag_bag):
    """Guards the guard: if nothing were found, every check below would pass vacuously."""
    found = {call for _dag, _task, calls in _tasks(dag_bag) for call in calls}
    assert found >= READS_SOURCE | WRITES_CORE


def test_every_system_dags_source_read_runs_in_its_sources_pool(dag_bag):
    checked = 0
    for dag, task, calls in _tasks(dag_bag):
        if not calls & READS_SOURCE or calls & MULTI_SOURCE_CALLS or dag.dag_id == SELECTION_DAG_ID:
            continue
        system = dag.dag_id.removeprefix("vardflytt_")
        assert task.pool == source_pool(system), f"{dag.dag_id}.{task.task_id}"
        checked += 1
    assert checked == len([d for d in dag_bag.dags.values() if "migration" in d.tags]) - 1


def test_every_core_write_runs_in_the_core_pool(dag_bag):
    writers = [(dag, task) for dag, task, calls in _tasks(dag_bag) if calls & WRITES_CORE]
    assert writers
    wrong = [f"{d.dag_id}.{t.task_id} ({t.pool})" for d, t in writers if t.pool != CORE_WRITE_POOL]
    assert wrong == []


def test_no_other_task_holds_a_pool_slot(dag_bag):
    """A pool's slots are for what it limits: a task that neither reads a source nor writes the
    core in bulk stays in Airflow's default pool, so it never waits behind a load."""
    pooled = {
        f"{dag.dag_id}.{task.task_id}"
        for dag, task, calls in _tasks(dag_bag)
        if task.pool != "default_pool" and not calls & (READS_SOURCE | WRITES_CORE)
    }
    assert pooled == set()


@pytest.mark.parametrize("group", ["provider", "system"])
def test_the_mapped_extracts_are_the_source_reads_the_dag_cannot_pool(dag_bag, group):
    """Airflow gives a mapped task one pool for all its map indexes (pool is not expandable), so
    the selection DAG's extracts name none: the cluster policy routes each map index at run time
    (etl/airflow_policy.py; tests/integration/test_airflow_pools.py runs it). Their loads are in
    the core pool like every load."""
    dag = dag_bag.dags[SELECTION_DAG_ID]
    extract, load = dag.get_task(f"{group}.extract"), dag.get_task(f"{group}.load")
    assert extract.get_closest_mapped_task_group() is not None  # one task, every map index
    assert extract.pool == "default_pool"
    assert load.pool == CORE_WRITE_POOL
    assert _calls(extract.python_callable) >= {"pipeline.extract"}


def test_a_source_read_takes_the_system_lease_before_it_reads(monkeypatch, tmp_path):
    """What bounds the mapped extract's reads: ``pipeline.extract`` holds the system's lease
    (one run per system at a time, across DAGs and hosts) before it opens the source."""
    from etl import pipeline
    from etl.settings import Settings

    order: list[str] = []

    class Read(Exception):
        pass

    def read(*_arguments, **_options):
        order.append("read")
        raise Read  # stop there: only the order matters

    monkeypatch.setattr(pipeline, "hold_system", lambda *_a, **_k: order.append("lease"))
    monkeypatch.setattr(pipeline, "release_system", lambda *_a, **_k: order.append("release"))
    monkeypatch.setattr(pipeline, "extract_system", read)
    monkeypatch.setattr(pipeline, "record_access", lambda *_a, **_k: None)
    settings = Settings(home=tmp_path, core_url=f"sqlite:///{tmp_path / 'core.sqlite'}")
    with pytest.raises(Read):
        pipeline.extract("elvis", "b1", "2026-07-01", settings, clean_abandoned=False)
    assert order == ["lease", "read", "release"]


def test_every_migration_task_has_an_absolute_weight(dag_bag):
    migration = [d for d in dag_bag.dags.values() if "migration" in d.tags]
    assert migration
    for dag in migration:
        assert {task.weight_rule for task in dag.tasks} == {WEIGHT_RULE}, dag.dag_id


@pytest.fixture
def measured_dags(tmp_path, monkeypatch):
    """The migration DAG module parsed with a priorities file in VARDFLYTT_HOME: melior has
    the most rows, elvis the next, and the other systems were never measured."""
    rows = {"melior": 90_000, "elvis": 5_000}
    (tmp_path / PRIORITIES_FILE).write_text(
        json.dumps({"systems": {s: {"rows": n, "from": "test"} for s, n in rows.items()}})
    )
    home = os.environ.get("VARDFLYTT_HOME")
    monkeypatch.setenv("VARDFLYTT_HOME", str(tmp_path))
    monkeypatch.syspath_prepend(str(ROOT / "dags"))
    module = importlib.import_module("vardflytt_migration")
    yield importlib.reload(module)
    if home is None:
        monkeypatch.delenv("VARDFLYTT_HOME")
    else:
        monkeypatch.setenv("VARDFLYTT_HOME", home)
    importlib.reload(module)  # back to the weights of the test session's home
    sys.modules.pop("vardflytt_migration", None)


def test_long_systems_weigh_more_in_every_task(measured_dags):
    def weights(system: str) -> set[int]:
        dag = getattr(measured_dags, f"vardflytt_{system}")
        return {task.priority_weight for task in dag.tasks}

    assert weights("melior") == {3}
    assert weights("elvis") == {2}
    assert weights("orbit") == {1}


def test_the_mapped_dag_runs_the_chosen_systems_heaviest_first(measured_dags, monkeypatch):
    dag = measured_dags.vardflytt_migrate
    chosen = ["orbit", "elvis", "journal_d", "melior"]
    monkeypatch.setattr(
        measured_dags, "get_current_context", lambda: {"params": {"systems": chosen}}
    )

    arguments = dag.get_task("selected_systems").python_callable()

    order = [argument["system"] for argument in arguments]
    assert order[0] == "melior"
    unmeasured = [s for s in measured_dags.SYSTEMS if s in {"orbit", "journal_d"}]
    assert order[1:] == unmeasured  # equal weights: the mappings' order
    assert arguments[0]["entities"] == measured_dags.SYSTEMS["melior"]
    # ELVIS's care units are what Melior's encounters name by HSA-id: it goes first, alone.
    providers = dag.get_task("selected_providers").python_callable()
    assert providers == [{"system": "elvis", "entities": measured_dags.SYSTEMS["elvis"]}]
