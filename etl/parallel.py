"""Several systems' migrations at once, in worker processes: ``vardflytt run <system>...``.

``run_systems`` runs the same stages as ``pipeline.run_system`` (same calls, same leases, same
accounting, the same validation report after a load or a stop), as a graph of tasks that
``jobs`` worker processes take in turn, one task (one entity's chunks) at a time each (and
loads, which wait on the database, in processes beside them, within the core's write slots):

    extract -> transform <entity> (each entity)
            -> validate <entity> (once it and the entities its suite joins or resolves against,
               etl/validate/order.py, are transformed: the order the system DAGs use)
            -> quality gate -> load (staging and promotion) -> report; reconcile here.

A wave's systems (``wave``, etl/cutover/waves.py) take the same graph with the wave's own steps,
as ``pipeline.run_system`` runs them: a system split by care unit (a ``slicer``) has its rows
assigned to waves before its gate, which judges the wave's rows, and its batch cut to the wave's
slice after it; its extract compares with the wave's last batch; loads record the wave.

Independent systems run side by side, and so do a system's independent entities, which keeps
both CPUs busy where one system alone would leave one idle. Loads take the core's write slots
(``VARDFLYTT_CORE_WRITE_SLOTS``; on SQLite, whose writer is one at a time, a load runs alone).

A task that fails stops its system only: nothing more of that system is started, its running
tasks finish, then its validation report is written and its lease released, as after a failed
``run_system``; the other systems finish. A worker process that dies takes down the pool's
running tasks: they are run again once on a fresh pool (every stage is idempotent per batch), and
a task that kills a worker twice fails its system. Errors and results cross processes as plain
data (counts, ids, messages), never rows.

``jobs == 1`` runs the same graph in this process, with no worker: the sequential reference.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import multiprocessing
import os
import pickle
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.load.loader import LoadReport
from etl.settings import Settings, get_settings
from etl.stage_modules import STAGE_MODULES
from etl.validate.order import natural_key_targets, suite_meta, validation_needs

logger = logging.getLogger(__name__)

# Imported once by the fork server, so a worker starts with the pipeline (and Great Expectations)
# already imported instead of paying seconds of imports each.
PRELOAD = STAGE_MODULES
EXTRACT, TRANSFORM, VALIDATE, GATE = "extract", "transform", "validate", "gate"
LOAD, STAGE, PROMOTE, REPORT = "load", "stage", "promote", "report"
ASSIGN, SLICE = "wave assignment", "wave slice"  # a wave's split system, around its gate
STAGES = (EXTRACT, TRANSFORM, VALIDATE, ASSIGN, GATE, SLICE, LOAD, STAGE, PROMOTE, REPORT)
CORE_WRITES = (LOAD, STAGE, PROMOTE)
MAX_ATTEMPTS = 2  # a task whose worker died is run once more on a fresh pool
# Relative cost per extracted row of each stage, for the scheduler's critical path only (the
# bench's 20,000-person run: transform about 8 CPU s, validate 2.6, stage 0.7, a load's
# promotion 7 s of the database's time per 440,000 rows); a wrong guess costs order, not results.
_COST_PER_ROW = {TRANSFORM: 1.0, VALIDATE: 0.35, STAGE: 0.1, PROMOTE: 0.9, LOAD: 1.0}


class WorkerError(RuntimeError):
    """An error raised in a worker that could not cross back as itself (not picklable)."""


def default_jobs(settings: Settings | None = None) -> int:
    """``VARDFLYTT_JOBS``, else the CPUs this process may run on."""
    settings = settings or get_settings()
    if settings.jobs:
        return settings.jobs
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def core_write_slots(settings: Settings, jobs: int) -> int:
    """Loads at once: as the core's Airflow pool (etl/airflow_pools.py) allows. A load waits
    on the database more than it computes, so loads run beside the ``jobs`` computing tasks,
    each in a worker process of its own (started only when one runs)."""
    if settings.core_write_slots is not None:
        return settings.core_write_slots
    return 1 if settings.resolved_core_url.startswith("sqlite") else jobs


@dataclass(frozen=True)
class Task:
    system: str
    stage: str
    entity: str | None = None

    @property
    def name(self) -> str:
        return f"{self.stage} {self.entity}" if self.entity else self.stage


@dataclass(frozen=True)
class TaskTiming:
    """One task as a worker ran it: ``started``/``ended`` on the machine's monotonic clock
    (``time.perf_counter``, comparable across processes on Linux), the worker's CPU seconds
    over it, and the worker's peak RSS (VmHWM) when it ended."""

    system: str
    stage: str
    entity: str | None
    started: float
    ended: float
    cpu_seconds: float
    worker: int
    worker_peak_rss_bytes: int | None = None

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class SystemRun:
    """One system's outcome: its load report (reconciled), or the error that stopped it."""

    system: str
    batch_id: str
    extracted: dict[str, int] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)  # task name -> its plain-data result
    report: LoadReport | None = None
    error: BaseException | None = None
    failed_task: str | None = None
    timings: list[TaskTiming] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class _Job:
    """What a worker needs for a task: plain, picklable data only."""

    task: Task
    batch_id: str
    as_of: str
    settings: Settings
    run_id: str | None
    dry_run: bool
    kind: str
    wave: str | None = None
    sliced: bool = False  # the system is split by care unit (its slicer on ASSIGN and SLICE)
    slicer: Any = None
    data_docs: bool = True


@dataclass
class _Outcome:
    result: Any
    error: BaseException | None
    timing: TaskTiming


def _vm_hwm() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _portable(error: BaseException) -> BaseException:
    """The error itself if it survives pickling, else a WorkerError naming its type; with the
    worker's traceback as a note (code lines and names only, like any traceback)."""
    note = "in worker process:\n" + "".join(traceback.format_exception(error)).rstrip()
    try:
        copy = pickle.loads(pickle.dumps(error))
        if type(copy) is not type(error) or copy.args != error.args:
            raise TypeError("not a faithful copy")
    except Exception:
        copy = WorkerError(f"{type(error).__module__}.{type(error).__qualname__}: {error}")
    if multiprocessing.parent_process() is not None:  # a worker's: where it happened
        copy.add_note(note)
    return copy


def _call(job: _Job) -> Any:
    from etl import pipeline

    task, settings = job.task, job.settings
    system, batch_id = task.system, job.batch_id
    sliced_wave = job.wave if job.sliced else None
    if task.stage == EXTRACT:
        return pipeline.extract(
            system,
            batch_id,
            job.as_of,
            settings,
            job.kind,
            clean_abandoned=not job.dry_run,
            base_wave=sliced_wave,
        )
    if task.stage == TRANSFORM:
        return pipeline.transform(system, str(task.entity), batch_id, settings)
    if task.stage == VALIDATE:
        return pipeline.validate(system, str(task.entity), batch_id, settings)
    if task.stage == ASSIGN:
        return pipeline.assign_slice(system, batch_id, job.slicer, settings)
    if task.stage == GATE:
        return pipeline.gate(system, batch_id, job.run_id, settings, sliced_wave)
    if task.stage == SLICE:
        return pipeline.slice_batch(system, batch_id, job.slicer, settings)
    if task.stage == LOAD:
        return pipeline.load(
            system, batch_id, job.run_id, job.dry_run, settings, wave=job.wave, kind=job.kind
        )
    if task.stage == STAGE:
        return pipeline.load(
            system, batch_id, run_id=job.run_id, settings=settings, promote_now=False
        )
    if task.stage == PROMOTE:
        return pipeline.promote(system, batch_id, job.run_id, settings)
    if task.stage == REPORT:
        return pipeline.report(
            system, batch_id, settings, raise_errors=False, data_docs=job.data_docs
        )
    raise ValueError(f"unknown stage {task.stage!r}")


def _run(job: _Job) -> _Outcome:
    """A task in a worker (or in this process when ``jobs`` is 1): never raises."""
    started, cpu = time.perf_counter(), time.process_time()
    try:
        result, error = _call(job), None
    except Exception as failure:  # crosses back as data; the scheduler stops the system
        result, error = None, _portable(failure)
    timing = TaskTiming(
        job.task.system,
        job.task.stage,
        job.task.entity,
        started,
        time.perf_counter(),
        time.process_time() - cpu,
        os.getpid(),
        _vm_hwm(),
    )
    return _Outcome(result, error, timing)


def _init_worker(environment: dict[str, str], catalog_seed: Any = None) -> None:
    """A worker sees the caller's ``VARDFLYTT_*`` environment (the fork server may be older)
    and starts with the caller's parsed catalog (``pipeline.seed_catalog``: ~0.2 CPU s less per
    worker; kept only while the mappings' files are the ones it was parsed from), its heap
    settled (etl/core/heap.py)."""
    for name in [n for n in os.environ if n.startswith("VARDFLYTT_")]:
        del os.environ[name]
    os.environ.update(environment)
    from etl import pipeline
    from etl.core.files import restrict_umask
    from etl.core.heap import settle

    restrict_umask()
    pipeline.seed_catalog(catalog_seed)
    settle()  # the preloaded modules and the catalog, out of the collector's work


class _InProcess:
    """The executor of ``jobs == 1``: each task runs when submitted, in this process."""

    def submit(self, function: Callable[[_Job], _Outcome], job: _Job) -> Future[_Outcome]:
        future: Future[_Outcome] = Future()
        future.set_result(function(job))
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def _pool(jobs: int, catalog_seed: Any = None) -> ProcessPoolExecutor:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    environment = {n: v for n, v in os.environ.items() if n.startswith("VARDFLYTT_")}
    return ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=context,
        initializer=_init_worker,
        initargs=(environment, catalog_seed),
    )


@contextlib.contextmanager
def warm_pool(jobs: int, settings: Settings | None = None) -> Iterator[ProcessPoolExecutor]:
    """A pool whose workers are started (imports done; with ``settings``, the catalog of its
    mappings parsed here and handed to each), for a caller that times runs apart."""
    from etl import pipeline

    pool = _pool(jobs, pipeline.catalog_seed(settings) if settings is not None else None)
    try:
        list(pool.map(_noop, range(jobs)))
        yield pool
    finally:
        pool.shutdown()


def _noop(_index: int) -> int:
    return os.getpid()


class _Graph:
    """The tasks of one system's batch and what each waits for."""

    def __init__(
        self,
        system: str,
        entities: list[str],
        needs: dict[str, list[str]],
        stages: list[str],
        sliced: bool = False,
    ):
        self.system = system
        self.waits: dict[Task, set[Task]] = {}
        extract = Task(system, EXTRACT)
        self.waits[extract] = set()
        transforms = {e: Task(system, TRANSFORM, e) for e in entities}
        for task in transforms.values():
            self.waits[task] = {extract}
        validates = []
        for entity in entities:
            task = Task(system, VALIDATE, entity)
            self.waits[task] = {transforms[entity], *(transforms[n] for n in needs[entity])}
            validates.append(task)
        checked: set[Task] = set(validates) or {extract}
        if sliced:  # the wave's rows are assigned before its gate judges them
            assign = Task(system, ASSIGN)
            self.waits[assign], checked = checked, {assign}
        gate = Task(system, GATE)
        self.waits[gate] = checked
        previous = gate
        for stage in [SLICE, *stages] if sliced else stages:
            task = Task(system, stage)
            self.waits[task] = {previous}
            previous = task
            if stage in CORE_WRITES:
                self.last_load = task  # what the core holds of the batch after it
        self.entities = set(entities)
        self.done: set[Task] = set()
        self.started: set[Task] = set()

    def ready(self) -> list[Task]:
        return [
            task
            for task, waits in self.waits.items()
            if task not in self.started and waits <= self.done
        ]


def _cross_system_waits(graphs: dict[str, _Graph], expectations_dir: Path) -> None:
    """Keep what one system after another would give, where systems meet in the core.

    A reference by natural key (``meta.references`` with a ``column``, e.g. a care unit's
    HSA-id) resolves against every system's promoted rows (etl/validate/references.py); a
    reference by core id only against its own system's (core ids are per system). So when a
    system's entity references a target another system of the run loads, the earlier system
    (in the given order) is loaded before the later one validates that entity, and the later
    one's load waits for the earlier one's validation of it, as in a run one after another."""
    systems = list(graphs)
    for index, system in enumerate(systems):
        graph = graphs[system]
        for task in [t for t in graph.waits if t.stage == VALIDATE]:
            targets = natural_key_targets(suite_meta(expectations_dir, str(task.entity)))
            for other_index, other in enumerate(systems):
                other_graph = graphs[other]
                if other == system or not targets & other_graph.entities:
                    continue
                if other_index < index:  # loaded before this validation
                    graph.waits[task].add(other_graph.last_load)
                else:  # loaded after it
                    other_graph.waits[other_graph.last_load].add(task)


def run_systems(
    runs: Sequence[tuple[str, str]],
    as_of_date: dt.date | str,
    *,
    settings: Settings | None = None,
    jobs: int | None = None,
    dry_run: bool = False,
    run_id: str | None = None,
    kind: str = "full",
    reports: bool = True,
    split_promote: bool = False,
    on_event: Callable[[str, str], None] | None = None,
    pool: ProcessPoolExecutor | None = None,
    wave: str | None = None,
    slicers: dict[str, Any] | None = None,
    data_docs: bool = True,
) -> list[SystemRun]:
    """Migrate each ``(system, batch_id)`` of ``runs``; returns one ``SystemRun`` per system in
    the same order, failed or not (it raises only for bad arguments).

    ``split_promote`` stages and then promotes in two tasks (as the bench times them) instead
    of one load; ``reports=False`` leaves out the validation report (the bench's stages).
    ``on_event(system, message)`` is called in this process as tasks start and end.
    ``pool``: a started pool (``warm_pool``) to use instead of a new one. ``wave``: the
    systems' batches are a wave's loads, ``slicers`` its split systems' (picklable) slicers and
    ``data_docs=False`` leaves their Data Docs for later (a final delta), as
    ``pipeline.run_system`` does for one system. In a daemonic process (which may not start
    children) the tasks run in this process, one at a time."""
    settings = settings or get_settings()
    jobs = jobs or default_jobs(settings)
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    if multiprocessing.current_process().daemon and pool is None:
        jobs = 1
    systems = [system for system, _batch in runs]
    if len(set(systems)) != len(systems):
        raise ValueError(f"a system appears twice: {', '.join(systems)}")
    scheduler = _Scheduler(
        runs,
        settings,
        jobs,
        _Options(
            str(as_of_date),
            run_id,
            dry_run,
            kind,
            reports,
            split_promote,
            wave,
            dict(slicers or {}),
            data_docs,
        ),
        on_event or (lambda _system, _message: None),
    )
    return scheduler.run(pool)


@dataclass(frozen=True)
class _Options:
    as_of: str
    run_id: str | None
    dry_run: bool
    kind: str
    reports: bool
    split_promote: bool
    wave: str | None = None
    slicers: dict[str, Any] = field(default_factory=dict)  # a wave's split systems
    data_docs: bool = True


class _Scheduler:
    """Starts each ready task while a worker is free (loads within the core's write slots),
    collects what the workers return, stops a failed system, and runs again what a dead
    worker lost."""

    def __init__(
        self,
        runs: Sequence[tuple[str, str]],
        settings: Settings,
        jobs: int,
        options: _Options,
        event: Callable[[str, str], None],
    ) -> None:
        from etl import pipeline

        self.settings, self.jobs, self.options, self.event = settings, jobs, options, event
        self.systems = [system for system, _batch in runs]
        self.outcomes = {system: SystemRun(system, batch_id) for system, batch_id in runs}
        catalog = pipeline.catalog(settings)
        loads = [STAGE, PROMOTE] if options.split_promote else [LOAD]
        after = [*loads, *([REPORT] if options.reports else [])]
        self.graphs = {}
        self.datasets = {
            system: {name: e.dataset for name, e in catalog.system(system).entities.items()}
            for system in self.systems
        }
        for system in self.systems:
            entities = list(catalog.system(system).entities)
            needs = validation_needs(settings.expectations_dir, entities)
            sliced = system in options.slicers
            self.graphs[system] = _Graph(system, entities, needs, after, sliced)
        done: set[Task] = set()  # one for all: a task may wait for another system's
        for graph in self.graphs.values():
            graph.done = done
        _cross_system_waits(self.graphs, settings.expectations_dir)
        self.successors: dict[Task, set[Task]] = {}  # the tasks that wait for each task
        for graph in self.graphs.values():
            for waiting, waits in graph.waits.items():
                for task in waits:
                    self.successors.setdefault(task, set()).add(waiting)
        self.write_slots = core_write_slots(settings, jobs)
        # SQLite has one writer: a load's long transaction beside other tasks' short writes
        # (leases, the access log) can fail them with "database is locked".
        self.exclusive_writes = settings.resolved_core_url.startswith("sqlite")
        self.running: dict[Future[_Outcome], Task] = {}
        self.attempts: dict[Task, int] = {}
        self.suspects: set[Task] = set()  # running when a worker died: each runs alone after

    def run(self, pool: ProcessPoolExecutor | None) -> list[SystemRun]:
        from etl import pipeline

        own_pool = pool is None and self.jobs > 1
        processes = self.jobs + self.write_slots
        seed = pipeline.catalog_seed(self.settings) if self.jobs > 1 and pool is None else None
        executor: Any = _InProcess() if self.jobs == 1 else (pool or _pool(processes, seed))
        try:
            while True:
                broken = self._start(executor)
                if not broken:
                    if not self.running:
                        break
                    done, _ = wait(list(self.running), return_when=FIRST_COMPLETED)
                    broken = self._collect(done)
                if broken:
                    # What finished is kept; every task still on the broken pool is lost with
                    # it: run them again.
                    self._collect({future for future in self.running if future.done()})
                    for future, task in list(self.running.items()):
                        self.running.pop(future)
                        self._again(task)
                        self.attempts[task] -= 1  # not its doing
                    executor.shutdown(wait=False, cancel_futures=True)
                    executor, own_pool = _pool(processes, seed), True
            for system, graph in self.graphs.items():
                left = [t.name for t in graph.waits if t not in graph.done]
                if left and self.outcomes[system].ok:  # never silently half-run
                    self.outcomes[system].error = RuntimeError(f"{system}: not run: {left}")
                    self.outcomes[system].failed_task = left[0]
        finally:
            if own_pool:
                executor.shutdown(cancel_futures=True)
            for outcome in self.outcomes.values():
                if not outcome.ok:  # as run_system: a stopped run must not keep the system
                    try:
                        pipeline.release_system(outcome.system, outcome.batch_id, self.settings)
                    except Exception:
                        logger.exception("%s: the lease could not be released", outcome.system)
        return [self.outcomes[system] for system in self.systems]

    def _job(self, task: Task) -> _Job:
        o = self.options
        batch_id = self.outcomes[task.system].batch_id
        slicer = o.slicers.get(task.system)
        return _Job(
            task,
            batch_id,
            o.as_of,
            self.settings,
            o.run_id,
            o.dry_run,
            o.kind,
            wave=o.wave,
            sliced=slicer is not None,
            slicer=slicer if task.stage in (ASSIGN, SLICE) else None,  # pickled where used only
            data_docs=o.data_docs,
        )

    @property
    def writing_tasks(self) -> set[Task]:
        return {t for t in self.running.values() if t.stage in CORE_WRITES}

    def _priority(self, task: Task, ranks: dict[Task, float]) -> tuple[int, float, int]:
        """Extracts first, which unblock everything; then the short or server-bound steps
        after a gate (the database's work on a load overlaps the workers' CPU work); then
        transforms and validations, the one with the longest estimated chain of work still
        behind it first (critical path first, ``_ranks``: a large entity of a later system
        before the small ones of an earlier system, so the system that ends last starts its
        long chain early), ties in the given order of the systems; the report last."""
        if task.stage == EXTRACT:
            return (0, 0.0, 0)
        if task.stage in (TRANSFORM, VALIDATE):
            return (2, -ranks[task], self.systems.index(task.system))
        return (3, 0.0, 0) if task.stage == REPORT else (1, 0.0, 0)

    def _cost(self, task: Task) -> float:
        """The task's estimated work, in extracted rows times the stage's relative cost per
        row (transform is the unit; a load counts the database's work, which is on the path
        though not on a worker's CPU). Unknown (0) until the system's extract has reported
        its rows."""
        extracted = self.outcomes[task.system].extracted
        if task.stage in (TRANSFORM, VALIDATE):
            rows = extracted.get(self.datasets[task.system][str(task.entity)], 0)
        else:
            rows = sum(extracted.values())
        return rows * _COST_PER_ROW.get(task.stage, 0.0)

    def _ranks(self) -> dict[Task, float]:
        """Each task's longest chain of estimated work from its start to the end of the run
        through the tasks that wait for it, in its system and across systems (the "upward
        rank" of list scheduling), from what the extracts have reported so far."""
        ranks: dict[Task, float] = {}

        def rank(current: Task) -> float:
            if current not in ranks:
                after = [rank(other) for other in self.successors.get(current, ())]
                ranks[current] = self._cost(current) + max(after, default=0.0)
            return ranks[current]

        for graph in self.graphs.values():
            for task in graph.waits:
                rank(task)
        return ranks

    def _ready(self) -> list[Task]:
        ready = [task for system in self.systems for task in self.graphs[system].ready()]
        ranks = self._ranks()
        ready.sort(key=lambda task: self._priority(task, ranks))
        writing = sum(1 for t in self.running.values() if t.stage in CORE_WRITES)
        chosen = []
        for task in ready:
            if task.stage in CORE_WRITES:
                if writing >= self.write_slots:
                    continue
                writing += 1
            chosen.append(task)
        return chosen

    def _start(self, executor: Any) -> bool:
        """Start what may start; true when the pool was found broken (a worker died)."""
        for task in self._ready():
            running = set(self.running.values())
            if self.suspects & running:
                return False
            if task in self.suspects and running:
                continue
            writes = task.stage in CORE_WRITES or running & self.writing_tasks
            if self.exclusive_writes and writes and running:
                return False  # SQLite: a load runs alone (the others end, then it starts)
            computing = [t for t in running if t.stage not in CORE_WRITES]
            if task.stage not in CORE_WRITES and len(computing) >= self.jobs:
                continue  # a load may still start: it waits on the database, not a CPU
            graph = self.graphs[task.system]
            self.event(task.system, task.name)
            try:
                future = executor.submit(_run, self._job(task))
            except BrokenProcessPool:
                return True
            graph.started.add(task)
            self.attempts[task] = self.attempts.get(task, 0) + 1
            self.running[future] = task
        return False

    def _collect(self, done: set[Future[_Outcome]]) -> bool:
        """Take in finished tasks; true when the pool broke (a worker died)."""
        broken = False
        for future in done:
            task = self.running.pop(future)
            try:
                outcome = future.result()
            except BrokenProcessPool:
                broken = True
                if self.attempts[task] >= MAX_ATTEMPTS:
                    self.graphs[task.system].done.add(task)
                    died = WorkerError(f"{task.system}: the worker running {task.name} died")
                    self._stop(task, died)
                else:
                    self._again(task)
            else:
                self.suspects.discard(task)
                self._finish(task, outcome)
        return broken

    def _again(self, task: Task) -> None:
        self.suspects.add(task)
        self.graphs[task.system].started.discard(task)

    def _stop(self, task: Task, error: BaseException) -> None:
        """Nothing more of the system starts; its report (if any) once its running tasks end."""
        outcome = self.outcomes[task.system]
        if outcome.error is None:
            outcome.error, outcome.failed_task = error, task.name
            self.event(task.system, f"{task.name} failed: {type(error).__name__}")
        graph = self.graphs[task.system]
        for other in graph.waits:
            if other not in graph.started and other.stage != REPORT:
                graph.started.add(other)
                graph.done.add(other)
        for other in graph.waits:
            if other.stage == REPORT:
                graph.waits[other] = {t for t in graph.waits if t.stage != REPORT}

    def _finish(self, task: Task, outcome: _Outcome) -> None:
        from etl import pipeline

        system_run = self.outcomes[task.system]
        self.graphs[task.system].done.add(task)
        system_run.timings.append(outcome.timing)
        if outcome.error is not None:
            if task.stage == REPORT:  # reported, never raised (raise_errors=False)
                logger.warning("%s: the validation report failed", task.system)
                return
            self._stop(task, outcome.error)
            return
        system_run.results[task.name] = outcome.result
        self.event(task.system, f"{task.name} done")
        if task.stage == EXTRACT:
            system_run.extracted = dict(outcome.result["rows"])
        if task.stage in (LOAD, PROMOTE):
            try:
                pipeline.reconcile(outcome.result)
                system_run.report = LoadReport.model_validate(outcome.result)
            except Exception as failure:
                self._stop(task, failure)


def raise_first_error(outcomes: Sequence[SystemRun]) -> None:
    """Raise the first stopped system's error (its own type, so its exit code), if any."""
    for outcome in outcomes:
        if outcome.error is not None:
            raise outcome.error
