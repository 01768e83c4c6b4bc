"""``vardflytt bench``: how fast and how big the migration runs on a synthetic estate of N patients.

What is measured, and how (the same words go into ``results.json`` under ``definitions``):

* **Estate generation** runs in a child interpreter, so the figures of this process describe the
  migration alone. Its seconds are timed around ``generate_estate`` inside the child.
* **Migration** of each system runs in this process, stage by stage as the DAG orders them:
  extract, transform (every entity), validate (every entity), load (with reconcile). Rows per
  second of *every* stage is ``source rows extracted for the system / stage seconds``: one
  numerator for all stages, so the rates compare stage costs directly.
* **Memory**: ``ru_maxrss`` is the process's exact lifetime high-water mark (it never goes down,
  so in a process that runs several migrations it is the maximum over all of them). On Linux a
  child started from this process inherits this process's ``ru_maxrss`` through fork and exec,
  so the exact peak of the current program image, ``VmHWM`` from ``/proc/self/status``, is
  reported next to it. A psutil thread samples RSS every few milliseconds for a per-stage peak
  (a sample can miss a spike shorter than the interval). ``--compare-chunks`` runs the
  migration once per chunk size, each in a fresh child interpreter, so each run's ``VmHWM`` is
  its own.
* **DAG parsing**: in a fresh interpreter, the time to ``import airflow``, then the time to import
  ``DagBag`` and fill it from ``dags/`` (the parse cost), then a second fill in the same
  interpreter (warm, as a long-running DAG processor re-parses every 30 seconds).

Nothing here asserts on timings: figures are reported, never judged.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.batch import write_json
from etl.settings import PROJECT_ROOT, Settings, get_settings

SCHEMA_VERSION = 1
BENCH_SEED = 42
SYSTEMS = ("elvis", "melior")
STAGES = ("extract", "transform", "validate", "load")
SAMPLE_INTERVAL_SECONDS = 0.01
MIB = 1024 * 1024
RESULTS_FILE = "results.json"
POSTGRES_URL_ENV = "VARDFLYTT_BENCH_POSTGRES_URL"

DEFINITIONS = {
    "rows_per_second": "source rows extracted for the system (sum over its datasets) divided by "
    "the stage's wall-clock seconds; the same numerator for every stage",
    "share_of_end_to_end": "stage seconds divided by the system's end-to-end seconds",
    "validation_share": "validate seconds divided by end-to-end seconds (all entities)",
    "end_to_end": "wall-clock seconds from the start of extract to the end of load + reconcile",
    "load": "pipeline.load (one transaction per system) followed by pipeline.reconcile",
    "peak_rss_mib": "highest RSS sampled by a psutil thread during the stage (process-wide, so it "
    "includes what earlier stages left allocated); may miss spikes shorter than "
    f"{SAMPLE_INTERVAL_SECONDS * 1000:g} ms",
    "ru_maxrss_mib": "resource.getrusage(RUSAGE_SELF).ru_maxrss of the process that ran the "
    "migration, read after it: exact lifetime high-water mark; on Linux a child inherits its "
    "parent's value at fork/exec, so for child runs it is at least the parent's peak",
    "vm_hwm_mib": "VmHWM of /proc/self/status (Linux): exact peak RSS of the current program "
    "image, read after the run; a child's own peak, not its parent's",
    "baseline_rss_mib": "RSS when the run's first stage started (imports and earlier runs)",
    "generation": "generate_estate timed inside a child interpreter; its peak RSS is that child's",
    "dag_parse": "fresh interpreter per sample: import_airflow_seconds = `import airflow`; "
    "parse_seconds = `from airflow.dag_processing.dagbag import DagBag; "
    "DagBag(dag_folder=dags)` after airflow was imported (total minus import); "
    "warm_reparse_seconds = a second DagBag fill in the same interpreter. The first "
    "interpreter (cold caches, fresh AIRFLOW_HOME) is reported apart, not in the median",
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


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass
class Measurement:
    """One timed span: wall-clock seconds and (when sampled) RSS at its start and its peak."""

    seconds: float
    peak_rss_bytes: int | None = None
    start_rss_bytes: int | None = None


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


def _stage_figures(
    measurement: Measurement, rows: int, end_to_end_seconds: float
) -> dict[str, Any]:
    growth = None
    if measurement.peak_rss_bytes is not None and measurement.start_rss_bytes is not None:
        growth = measurement.peak_rss_bytes - measurement.start_rss_bytes
    return {
        "seconds": measurement.seconds,
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
    return {
        "source_rows": timing.source_rows,
        "reconciled": timing.reconciled,
        "accounting": dict(timing.accounting),
        "error": timing.error,
        "stages": stages,
        "end_to_end": _stage_figures(timing.end_to_end, timing.source_rows, e2e),
        "validation_share": share(timing.stages["validate"].seconds, e2e)
        if "validate" in timing.stages
        else None,
    }


def summarize_run(
    label: str,
    backend: str,
    chunk_rows: int,
    timings: list[SystemTiming],
    process_peaks: dict[str, int | None],
    **extra: Any,
) -> dict[str, Any]:
    """One migration run (one backend, one chunk size): per system and totals over systems."""
    systems = {t.system: summarize_system(t) for t in timings}
    rows = sum(t.source_rows for t in timings)
    e2e = sum(t.end_to_end.seconds for t in timings)
    stage_totals = {}
    for name in STAGES:
        seconds = sum(t.stages[name].seconds for t in timings if name in t.stages)
        peaks = [
            t.stages[name].peak_rss_bytes
            for t in timings
            if name in t.stages and t.stages[name].peak_rss_bytes is not None
        ]
        stage_totals[name] = {
            "seconds": seconds,
            "rows_per_second": rows_per_second(rows, seconds),
            "share_of_end_to_end": share(seconds, e2e),
            "peak_rss_mib": to_mib(max(peaks)) if peaks else None,
        }
    e2e_peaks = [
        t.end_to_end.peak_rss_bytes for t in timings if t.end_to_end.peak_rss_bytes is not None
    ]
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
                "rows_per_second": rows_per_second(rows, e2e),
                "peak_rss_mib": to_mib(max(e2e_peaks)) if e2e_peaks else None,
            },
            "validation_share": share(stage_totals["validate"]["seconds"], e2e),
        },
        "baseline_rss_mib": to_mib(timings[0].end_to_end.start_rss_bytes) if timings else None,
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


# --------------------------------------------------------------------------- environment facts


def machine_info() -> dict[str, Any]:
    from importlib import metadata

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "memory_total_mib": None,
    }
    try:
        import psutil

        info["memory_total_mib"] = to_mib(psutil.virtual_memory().total)
    except ImportError:
        pass
    versions = {}
    for package in (
        "apache-airflow",
        "great-expectations",
        "pandas",
        "pyarrow",
        "sqlalchemy",
        "psycopg",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    info["packages"] = versions
    return info


def git_info(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The commit the code came from, and whether tracked files differ from it (None if no git)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=20
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


# --------------------------------------------------------------------------- measuring


@dataclass(eq=False)  # identity, not value, equality: two windows may hold the same figures
class RssWindow:
    start: int
    peak: int


class RssSampler:
    """A daemon thread that samples this process's RSS; ``window()`` gives a span's peak."""

    def __init__(self, interval: float = SAMPLE_INTERVAL_SECONDS) -> None:
        self.interval = interval
        self._windows: list[RssWindow] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            import psutil

            self._process = psutil.Process()
        except ImportError:  # psutil is a dependency, but the bench must still run without it
            self._process = None

    @property
    def available(self) -> bool:
        return self._process is not None

    def _rss(self) -> int | None:
        return self._process.memory_info().rss if self._process is not None else None

    def _observe(self) -> None:
        rss = self._rss()
        if rss is None:
            return
        with self._lock:
            for window in self._windows:
                window.peak = max(window.peak, rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._observe()

    def __enter__(self) -> RssSampler:
        if self.available:
            self._thread = threading.Thread(
                target=self._loop, name="bench-rss-sampler", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @contextmanager
    def window(self) -> Iterator[RssWindow]:
        start = self._rss() or 0
        window = RssWindow(start=start, peak=start)
        with self._lock:
            self._windows.append(window)
        try:
            yield window
        finally:
            self._observe()
            with self._lock:
                self._windows.remove(window)


@contextmanager
def measure(sampler: RssSampler | None) -> Iterator[Measurement]:
    """Time the block; fill in the measurement (seconds, RSS start and peak) when it ends."""
    result = Measurement(seconds=0.0)
    if sampler is None or not sampler.available:
        started = time.perf_counter()
        try:
            yield result
        finally:
            result.seconds = time.perf_counter() - started
        return
    with sampler.window() as window:
        started = time.perf_counter()
        try:
            yield result
        finally:
            result.seconds = time.perf_counter() - started
    result.start_rss_bytes, result.peak_rss_bytes = window.start, window.peak


def parse_vm_hwm(status_text: str) -> int | None:
    """Bytes of ``VmHWM`` in a ``/proc/<pid>/status`` text (None if absent)."""
    for line in status_text.splitlines():
        if line.startswith("VmHWM:"):
            number, unit = line.split()[1:3]
            return int(number) * {"kB": 1024, "mB": MIB}.get(unit, 1)
    return None


def process_peaks() -> dict[str, int | None]:
    """This process's exact peaks: ``ru_maxrss`` and (Linux) ``VmHWM``, in bytes."""
    try:
        vm_hwm = parse_vm_hwm(Path("/proc/self/status").read_text())
    except OSError:
        vm_hwm = None
    return {
        "ru_maxrss_bytes": ru_maxrss_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
        "vm_hwm_bytes": vm_hwm,
    }


# --------------------------------------------------------------------------- the migration


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
    """Import the pipeline's modules before anything is timed; returns the seconds it took."""
    started = time.perf_counter()
    import great_expectations  # noqa: F401  (imported lazily by the validate stage)

    from etl import pipeline  # noqa: F401

    return time.perf_counter() - started


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

    timings = []
    for system in systems:
        entities = list(pipeline.catalog(settings).system(system).entities)
        batch_id = pipeline.batch_id_for(system, f"bench_{label}")
        stages: dict[str, Measurement] = {}
        reconciled: bool | None = None
        accounting: dict[str, int] = {}
        error = None
        with measure(sampler) as end_to_end:
            log(f"{label}: {system} extract")
            with measure(sampler) as stages["extract"]:
                extracted = pipeline.extract(system, batch_id, as_of, settings)
            log(f"{label}: {system} transform ({len(entities)} entities)")
            with measure(sampler) as stages["transform"]:
                for entity in entities:
                    pipeline.transform(system, entity, batch_id, settings)
            log(f"{label}: {system} validate ({len(entities)} entities)")
            with measure(sampler) as stages["validate"]:
                for entity in entities:
                    pipeline.validate(system, entity, batch_id, settings)
            log(f"{label}: {system} load + reconcile")
            with measure(sampler) as stages["load"]:
                report = pipeline.load(system, batch_id, run_id=f"bench_{label}", settings=settings)
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


# --------------------------------------------------------------------------- DAG parse time

DAG_PARSE_SCRIPT = r"""
import json, sys, time
started = time.perf_counter()
import airflow
imported = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
parsed = time.perf_counter()
DagBag(dag_folder=sys.argv[1])
reparsed = time.perf_counter()
stats = [{"file": s.file, "seconds": s.duration.total_seconds(), "dags": s.dag_num,
          "tasks": s.task_num} for s in bag.dagbag_stats]
errors = {str(k): str(v) for k, v in bag.import_errors.items()}
with open(sys.argv[2], "w") as handle:
    json.dump({"import_airflow_seconds": imported - started,
               "dagbag_total_seconds": parsed - started,
               "parse_seconds": parsed - imported, "warm_reparse_seconds": reparsed - parsed,
               "file_parse_seconds": sum(s["seconds"] for s in stats), "files": stats,
               "dag_ids": sorted(bag.dag_ids), "import_errors": errors,
               "dag_folder": sys.argv[1]}, handle)
"""


def measure_dag_parse(settings: Settings, repeats: int, scratch: Path) -> dict[str, Any]:
    """``repeats`` warm samples plus one cold first sample, each in a fresh interpreter."""
    from etl.airflow_env import airflow_environment

    environment = airflow_environment(
        settings
    )  # project-local AIRFLOW_HOME inside the bench folder
    dag_folder = str(PROJECT_ROOT / "dags")
    samples = []
    for index in range(repeats + 1):
        result_file = scratch / f"dag_parse_{index}.json"
        log_file = scratch / f"dag_parse_{index}.log"
        with log_file.open("w") as handle:
            done = subprocess.run(
                [sys.executable, "-c", DAG_PARSE_SCRIPT, dag_folder, str(result_file)],
                cwd=PROJECT_ROOT,
                env=environment,
                stdout=handle,
                stderr=subprocess.STDOUT,
                timeout=600,
            )
        if done.returncode != 0:
            raise RuntimeError(
                f"DAG parse sample failed (exit {done.returncode}):\n"
                f"{log_file.read_text(errors='replace')[-4000:]}"
            )
        samples.append(json.loads(result_file.read_text("utf-8")))
    return summarize_dag_parse(samples)


# --------------------------------------------------------------------------- the benchmark


def _in_process_run(
    label: str,
    backend: str,
    settings: Settings,
    as_of: dt.date,
    log: Callable[[str], None],
    **extra: Any,
) -> dict[str, Any]:
    with RssSampler() as sampler:
        timings = migrate(settings, label, as_of, sampler, log=log)
    return summarize_run(
        label,
        backend,
        settings.chunk_rows,
        timings,
        process_peaks(),
        process="this process",
        **extra,
    )


def cutover_figures(
    settings: Settings, label: str, log: Callable[[str], None], systems: tuple[str, ...] = SYSTEMS
) -> dict[str, Any]:
    """PostgreSQL: the pipeline's load (COPY into staging + promotion with history) against a
    plain ``COPY`` of the same final rows into empty copies of the same tables, and the time a
    rollback of each batch takes against its load. Measured in the same run, same server."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from etl import pipeline
    from etl.batch import BatchPaths
    from etl.core.arrow import entity_schema
    from etl.core.database import core_engine
    from etl.cutover.promote import rollback
    from etl.load.bulk import bulk_insert

    engine = core_engine(settings.resolved_core_url)
    rows = load_seconds = copy_seconds = rollback_seconds = 0.0
    per_system = {}
    for system in systems:
        batch_id = pipeline.batch_id_for(system, f"bench_{label}")
        log(f"{label}: {system} rollback (timed)")
        started = time.perf_counter()
        with engine.begin() as connection:
            rollback(connection, batch_id)
        undo = time.perf_counter() - started
        log(f"{label}: {system} load again: stage with COPY + promote (timed)")
        started = time.perf_counter()
        report = pipeline.load(system, batch_id, run_id=f"bench_{label}", settings=settings)
        load = time.perf_counter() - started
        loaded = sum(e["staged"] for e in report["entities"])
        log(f"{label}: {system} plain COPY of the same rows into empty copies of the tables")
        paths = BatchPaths.of(settings, batch_id, system)
        copy = 0.0
        with engine.begin() as connection:
            for entity in [e["entity"] for e in report["entities"]]:
                table = f"bench_copy_{entity}"
                connection.exec_driver_sql(f'DROP TABLE IF EXISTS "{table}"')
                connection.exec_driver_sql(
                    f'CREATE TABLE "{table}" (LIKE "{entity}" INCLUDING ALL)'
                )
                source = pq.ParquetFile(paths.stage_file("validated", entity))
                columns = entity_schema(entity).names
                started = time.perf_counter()
                for batch in source.iter_batches(batch_size=settings.chunk_rows, columns=columns):
                    bulk_insert(connection, table, pa.Table.from_batches([batch]))
                copy += time.perf_counter() - started
                connection.exec_driver_sql(f'DROP TABLE "{table}"')
        per_system[system] = {
            "rows": loaded,
            "load_seconds": round(load, 3),
            "plain_copy_seconds": round(copy, 3),
            "rollback_seconds": round(undo, 3),
        }
        rows += loaded
        load_seconds += load
        copy_seconds += copy
        rollback_seconds += undo
    load_rate = rows_per_second(int(rows), load_seconds)
    copy_rate = rows_per_second(int(rows), copy_seconds)
    return {
        "rows": int(rows),
        "load_rows_per_second": load_rate,
        "plain_copy_rows_per_second": copy_rate,
        "load_to_plain_copy_ratio": round(load_rate / copy_rate, 3)
        if load_rate and copy_rate
        else None,
        "rollback_seconds": round(rollback_seconds, 3),
        "load_seconds": round(load_seconds, 3),
        "rollback_to_load_ratio": round(rollback_seconds / load_seconds, 3)
        if load_seconds
        else None,
        "per_system": per_system,
    }


def _postgres_run(
    base_url: str,
    run_dir: Path,
    estate: Path,
    chunk_rows: int,
    as_of: dt.date,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Load into a fresh schema on the server; the schema is dropped afterwards in any case."""
    import sqlalchemy as sa

    from etl.core.database import core_engine

    schema = bench_schema_name()
    admin = sa.create_engine(base_url)
    try:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = url_with_search_path(base_url, schema)
        log(f"postgresql: schema {schema} created")
        try:
            settings = bench_settings(run_dir / "postgresql", estate, chunk_rows, url)
            result = _in_process_run(
                "postgresql",
                "postgresql",
                settings,
                as_of,
                log,
                core_url=redact_url(url),
                schema=schema,
            )
            result["cutover"] = cutover_figures(settings, "postgresql", log)
            return result
        finally:
            core_engine(url).dispose()  # close pooled connections before dropping their schema
            with admin.begin() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            log(f"postgresql: schema {schema} dropped")
    finally:
        admin.dispose()


def run_benchmark(
    patients: int,
    *,
    chunk_rows: int | None = None,
    work_dir: Path | None = None,
    postgres_url: str | None = None,
    compare_chunks: bool = False,
    dag_parse_repeats: int = 3,
    seed: int = BENCH_SEED,
    keep_files: bool = False,
    log: Callable[[str], None] = lambda _message: None,
) -> dict[str, Any]:
    """Generate, migrate (SQLite, then PostgreSQL if given), measure; write and return results."""
    if patients < 1:
        raise ValueError("patients must be at least 1")
    settings = get_settings()
    chunk_rows = chunk_rows or settings.chunk_rows
    work_dir = Path(work_dir or settings.home / "bench").resolve()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    work_dir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"run_{stamp}_", dir=work_dir))
    estate = run_dir / "estate"
    started_at = dt.datetime.now(dt.UTC).isoformat()
    wall_started = time.perf_counter()
    problems: list[str] = []
    runs: list[dict[str, Any]] = []
    generation = dag_parse = None

    log(f"generating {patients} patients (seed {seed}) into {estate} in a child interpreter")
    with measure(None) as generation_wall:
        generated = _run_child(
            ["generate", "--out", str(estate), "--patients", str(patients), "--seed", str(seed)],
            run_dir / "generate.json",
            run_dir / "generate.log",
        )
    generation = {
        "seconds": generated["seconds"],
        "child_wall_seconds": generation_wall.seconds,
        "row_counts": generated["row_counts"],
        "source_rows": {
            system: sum(counts.values()) for system, counts in generated["row_counts"].items()
        },
        "total_rows": sum(sum(counts.values()) for counts in generated["row_counts"].values()),
        "rows_per_second": rows_per_second(
            sum(sum(c.values()) for c in generated["row_counts"].values()), generated["seconds"]
        ),
        "defect_rows": generated["defect_rows"],
        "peak_rss_mib": to_mib(generated["vm_hwm_bytes"] or generated["ru_maxrss_bytes"]),
        "vm_hwm_mib": to_mib(generated["vm_hwm_bytes"]),
        "ru_maxrss_mib": to_mib(generated["ru_maxrss_bytes"]),
    }
    as_of = dt.date.fromisoformat(generated["extract_date"])

    log("importing the pipeline (timed apart)")
    import_seconds = warm_imports()

    targets: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        (
            "sqlite",
            lambda: _in_process_run(
                "sqlite",
                "sqlite",
                bench_settings(run_dir / "sqlite", estate, chunk_rows),
                as_of,
                log,
                import_seconds=import_seconds,
            ),
        ),
    ]
    if postgres_url:
        targets.append(
            (
                "postgresql",
                lambda: _postgres_run(postgres_url, run_dir, estate, chunk_rows, as_of, log),
            )
        )
    for label, target in targets:
        try:
            run = target()
        except Exception as error:  # report and go on: the other figures are still worth having
            run = {
                "label": label,
                "backend": label,
                "chunk_rows": chunk_rows,
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(),
            }
            problems.append(f"{label} run failed: {type(error).__name__}: {error}")
            log(run["traceback"])
        else:
            if not run["reconciled"]:
                problems.append(f"{label} run: not every source row is accounted for")
        runs.append(run)

    if compare_chunks:
        for size in compare_chunk_sizes(chunk_rows):
            label = f"sqlite_chunk_{size}"
            log(f"{label}: migrating in a fresh child interpreter")
            try:
                run = _run_child(
                    [
                        "migrate",
                        "--home",
                        str(run_dir / label),
                        "--estate",
                        str(estate),
                        "--chunk-rows",
                        str(size),
                        "--label",
                        label,
                        "--as-of",
                        as_of.isoformat(),
                    ],
                    run_dir / f"{label}.json",
                    run_dir / f"{label}.log",
                )
            except Exception as error:
                run = {
                    "label": label,
                    "backend": "sqlite",
                    "chunk_rows": size,
                    "process": "child interpreter",
                    "error": f"{type(error).__name__}: {error}",
                }
                problems.append(f"{label} run failed: {error}")
            else:
                if not run["reconciled"]:
                    problems.append(f"{label} run: not every source row is accounted for")
            runs.append(run)

    if dag_parse_repeats > 0:
        log(f"timing the parse of dags/ ({dag_parse_repeats} + 1 fresh interpreters)")
        try:
            dag_parse = measure_dag_parse(
                bench_settings(run_dir / "dag_parse", estate, chunk_rows),
                dag_parse_repeats,
                run_dir,
            )
            if dag_parse["import_errors"]:
                problems.append(f"DAG import errors: {dag_parse['import_errors']}")
        except Exception as error:
            dag_parse = {"error": f"{type(error).__name__}: {error}"}
            problems.append(f"DAG parse timing failed: {error}")

    log("dashboard: a synthetic history of every planned system in a temporary core; page times")
    try:
        from etl.dashboard.bench import measure_dashboard

        dashboard = measure_dashboard(run_dir / "dashboard")
    except Exception as error:
        dashboard = {"error": f"{type(error).__name__}: {error}"}
        problems.append(f"dashboard page timing failed: {error}")

    results = build_results(
        parameters={
            "patients": patients,
            "seed": seed,
            "chunk_rows": chunk_rows,
            "systems": list(SYSTEMS),
            "as_of_date": as_of.isoformat(),
            "work_dir": str(work_dir),
            "run_dir": str(run_dir),
            "postgres_url": redact_url(postgres_url) if postgres_url else None,
            "compare_chunks": compare_chunks,
            "dag_parse_repeats": dag_parse_repeats,
            "import_seconds": import_seconds,
            "files_kept": keep_files or bool(problems),
            "rss_sampler": "psutil" if RssSampler().available else None,
        },
        machine=machine_info(),
        git=git_info(),
        generation=generation,
        runs=runs,
        dag_parse=dag_parse,
        started_at=started_at,
        finished_at=dt.datetime.now(dt.UTC).isoformat(),
        wall_seconds=time.perf_counter() - wall_started,
        problems=problems,
    )
    results["dashboard"] = dashboard
    write_json(work_dir / RESULTS_FILE, results)
    if keep_files or problems:
        write_json(
            run_dir / RESULTS_FILE, results
        )  # kept for inspection (always, when something failed)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    return results


# --------------------------------------------------------------------------- report


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def result_tables(results: dict[str, Any]) -> list[Any]:
    """Rich tables of the results (estate, stages per run, memory, DAG parsing)."""
    from rich.table import Table

    tables = []
    parameters, generation = results["parameters"], results.get("generation")
    if generation:
        table = Table(title=f"estate: {parameters['patients']} patients, seed {parameters['seed']}")
        for column in ("system", "source rows", "generation s", "rows/s", "peak RSS MiB (child)"):
            table.add_column(column, justify="left" if column == "system" else "right")
        for system, rows in generation["source_rows"].items():
            table.add_row(system, f"{rows:,}", "", "", "")
        table.add_row(
            "[b]all[/b]",
            f"{generation['total_rows']:,}",
            _fmt(generation["seconds"]),
            _fmt(generation["rows_per_second"], 0),
            _fmt(generation["peak_rss_mib"], 1),
        )
        tables.append(table)

    stage_table = Table(
        title="migration per stage (rows/s = source rows extracted / stage seconds)"
    )
    for column in (
        "run",
        "chunk",
        "system",
        "stage",
        "seconds",
        "rows/s",
        "% of e2e",
        "peak RSS MiB",
    ):
        stage_table.add_column(
            column, justify="left" if column in {"run", "system", "stage"} else "right"
        )
    memory_table = Table(
        title="memory in MiB (at start and sampled peak: psutil; VmHWM, ru_maxrss: exact "
        "process peaks; a child's ru_maxrss includes its parent's)"
    )
    for column in (
        "run",
        "process",
        "chunk rows",
        "RSS at start",
        "sampled peak",
        "VmHWM",
        "ru_maxrss",
        "validation share",
        "e2e s",
        "reconciled",
    ):
        memory_table.add_column(column, justify="left" if column in {"run", "process"} else "right")
    for run in results["runs"]:
        if run.get("error"):
            stage_table.add_row(
                run["label"],
                str(run.get("chunk_rows", "")),
                "",
                "[red]failed[/red]",
                "",
                "",
                "",
                "",
            )
            memory_table.add_row(
                run["label"],
                run.get("process", ""),
                str(run.get("chunk_rows", "")),
                "",
                "",
                "",
                "",
                "",
                "",
                "[red]failed[/red]",
            )
            continue
        groups = [*run["systems"].items(), ("[b]total[/b]", run["total"])]
        for system, figures in groups:
            for stage in STAGES:
                stage_figures = figures["stages"][stage]
                stage_table.add_row(
                    run["label"],
                    f"{run['chunk_rows']:,}",
                    system,
                    stage,
                    _fmt(stage_figures["seconds"]),
                    _fmt(stage_figures["rows_per_second"], 0),
                    _pct(stage_figures["share_of_end_to_end"]),
                    _fmt(stage_figures["peak_rss_mib"], 1),
                )
            e2e = figures["end_to_end"]
            stage_table.add_row(
                run["label"],
                f"{run['chunk_rows']:,}",
                system,
                "[b]end to end[/b]",
                _fmt(e2e["seconds"]),
                _fmt(e2e["rows_per_second"], 0),
                "100.0%",
                _fmt(e2e["peak_rss_mib"], 1),
                end_section=system.startswith("[b]"),
            )
        memory_table.add_row(
            run["label"],
            run.get("process", ""),
            f"{run['chunk_rows']:,}",
            _fmt(run["baseline_rss_mib"], 1),
            _fmt(run["total"]["end_to_end"]["peak_rss_mib"], 1),
            _fmt(run["vm_hwm_mib"], 1),
            _fmt(run["ru_maxrss_mib"], 1),
            _pct(run["total"]["validation_share"]),
            _fmt(run["total"]["end_to_end"]["seconds"]),
            "[green]yes[/green]" if run["reconciled"] else "[red]NO[/red]",
        )
    tables += [stage_table, memory_table]

    for run in results["runs"]:
        cutover = run.get("cutover")
        if not cutover:
            continue
        table = Table(
            title=f"{run['label']}: pipeline load (COPY to staging + promotion with history) "
            "vs plain COPY of the same rows, and rollback vs load"
        )
        for column in ("system", "rows", "load s", "plain COPY s", "rollback s"):
            table.add_column(column, justify="left" if column == "system" else "right")
        for system, figures in cutover["per_system"].items():
            table.add_row(
                system,
                f"{figures['rows']:,}",
                _fmt(figures["load_seconds"]),
                _fmt(figures["plain_copy_seconds"]),
                _fmt(figures["rollback_seconds"]),
            )
        table.add_row(
            "[b]total[/b]",
            f"{cutover['rows']:,}",
            f"{_fmt(cutover['load_rows_per_second'], 0)} rows/s",
            f"{_fmt(cutover['plain_copy_rows_per_second'], 0)} rows/s",
            f"{_fmt(cutover['rollback_to_load_ratio'], 3)} x load",
        )
        table.add_row(
            "[b]load / plain COPY throughput[/b]",
            _fmt(cutover["load_to_plain_copy_ratio"], 3),
            "",
            "",
            "",
        )
        tables.append(table)

    if results.get("dashboard") and not results["dashboard"].get("error"):
        from etl.dashboard.bench import dashboard_table

        tables.append(dashboard_table(results["dashboard"]))

    dag_parse = results.get("dag_parse")
    if dag_parse and not dag_parse.get("error"):
        table = Table(
            title=f"parsing dags/ ({len(dag_parse['dag_ids'])} DAGs; median of "
            f"{dag_parse['samples_in_median']} fresh interpreters; Airflow re-parses every 30 s)"
        )
        for column in ("measure", "seconds", "cold first"):
            table.add_column(column, justify="left" if column == "measure" else "right")
        cold = dag_parse["cold_first"]
        for key, text in (
            ("import_airflow_seconds", "import airflow"),
            ("dagbag_total_seconds", "import airflow + DagBag(dags/)"),
            ("parse_seconds", "DagBag(dags/) minus import airflow"),
            ("file_parse_seconds", "DagBag's own per-file parse time (sum)"),
            ("warm_reparse_seconds", "second DagBag in the same interpreter"),
        ):
            table.add_row(text, _fmt(dag_parse[key], 3), _fmt(cold.get(key), 3))
        tables.append(table)
    return tables


# --------------------------------------------------------------------------- child entry point


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m etl.bench", description="bench child processes"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate")
    generate.add_argument("--out", type=Path, required=True)
    generate.add_argument("--patients", type=int, required=True)
    generate.add_argument("--seed", type=int, required=True)
    generate.add_argument("--result", type=Path, required=True)
    child = commands.add_parser("migrate")
    child.add_argument("--home", type=Path, required=True)
    child.add_argument("--estate", type=Path, required=True)
    child.add_argument("--chunk-rows", type=int, required=True)
    child.add_argument("--label", required=True)
    child.add_argument("--as-of", type=dt.date.fromisoformat, required=True)
    child.add_argument("--result", type=Path, required=True)
    arguments = parser.parse_args(argv)
    if arguments.command == "generate":
        result = _child_generate(arguments.out, arguments.patients, arguments.seed)
    else:
        result = _child_migrate(
            arguments.home, arguments.estate, arguments.chunk_rows, arguments.label, arguments.as_of
        )
    write_json(arguments.result, result)


if __name__ == "__main__":
    _main()
