"""``vardflytt new-system NAME --from DIR|URL``: scan an unseen source, draft its mappings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from etl.cli.common import console
from etl.settings import get_settings


def new_system(
    name: Annotated[str, typer.Argument(help="The new system's name (a folder under mappings/).")],
    source: Annotated[
        str, typer.Option("--from", help="A folder of export files, or a database URL.")
    ],
    out: Annotated[
        Path | None, typer.Option(help="Where to write the draft (default: mappings/NAME).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing draft folder.")] = False,
) -> None:
    """Scan a source read-only (encodings, delimiters, widths, candidate keys, masked value
    shapes) and write a draft system.yaml and a stub per dataset to review and map."""
    import re

    from etl.report.scan import ScanError, draft, scan_database, scan_folder

    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        console.print(f"[red]'{name}': a system name is lower-case letters, digits and _[/red]")
        raise typer.Exit(2)
    target = out or get_settings().mappings_dir / name
    if target.exists() and any(target.iterdir()) and not force:
        console.print(f"[red]{target} exists and is not empty; pass --force or --out[/red]")
        raise typer.Exit(2)
    try:
        scans = scan_database(source) if "://" in source else scan_folder(Path(source))
        written = draft(name, source, scans, target)
    except ScanError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    for scan in scans:
        keys = ", ".join(scan.candidate_keys) or "none found"
        console.print(
            f"{scan.name}: {scan.rows} rows, {len(scan.columns)} columns, "
            f"{scan.layout or 'table'}, key candidates: {keys}"
        )
    console.print(f"draft: {', '.join(str(path) for path in written)}")
    console.print(
        "next: review system.yaml (every inference is a comment), rename each stub to its core "
        "entity and map its columns, then `vardflytt check-mappings`"
    )
