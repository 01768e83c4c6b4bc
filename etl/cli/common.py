"""What every command module of ``vardflytt`` shares: the (redacting) console, the catalog."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from etl.core.redact import RedactingConsole

if TYPE_CHECKING:
    from etl.catalog import Catalog
    from etl.settings import Settings

# Wide enough for the accounting table when output goes to a file or CI log.
console = RedactingConsole(width=None if sys.stdout.isatty() else 160)


def checked_catalog(settings: Settings) -> Catalog:
    """The mappings, or the mapping error (file and field) printed and exit code 1."""
    from etl.catalog import MappingError, load_catalog

    try:
        return load_catalog(settings.mappings_dir)
    except MappingError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
