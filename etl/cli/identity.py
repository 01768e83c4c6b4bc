"""``vardflytt identity``: one person across all systems."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.table import Table

from etl.cli.common import console
from etl.settings import get_settings

identity_app = typer.Typer(
    help="Identity resolution: one core person per human being, with a steward review queue.",
    no_args_is_help=True,
)


def _identity_run_id(prefix: str) -> str:
    return f"{prefix}__{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}"


def _print_identity_run(summary) -> None:
    table = Table(title=f"identity run {summary.run_id} ({summary.kind}, {summary.status})")
    table.add_column("count")
    table.add_column("value", justify="right")
    for name, value in summary.counts.items():
        table.add_row(name, str(value))
    console.print(table)


@identity_app.command("resolve")
def identity_resolve(
    run_id: Annotated[
        str | None,
        typer.Option(help="Run id (default: a new one); re-using a finished one is a no-op."),
    ] = None,
) -> None:
    """Link every core patient to a person; conflicts go to the review queue."""
    from etl.identity import runs

    _print_identity_run(runs.resolve(run_id or _identity_run_id("cli"), get_settings()))


@identity_app.command("review")
def identity_review() -> None:
    """Open reviews: ids, reasons, systems and patient row keys (never identities or names)."""
    from etl.identity import runs

    reviews = runs.list_open_reviews(get_settings())
    if not reviews:
        console.print("no open identity reviews")
        return
    table = Table(title=f"open identity reviews ({len(reviews)})")
    for column in ("review", "reasons", "systems", "patient rows", "opened by run"):
        table.add_column(column)
    for review in reviews:
        table.add_row(
            review.review_id,
            ", ".join(review.reasons),
            ", ".join(review.systems),
            "\n".join(review.patient_row_keys),
            review.opened_run_id,
        )
    console.print(table)


@identity_app.command("decide")
def identity_decide(
    review_id: Annotated[str, typer.Argument(help="Review id, from `vardflytt identity review`.")],
    merge: Annotated[
        bool | None,
        typer.Option("--merge/--keep-apart", help="One person, or keep the patients apart."),
    ] = None,
    note: Annotated[
        str | None, typer.Option(help="Why (recorded in the core, never printed).")
    ] = None,
) -> None:
    """Record a steward decision on an open review and apply it (undo with its run id).

    Recorded as decided by the signed-in OS user, never a name typed on the command line."""
    from etl.core.audit import current_user
    from etl.identity import runs

    if merge is None:
        console.print("[red]choose --merge or --keep-apart[/red]")
        raise typer.Exit(2)
    try:
        summary = runs.decide_review(
            review_id,
            "merge" if merge else "keep_apart",
            current_user(),
            note,
            _identity_run_id("decision"),
            get_settings(),
        )
    except runs.IdentityError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    _print_identity_run(summary)


@identity_app.command("undo")
def identity_undo(
    run_id: Annotated[str, typer.Argument(help="The newest identity run (resolve or decision).")],
) -> None:
    """Undo an identity run exactly: links, persons and reviews as they were before it."""
    from etl.identity import runs

    try:
        summary = runs.undo_run(run_id, get_settings())
    except runs.IdentityError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    _print_identity_run(summary)


@identity_app.command("summary")
def identity_summary() -> None:
    """Persons, patients, persons linked across N systems, open reviews by reason."""
    from etl.identity import runs

    result = runs.identity_summary(get_settings())
    table = Table(title="identity resolution")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("patients in the core", str(result.patients))
    table.add_row("patients linked to a person", str(result.linked_patients))
    table.add_row("persons", str(result.persons))
    for systems, persons in result.persons_by_system_count.items():
        table.add_row(f"persons in {systems} system(s)", str(persons))
    table.add_row("open reviews", str(result.open_reviews))
    for reason, count in result.open_reviews_by_reason.items():
        table.add_row(f"  open: {reason}", str(count))
    if result.latest_run is not None:
        run = result.latest_run
        table.add_row("latest run", f"{run.run_id} ({run.kind}, {run.status})")
    console.print(table)
