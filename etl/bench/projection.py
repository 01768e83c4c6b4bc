"""``vardflytt bench --project``: the region's initial load and cutover window, projected from
measured rates. Pure computation: the figures come in, the projection goes out.

The model, each step an assumption the report lists:

* **Rows.** Source rows = people x rows per person of the bench estate (all its systems).
* **Workers.** One worker with one task slot moves ``rate_1`` source rows per second end to
  end (extract, transform, validate, load, reconcile; measured on the Celery cluster, net of
  the per-task fixed cost, which the next point counts apart). Two such workers moved
  ``rate_2``. Amdahl's law with the serial fraction that fits the measured speedup
  ``rate_2 / rate_1`` (``s = 2 / speedup - 1``, kept within 0..1) extrapolates to N workers:
  ``rate(N) = rate_1 * N / (1 + s * (N - 1))``.
* **Core database.** The core takes at most ``core_rows_per_second`` core rows per second (the
  pipeline's load: staging by reference, promotion COPYing new rows into the core; measured on
  PostgreSQL by the plain bench); in source rows that is divided by the core rows one source row
  becomes. The slower of workers and core bounds each phase. Without a measured core rate, only
  the workers do.
* **Fixed costs.** Each DAG run pays its scheduling overhead once, and each task its fixed cost
  (process start, pipeline import) whatever its rows: systems x tasks per system x task cost / N.
* **Initial load.** Every source row once: fixed costs + rows / min(rate(N), core).
* **Final delta** (after the freeze, legacy systems read-only). A delta lands every dataset as a
  full snapshot (``etl/extract/delta.py``) and maps, validates and loads only the changed rows:
  fixed costs + all rows x extract share / rate(N) + changed rows / min(rate(N), core), with the
  extract share of end-to-end time from the plain bench (1.0, a full pass, when not measured).
* **Verify.** ``cutover verify`` reads every system's source again through the mapping and
  compares it with the core (``etl/cutover/reconcile.py``), one system after the other in one
  task: rows / (verify rate x verify parallelism). Workers do not shorten it.
* **Freeze and commit** are ledger transitions (instant); the time the legacy owners need to
  make a system read-only, or the region needs to switch clients over, is added when given.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PEOPLE = 1_700_000
SYSTEMS = 49  # the region's legacy systems (mappings/)
WORKERS = (1, 2, 4, 8, 16, 32)
DELTA_FRACTION = 0.02


@dataclass(frozen=True)
class Measured:
    """Figures from the bench runs (``cluster_results.json`` and ``results.json``)."""

    rows_per_person: float
    rate_1_worker: float  # source rows/s, one worker with one task slot
    rate_2_workers: float  # source rows/s, two such workers
    run_overhead_seconds: float = 0.0  # per DAG run: scheduling before the first task and after
    verify_rows_per_second: float | None = None  # one process re-reading and comparing
    core_rows_per_second: float | None = None  # core rows the core database takes per second
    core_rows_per_source_row: float = 1.0
    # extract's share of end to end (with worker processes: of the tasks' seconds)
    extract_share: float | None = None
    task_overhead_seconds: float = 0.0  # a task's fixed cost before its first row
    tasks_per_system: float = 0.0


@dataclass(frozen=True)
class Assumptions:
    """What the projection is asked for, and what is assumed rather than measured."""

    people: int = PEOPLE
    systems: int = SYSTEMS
    workers: tuple[int, ...] = WORKERS
    delta_fraction: float = DELTA_FRACTION  # share of source rows new or changed since the load
    verify_parallelism: int = 1  # systems verified at once (one, as `cutover verify` runs today)
    freeze_seconds: float = 0.0
    commit_seconds: float = 0.0
    # Amdahl's serial fraction as given (measured on the region's own hosts), instead of fitted.
    serial_fraction: float | None = None


@dataclass(frozen=True)
class ProjectedRow:
    workers: int
    rows_per_second: float  # the workers' source rows/s
    bound_by: str  # "workers" or "core database": the slower of the two
    initial_load_seconds: float
    delta_seconds: float
    verify_seconds: float
    window_seconds: float  # freeze + delta + verify + commit


@dataclass(frozen=True)
class Projection:
    source_rows: float
    delta_rows: float
    serial_fraction: float
    speedup_2_workers: float
    core_source_rows_per_second: float | None
    rows: list[ProjectedRow] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def serial_fraction(speedup_two: float) -> float:
    """Amdahl's serial fraction that gives ``speedup_two`` on two workers (within 0..1)."""
    if speedup_two <= 0:
        raise ValueError("the speedup of two workers must be positive")
    return min(1.0, max(0.0, 2.0 / speedup_two - 1.0))


def cluster_rate(rate_1: float, serial: float, workers: int) -> float:
    """Source rows/s of N workers by Amdahl's law from one worker's rate."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    return rate_1 * workers / (1.0 + serial * (workers - 1))


def project(measured: Measured, assumptions: Assumptions) -> Projection:
    """Initial load and cutover window for each worker count (see the module docstring)."""
    _check(measured, assumptions)
    source_rows = assumptions.people * measured.rows_per_person
    delta_rows = source_rows * assumptions.delta_fraction
    speedup = measured.rate_2_workers / measured.rate_1_worker
    serial = (
        serial_fraction(speedup)
        if assumptions.serial_fraction is None
        else assumptions.serial_fraction
    )
    core = (
        measured.core_rows_per_second / measured.core_rows_per_source_row
        if measured.core_rows_per_second
        else None
    )
    extract_share = 1.0 if measured.extract_share is None else measured.extract_share
    verify = (
        source_rows / (measured.verify_rows_per_second * assumptions.verify_parallelism)
        if measured.verify_rows_per_second
        else 0.0
    )
    rows = []
    for workers in assumptions.workers:
        rate = cluster_rate(measured.rate_1_worker, serial, workers)
        effective = min(rate, core) if core else rate
        overhead = measured.run_overhead_seconds + (
            assumptions.systems
            * measured.tasks_per_system
            * measured.task_overhead_seconds
            / workers
        )
        initial = overhead + source_rows / effective
        delta = overhead + source_rows * extract_share / rate + delta_rows / effective
        rows.append(
            ProjectedRow(
                workers=workers,
                rows_per_second=rate,
                bound_by="core database" if core and core < rate else "workers",
                initial_load_seconds=initial,
                delta_seconds=delta,
                verify_seconds=verify,
                window_seconds=assumptions.freeze_seconds
                + delta
                + verify
                + assumptions.commit_seconds,
            )
        )
    return Projection(
        source_rows=source_rows,
        delta_rows=delta_rows,
        serial_fraction=serial,
        speedup_2_workers=speedup,
        core_source_rows_per_second=core,
        rows=rows,
        assumptions=assumption_lines(measured, assumptions, serial, core),
    )


def _check(measured: Measured, assumptions: Assumptions) -> None:
    if measured.rate_1_worker <= 0 or measured.rate_2_workers <= 0:
        raise ValueError("the measured worker rates must be positive (run `bench --cluster`)")
    if measured.rows_per_person <= 0:
        raise ValueError("rows per person must be positive")
    if not 0 <= assumptions.delta_fraction <= 1:
        raise ValueError("the delta fraction is a share of the rows, between 0 and 1")
    if assumptions.people < 1 or not assumptions.workers or min(assumptions.workers) < 1:
        raise ValueError("people and every worker count must be at least 1")
    if assumptions.serial_fraction is not None and not 0 <= assumptions.serial_fraction <= 1:
        raise ValueError("the serial fraction is between 0 and 1")
    if assumptions.verify_parallelism < 1:
        raise ValueError("verify parallelism must be at least 1")


def assumption_lines(
    measured: Measured, assumptions: Assumptions, serial: float, core: float | None
) -> list[str]:
    """Every figure the projection rests on, in words, measured or assumed."""
    lines = [
        f"people: {assumptions.people:,}; source rows per person: "
        f"{measured.rows_per_person:.2f} (the bench estate, all its systems)",
        f"one worker, one task slot: {measured.rate_1_worker:,.0f} source rows/s end to end "
        f"(measured); two workers: {measured.rate_2_workers:,.0f} rows/s (measured; both net "
        "of the fixed costs below when the run was large enough to tell)",
        (
            f"scaling: Amdahl's law, serial fraction {serial:.3f} fitted to the 1 -> 2 worker "
            "speedup; more workers than that measured is an extrapolation"
            if assumptions.serial_fraction is None
            else f"scaling: Amdahl's law, serial fraction {serial:.3f} as given (the measured "
            f"1 -> 2 speedup was {measured.rate_2_workers / measured.rate_1_worker:.2f})"
        ),
        f"run overhead per DAG run: {measured.run_overhead_seconds:.0f} s (measured scheduling "
        "before the first task and after the last)",
        f"fixed cost per task: {measured.task_overhead_seconds:.1f} s (measured), "
        f"{measured.tasks_per_system:.1f} tasks per system (measured), "
        f"{assumptions.systems} systems, spread over the workers",
    ]
    if core:
        lines.append(
            f"core database: {measured.core_rows_per_second:,.0f} core rows/s (pipeline load on "
            f"PostgreSQL, measured), {measured.core_rows_per_source_row:.3f} core rows per "
            f"source row: at most {core:,.0f} source rows/s, whatever the workers"
        )
    else:
        lines.append("core database: no measured rate given; only the workers bound the phases")
    share = measured.extract_share
    lines += [
        f"final delta: {assumptions.delta_fraction:.1%} of the rows new or changed (assumed); "
        "every dataset is landed again in full, "
        + (
            f"extract being {share:.1%} of end-to-end time (measured)"
            if share is not None
            else "counted as a full pass (extract share not measured)"
        ),
        (
            f"verify: {measured.verify_rows_per_second:,.0f} source rows/s in one process "
            f"(measured), {assumptions.verify_parallelism} system(s) at a time"
            if measured.verify_rows_per_second
            else "verify: not measured; counted as 0"
        ),
        f"freeze: {assumptions.freeze_seconds / 60:.0f} min, commit: "
        f"{assumptions.commit_seconds / 60:.0f} min (ledger transitions; the legacy owners' "
        "own time to go read-only and to switch clients over is not included unless given)",
    ]
    return lines


def inputs_from_results(
    cluster_results: dict[str, Any], bench_results: dict[str, Any] | None
) -> Measured:
    """The measured figures from ``cluster_results.json`` (and ``results.json``, if there)."""
    modes = {mode["label"]: mode for mode in cluster_results["modes"] if not mode.get("error")}
    missing = [label for label in ("celery_1", "celery_2") if label not in modes]
    if missing:
        raise ValueError(
            f"cluster results lack a successful {', '.join(missing)} run; run "
            "`vardflytt bench --cluster` first"
        )
    generation = cluster_results["generation"]
    celery = [modes["celery_1"], modes["celery_2"]]
    overheads = [mode["overhead_seconds"] for mode in celery]
    task_costs = [mode.get("task_overhead_seconds") for mode in celery]
    # Net rates only when both runs have one: the speedup compares like with like.
    key = "net_rows_per_second" if all(m.get("net_rows_per_second") for m in celery) else None
    rate_key = key or "rows_per_second"
    core_rate = core_ratio = extract_share = None
    postgres = _postgres_run(bench_results)
    if postgres is not None:
        cutover = postgres.get("cutover") or {}
        core_rate = cutover.get("load_rows_per_second")
        if core_rate and postgres["total"]["source_rows"]:
            core_ratio = cutover["rows"] / postgres["total"]["source_rows"]
        extract_share = postgres["total"]["stages"]["extract"]["share_of_end_to_end"]
    return Measured(
        rows_per_person=generation["total_rows"] / cluster_results["parameters"]["patients"],
        rate_1_worker=modes["celery_1"][rate_key],
        rate_2_workers=modes["celery_2"][rate_key],
        run_overhead_seconds=sum(overheads) / len(overheads),
        verify_rows_per_second=cluster_results.get("verify", {}).get("rows_per_second"),
        core_rows_per_second=core_rate,
        core_rows_per_source_row=core_ratio or 1.0,
        extract_share=extract_share,
        task_overhead_seconds=(
            sum(task_costs) / len(task_costs) if key and None not in task_costs else 0.0
        ),
        tasks_per_system=(
            modes["celery_1"].get("tasks", 0) / len(cluster_results["parameters"]["systems"])
            if key
            else 0.0
        ),
    )


def _postgres_run(bench_results: dict[str, Any] | None) -> dict[str, Any] | None:
    for run in (bench_results or {}).get("runs", []):
        if run.get("backend") == "postgresql" and not run.get("error"):
            return run
    return None
