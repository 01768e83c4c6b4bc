"""The figures of a benchmark: constants, definitions, and the pure summaries of timings
(per stage, per system, per run, DAG parsing) that go into ``results.json``."""

from __future__ import annotations

import secrets
import statistics
import sys
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1
BENCH_SEED = 42
SYSTEMS = ("elvis", "melior")
STAGES = ("extract", "transform", "validate", "gate", "stage", "promote", "verify")
LOAD_STAGES = ("stage", "promote", "verify")  # "load alone" in the goals
SAMPLE_INTERVAL_SECONDS = 0.01
MIB = 1024 * 1024
RESULTS_FILE = "results.json"
RESULTS_MARKDOWN = "results.md"
TO_SQL_CHUNK_ROWS = 1_000  # rows per INSERT of the to_sql peer (pandas' usual advice)
POSTGRES_URL_ENV = "VARDFLYTT_BENCH_POSTGRES_URL"

DEFINITIONS = {
    "rows_per_second": "source rows extracted for the system (sum over its datasets) divided by "
    "the stage's wall-clock seconds; the same numerator for every stage",
    "share_of_end_to_end": "the stage's part of the migration's time. One process (jobs = 1): "
    "stage seconds divided by end-to-end seconds (the stages run one after another). Worker "
    "processes: the stage's task seconds (each task's wall clock, summed) divided by every "
    "stage's task seconds; stages overlap there (one system validates while another "
    "transforms), so their wall-clock seconds divided by the run's would add up to more than "
    "100%; see task_seconds and wall_coverage",
    "validation_share": "share_of_end_to_end of the validate stage (all entities)",
    "task_seconds": "worker processes: the wall-clock seconds of the stage's tasks, summed",
    "wall_coverage": "worker processes: the stage's seconds (the time any of its tasks ran) "
    "divided by the run's wall clock; overlapping stages make these add up to more than 100%",
    "end_to_end": "wall-clock seconds from the start of extract to the end of verify",
    "gate": "pipeline.gate: the batch's check results stored and held against the thresholds",
    "stage": "pipeline.load(promote_now=False): the batch staged by reference (validated files' "
    "rows and SHA-256), quarantine and flags, provisional accounting (one transaction)",
    "promote": "pipeline.promote: rows new to the core COPYed straight in, changed rows through "
    "the upsert with their history (the undo information), and the verification of every "
    "loaded row (set-based aggregates, or a join by content hash), inside the promotion's "
    "transaction",
    "verify": "pipeline.reconcile: every source row loaded, quarantined, excluded or merged",
    "cpu_seconds": "time.process_time() of the process over the span (user + system, every "
    "thread of this process, no children, not the database server's work): on a shared "
    "machine wall time also counts waiting. With worker processes (jobs > 1): the sum over "
    "the stage's tasks of each worker's process_time() over the task",
    "jobs": "worker processes of the run (etl/parallel.py: independent systems and entities "
    "side by side, as `vardflytt run` runs them); 1: every stage in this process, one after "
    "another. With workers a system's stage seconds are the wall clock from its first task's "
    "start to its last task's end, a total's the time any task of that stage ran (union over "
    "systems), and end to end the run's wall clock; peak RSS is sampled over this process and "
    "its workers together (the sum of their RSS)",
    "peak_rss_mib": "highest RSS sampled by a psutil thread during the stage (process-wide, so it "
    "includes what earlier stages left allocated); may miss spikes shorter than "
    f"{SAMPLE_INTERVAL_SECONDS * 1000:g} ms",
    "ru_maxrss_mib": "resource.getrusage(RUSAGE_SELF).ru_maxrss of the process that ran the "
    "migration, read after it: exact lifetime high-water mark; on Linux a child inherits its "
    "parent's value at fork/exec, so for child runs it is at least the parent's peak",
    "vm_hwm_mib": "VmHWM of /proc/self/status (Linux): exact peak RSS of the current program "
    "image, read after the run; a child's own peak, not its parent's",
    "to_sql": "pandas DataFrame.to_sql(method='multi', chunksize=TO_SQL_CHUNK_ROWS) of the same "
    "final rows into empty copies of the core tables: the naive peer that validates nothing",
    "plain_copy": "COPY (etl.load.bulk.bulk_insert) of the validated Parquet rows into empty "
    "copies of the core tables (LIKE ... INCLUDING ALL): the floor a loader can reach",
    "baseline_rss_mib": "RSS when the run's first stage started (imports and earlier runs)",
    "generation": "generate_estate timed inside a child interpreter; its peak RSS is that child's",
    "dag_parse": "fresh interpreter per sample: import_airflow_seconds = `import airflow`; "
    "parse_seconds = `from airflow.dag_processing.dagbag import DagBag; "
    "DagBag(dag_folder=dags)` after airflow was imported (total minus import); "
    "warm_reparse_seconds = a second DagBag fill in the same interpreter. The first "
    "interpreter (cold caches, fresh AIRFLOW_HOME) is reported apart, not in the median",
    "export": "etl.export.bulk.export_fhir(wave=None) of the SQLite run's core in this process: "
    "rows_per_second = rows of the exported entities' core tables / seconds, "
    "resources_per_second = NDJSON resources written / seconds; peak_rss_mib sampled as for a "
    "stage; the files are removed after",
}


# --------------------------------------------------------------------------- pure helpers


def rows_per_second(rows: int, seconds: float) -> float | None:
    """Rows divided by seconds; None when the time is not positive (nothing to divide by)."""
    if seconds is None or seconds <= 0:
        return None
    return rows / seconds


def share(part: float, whole: float) -> float | None:
    """``part / whole`` as a fraction; None when the whole is not positive."""
    if whole is None or whole <= 0:
        return None
    return part / whole


def to_mib(size_bytes: int | None) -> float | None:
    return None if size_bytes is None else round(size_bytes / MIB, 1)


def ru_maxrss_bytes(value: int, system: str = sys.platform) -> int:
    """``ru_maxrss`` in bytes: Linux reports KiB, macOS reports bytes."""
    return value if system == "darwin" else value * 1024


def compare_chunk_sizes(chunk_rows: int) -> list[int]:
    """Small, default and large chunk sizes for ``--compare-chunks`` (ascending, distinct)."""
    return sorted({max(1_000, chunk_rows // 10), chunk_rows, chunk_rows * 10})


def bench_schema_name(token: str | None = None) -> str:
    return f"vardflytt_bench_{token or secrets.token_hex(4)}"


def url_with_search_path(base_url: str, schema: str) -> str:
    """A SQLAlchemy URL whose connections use ``schema`` (``?options=-csearch_path%3D<schema>``)."""
    import sqlalchemy as sa

    url = sa.make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def redact_url(url: str) -> str:
    from etl.core.redact import redact

    return redact(url)


def _sum_or_none(values: list[float | None]) -> float | None:
    """The sum, or None when any part was not measured (a partial sum would mislead)."""
    if not values or any(value is None for value in values):
        return None
    return sum(value for value in values if value is not None)


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass
class Measurement:
    """One timed span: wall-clock seconds and (when sampled) RSS at its start and its peak."""

    seconds: float
    peak_rss_bytes: int | None = None
    start_rss_bytes: int | None = None
    cpu_seconds: float | None = None


@dataclass
class SystemTiming:
    """Timings of one system's migration; ``source_rows`` is what extract landed."""

    system: str
    source_rows: int
    stages: dict[str, Measurement]
    end_to_end: Measurement
    reconciled: bool | None = None
    accounting: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    # Worker processes: per stage, the wall-clock seconds of its tasks summed (stages overlap).
    task_seconds: dict[str, float] | None = None


def _task_shares(task_seconds: dict[str, float]) -> dict[str, float | None]:
    """Each stage's task seconds over every stage's: shares that add up to one."""
    whole = sum(task_seconds.values())
    return {name: share(seconds, whole) for name, seconds in task_seconds.items()}


def _stage_figures(
    measurement: Measurement, rows: int, end_to_end_seconds: float
) -> dict[str, Any]:
    growth = None
    if measurement.peak_rss_bytes is not None and measurement.start_rss_bytes is not None:
        growth = measurement.peak_rss_bytes - measurement.start_rss_bytes
    return {
        "seconds": measurement.seconds,
        "cpu_seconds": measurement.cpu_seconds,
        "rows_per_second": rows_per_second(rows, measurement.seconds),
        "share_of_end_to_end": share(measurement.seconds, end_to_end_seconds),
        "peak_rss_mib": to_mib(measurement.peak_rss_bytes),
        "rss_growth_mib": to_mib(growth),
    }


def summarize_system(timing: SystemTiming) -> dict[str, Any]:
    e2e = timing.end_to_end.seconds
    stages = {
        name: _stage_figures(timing.stages[name], timing.source_rows, e2e)
        for name in STAGES
        if name in timing.stages
    }
    if timing.task_seconds is not None:
        _overlapping_shares(stages, timing.task_seconds)
    return {
        "source_rows": timing.source_rows,
        "reconciled": timing.reconciled,
        "accounting": dict(timing.accounting),
        "error": timing.error,
        "stages": stages,
        "end_to_end": _stage_figures(timing.end_to_end, timing.source_rows, e2e),
        "validation_share": stages["validate"]["share_of_end_to_end"]
        if "validate" in stages
        else None,
    }


def _overlapping_shares(stages: dict[str, dict[str, Any]], task_seconds: dict[str, float]) -> None:
    """Stages that overlapped (worker processes): each stage's share of the tasks' time, and
    its wall-clock seconds over the run's kept as ``wall_coverage``."""
    shares = _task_shares({name: task_seconds.get(name, 0.0) for name in stages})
    for name, figures in stages.items():
        figures["task_seconds"] = task_seconds.get(name, 0.0)
        figures["wall_coverage"] = figures["share_of_end_to_end"]
        figures["share_of_end_to_end"] = shares[name]


def summarize_run(
    label: str,
    backend: str,
    chunk_rows: int,
    timings: list[SystemTiming],
    process_peaks: dict[str, int | None],
    *,
    whole: Measurement | None = None,
    stage_walls: dict[str, float] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One migration run (one backend, one chunk size): per system and totals over systems.

    Systems one after another: a total is the sum over systems. Systems side by side (worker
    processes): ``whole`` is the run's own wall clock (CPU summed over its processes),
    ``stage_walls`` each stage's wall clock (the time any of its tasks ran); the shares are
    taken of the systems' task seconds summed (the stages overlap: see DEFINITIONS)."""
    systems = {t.system: summarize_system(t) for t in timings}
    rows = sum(t.source_rows for t in timings)
    e2e = whole.seconds if whole else sum(t.end_to_end.seconds for t in timings)
    stage_totals = {}
    for name in STAGES:
        seconds = sum(t.stages[name].seconds for t in timings if name in t.stages)
        if stage_walls is not None and name in stage_walls:
            seconds = stage_walls[name]
        peaks = [
            t.stages[name].peak_rss_bytes
            for t in timings
            if name in t.stages and t.stages[name].peak_rss_bytes is not None
        ]
        cpu = [t.stages[name].cpu_seconds for t in timings if name in t.stages]
        stage_totals[name] = {
            "seconds": seconds,
            "cpu_seconds": _sum_or_none(cpu),
            "rows_per_second": rows_per_second(rows, seconds),
            "share_of_end_to_end": share(seconds, e2e),
            # peaks holds only measured (not None) values
            "peak_rss_mib": to_mib(max(peaks)) if peaks else None,  # type: ignore[type-var]
        }
    if timings and all(t.task_seconds is not None for t in timings):
        task_totals = {
            name: sum((t.task_seconds or {}).get(name, 0.0) for t in timings) for name in STAGES
        }
        _overlapping_shares(stage_totals, task_totals)
    e2e_peaks = [
        t.end_to_end.peak_rss_bytes for t in timings if t.end_to_end.peak_rss_bytes is not None
    ]
    if whole is not None and whole.peak_rss_bytes is not None:
        e2e_peaks = [whole.peak_rss_bytes]
    e2e_cpu = _sum_or_none([t.end_to_end.cpu_seconds for t in timings])
    if whole is not None and whole.cpu_seconds is not None:
        e2e_cpu = whole.cpu_seconds
    return {
        "label": label,
        "backend": backend,
        "chunk_rows": chunk_rows,
        **extra,
        "systems": systems,
        "total": {
            "source_rows": rows,
            "stages": stage_totals,
            "end_to_end": {
                "seconds": e2e,
                "cpu_seconds": e2e_cpu,
                "rows_per_second": rows_per_second(rows, e2e),
                "peak_rss_mib": to_mib(max(e2e_peaks)) if e2e_peaks else None,
            },
            "validation_share": stage_totals["validate"]["share_of_end_to_end"],
        },
        "baseline_rss_mib": to_mib(
            whole.start_rss_bytes if whole else timings[0].end_to_end.start_rss_bytes
        )
        if timings
        else None,
        "ru_maxrss_mib": to_mib(process_peaks.get("ru_maxrss_bytes")),
        "vm_hwm_mib": to_mib(process_peaks.get("vm_hwm_bytes")),
        "reconciled": all(t.reconciled for t in timings) if timings else None,
    }


def summarize_dag_parse(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """First sample is the cold one (reported apart); medians over the others (or it, if alone)."""
    if not samples:
        return {"samples": []}
    warm = samples[1:] or samples

    def median_of(key: str) -> float | None:
        return median_or_none([s[key] for s in warm if s.get(key) is not None])

    return {
        "dag_folder": samples[0].get("dag_folder"),
        "dag_ids": samples[0].get("dag_ids", []),
        "import_errors": samples[0].get("import_errors", {}),
        "samples_in_median": len(warm),
        "import_airflow_seconds": median_of("import_airflow_seconds"),
        "dagbag_total_seconds": median_of("dagbag_total_seconds"),
        "parse_seconds": median_of("parse_seconds"),
        "warm_reparse_seconds": median_of("warm_reparse_seconds"),
        "file_parse_seconds": median_of("file_parse_seconds"),
        "cold_first": samples[0],
        "samples": samples,
    }


def build_results(
    *,
    parameters: dict[str, Any],
    machine: dict[str, Any],
    git: dict[str, Any],
    generation: dict[str, Any] | None,
    runs: list[dict[str, Any]],
    dag_parse: dict[str, Any] | None,
    started_at: str,
    finished_at: str,
    wall_seconds: float,
    problems: list[str],
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "started_at": started_at,
        "finished_at": finished_at,
        "wall_seconds": wall_seconds,
        "parameters": parameters,
        "machine": machine,
        "git": git,
        "generation": generation,
        "runs": runs,
        "dag_parse": dag_parse,
        "problems": problems,
        "definitions": DEFINITIONS,
    }


def median_position(values: list[float], *, higher: bool) -> int:
    """The index of the median of ``values``; of an even number the higher middle one
    (``higher``) or the lower: the less flattering one for an upper or a lower bound."""
    ranked = sorted(range(len(values)), key=values.__getitem__)
    return ranked[len(ranked) // 2 if higher else (len(ranked) - 1) // 2]


def shown(value: float | None, digits: int = 2) -> str:
    """A figure as the bench's tables show it: thousands separated, "-" when not measured."""
    return "-" if value is None else f"{value:,.{digits}f}"


def percent(value: float | None) -> str:
    """A fraction as the bench's tables show it: "12.3%", "-" when not measured."""
    return "-" if value is None else f"{value * 100:.1f}%"
