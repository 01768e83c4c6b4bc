"""``vardflytt steward``: review quarantined and flagged rows, decide, and re-run to check.

Rows are named by handle (their quarantine_id or flag_id; a unique prefix of 8 or more characters
will do) and keyed pseudonym, never by source key, identity number, name or value. Heavy imports
stay inside the commands so ``vardflytt --help`` stays quick.
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Annotated

import typer
from rich.table import Table

from etl.core.decisions import ReviewStatus
from etl.core.redact import RedactingConsole
from etl.settings import get_settings

steward_app = typer.Typer(
    help="The data steward's queue: quarantined and flagged rows, decisions, re-runs "
    "(pseudonyms only, never identity numbers).",
    no_args_is_help=True,
)
# Wide enough for the queue table when output goes to a file or CI log.
console = RedactingConsole(width=None if sys.stdout.isatty() else 220)


Note = Annotated[
    str | None, typer.Option("--justification", help="Why (recorded with the decision).")
]
Run = Annotated[
    bool,
    typer.Option(
        "--run", help="Re-run the rows' systems now, in a new batch, and say what became of each."
    ),
]
AsOfDate = Annotated[
    str | None,
    typer.Option(help="Reference date YYYY-MM-DD for --run (default: the rows' batch's)."),
]
Handles = Annotated[
    list[str] | None,
    typer.Argument(help="Row handles from `vardflytt steward list` (8+ leading characters)."),
]


def _when(moment: dt.datetime | None) -> str:
    if moment is None:
        return ""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _fail(error: Exception) -> typer.Exit:
    console.print(f"[red]{error}[/red]", highlight=False)
    return typer.Exit(1)


@steward_app.command("list")
def steward_list(
    system: Annotated[str | None, typer.Option(help="Only this source system.")] = None,
    entity: Annotated[str | None, typer.Option(help="Only this core entity.")] = None,
    check: Annotated[
        str | None, typer.Option(help="Only this check id (e.g. source.unparseable_date).")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Only this reason.")] = None,
    batch: Annotated[
        str | None, typer.Option(help="Only this batch (default: each system's latest).")
    ] = None,
    status: Annotated[
        ReviewStatus, typer.Option(help="open (no decision yet), a current decision, or all.")
    ] = ReviewStatus.ALL,
    flagged: Annotated[
        bool, typer.Option("--flagged", help="Loaded-and-flagged rows instead of quarantined.")
    ] = False,
    limit: Annotated[int, typer.Option(help="At most this many rows (0: all).")] = 50,
) -> None:
    """Quarantined (or loaded-and-flagged) rows with their current decision."""
    from etl.core.pseudonym import PseudonymKeyError
    from etl.steward.queue import QueueFilter, list_queue

    query_filter = QueueFilter(
        system=system,
        entity=entity,
        check=check,
        reason=reason,
        batch_id=batch,
        status=status,
        is_flagged=flagged,
        limit=limit or None,
    )
    try:
        page = list_queue(get_settings(), query_filter)
    except PseudonymKeyError as error:
        raise _fail(error) from error
    what = "loaded-and-flagged" if flagged else "quarantined"
    scope = batch or ("latest per system" if flagged else "every problem still open per system")
    for note in page.notes:
        console.print(f"[yellow]{note}[/yellow]", highlight=False)
    if not page.rows:
        console.print(f"no {what} rows match (batch: {scope})")
        return
    table = Table(title=f"{what} rows: {len(page.rows)} of {page.total} (batch: {scope})")
    table.add_column("handle", no_wrap=True)
    for column in ("system", "dataset", "entity"):
        table.add_column(column)
    table.add_column("row", justify="right")
    table.add_column("pseudonym", no_wrap=True)
    for column in ("check", "reason", "field", "decision", "by", "at", "quarantined in"):
        table.add_column(column)
    for row in page.rows:
        table.add_row(
            row.handle,
            row.system,
            row.dataset,
            row.entity,
            str(row.row_number),
            row.pseudonym or "(no source key)",
            row.check,
            row.reason,
            row.field or "",
            row.decision or "[yellow]open[/yellow]",
            row.decided_by or "",
            _when(row.decided_at),
            row.batch_id,
        )
    console.print(table, highlight=False)
    if page.total > len(page.rows):
        console.print(f"{page.total - len(page.rows)} more: narrow the filter or raise --limit")


@steward_app.command("summary")
def steward_summary(
    system: Annotated[str | None, typer.Option(help="Only this source system.")] = None,
    batch: Annotated[
        str | None, typer.Option(help="Only this batch (default: each system's latest).")
    ] = None,
) -> None:
    """Rows per system and check: quarantined by decision, and loaded-and-flagged."""
    from etl.steward.queue import summary

    rows = summary(get_settings(), batch, system)
    if not rows:
        console.print("nothing quarantined or flagged (batch: latest per system)")
        return
    table = Table(title=f"steward queue by check (batch: {batch or 'latest per system'})")
    table.add_column("system")
    table.add_column("check")
    columns = ("quarantined", "open", "fixed_at_source", "waived", "reinject", "flagged")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row.system, row.check, *(str(getattr(row, column)) for column in columns))
    console.print(table, highlight=False)


def _print_decisions(outcomes) -> None:
    table = Table(title=f"{outcomes[0].decision} decisions")
    table.add_column("handle", no_wrap=True)
    for column in ("system", "entity", "pseudonym", "check", "by", "at", "recorded"):
        table.add_column(column, no_wrap=column == "pseudonym")
    for outcome in outcomes:
        table.add_row(
            outcome.handle,
            outcome.system,
            outcome.entity,
            outcome.pseudonym or "",
            outcome.check,
            outcome.decided_by,
            _when(outcome.decided_at),
            "yes" if outcome.is_recorded else "already current",
        )
    console.print(table, highlight=False)
    for note in sorted({o.note for o in outcomes if o.note}):
        console.print(f"[yellow]note: {note}[/yellow]", highlight=False)


def _decide(action, handles: list[str], run: bool, as_of_date: str | None, **arguments) -> None:
    from etl.core.pseudonym import PseudonymKeyError
    from etl.steward.actions import StewardError

    try:
        outcomes = action(get_settings(), handles, **arguments)
    except (StewardError, PseudonymKeyError) as error:
        raise _fail(error) from error
    _print_decisions(outcomes)
    if run:
        _rerun([o.handle for o in outcomes], outcomes[0].decision, as_of_date)
    else:
        console.print("the next run of their systems applies this (or add --run)")


def _rerun(handles: list[str], decision: str, as_of_date: str | None) -> None:
    from etl.steward.actions import StewardError, rerun

    label = f"steward_{decision}__{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}"
    as_of = dt.date.fromisoformat(as_of_date) if as_of_date else None
    try:
        with console.status("re-running") as spinner:
            report = rerun(
                get_settings(),
                handles,
                label,
                as_of,
                on_stage=lambda system, name: spinner.update(f"re-running {system}: {name}"),
            )
    except StewardError as error:
        raise _fail(error) from error
    table = Table(title="after the re-run")
    table.add_column("handle", no_wrap=True)
    for column in ("system", "entity", "pseudonym", "check", "decision", "outcome", "detail"):
        table.add_column(column, no_wrap=column == "pseudonym")
    colours = {"resolved": "green", "waived": "cyan", "flagged": "cyan", "persisting": "red"}
    for row in report.outcomes:
        colour = colours.get(row.outcome, "yellow")
        table.add_row(
            row.handle,
            row.system,
            row.entity,
            row.pseudonym or "",
            row.check,
            row.decision or "open",
            f"[{colour}]{row.outcome}[/{colour}]",
            row.detail or "",
        )
    console.print(table, highlight=False)
    for system, batch_id in report.batches.items():
        state = "reconciled" if report.is_reconciled.get(system) else "[red]NOT reconciled[/red]"
        console.print(f"{system}: batch {batch_id}, {state}", highlight=False)
    for problem in report.problems:
        console.print(f"[red]{problem}[/red]", highlight=False)
    if report.problems:
        raise typer.Exit(1)


@steward_app.command("fix")
def steward_fix(
    handles: Handles = None,
    system: Annotated[str | None, typer.Option(help="With --all: the source system.")] = None,
    check: Annotated[str | None, typer.Option(help="With --all: the check id.")] = None,
    all_rows: Annotated[
        bool,
        typer.Option("--all", help="Every quarantined row of --system failing --check."),
    ] = False,
    batch: Annotated[
        str | None, typer.Option(help="With --all: this batch (default: the latest).")
    ] = None,
    justification: Note = None,
    run: Run = False,
    as_of_date: AsOfDate = None,
) -> None:
    """Mark rows fixed at source: the next run should load them (or show them persisting)."""
    from etl.steward.actions import StewardError, fix_at_source, handles_for_check

    if all_rows:
        if handles or not (system and check):
            console.print("[red]use --all with --system and --check, and without handles[/red]")
            raise typer.Exit(2)
        try:
            handles = handles_for_check(get_settings(), system, check, batch)
        except StewardError as error:
            raise _fail(error) from error
    elif system or check or batch:
        console.print("[red]--system, --check and --batch go with --all[/red]")
        raise typer.Exit(2)
    _decide(fix_at_source, handles or [], run, as_of_date, justification=justification)


@steward_app.command("waive")
def steward_waive(
    handles: Handles = None,
    justification: Annotated[
        str,
        typer.Option("--justification", help="Why the row may load as it is (required, reviewed)."),
    ] = "",
    run: Run = False,
    as_of_date: AsOfDate = None,
) -> None:
    """Accept failing rows as they are: the next run loads them, flagged waived:<reason>."""
    from etl.steward.actions import waive

    _decide(waive, handles or [], run, as_of_date, justification=justification)


@steward_app.command("reinject")
def steward_reinject(
    handles: Handles = None,
    run: Run = False,
    as_of_date: AsOfDate = None,
    justification: Note = None,
) -> None:
    """Mark rows for re-injection (judged afresh); with --run, validate them again now."""
    from etl.steward.actions import reinject

    _decide(reinject, handles or [], run, as_of_date, justification=justification)


@steward_app.command("history")
def steward_history(
    handle: Annotated[
        str | None, typer.Argument(help="A row handle: its whole decision trail.")
    ] = None,
    system: Annotated[str | None, typer.Option(help="Only this source system.")] = None,
    limit: Annotated[int, typer.Option(help="Without a handle: the latest N decisions.")] = 50,
) -> None:
    """Who decided what, when and why: one row's trail, or the latest decisions."""
    from etl.steward.actions import StewardError, history

    try:
        entries = history(get_settings(), handle, system, limit or None)
    except StewardError as error:
        raise _fail(error) from error
    if not entries:
        console.print("no steward decisions recorded yet")
        return
    title = f"decision trail of {handle}" if handle else f"latest {len(entries)} decisions"
    table = Table(title=title)
    for column in ("at", "by", "decision", "current", "system", "entity", "pseudonym", "check"):
        table.add_column(column, no_wrap=column in {"pseudonym", "at"})
    table.add_column("justification")
    table.add_column("on handle", no_wrap=True)
    for entry in entries:
        table.add_row(
            _when(entry.decided_at),
            entry.decided_by,
            entry.decision,
            "yes" if entry.is_current else "superseded",
            entry.system,
            entry.entity,
            entry.pseudonym or "",
            entry.check,
            entry.justification or "",
            entry.handle or "",
        )
    console.print(table, highlight=False)


def _print_deferral(outcome) -> None:
    state = "recorded" if outcome.is_recorded else "already current"
    console.print(
        f"{outcome.decision} {state}: {outcome.system} / {outcome.entity} in batch "
        f"{outcome.batch_id}, decision {outcome.decision_id}, by {outcome.decided_by} at "
        f"{_when(outcome.decided_at)}",
        highlight=False,
    )
    if outcome.breaching_checks:
        console.print(
            f"over threshold: {', '.join(outcome.breaching_checks)} ({outcome.rows} rows "
            "quarantined as entity_deferred when the gate runs)",
            highlight=False,
        )
    if outcome.note:
        console.print(f"[yellow]note: {outcome.note}[/yellow]", highlight=False)


@steward_app.command("defer-entity")
def steward_defer_entity(
    system: Annotated[str, typer.Argument(help="Source system, as named under mappings/.")],
    entity: Annotated[str, typer.Argument(help="The core entity to leave out of the batch.")],
    batch: Annotated[str, typer.Option("--batch", help="The batch the gate stopped.")],
    justification: Annotated[
        str,
        typer.Option(
            "--justification", help="Why the system may go without it (required, reviewed)."
        ),
    ] = "",
) -> None:
    """Promote a system's batch without one entity whose checks exceed their thresholds.

    Its rows are quarantined as entity_deferred (accounted, never lost); re-run the gate of the
    batch (`vardflytt run SYSTEM --batch-id BATCH`, or clear the Airflow gate task). Reverse with
    `vardflytt steward undo DECISION_ID`."""
    from etl.steward.actions import StewardError, defer_entity

    try:
        outcome = defer_entity(get_settings(), system, entity, batch, justification)
    except StewardError as error:
        raise _fail(error) from error
    _print_deferral(outcome)
    console.print(f"undo with: vardflytt steward undo {outcome.decision_id[:12]}", highlight=False)


@steward_app.command("undo")
def steward_undo(
    decision_id: Annotated[
        str, typer.Argument(help="The entity deferral's decision id (8+ leading characters).")
    ],
    justification: Note = None,
) -> None:
    """Reverse an entity deferral: the batch's gate refuses the entity again."""
    from etl.steward.actions import StewardError, undo_deferral

    try:
        outcome = undo_deferral(get_settings(), decision_id, justification=justification)
    except StewardError as error:
        raise _fail(error) from error
    _print_deferral(outcome)
