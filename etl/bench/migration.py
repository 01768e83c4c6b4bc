"""The migration as benchmarked: settings of a run, the stages timed per system, and the
child interpreters (estate generation, a migration per chunk size)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl.bench.figures import SYSTEMS, Measurement, SystemTiming, summarize_run, to_mib
from etl.bench.memory import RssSampler, measure, process_peaks
from etl.settings import PROJECT_ROOT, Settings

if TYPE_CHECKING:
    from etl.parallel import SystemRun, TaskTiming


def bench_settings(
    home: Path, estate_dir: Path, chunk_rows: int, core_url: str | None = None
) -> Settings:
    """Settings confined to ``home`` (landing zone, core, Airflow home), reading ``estate_dir``."""
    return Settings(
        home=home,
        estate_dir=estate_dir,
        landing_dir=home / "landing",
        core_url=core_url or f"sqlite:///{home / 'core' / 'core.sqlite'}",
        chunk_rows=chunk_rows,
    )


def warm_imports() -> float:
    """Import the pipeline's modules before anything is timed, and settle the heap as every
    process that runs stages does (etl/core/heap.py); returns the seconds it took.

    Great Expectations is imported the pipeline's way (etl/validate/gx_import.py, as the
    validate stage, the fork server and Airflow's workers import it): a plain ``import
    great_expectations`` would also execute ``scipy.stats``, ``altair`` and ``boto3``, which
    the pipeline defers and never uses, ~80 MiB of resident memory and ~1 CPU s that the run
    measured in this process would carry but ``vardflytt run`` does not."""
    from etl.core.heap import preload_and_settle
    from etl.stage_modules import STAGE_MODULES

    started = time.perf_counter()
    preload_and_settle(STAGE_MODULES)  # etl.pipeline and GX the pipeline's way among them
    return time.perf_counter() - started


def prepare_core(settings: Settings) -> None:
    """Bring the core schema to head before anything is timed: a production core is migrated
    once, not by every run; timed inside, a fresh schema's Alembic upgrade (0.3-0.7 s) counted
    as the first system's extract (its lease is the first thing that opens the core)."""
    from etl.core.database import core_engine

    core_engine(settings.resolved_core_url)


def migrate(
    settings: Settings,
    label: str,
    as_of: dt.date,
    sampler: RssSampler | None,
    systems: tuple[str, ...] = SYSTEMS,
    log: Callable[[str], None] = lambda _m: None,
) -> list[SystemTiming]:
    """Migrate each system stage by stage in this process, timing every stage."""
    from etl import pipeline
    from etl.transform.engine import shared_landed_inputs

    timings = []
    for system in systems:
        entities = list(pipeline.catalog(settings).system(system).entities)
        batch_id = pipeline.batch_id_for(system, f"bench_{label}")
        stages: dict[str, Measurement] = {}
        reconciled: bool | None = None
        accounting: dict[str, int] = {}
        error = None
        # One catalog for the system's stages, as run_system pins one for a run (each stage
        # called alone would take the mappings folder's digest again: 17 walks for ELVIS).
        with measure(sampler) as end_to_end, pipeline.one_catalog(settings):
            log(f"{label}: {system} extract")
            with measure(sampler) as stages["extract"]:
                extracted = pipeline.extract(system, batch_id, as_of, settings)
            log(f"{label}: {system} transform ({len(entities)} entities)")
            # The landed keys and lookups read once for all entities, as the pipeline's own
            # transform stage does (pipeline.transform_and_validate).
            with measure(sampler) as stages["transform"], shared_landed_inputs():
                for entity in entities:
                    pipeline.transform(system, entity, batch_id, settings)
            log(f"{label}: {system} validate ({len(entities)} entities)")
            with measure(sampler) as stages["validate"]:
                for entity in entities:
                    pipeline.validate(system, entity, batch_id, settings)
            run_id = f"bench_{label}"
            log(f"{label}: {system} quality gate")
            with measure(sampler) as stages["gate"]:
                pipeline.gate(system, batch_id, run_id, settings)
            log(f"{label}: {system} stage (by reference to the validated files)")
            with measure(sampler) as stages["stage"]:
                pipeline.load(system, batch_id, run_id=run_id, settings=settings, promote_now=False)
            log(f"{label}: {system} promote (with history and hash verification)")
            with measure(sampler) as stages["promote"]:
                report = pipeline.promote(system, batch_id, run_id, settings)
            log(f"{label}: {system} verify (accounting)")
            with measure(sampler) as stages["verify"]:
                try:
                    pipeline.reconcile(report)
                    reconciled = True
                except pipeline.ReconciliationError as failure:
                    reconciled, error = False, str(failure)
        for row in report["accounting"]:
            for key in ("extracted", "loaded", "quarantined", "excluded", "merged", "residue"):
                accounting[key] = accounting.get(key, 0) + int(row[key])
        timings.append(
            SystemTiming(
                system=system,
                source_rows=sum(extracted["rows"].values()),
                stages=stages,
                end_to_end=end_to_end,
                reconciled=reconciled,
                accounting=accounting,
                error=error,
            )
        )
    return timings


# The stages a parallel run times as tasks (``verify`` is the accounting check made after them).
PARALLEL_STAGES = ("extract", "transform", "validate", "gate", "stage", "promote")


def _span(timings: list[TaskTiming]) -> float:
    return max(t.ended for t in timings) - min(t.started for t in timings) if timings else 0.0


def _union(timings: list[TaskTiming]) -> float:
    """Seconds during which at least one of the tasks ran."""
    total, reach = 0.0, float("-inf")
    for timing in sorted(timings, key=lambda t: t.started):
        start = max(timing.started, reach)
        if timing.ended > start:
            total += timing.ended - start
        reach = max(reach, timing.ended)
    return total


def _from_tasks(timings: list[TaskTiming]) -> Measurement:
    return Measurement(seconds=_span(timings), cpu_seconds=sum(t.cpu_seconds for t in timings))


def migrate_parallel(
    settings: Settings,
    label: str,
    as_of: dt.date,
    jobs: int,
    systems: tuple[str, ...] = SYSTEMS,
    log: Callable[[str], None] = lambda _m: None,
) -> tuple[list[SystemTiming], Measurement, dict[str, float], dict[str, Any]]:
    """Migrate the systems side by side in ``jobs`` worker processes, as ``vardflytt run``
    does (etl/parallel.py), the load split into staging and promotion as ``migrate`` times
    them. The workers are started (their imports done, the catalog parsed once and handed to
    each, as ``vardflytt run`` hands it) before the clock starts, as ``warm_imports`` is for
    ``migrate``. Returns each system's stages (wall: its first task's
    start to its last one's end; CPU: summed over its tasks), the whole run (wall clock, CPU of
    this process and every task, RSS of the process tree), each stage's wall clock over all
    systems, and extra figures."""
    from etl import pipeline
    from etl.parallel import core_write_slots, run_systems, warm_pool

    runs = [(system, pipeline.batch_id_for(system, f"bench_{label}")) for system in systems]

    def on_event(system: str, message: str) -> None:
        if not message.endswith(" done"):
            log(f"{label}: {system} {message}")

    processes = jobs + core_write_slots(settings, jobs)
    with (
        warm_pool(processes, settings) as pool,
        RssSampler(tree=True) as sampler,
        measure(sampler) as whole,
    ):
        outcomes = run_systems(
            runs,
            as_of,
            settings=settings,
            jobs=jobs,
            reports=False,
            split_promote=True,
            on_event=on_event,
            pool=pool,
        )
    tasks = [t for outcome in outcomes for t in outcome.timings]
    whole.cpu_seconds = (whole.cpu_seconds or 0.0) + sum(t.cpu_seconds for t in tasks)
    timings = [_system_timing(outcome) for outcome in outcomes]
    stage_walls = {
        stage: _union([t for t in tasks if t.stage == stage]) for stage in PARALLEL_STAGES
    }
    peaks = [t.worker_peak_rss_bytes for t in tasks if t.worker_peak_rss_bytes is not None]
    extra = {
        "jobs": jobs,
        "workers": len({t.worker for t in tasks}),
        "worker_vm_hwm_mib": to_mib(max(peaks)) if peaks else None,
    }
    return timings, whole, stage_walls, extra


def _system_timing(outcome: SystemRun) -> SystemTiming:
    """One system's stages of a ``migrate_parallel`` run (wall: its first task's start to its
    last one's end; CPU: summed over its tasks), its accounting and its error, if any."""
    from etl import pipeline

    stages, task_seconds = {}, {}
    for stage in PARALLEL_STAGES:
        of_stage = [t for t in outcome.timings if t.stage == stage]
        if of_stage:
            stages[stage] = _from_tasks(of_stage)
            task_seconds[stage] = sum(t.seconds for t in of_stage)
    if "promote" in outcome.results:
        # The accounting check the scheduler made of the promotion's report, timed again
        # here (a check of counts, no database).
        with (
            measure(None) as stages["verify"],
            contextlib.suppress(pipeline.ReconciliationError),
        ):
            pipeline.reconcile(outcome.results["promote"])
    accounting: dict[str, int] = {}
    for row in outcome.report.accounting if outcome.report else []:
        for key in ("extracted", "loaded", "quarantined", "excluded", "merged", "residue"):
            accounting[key] = accounting.get(key, 0) + int(getattr(row, key))
    error = None
    if outcome.error is not None:
        error = f"{outcome.failed_task}: {type(outcome.error).__name__}: {outcome.error}"
    return SystemTiming(
        system=outcome.system,
        source_rows=sum(outcome.extracted.values()),
        stages=stages,
        end_to_end=_from_tasks(outcome.timings),
        reconciled=outcome.report is not None and outcome.ok,
        accounting=accounting,
        error=error,
        task_seconds=task_seconds,
    )


def _in_process_run(
    label: str,
    backend: str,
    settings: Settings,
    as_of: dt.date,
    log: Callable[[str], None],
    jobs: int = 1,
    **extra: Any,
) -> dict[str, Any]:
    options: dict[str, Any]
    prepare_core(settings)
    if jobs > 1:
        timings, whole, stage_walls, more = migrate_parallel(settings, label, as_of, jobs, log=log)
        options = {
            "whole": whole,
            "stage_walls": stage_walls,
            "process": f"this process + {jobs} workers",
            **more,
        }
    else:
        with RssSampler() as sampler:
            timings = migrate(settings, label, as_of, sampler, log=log)
        extra.setdefault("jobs", 1)
        options = {"process": "this process"}
    return summarize_run(
        label, backend, settings.chunk_rows, timings, process_peaks(), **options, **extra
    )


def _run_child(
    arguments: list[str],
    result_file: Path,
    log_file: Path,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``python -m etl.bench ...`` in a fresh interpreter; return the JSON it wrote."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "etl.bench", *arguments, "--result", str(result_file)],
            cwd=PROJECT_ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            env=env,
        )
    if done.returncode != 0 or not result_file.exists():
        tail = log_file.read_text(errors="replace")[-4000:]
        raise RuntimeError(
            f"child `{' '.join(arguments[:1])}` failed (exit {done.returncode}); "
            f"log {log_file}:\n{tail}"
        )
    return json.loads(result_file.read_text("utf-8"))


def _child_generate(out: Path, patients: int, seed: int) -> dict[str, Any]:
    from etl.estate import generate_estate

    started = time.perf_counter()
    manifest = generate_estate(out, patients=patients, seed=seed)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "row_counts": manifest.row_counts,
        "defect_rows": manifest.defect_rows,
        "extract_date": manifest.extract_date.isoformat(),
        **process_peaks(),
    }


def _child_migrate(
    home: Path, estate: Path, chunk_rows: int, label: str, as_of: dt.date
) -> dict[str, Any]:
    imports = warm_imports()
    settings = bench_settings(home, estate, chunk_rows)
    prepare_core(settings)
    with RssSampler() as sampler:
        timings = migrate(settings, label, as_of, sampler)
    return summarize_run(
        label,
        "sqlite",
        chunk_rows,
        timings,
        process_peaks(),
        process="child interpreter",
        import_seconds=imports,
    )
