"""``vardflytt bench``: how fast and how big the migration runs on a synthetic estate of N patients.

What is measured, and how (the same words go into ``results.json`` under ``definitions``):

* **Estate generation** runs in a child interpreter, so the figures of this process describe the
  migration alone. Its seconds are timed around ``generate_estate`` inside the child.
* **Migration** of each system runs in this process, stage by stage as the DAG orders them:
  extract, transform (every entity), validate (every entity), gate, stage, promote (with the
  hash verification inside its transaction), verify (the accounting); wall and CPU seconds. Rows per
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

The package, by section: ``figures`` (constants and the pure summaries), ``environment``
(machine, git), ``memory`` (RSS sampling, timed blocks), ``migration`` (a run's stages and the
child interpreters), ``dag_parse``, ``postgres`` (the PostgreSQL run and cutover figures),
``run`` (``run_benchmark``), ``report`` (the Rich tables); ``python -m etl.bench`` runs a child.
``startup`` (start-up cost in fresh interpreters), ``goals`` (issue 15's ratios, PASS/MISS,
pure), ``markdown`` (``results.md``, ``peers.md``, ``scale.md``), ``peers`` (``--peers``: ELVIS
through vardflytt and through dlt in its own virtualenv, ``etl/bench/dlt_elvis.py``),
``identity_scale`` (``--identity``: identity resolution over every system of the same estate,
its inputs and its resolution each in a child interpreter; its growth between two sizes).
``--cluster`` and ``--project`` have their own: ``executors`` (``vardflytt_migrate`` through the
LocalExecutor and the Celery cluster with 1 and 2 workers), ``cluster_report`` (those runs side
by side, the checks, Markdown) and ``projection`` (the region's load and cutover window, pure).
"""

from __future__ import annotations

from etl.bench.dag_parse import (
    DAG_PARSE_SCRIPT,
    measure_dag_parse,
)
from etl.bench.environment import (
    git_info,
    machine_info,
)
from etl.bench.figures import (
    BENCH_SEED,
    DEFINITIONS,
    MIB,
    POSTGRES_URL_ENV,
    RESULTS_FILE,
    SAMPLE_INTERVAL_SECONDS,
    SCHEMA_VERSION,
    STAGES,
    SYSTEMS,
    Measurement,
    SystemTiming,
    bench_schema_name,
    build_results,
    compare_chunk_sizes,
    median_or_none,
    redact_url,
    rows_per_second,
    ru_maxrss_bytes,
    share,
    summarize_dag_parse,
    summarize_run,
    summarize_system,
    to_mib,
    url_with_search_path,
)
from etl.bench.memory import (
    RssSampler,
    RssWindow,
    measure,
    parse_vm_hwm,
    process_peaks,
)
from etl.bench.migration import (
    bench_settings,
    migrate,
    warm_imports,
)
from etl.bench.postgres import (
    cutover_figures,
)
from etl.bench.report import (
    result_tables,
)
from etl.bench.run import (
    run_benchmark,
)

__all__ = [
    "BENCH_SEED",
    "DAG_PARSE_SCRIPT",
    "DEFINITIONS",
    "MIB",
    "POSTGRES_URL_ENV",
    "RESULTS_FILE",
    "SAMPLE_INTERVAL_SECONDS",
    "SCHEMA_VERSION",
    "STAGES",
    "SYSTEMS",
    "Measurement",
    "RssSampler",
    "RssWindow",
    "SystemTiming",
    "bench_schema_name",
    "bench_settings",
    "build_results",
    "compare_chunk_sizes",
    "cutover_figures",
    "git_info",
    "machine_info",
    "measure",
    "measure_dag_parse",
    "median_or_none",
    "migrate",
    "parse_vm_hwm",
    "process_peaks",
    "redact_url",
    "result_tables",
    "rows_per_second",
    "ru_maxrss_bytes",
    "run_benchmark",
    "share",
    "summarize_dag_parse",
    "summarize_run",
    "summarize_system",
    "to_mib",
    "url_with_search_path",
    "warm_imports",
]
