"""``vardflytt bench``, ``docs``, ``profile``, ``coverage`` and ``lineage``: reports for
engineers and data stewards (counts, codes, column names and masked shapes only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from etl.cli import bench_options as option
from etl.cli.common import checked_catalog, console
from etl.core import residency, storage
from etl.settings import get_settings


def bench(
    patients: option.Patients = 20000,
    chunk_rows: option.ChunkRows = None,
    work_dir: option.WorkDir = None,
    postgres_url: option.PostgresUrl = None,
    compare_chunks: option.CompareChunks = False,
    dag_parse_repeats: option.DagParseRepeats = 3,
    startup_repeats: option.StartupRepeats = 3,
    dashboard: option.Dashboard = True,
    jobs: option.Jobs = None,
    repeats: option.Repeats = 3,
    sqlite: option.Sqlite = True,
    cutover: option.Cutover = True,
    identity: option.Identity = False,
    peers: option.Peers = False,
    peers_python: option.PeersPython = Path("var/bench/peers-venv/bin/python"),
    scale_compare: option.ScaleCompare = None,
    keep_files: option.KeepFiles = False,
    cluster: option.Cluster = False,
    systems: option.Systems = None,
    broker_url: option.BrokerUrl = None,
    project: option.Project = False,
    people: option.People = 1_700_000,
    workers: option.Workers = None,
    delta_fraction: option.DeltaFraction = 0.02,
    core_rows_per_second: option.CoreRowsPerSecond = None,
    verify_parallelism: option.VerifyParallelism = 1,
    freeze_minutes: option.FreezeMinutes = 0.0,
    commit_minutes: option.CommitMinutes = 0.0,
    serial_fraction: option.SerialFraction = None,
) -> None:
    """Time and size the migration: generation, each stage per system, peak memory, DAG parse.
    With --cluster: LocalExecutor vs Celery with 1 and 2 workers. With --project: the region's
    initial load and cutover window from those figures."""
    from etl.bench import run_benchmark

    if project:
        _bench_project(
            work_dir,
            core_rows_per_second,
            people=people,
            workers=workers,
            delta_fraction=delta_fraction,
            verify_parallelism=verify_parallelism,
            freeze_minutes=freeze_minutes,
            commit_minutes=commit_minutes,
            serial_fraction=serial_fraction,
        )
    elif cluster:
        _bench_cluster(patients, work_dir, postgres_url, broker_url, systems, keep_files)
    elif scale_compare:
        _bench_scale(scale_compare, work_dir)
    elif peers:
        _bench_peers(patients, peers_python, postgres_url, work_dir, chunk_rows, repeats)
    else:
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
        _print_bench_results(results)


def _print_bench_results(results: dict[str, Any]) -> None:
    """The tables, machine and result files of a bench run, and its problems (exit 1 if any)."""
    from etl.bench import RESULTS_FILE, result_tables
    from etl.bench.figures import RESULTS_MARKDOWN

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


def _bench_project(
    work_dir: Path | None,
    core_rows_per_second: float | None,
    *,
    people: int,
    workers: list[int] | None,
    delta_fraction: float,
    verify_parallelism: int,
    freeze_minutes: float,
    commit_minutes: float,
    serial_fraction: float | None,
) -> None:
    """The projection from the results files in the bench folder; nothing is run."""
    import dataclasses
    import json

    from etl.batch import write_json
    from etl.bench import RESULTS_FILE
    from etl.bench.cluster_report import projection_markdown, projection_table
    from etl.bench.executors import CLUSTER_RESULTS_FILE
    from etl.bench.projection import WORKERS, Assumptions, inputs_from_results, project

    assumptions = Assumptions(
        people=people,
        workers=tuple(workers or WORKERS),
        delta_fraction=delta_fraction,
        verify_parallelism=verify_parallelism,
        freeze_seconds=freeze_minutes * 60,
        commit_seconds=commit_minutes * 60,
        serial_fraction=serial_fraction,
    )
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
