"""``vardflytt dq``: data-quality results, thresholds and reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from etl.cli.common import console
from etl.core import residency
from etl.settings import get_settings

dq_app = typer.Typer(
    help="Data-quality results, thresholds and reports (counts only, no patient data).",
    no_args_is_help=True,
)


def _print_check_results(rows: list[dict], title: str, only_failing: bool) -> None:
    table = Table(title=title)
    columns = ("batch", "system", "entity", "check", "severity", "failed", "of rows", "rate", "max")
    for column in columns:
        table.add_column(column, justify="right" if column in {"failed", "of rows"} else "left")
    table.add_column("gate")
    for row in rows:
        if only_failing and not row["rows_failed"]:
            continue
        evaluated = row["rows_evaluated"]
        rate = row["rows_failed"] / evaluated if evaluated else 0.0
        table.add_row(
            row["batch_id"],
            row["source_system"],
            row["entity"],
            row["check_name"],
            row["severity"],
            str(row["rows_failed"]),
            str(evaluated),
            f"{rate:.2%}",
            f"{row['max_failure_rate']:.2%}",
            "[red]BREACH[/red]" if row["is_breached"] else "ok",
        )
    console.print(table)


@dq_app.command("results")
def dq_results(
    batch: Annotated[str | None, typer.Option(help="Only this batch.")] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Only this Airflow run.")] = None,
    all_checks: Annotated[bool, typer.Option("--all", help="Also checks with no failure.")] = False,
    history: Annotated[
        bool, typer.Option("--history", help="Every stored batch, not only each system's latest.")
    ] = False,
) -> None:
    """Stored check results: failures per batch, system, entity and check against their
    thresholds; each system's latest batch unless --batch, --run or --history says otherwise."""
    from etl.validate.gate import latest_per_system, stored_results

    rows = stored_results(get_settings(), batch, run_id)
    if not rows:
        console.print("no stored data-quality results match; run a migration first")
        raise typer.Exit(1)
    latest = not (batch or run_id or history)
    if latest:
        rows = latest_per_system(rows)
    title = "data-quality results" + (
        " (latest batch per system; --history: all)" if latest else ""
    )
    _print_check_results(rows, title, only_failing=not all_checks)
    breaches = sum(1 for row in rows if row["is_breached"])
    console.print(f"{len(rows)} check results, {breaches} over threshold")


@dq_app.command("reevaluate")
def dq_reevaluate(
    thresholds: Annotated[Path, typer.Option(help="A thresholds file to judge stored results by.")],
    batch: Annotated[str | None, typer.Option(help="Only this batch.")] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Only this Airflow run.")] = None,
) -> None:
    """Judge stored results under another thresholds file, without re-running anything."""
    from etl.validate.checks import ThresholdsError
    from etl.validate.gate import reevaluate

    try:
        results = reevaluate(get_settings(), thresholds, batch, run_id)
    except ThresholdsError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from error
    rows = [r.model_dump() | {"check_name": r.check_name} for r in results]
    _print_check_results(rows, f"re-evaluated under {thresholds}", only_failing=True)
    breaches = [r for r in results if r.is_breached]
    console.print(f"{len(results)} stored results, {len(breaches)} would breach")
    raise typer.Exit(1 if breaches else 0)


@dq_app.command("recall")
def dq_recall(
    estate: Annotated[
        Path | None, typer.Option(help="Estate with defects.csv (default: the configured one).")
    ] = None,
    batch: Annotated[
        list[str] | None, typer.Option(help="A batch to measure (repeatable).")
    ] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="An Airflow run's batches.")] = None,
) -> None:
    """Planted defects caught per class (recall) and false-positive rate; counts only."""
    from etl.report.recall import NoBatchesError, recall_report, recall_table, summary_line

    try:
        report = recall_report(get_settings(), estate, batch or (), run_id)
    except (NoBatchesError, FileNotFoundError) as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    console.print(recall_table(report))
    console.print(summary_line(report))


@dq_app.command("report")
def dq_report(
    run_id: Annotated[
        str | None,
        typer.Option("--run", help="An Airflow run id (default: each system's latest batch)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Report folder (default: var/reports/validation/<run> under home)."),
    ] = None,
    batch: Annotated[
        str | None,
        typer.Option(
            help="One batch: its report again (var/reports/validation/batches/<batch>), as "
            "every run writes it."
        ),
    ] = None,
) -> None:
    """Validation report of a run: steward summary (HTML, Markdown, JSON) and GX Data Docs."""
    from etl.core.pseudonym import PseudonymKeyError
    from etl.report.validation import NoResultsError, write_validation_report

    settings = get_settings()
    if run_id and batch:
        console.print("[red]give --run or --batch, not both[/red]")
        raise typer.Exit(2)
    if out is not None:
        residency.check_storage(out, "the validation report folder (--out)", settings)
    try:
        paths = write_validation_report(settings, run_id, out, batch_id=batch)
    except (NoResultsError, PseudonymKeyError) as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    console.print(f"validation summary: {paths.summary_html} (and summary.md, summary.json)")
    console.print(f"Data Docs: {paths.data_docs_index}")
