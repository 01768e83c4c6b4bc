"""``vardflytt landing``: the landing zone's retention (what is kept, what is purged)."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Annotated

import typer
from rich.table import Table

from etl.core.redact import RedactingConsole
from etl.settings import get_settings

landing_app = typer.Typer(
    help="The landing zone: landed source data per batch, and its retention.",
    no_args_is_help=True,
)
console = RedactingConsole(width=None if sys.stdout.isatty() else 200)


@landing_app.command("purge")
def landing_purge(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be purged.")
    ] = False,
    show_kept: Annotated[
        bool, typer.Option("--show-kept", help="Also list the batches kept, and why.")
    ] = False,
) -> None:
    """Remove landed data past its retention that no run needs again (recorded per file)."""
    from etl.catalog import load_catalog
    from etl.extract import retention

    settings = get_settings()
    if settings.is_remote_storage and settings.landing_dir is None:
        console.print(
            f"[red]the landing zone is in {settings.resolved_storage_root} "
            "(VARDFLYTT_STORAGE_ROOT): purging an s3:// landing zone is not supported yet; "
            "nothing was purged[/red]"
        )
        raise typer.Exit(1)
    catalog = load_catalog(settings.mappings_dir)
    now = dt.datetime.now(dt.UTC)
    if show_kept:
        kept = [b for b in retention.survey(catalog, settings, now) if not b.is_purgeable]
        _print(kept, "kept")
    purged = retention.purge(catalog, settings, now, dry_run=dry_run)
    verb = "would purge" if dry_run else "purged"
    _print(purged, verb)
    total = sum(batch.bytes for batch in purged)
    files = sum(len(batch.files) for batch in purged)
    console.print(f"{verb} {len(purged)} batch folder(s), {files} file(s), {total} bytes")
    if purged and not dry_run:
        console.print(
            f"recorded in the access log (action '{retention.ACTION}') and in "
            f"{settings.home / retention.PURGE_LOG}"
        )


def _print(batches, title: str) -> None:
    if not batches:
        return
    table = Table(title=title)
    for column in ("batch", "system", "state", "extracted", "retention", "files", "bytes", "why"):
        table.add_column(column)
    for batch in batches:
        table.add_row(
            batch.batch_id,
            batch.system,
            batch.state,
            f"{batch.extracted_at:%Y-%m-%d %H:%M}" if batch.extracted_at else "",
            f"{batch.retention_days} days" if batch.retention_days is not None else "-",
            str(len(batch.files)),
            str(batch.bytes),
            batch.reason,
        )
    console.print(table)
