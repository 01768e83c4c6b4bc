"""``vardflytt bench``, ``docs``, ``profile``, ``coverage`` and ``lineage``: reports for
engineers and data stewards (counts, codes, column names and masked shapes only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from etl.cli.common import checked_catalog, console
from etl.core import residency, storage
from etl.settings import get_settings


def bench(
    patients: Annotated[
        int, typer.Option(help="Synthetic people in the benchmark estate (fixed seed).")
    ] = 20000,
    chunk_rows: Annotated[
        int | None, typer.Option(help="Rows per chunk (default: VARDFLYTT_CHUNK_ROWS).")
    ] = None,
    work_dir: Annotated[
        Path | None, typer.Option(help="Folder for the run and results.json (default: var/bench).")
    ] = None,
    postgres_url: Annotated[
        str | None,
        typer.Option(
            envvar="VARDFLYTT_BENCH_POSTGRES_URL",
            help="Also load into a fresh schema on this PostgreSQL server (dropped after).",
        ),
    ] = None,
    compare_chunks: Annotated[
        bool,
        typer.Option(
            help="Also migrate with small, default and large chunks, each in a new process."
        ),
    ] = False,
    dag_parse_repeats: Annotated[
        int, typer.Option(help="Fresh interpreters timing the parse of dags/ (0: skip).")
    ] = 3,
    startup_repeats: Annotated[
        int,
        typer.Option(help="Fresh interpreters timing each start-up command (0: skip)."),
    ] = 3,
    dashboard: Annotated[
        bool, typer.Option(help="Also time the dashboard's pages over a synthetic history.")
    ] = True,
    jobs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Worker processes of the migration runs, as `vardflytt run --jobs` (default "
            "VARDFLYTT_JOBS, else the CPUs); 1: every stage in this process, one after another.",
        ),
    ] = None,
    repeats: Annotated[
        int,
        typer.Option(
            min=1,
            help="How many times the PostgreSQL migration (each on a fresh schema with its "
            "plain COPY beside it; to_sql in the first only) and each freeze window are "
            "measured; tables and goals show the median one by its ratio, results.md lists "
            "them all. With --peers: rounds of vardflytt in process, in workers and dlt "
            "(the command line in the first only), the median round shown.",
        ),
    ] = 3,
    sqlite: Annotated[
        bool, typer.Option(help="Also migrate into SQLite (before PostgreSQL, same process).")
    ] = True,
    cutover: Annotated[
        bool,
        typer.Option(help="PostgreSQL: also plain COPY, to_sql and rollback of the same rows."),
    ] = True,
    identity: Annotated[
        bool,
        typer.Option(
            help="Also time identity resolution over every system of the same estate "
            "(inputs extracted and transformed in a child, resolution in another)."
        ),
    ] = False,
    peers: Annotated[
        bool,
        typer.Option(
            "--peers",
            help="Instead: ELVIS through vardflytt (in process, command line) and dlt, same "
            "PostgreSQL server (needs --peers-python; `make bench-peers` sets it up).",
        ),
    ] = False,
    peers_python: Annotated[
        Path,
        typer.Option(help="--peers: the interpreter of the virtualenv dlt is installed in."),
    ] = Path("var/bench/peers-venv/bin/python"),
    scale_compare: Annotated[
        list[Path] | None,
        typer.Option(
            "--scale-compare",
            help="Instead: two bench folders (small size first) whose results.json to compare "
            "(memory and time per stage ratios); runs nothing.",
        ),
    ] = None,
    keep_files: Annotated[
        bool, typer.Option(help="Keep the run's estate, landing zone and core database.")
    ] = False,
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster",
            help="Instead: vardflytt_migrate through the LocalExecutor and the Celery cluster "
            "with 1 and 2 workers, side by side (needs PostgreSQL and Redis).",
        ),
    ] = False,
    systems: Annotated[
        list[str] | None,
        typer.Option("--system", help="--cluster: a system to migrate (repeat; default four)."),
    ] = None,
    broker_url: Annotated[
        str | None,
        typer.Option(
            help="--cluster: the Redis broker (default VARDFLYTT_BENCH_BROKER_URL, "
            "else VARDFLYTT_TEST_REDIS_URL)."
        ),
    ] = None,
    project: Annotated[
        bool,
        typer.Option(
            "--project",
            help="Instead: project the initial load and cutover window from the last results "
            "(runs nothing new).",
        ),
    ] = False,
    people: Annotated[int, typer.Option(help="--project: people in the region.")] = 1_700_000,
    workers: Annotated[
        list[int] | None, typer.Option("--workers", help="--project: a worker count (repeat).")
    ] = None,
    delta_fraction: Annotated[
        float, typer.Option(help="--project: share of rows new or changed in the final delta.")
    ] = 0.02,
    core_rows_per_second: Annotated[
        float | None,
        typer.Option(
            help="--project: core rows/s the core database takes (default: the PostgreSQL "
            "bench's pipeline load rate in results.json, if any)."
        ),
    ] = None,
    verify_parallelism: Annotated[
        int, typer.Option(help="--project: systems verified at once.")
    ] = 1,
    freeze_minutes: Annotated[
        float, typer.Option(help="--project: the owners' time to make legacy read-only.")
    ] = 0.0,
    commit_minutes: Annotated[
        float, typer.Option(help="--project: the time to switch over after commit.")
    ] = 0.0,
    serial_fraction: Annotated[
        float | None,
        typer.Option(
            help="--project: Amdahl's serial fraction (default: fitted to the measured 1 -> 2 "
            "worker speedup)."
        ),
    ] = None,
) -> None:
    """Time and size the migration: generation, each stage per system, peak memory, DAG parse.
    With --cluster: LocalExecutor vs Celery with 1 and 2 workers. With --project: the region's
    initial load and cutover window from those figures."""
    from etl.bench import RESULTS_FILE, result_tables, run_benchmark
    from etl.bench.figures import RESULTS_MARKDOWN

    if project:
        from etl.bench.projection import WORKERS, Assumptions

        _bench_project(
            work_dir,
            Assumptions(
                people=people,
                workers=tuple(workers or WORKERS),
                delta_fraction=delta_fraction,
                verify_parallelism=verify_parallelism,
                freeze_seconds=freeze_minutes * 60,
                commit_seconds=commit_minutes * 60,
                serial_fraction=serial_fraction,
            ),
            core_rows_per_second,
        )
        return
    if cluster:
        _bench_cluster(patients, work_dir, postgres_url, broker_url, systems, keep_files)
        return
    if scale_compare:
        _bench_scale(scale_compare, work_dir)
        return
    if peers:
        _bench_peers(patients, peers_python, postgres_url, work_dir, chunk_rows, repeats)
        return
    results = run_benchmark(
        patients,
        chunk_rows=chunk_rows,
        work_dir=work_dir,
        postgres_url=postgres_url,
        compare_chunks=compare_chunks,
        dag_parse_repeats=dag_parse_repeats,
        startup_repeats=startup_repeats,
        with_dashboard=dashboard,
        with_sqlite=sqlite,
        jobs=jobs,
        repeats=repeats,
        with_cutover=cutover,
        with_identity=identity,
        keep_files=keep_files,
        log=lambda message: console.log(message, highlight=False),
    )
    for table in result_tables(results):
        console.print(table)
    machine, git = results["machine"], results["git"]
    local_changes = " (with local changes)" if git["dirty"] else ""
    console.print(
        f"{machine['cpu_count']} CPUs, Python {machine['python']}, "
        f"{machine['platform']}; commit {git['commit'] or 'unknown'}{local_changes}; "
        f"bench wall time {results['wall_seconds']:.1f} s"
    )
    console.print(
        f"results: {Path(results['parameters']['work_dir']) / RESULTS_FILE} "
        f"(table: {RESULTS_MARKDOWN})"
    )
    for problem in results["problems"]:
        console.print(f"[red]{problem}[/red]")
    if results["problems"]:
        raise typer.Exit(1)


def _bench_peers(
    patients: int,
    peers_python: Path,
    postgres_url: str | None,
    work_dir: Path | None,
    chunk_rows: int | None,
    repeats: int = 1,
) -> None:
    """ELVIS through vardflytt and dlt on the same server; peers.json and peers.md."""
    from etl.bench.goals import NOT_MEASURED
    from etl.bench.peers import PEERS_FILE, run_peers
    from etl.bench.report import goals_table

    if not postgres_url:
        console.print("[red]--peers needs PostgreSQL[/red]: set VARDFLYTT_BENCH_POSTGRES_URL")
        raise typer.Exit(2)
    settings = get_settings()
    folder = Path(work_dir or settings.home / "bench")
    results = run_peers(
        patients,
        peers_python,
        postgres_url,
        folder,
        chunk_rows or settings.chunk_rows,
        log=lambda message: console.log(message, highlight=False),
        repeats=repeats,
    )
    console.print((folder / "peers.md").read_text("utf-8"))
    console.print(goals_table(results["goals"], "issue 15 goals against dlt"))
    console.print(f"results: {folder / PEERS_FILE}")
    if any(goal["status"] == NOT_MEASURED for goal in results["goals"]):
        raise typer.Exit(1)


def _bench_scale(folders: list[Path], work_dir: Path | None) -> None:
    """The scale ratios of two finished bench runs; scale.json and scale.md."""
    import json

    from etl.batch import write_json
    from etl.bench import RESULTS_FILE
    from etl.bench.goals import scale_report
    from etl.bench.markdown import scale_markdown
    from etl.bench.report import goals_table

    if len(folders) != 2:
        console.print("[red]--scale-compare takes two folders[/red] (the small size first)")
        raise typer.Exit(2)
    small, large = (json.loads((f / RESULTS_FILE).read_text("utf-8")) for f in folders)
    scale = scale_report(small, large)
    folder = Path(work_dir or get_settings().home / "bench")
    write_json(folder / "scale.json", scale)
    (folder / "scale.md").write_text(scale_markdown(scale), "utf-8")
    console.print(scale_markdown(scale))
    console.print(goals_table(scale["goals"], "issue 15 goals: scale"))
    console.print(f"results: {folder / 'scale.json'}")


def _bench_cluster(
    patients: int,
    work_dir: Path | None,
    postgres_url: str | None,
    broker_url: str | None,
    systems: list[str] | None,
    keep_files: bool,
) -> None:
    from etl.bench.cluster_report import cluster_markdown, cluster_table
    from etl.bench.executors import (
        CLUSTER_MARKDOWN_FILE,
        CLUSTER_RESULTS_FILE,
        CLUSTER_SYSTEMS,
        ClusterBenchError,
        broker_from_environment,
        run_cluster_benchmark,
    )

    try:
        results = run_cluster_benchmark(
            patients,
            postgres_url=postgres_url,
            broker_url=broker_url or broker_from_environment(),
            systems=tuple(systems or CLUSTER_SYSTEMS),
            work_dir=work_dir,
            keep_files=keep_files,
            log=lambda message: console.log(message, highlight=False),
        )
    except ClusterBenchError as error:
        console.print(f"[red]cluster bench not run[/red]: {error}")
        raise typer.Exit(2) from None
    console.print(cluster_table(results))
    folder = Path(results["parameters"]["work_dir"])
    (folder / CLUSTER_MARKDOWN_FILE).write_text(cluster_markdown(results), "utf-8")
    console.print(f"results: {folder / CLUSTER_RESULTS_FILE}, {folder / CLUSTER_MARKDOWN_FILE}")
    for problem in results["problems"]:
        console.print(f"[red]{problem}[/red]")
    if results["problems"]:
        raise typer.Exit(1)


def _bench_project(work_dir: Path | None, assumptions, core_rows_per_second: float | None) -> None:
    """The projection from the results files in the bench folder; nothing is run."""
    import dataclasses
    import json

    from etl.batch import write_json
    from etl.bench import RESULTS_FILE
    from etl.bench.cluster_report import projection_markdown, projection_table
    from etl.bench.executors import CLUSTER_RESULTS_FILE
    from etl.bench.projection import inputs_from_results, project

    folder = Path(work_dir or get_settings().home / "bench")
    cluster_file, bench_file = folder / CLUSTER_RESULTS_FILE, folder / RESULTS_FILE
    if not cluster_file.exists():
        console.print(f"[red]no {cluster_file}[/red]: run `vardflytt bench --cluster` first")
        raise typer.Exit(2)
    bench_results = json.loads(bench_file.read_text("utf-8")) if bench_file.exists() else None
    try:
        measured = inputs_from_results(json.loads(cluster_file.read_text("utf-8")), bench_results)
        if core_rows_per_second is not None:
            measured = dataclasses.replace(measured, core_rows_per_second=core_rows_per_second)
        projection = project(measured, assumptions).to_dict()
    except ValueError as error:
        console.print(f"[red]no projection[/red]: {error}")
        raise typer.Exit(2) from None
    console.print(projection_table(projection))
    for line in projection["assumptions"]:
        console.print(f"- {line}")
    write_json(folder / "projection.json", {"measured": dataclasses.asdict(measured), **projection})
    (folder / "projection.md").write_text(projection_markdown(projection), "utf-8")
    console.print(f"projection: {folder / 'projection.json'}, {folder / 'projection.md'}")


# --- reports for data stewards (counts, codes and masked shapes only) ---------------------------


def docs(
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: var/docs under VARDFLYTT_HOME).")
    ] = None,
) -> None:
    """Generate the mapping documentation (HTML and Markdown) from mappings/ alone."""
    from etl.report.docs import write_docs

    settings = get_settings()
    catalog = checked_catalog(settings)
    target = out or storage.shared_dir(settings) / "docs"
    written = write_docs(catalog, target)
    console.print(f"mapping documentation: {len(written)} files in {target} (open index.html)")


def profile(
    system: Annotated[str, typer.Argument(help="Source system, as named under mappings/.")],
    batch: Annotated[str, typer.Option(help="Batch id whose landed Parquet to profile.")],
) -> None:
    """Profile a system's landed data: types, blanks, distinct counts, shapes (masked)."""
    from etl import pipeline
    from etl.catalog import MappingError
    from etl.report.profile import profile_system, profile_tables, write_profile

    settings = get_settings()
    try:
        # The batch's landed files from the storage root (an s3:// root: a copy, then removed).
        with pipeline.on_storage(settings, system, batch) as landed:
            result = profile_system(landed, pipeline.catalog(settings), system, batch)
    except (FileNotFoundError, MappingError) as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    for table in profile_tables(result):
        console.print(table)
    json_path, html_path = write_profile(settings, result)
    console.print(f"profile: {json_path} and {html_path}")


def coverage(
    batch: Annotated[
        list[str] | None,
        typer.Option(help="Batch id (repeatable; default: each system's latest loaded batch)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="JSON file (default: var/reports/coverage/coverage.json)."),
    ] = None,
) -> None:
    """Share of source columns mapped, and of rows hitting unmapped codes, per system."""
    from etl import pipeline
    from etl.report.coverage import coverage_path, coverage_report, coverage_tables, write_coverage

    settings = get_settings()
    report = coverage_report(settings, pipeline.catalog(settings), batch or None)
    for table in coverage_tables(report):
        console.print(table)
    for note in report.notes:
        console.print(f"[yellow]{note}[/yellow]")
    if any(b.unmapped_code_rows for s in report.systems for b in s.batches):
        console.print(
            "unmapped codes one by one, with the crosswalk each misses: `vardflytt codes "
            "unmapped [--system S] [--template FILE]` (dashboard: Reports, Unmapped source codes)"
        )
    target = out or coverage_path(settings)
    residency.check_storage(target, "the coverage report (--out)", settings)
    path = write_coverage(report, target)
    console.print(f"coverage: {path}")


def lineage(
    system: Annotated[
        list[str] | None, typer.Option("--system", help="Source system (repeatable; default all).")
    ] = None,
    column: Annotated[
        str | None,
        typer.Option(
            help="Core column, as table.column (or column alone), e.g. diagnosis.icd10_code."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Column lineage from mappings/: each core column, its source columns and the transform."""
    import json

    from rich.table import Table

    from etl.report.lineage import lineage_rows

    settings = get_settings()
    rows = lineage_rows(settings.mappings_dir, system, column)
    if not rows:
        console.print("no core column matches")
        raise typer.Exit(1)
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False))
        return
    table = Table("core column", "system", "source", "kind", "transform")
    for row in rows:
        table.add_row(*row.values())
    console.print(table)
