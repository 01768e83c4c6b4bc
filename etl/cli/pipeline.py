"""``vardflytt check-mappings``, ``run`` and ``status``: the pipeline from the command line."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from etl.batch import safe_batch_id
from etl.cli.common import checked_catalog, console, runs_stages_here
from etl.load.cli import print_unpromoted
from etl.settings import Settings, get_settings

if TYPE_CHECKING:
    from etl.load.loader import LoadReport


def check_mappings() -> None:
    """Parse and check every mapping file; errors name the file and the field."""

    settings = get_settings()
    catalog = checked_catalog(settings)
    for name, system in catalog.systems.items():
        console.print(
            f"{name}: {len(system.spec.datasets)} datasets, entities {', '.join(system.entities)}"
        )
    console.print(f"crosswalks: {', '.join(catalog.crosswalks) or 'none'}")
    from etl.cutover.plan import PLAN_FILE, PlanError, load_plan

    if not (settings.mappings_dir / PLAN_FILE).exists():
        return
    try:
        plan = load_plan(settings.mappings_dir)
    except PlanError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    for wave in plan.waves:
        roles = "; ".join(
            f"{role}: {', '.join(dict.fromkeys(accounts.airflow_users + accounts.dashboard_users))}"
            for role, accounts in wave.criteria.approvers.items()
        )
        console.print(f"wave {wave.wave}: {len(wave.systems)} systems, approvers {roles}")


def run(
    systems: Annotated[list[str], typer.Argument(help="Source systems, as named under mappings/.")],
    batch_id: Annotated[
        str | None,
        typer.Option(
            help="Batch id; re-use one to re-run that batch (with several systems: one batch "
            "per system, <system>__<id>)."
        ),
    ] = None,
    as_of_date: Annotated[
        str | None, typer.Option(help="Reference date YYYY-MM-DD (default today).")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Write nothing to the core.")] = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Worker processes: independent systems, and each system's independent "
            "entities, at once (default VARDFLYTT_JOBS, else the CPUs; 1: one step at a time "
            "in this process).",
        ),
    ] = None,
) -> None:
    """Run source systems' migrations without Airflow; several run side by side. A system that
    stops (gate, accounting...) stops alone: the others finish, and the command ends with the
    first stop's message and exit code."""
    from etl import pipeline
    from etl.batch import new_batch_id
    from etl.parallel import default_jobs

    settings = get_settings()
    systems = list(dict.fromkeys(systems))
    catalog = pipeline.catalog(settings)
    entities = {system: catalog.system(system).entities for system in systems}
    as_of = dt.date.fromisoformat(as_of_date) if as_of_date else dt.date.today()
    jobs = jobs or default_jobs(settings)
    runs_stages_here(jobs)
    if len(systems) == 1:
        system = systems[0]
        batch = batch_id or new_batch_id(system, "cli")
        with _progress() as progress:
            task = progress.add_task(f"{system}: starting", total=2 * len(entities[system]) + 3)

            def on_stage(name: str) -> None:
                if name.endswith((" done", " failed")):
                    return
                progress.update(
                    task, description=f"{system}: {name}", advance=0 if name == "extract" else 1
                )

            # An expected stop (gate, accounting, drift...) ends the command with its message
            # and exit code (etl.cli.common.EXPECTED_STOPS).
            report = pipeline.run_system(
                system, batch, as_of, dry_run, settings=settings, on_stage=on_stage, jobs=jobs
            )
            progress.update(task, completed=2 * len(entities[system]) + 3)
        _print_result(settings, system, batch, report)
        return
    _run_several(settings, systems, entities, batch_id, as_of, dry_run, jobs)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _run_several(
    settings: Settings,
    systems: list[str],
    entities: dict[str, dict],
    batch_id: str | None,
    as_of: dt.date,
    dry_run: bool,
    jobs: int,
) -> None:
    from etl import pipeline
    from etl.batch import new_batch_id
    from etl.parallel import raise_first_error, run_systems

    batches = [
        (s, pipeline.batch_id_for(s, batch_id) if batch_id else new_batch_id(s, "cli"))
        for s in systems
    ]
    console.print(f"{len(systems)} systems, {jobs} worker process(es)")
    with _progress() as progress:
        bars = {
            s: progress.add_task(f"{s}: waiting", total=2 * len(entities[s]) + 3) for s in systems
        }

        def on_event(system: str, message: str) -> None:
            if message.endswith(" done"):
                progress.update(bars[system], advance=1)
            else:
                progress.update(bars[system], description=f"{system}: {message}")

        outcomes = run_systems(
            batches, as_of, settings=settings, jobs=jobs, dry_run=dry_run, on_event=on_event
        )
        for system in systems:
            progress.update(bars[system], completed=2 * len(entities[system]) + 3)
    for outcome in outcomes:
        if outcome.report is not None:
            _print_result(settings, outcome.system, outcome.batch_id, outcome.report)
    stopped = [outcome for outcome in outcomes if not outcome.ok]
    for outcome in stopped:
        console.print(
            f"[red]{outcome.system} batch {outcome.batch_id} stopped at {outcome.failed_task}: "
            f"{type(outcome.error).__name__}: {outcome.error}[/red]"
        )
    if stopped:
        console.print(
            f"{len(outcomes) - len(stopped)} of {len(outcomes)} systems loaded; "
            "the first stop follows"
        )
    raise_first_error(outcomes)


def _print_result(settings: Settings, system: str, batch: str, report: LoadReport) -> None:
    print_accounting(
        [row.model_dump() for row in report.accounting], title=f"{system} batch {batch}"
    )
    from etl.report.validation import batch_report_folder

    if settings.is_remote_storage:  # written there by the report step, not on this machine
        key = f"reports/validation/batches/{safe_batch_id(batch)}/summary.html"
        console.print(f"validation report: {key} under {settings.resolved_storage_root}")
        return
    summary = batch_report_folder(settings, batch) / "summary.html"
    if summary.is_file():
        console.print(f"validation report: {summary}")


def print_accounting(rows: list[dict], title: str) -> bool:
    table = Table(title=title)
    for column in (
        "system",
        "entity",
        "dataset",
        "extracted",
        "loaded",
        "quarantined",
        "excluded",
        "merged",
        "other waves",
        "residue",
        "accounted",
    ):
        table.add_column(
            column, justify="right" if column not in {"system", "entity", "dataset"} else "left"
        )
    all_verified = True
    for row in rows:
        all_verified &= bool(row["is_verified"])
        table.add_row(
            row["source_system"],
            row["entity"],
            row["dataset"],
            str(row["extracted"]),
            str(row["loaded"]),
            str(row["quarantined"]),
            str(row["excluded"]),
            str(row["merged"]),
            # A wave's slice of a split system: rows of other waves (conflicts with a cut-over
            # wave's rows among them, in brackets).
            str(row.get("wave_scope", 0) + row.get("conflicted", 0))
            + (f" ({row['conflicted']})" if row.get("conflicted") else ""),
            str(row["residue"]),
            "[green]yes[/green]" if row["is_verified"] else "[red]NO[/red]",
        )
    console.print(table)
    return all_verified


def status(
    batch: Annotated[
        str | None, typer.Option(help="A batch id (default: each system's latest batch).")
    ] = None,
    check: Annotated[
        bool, typer.Option(help="Exit non-zero unless every row is accounted for.")
    ] = False,
) -> None:
    """Record accounting per system and entity, with quarantine counts by reason."""
    from etl.status import accounting_rows, delta_batches, quarantine_reasons, source_counts

    settings = get_settings()
    rows = accounting_rows(settings, batch)
    if not rows:
        console.print("no loaded batches yet: run `make demo` or `vardflytt run <system>`")
        raise typer.Exit(1 if check else 0)
    is_reconciled = print_accounting(
        rows,
        title="record accounting (extracted = loaded + quarantined + excluded + merged "
        "+ other waves)",
    )
    sources = source_counts(settings, {(row["batch_id"], row["source_system"]) for row in rows})
    if sources:
        table = Table(title="source records: independent physical count = records read")
        for column in sources[0]:
            table.add_column(
                column.replace("_", " "),
                justify="left" if column in {"system", "dataset", "source"} else "right",
            )
        for source in sources:
            table.add_row(*(str(value) for value in source.values()))
        console.print(table)
    batch_ids = sorted({row["batch_id"] for row in rows})
    reasons = quarantine_reasons(settings, batch_ids)
    deltas = delta_batches(settings, batch_ids)
    if reasons:
        table = Table(title="quarantined rows by reason (review with the data stewards)")
        for column in ("system", "entity", "reason", "rows"):
            table.add_column(column, justify="right" if column == "rows" else "left")
        for reason in reasons:
            table.add_row(
                reason["source_system"], reason["entity"], reason["reason"], str(reason["rows"])
            )
        console.print(table)
    if deltas:
        # Not the open problems: a delta quarantines only the rows it processed again.
        console.print(
            f"[yellow]delta batch(es) {', '.join(deltas)}: quarantine counts of the rows each "
            "processed only; problems of earlier batches whose rows it did not process are still "
            "open (carried over in its validation report, `vardflytt dq report --batch`)[/yellow]"
        )
    print_unpromoted(settings)
    console.print(
        "[green]every source row is accounted for[/green]"
        if is_reconciled
        else "[red]NOT every source row is accounted for[/red]"
    )
    if check and not is_reconciled:
        raise typer.Exit(1)
