"""A wave's split system gets its wave steps in the worker graph (etl/parallel.py): its rows
assigned to waves before the gate, its batch cut to the slice after it; a process that may not
start children (daemonic) runs the tasks itself."""

from __future__ import annotations

import multiprocessing

import pytest

from etl import parallel
from etl.parallel import ASSIGN, GATE, LOAD, REPORT, SLICE, VALIDATE, Task, _Options, _Scheduler
from etl.settings import Settings

pytestmark = pytest.mark.unit


def _graph(tmp_path, slicers: dict) -> _Scheduler:
    settings = Settings(home=tmp_path, landing_dir=tmp_path / "landing")
    options = _Options("2026-07-01", None, False, "delta", True, False, "w1", slicers, False)
    runs = [("elvis", "elvis-b"), ("melior", "melior-b")]
    return _Scheduler(runs, settings, 2, options, lambda _system, _message: None)


def test_a_split_systems_gate_judges_assigned_rows_and_its_load_takes_the_slice(tmp_path):
    scheduler = _graph(tmp_path, {"melior": object()})
    melior, elvis = scheduler.graphs["melior"].waits, scheduler.graphs["elvis"].waits

    validates = {t for t in melior if t.stage == VALIDATE}
    assert melior[Task("melior", ASSIGN)] == validates
    assert melior[Task("melior", GATE)] == {Task("melior", ASSIGN)}
    assert melior[Task("melior", SLICE)] == {Task("melior", GATE)}
    assert melior[Task("melior", LOAD)] == {Task("melior", SLICE)}
    assert melior[Task("melior", REPORT)] == {Task("melior", LOAD)}
    # A system the wave does not split keeps the plain graph.
    assert not {t.stage for t in elvis} & {ASSIGN, SLICE}
    assert elvis[Task("elvis", LOAD)] == {Task("elvis", GATE)}


def test_the_slicer_travels_only_with_the_tasks_that_use_it(tmp_path):
    slicer = object()
    scheduler = _graph(tmp_path, {"melior": slicer})
    jobs = {t.stage: scheduler._job(t) for t in scheduler.graphs["melior"].waits}
    assert jobs[ASSIGN].slicer is slicer and jobs[SLICE].slicer is slicer
    assert all(j.slicer is None for stage, j in jobs.items() if stage not in (ASSIGN, SLICE))
    assert all(j.sliced and j.wave == "w1" and not j.data_docs for j in jobs.values())
    elvis = scheduler._job(Task("elvis", GATE))
    assert (elvis.sliced, elvis.wave) == (False, "w1")


def test_a_daemonic_process_runs_the_tasks_itself(tmp_path, monkeypatch):
    given = []

    class Daemonic:
        daemon = True

    def scheduler(runs, settings, jobs, options, event):
        given.append(jobs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(multiprocessing, "current_process", lambda: Daemonic())
    monkeypatch.setattr(parallel, "_Scheduler", scheduler)
    settings = Settings(home=tmp_path, landing_dir=tmp_path / "landing")
    with pytest.raises(RuntimeError, match="stop here"):
        parallel.run_systems([("elvis", "b")], "2026-07-01", settings=settings, jobs=4)
    assert given == [1]
