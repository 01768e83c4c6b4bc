"""``vardflytt bench``, ``docs``, ``profile`` and ``coverage``: reports for engineers and data
stewards (counts, codes and masked shapes only)."""

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
    keep_files: Annotated[
        bool, typer.Option(help="Keep the run's estate, landing zone and core database.")
    ] = False,
) -> None:
    """Time and size the migration: generation, each stage per system, peak memory, DAG parse."""
    from etl.bench import RESULTS_FILE, result_tables, run_benchmark

    results = run_benchmark(
        patients,
        chunk_rows=chunk_rows,
        work_dir=work_dir,
        postgres_url=postgres_url,
        compare_chunks=compare_chunks,
        dag_parse_repeats=dag_parse_repeats,
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
    console.print(f"results: {Path(results['parameters']['work_dir']) / RESULTS_FILE}")
    for problem in results["problems"]:
        console.print(f"[red]{problem}[/red]")
    if results["problems"]:
        raise typer.Exit(1)


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
    target = out or coverage_path(settings)
    residency.check_storage(target, "the coverage report (--out)", settings)
    path = write_coverage(report, target)
    console.print(f"coverage: {path}")
