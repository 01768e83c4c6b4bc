"""``vardflytt batches`` (what runs left behind, and the system lease) and ``vardflytt core``
(the core schema's migrations). Heavy imports stay inside the commands."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from etl.core.redact import RedactingConsole
from etl.settings import get_settings

if TYPE_CHECKING:
    from etl.settings import Settings

batches_app = typer.Typer(
    help="Batches per system: states, superseded and abandoned batches, the run lease.",
    no_args_is_help=True,
)
core_app = typer.Typer(
    help="The core database's schema (Alembic migrations).", no_args_is_help=True
)
console = RedactingConsole(width=None if sys.stdout.isatty() else 200)
NOT_PROMOTED = {"superseded", "unaccounted", "staged"}
STATUS_ROWS = 20


def print_batch_states(rows: list[dict[str, Any]], title: str) -> None:
    table = Table(title=title)
    for column in ("batch", "system", "state", "extracted", "why"):
        table.add_column(column)
    for row in rows:
        why = row["note"] or ""
        if row["superseded_by"] and row["superseded_by"] not in why:
            why = f"superseded by {row['superseded_by']}"
        table.add_row(
            row["batch_id"],
            row["source_system"],
            row["state"] or row["status"],
            f"{row['extracted_at']:%Y-%m-%d %H:%M:%S}" if row["extracted_at"] else "",
            why or (row["scope"] if row["status"] == "superseded" else ""),
        )
    console.print(table)


def print_unpromoted(settings: Settings) -> None:
    """For ``vardflytt status``: batches that were never promoted, and why."""
    from etl.load.loader import batch_states

    rows = [r for r in batch_states(settings) if (r["state"] or r["status"]) in NOT_PROMOTED]
    if rows:
        title = "batches not promoted (superseded, unaccounted or waiting), newest first"
        if len(rows) > STATUS_ROWS:
            title += f"; {len(rows) - STATUS_ROWS} older in `vardflytt batches list`"
        print_batch_states(rows[:STATUS_ROWS], title)


@batches_app.command("list")
def batches_list(
    system: Annotated[str | None, typer.Option(help="Only this source system.")] = None,
) -> None:
    """Every batch with its state (promoted, staged, superseded, unaccounted, ...) and why."""
    from etl.load.loader import batch_states

    print_batch_states(batch_states(get_settings(), system), "batches, newest first")


@batches_app.command("clean")
def batches_clean(
    systems: Annotated[
        list[str] | None, typer.Argument(help="Source systems (default: every mapped system).")
    ] = None,
) -> None:
    """Supersede what abandoned runs left: staged rows and landing files of batches never
    promoted (also done at the start of every run of the system). Recorded as 'superseded'."""
    from etl.batch import new_batch_id
    from etl.catalog import load_catalog
    from etl.core import lease
    from etl.core.database import core_engine
    from etl.core.lease import LeaseHeldError
    from etl.load.loader import supersede_abandoned

    settings = get_settings()
    engine = core_engine(settings.resolved_core_url)
    refused = False
    for system in systems or sorted(load_catalog(settings.mappings_dir).systems):
        run = new_batch_id(system, "clean")  # the lease's run id: a clean is a run of the system
        try:
            held = lease.acquire(engine, lease.SYSTEM, system, run)
        except LeaseHeldError as error:
            console.print(f"[red]{error}[/red]")
            refused = True
            continue
        if held.replaced:
            logging.getLogger(__name__).warning(held.replaced)
        try:
            cleaned = supersede_abandoned(settings, system)
        finally:
            lease.release(engine, lease.SYSTEM, system, run_id=run)
        for left in cleaned:
            files = ", landing files removed" if left.removed_landing else ""
            console.print(f"{system}: batch {left.batch_id} ({left.was}) superseded{files}")
    if refused:
        raise typer.Exit(1)


@batches_app.command("unlock")
def batches_unlock(system: str) -> None:
    """Release a dead run's lease on a system (a live run would be refused its next stage)."""
    from etl.core import lease
    from etl.core.database import core_engine

    engine = core_engine(get_settings().resolved_core_url)
    held = lease.holder_of(engine, lease.SYSTEM, system)
    if held is None:
        console.print(f"system {system} is not held by any run")
        return
    lease.release(engine, lease.SYSTEM, system, holder=held.holder)
    console.print(
        f"released system {system}, held by {held.holder} (run {held.run_id}), "
        f"by {lease.current_actor()}"
    )


@core_app.command("upgrade")
def core_upgrade() -> None:
    """Create or upgrade the core schema to the newest migration (safe to run at any time)."""
    from etl.core.database import HEAD_REVISION, new_engine, upgrade_core

    engine = new_engine(get_settings().resolved_core_url)
    before = upgrade_core(engine)
    engine.dispose()
    console.print(
        f"core schema at {HEAD_REVISION}"
        + (" (already)" if before == HEAD_REVISION else f" (was {before or 'empty'})")
    )
