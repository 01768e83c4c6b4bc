"""``vardflytt export``: the core's rows in a vendor-neutral format (FHIR R4 NDJSON)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated

import typer

from etl.cli.common import console
from etl.settings import get_settings

export_app = typer.Typer(
    help="Export the core's rows in a vendor-neutral format (FHIR R4 Bulk Data NDJSON).",
    no_args_is_help=True,
)


@export_app.command("fhir")
def export_fhir(
    wave: Annotated[
        str | None, typer.Option("--wave", help="Export the rows of this wave's promoted batches.")
    ] = None,
    every_row: Annotated[
        bool, typer.Option("--all", help="Export every core row, whatever its wave.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for the NDJSON files and manifest.json.")
    ] = None,
    chunk_size: Annotated[int, typer.Option(min=1, help="Rows read and written per chunk.")] = 5000,
) -> None:
    """Write one NDJSON file per FHIR resource type and a manifest; prints counts only."""
    from etl.export.bulk import ExportError, export_for

    if (wave is None) == (not every_row):
        console.print("give exactly one of --wave W or --all")
        raise typer.Exit(2)
    if out is None and wave is not None and not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", wave):
        # The default folder is named after the wave: a name with a path in it needs --out.
        console.print("this wave name cannot name a folder: give --out DIR")
        raise typer.Exit(2)
    settings = get_settings()
    folder = out or settings.home / "export" / "fhir" / (wave or "all")
    try:
        result = export_for(
            settings,
            folder,
            wave=wave,
            transaction_time=dt.datetime.now(dt.UTC),
            chunk_size=chunk_size,
        )
    except ExportError as error:
        console.print(str(error))
        raise typer.Exit(1) from None
    for resource_type, count in result.counts.items():
        console.print(f"{resource_type:<20} {count:>9}")
    if result.issues:
        console.print(f"{result.issues} unresolved reference(s): see OperationOutcome.ndjson")
    console.print(f"written to {folder}")


@export_app.command("check")
def export_check(
    folder: Annotated[Path, typer.Argument(help="An export folder (with its manifest.json).")],
) -> None:
    """Validate an export as its receiver would: every resource against the FHIR R4 models
    (fhir.resources), the manifest's counts, every reference resolving inside the export."""
    from etl.export.check import ExportCheckError, check_export

    try:
        result = check_export(folder)
    except ExportCheckError as error:
        console.print(str(error))
        raise typer.Exit(2) from None
    console.print(f"{folder}: {result.describe()}", highlight=False, soft_wrap=True)
    if not result.ok:
        raise typer.Exit(1)
