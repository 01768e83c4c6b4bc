"""``vardflytt codes``: the data steward's code work (codes and counts only, no patient data)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from etl.cli.common import checked_catalog, console
from etl.core import residency
from etl.settings import get_settings

codes_app = typer.Typer(help="Source codes the crosswalks do not map yet.", no_args_is_help=True)


@codes_app.command("unmapped")
def unmapped(
    system: Annotated[
        str | None, typer.Option("--system", help="One source system (default: every one).")
    ] = None,
    batch: Annotated[
        str | None, typer.Option(help="Batch id (default: each system's latest batch).")
    ] = None,
    template: Annotated[
        Path | None,
        typer.Option(help="Also write a CSV to fill: one proposed crosswalk row per code."),
    ] = None,
) -> None:
    """Unmapped source codes per system and crosswalk, with the rows carrying them."""
    from etl.report.codes import codes_table, unmapped_codes, write_template

    settings = get_settings()
    listing = unmapped_codes(settings, checked_catalog(settings), system, batch)
    if listing.codes:
        console.print(codes_table(listing))
    for name, batch_id in sorted(listing.batches.items()):
        rows = listing.totals().get(name, 0)
        console.print(f"{name} ({batch_id}): {rows} rows with an unmapped or unapproved code")
    for note in listing.notes:
        console.print(f"[yellow]{note}[/yellow]")
    if template is not None:
        residency.check_storage(template, "the code template (--template)", settings)
        written = write_template(listing, template)
        console.print(f"template: {template} ({written} codes to map)")
