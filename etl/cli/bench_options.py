"""The options of ``vardflytt bench`` (etl/cli/reports.py), one type alias each: its type, flags
and help. The defaults stay in the command's signature."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Patients = Annotated[
    int, typer.Option(help="Synthetic people in the benchmark estate (fixed seed).")
]
ChunkRows = Annotated[
    int | None, typer.Option(help="Rows per chunk (default: VARDFLYTT_CHUNK_ROWS).")
]
WorkDir = Annotated[
    Path | None, typer.Option(help="Folder for the run and results.json (default: var/bench).")
]
PostgresUrl = Annotated[
    str | None,
    typer.Option(
        envvar="VARDFLYTT_BENCH_POSTGRES_URL",
        help="Also load into a fresh schema on this PostgreSQL server (dropped after).",
    ),
]
CompareChunks = Annotated[
    bool,
    typer.Option(help="Also migrate with small, default and large chunks, each in a new process."),
]
DagParseRepeats = Annotated[
    int, typer.Option(help="Fresh interpreters timing the parse of dags/ (0: skip).")
]
StartupRepeats = Annotated[
    int,
    typer.Option(help="Fresh interpreters timing each start-up command (0: skip)."),
]
Dashboard = Annotated[
    bool, typer.Option(help="Also time the dashboard's pages over a synthetic history.")
]
Jobs = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Worker processes of the migration runs, as `vardflytt run --jobs` (default "
        "VARDFLYTT_JOBS, else the CPUs); 1: every stage in this process, one after another.",
    ),
]
Repeats = Annotated[
    int,
    typer.Option(
        min=1,
        help="How many times the PostgreSQL migration (each on a fresh schema with its "
        "plain COPY beside it; to_sql in the first only) and each freeze window are "
        "measured; tables and goals show the median one by its ratio, results.md lists "
        "them all. With --peers: rounds of vardflytt in process, in workers and dlt "
        "(the command line in the first only), the median round shown.",
    ),
]
Sqlite = Annotated[
    bool, typer.Option(help="Also migrate into SQLite (before PostgreSQL, same process).")
]
Cutover = Annotated[
    bool,
    typer.Option(help="PostgreSQL: also plain COPY, to_sql and rollback of the same rows."),
]
Identity = Annotated[
    bool,
    typer.Option(
        help="Also time identity resolution over every system of the same estate "
        "(inputs extracted and transformed in a child, resolution in another)."
    ),
]
Peers = Annotated[
    bool,
    typer.Option(
        "--peers",
        help="Instead: ELVIS through vardflytt (in process, command line) and dlt, same "
        "PostgreSQL server (needs --peers-python; `make bench-peers` sets it up).",
    ),
]
PeersPython = Annotated[
    Path,
    typer.Option(help="--peers: the interpreter of the virtualenv dlt is installed in."),
]
ScaleCompare = Annotated[
    list[Path] | None,
    typer.Option(
        "--scale-compare",
        help="Instead: two bench folders (small size first) whose results.json to compare "
        "(memory and time per stage ratios); runs nothing.",
    ),
]
KeepFiles = Annotated[
    bool, typer.Option(help="Keep the run's estate, landing zone and core database.")
]
Cluster = Annotated[
    bool,
    typer.Option(
        "--cluster",
        help="Instead: vardflytt_migrate through the LocalExecutor and the Celery cluster "
        "with 1 and 2 workers, side by side (needs PostgreSQL and Redis).",
    ),
]
Systems = Annotated[
    list[str] | None,
    typer.Option("--system", help="--cluster: a system to migrate (repeat; default four)."),
]
BrokerUrl = Annotated[
    str | None,
    typer.Option(
        help="--cluster: the Redis broker (default VARDFLYTT_BENCH_BROKER_URL, "
        "else VARDFLYTT_TEST_REDIS_URL)."
    ),
]
Project = Annotated[
    bool,
    typer.Option(
        "--project",
        help="Instead: project the initial load and cutover window from the last results "
        "(runs nothing new).",
    ),
]
People = Annotated[int, typer.Option(help="--project: people in the region.")]
Workers = Annotated[
    list[int] | None, typer.Option("--workers", help="--project: a worker count (repeat).")
]
DeltaFraction = Annotated[
    float, typer.Option(help="--project: share of rows new or changed in the final delta.")
]
CoreRowsPerSecond = Annotated[
    float | None,
    typer.Option(
        help="--project: core rows/s the core database takes (default: the PostgreSQL "
        "bench's pipeline load rate in results.json, if any)."
    ),
]
VerifyParallelism = Annotated[int, typer.Option(help="--project: systems verified at once.")]
FreezeMinutes = Annotated[
    float, typer.Option(help="--project: the owners' time to make legacy read-only.")
]
CommitMinutes = Annotated[
    float, typer.Option(help="--project: the time to switch over after commit.")
]
SerialFraction = Annotated[
    float | None,
    typer.Option(
        help="--project: Amdahl's serial fraction (default: fitted to the measured 1 -> 2 "
        "worker speedup)."
    ),
]
