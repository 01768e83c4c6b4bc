"""The worker scheduler starts the work with the longest chain behind it first (etl/parallel.py).

Two systems that do not wait for each other: the second one listed is ten times the size of the
first. Its largest entity must be started before the first system's entities, or the run ends
with one worker idle while the large system's long chain (transform, validate, gate, load) runs
alone. Results do not depend on the order (tests/integration/test_parallel_run.py); the wall
clock does.
"""

from __future__ import annotations

import pytest

from etl.parallel import EXTRACT, TRANSFORM, VALIDATE, Task, _Options, _Scheduler
from etl.settings import Settings

pytestmark = pytest.mark.unit


def _scheduler(tmp_path, systems: tuple[str, ...]) -> _Scheduler:
    settings = Settings(home=tmp_path, landing_dir=tmp_path / "landing")
    options = _Options("2026-07-01", None, False, "full", True, False)
    runs = [(system, f"{system}-b") for system in systems]
    return _Scheduler(runs, settings, 2, options, lambda _system, _message: None)


def _extracted(scheduler: _Scheduler, system: str, rows_per_dataset: int) -> None:
    """The system's extract has ended and reported ``rows_per_dataset`` rows per dataset, the
    first dataset ten times more (the system's large entity)."""
    graph = scheduler.graphs[system]
    graph.started.add(Task(system, EXTRACT))
    graph.done.add(Task(system, EXTRACT))
    datasets = list(scheduler.datasets[system].values())
    scheduler.outcomes[system].extracted = {
        name: rows_per_dataset * (10 if index == 0 else 1) for index, name in enumerate(datasets)
    }


def test_the_larger_systems_longest_chain_starts_first_whatever_the_order(tmp_path):
    scheduler = _scheduler(tmp_path, ("obstetrix", "melior"))
    cross = [
        waiting
        for graph in scheduler.graphs.values()
        for waiting, waits in graph.waits.items()
        if any(task.system != waiting.system for task in waits)
    ]
    assert cross == []  # independent systems: only the size decides
    _extracted(scheduler, "obstetrix", 1_000)
    _extracted(scheduler, "melior", 10_000)
    ready = scheduler._ready()
    assert {task.stage for task in ready} == {TRANSFORM}
    largest = next(iter(scheduler.datasets["melior"]))  # its first dataset's entity: 10x rows
    assert ready[0] == Task("melior", TRANSFORM, largest)
    # Every transform of the large system before any of the small one's.
    systems = [task.system for task in ready]
    assert systems == sorted(systems, key=lambda s: s != "melior")


def test_a_system_others_wait_for_goes_first_although_smaller(tmp_path):
    """Melior validates entities that resolve ELVIS's care units and practitioners by natural key
    (it waits for ELVIS's load): ELVIS's chain ends later through Melior's, so ELVIS's work is
    started first even when Melior is larger."""
    scheduler = _scheduler(tmp_path, ("elvis", "melior"))
    elvis_load = scheduler.graphs["elvis"].last_load
    assert any(
        elvis_load in waits
        for task, waits in scheduler.graphs["melior"].waits.items()
        if task.stage == VALIDATE
    )
    _extracted(scheduler, "elvis", 1_000)
    _extracted(scheduler, "melior", 1_500)  # 25,500 rows against ELVIS's 15,000
    ready = scheduler._ready()
    assert ready[0].system == "elvis"
    ranks = scheduler._ranks()
    assert ranks[ready[0]] > max(ranks[task] for task in ready if task.system == "melior")
