"""The dlt peer of ``make bench-peers``: ELVIS's tables, raw, into a fresh PostgreSQL schema.

Runs in its own virtualenv (var/bench/peers-venv, made by ``make bench-peers``) so that dlt and
its dependencies stay out of the project's lock. It must not import ``etl``: the bench passes
the source URL, the tables, the target and the schema on the command line, and reads the JSON
this writes (rows per table, wall and CPU seconds per step, the exact peak RSS of this process).

Configured for speed as issue 15 describes: ``sql_database`` with the pyarrow backend, chunks
of ``--chunk-rows``, the PostgreSQL destination with CSV files (loaded with COPY).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _vm_hwm_bytes() -> int | None:
    """This process's exact peak RSS (Linux ``VmHWM``), None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", required=True, help="SQLAlchemy URL of ELVIS (sqlite:///...)")
    parser.add_argument("--table", action="append", required=True, help="a table (repeat)")
    parser.add_argument("--destination", required=True, help="postgresql://user@host:port/db")
    parser.add_argument("--dataset", required=True, help="the fresh schema dlt loads into")
    parser.add_argument("--chunk-rows", type=int, required=True)
    parser.add_argument("--pipelines-dir", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    arguments = parser.parse_args(argv)

    started, cpu_started = time.perf_counter(), time.process_time()
    import dlt
    from dlt.sources.sql_database import sql_database

    imported, cpu_imported = time.perf_counter(), time.process_time()
    source = sql_database(
        credentials=arguments.source,
        table_names=arguments.table,
        backend="pyarrow",
        chunk_size=arguments.chunk_rows,
    )
    pipeline = dlt.pipeline(
        pipeline_name="vardflytt_bench_elvis",
        destination=dlt.destinations.postgres(credentials=arguments.destination),
        dataset_name=arguments.dataset,
        pipelines_dir=str(arguments.pipelines_dir),
    )
    pipeline.run(source, loader_file_format="csv")
    finished, cpu_finished = time.perf_counter(), time.process_time()

    trace = pipeline.last_trace
    row_counts = {
        table: int(rows)
        for table, rows in trace.last_normalize_info.row_counts.items()
        if not table.startswith("_dlt")
    }
    steps = {
        step.step: (step.finished_at - step.started_at).total_seconds()
        for step in trace.steps
        if step.finished_at is not None
    }
    arguments.result.write_text(
        json.dumps(
            {
                "dlt_version": dlt.__version__,
                "rows": sum(row_counts.values()),
                "row_counts": row_counts,
                "import_seconds": imported - started,
                "import_cpu_seconds": cpu_imported - cpu_started,
                "run_seconds": finished - imported,
                "run_cpu_seconds": cpu_finished - cpu_imported,
                "step_seconds": steps,
                "vm_hwm_bytes": _vm_hwm_bytes(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
