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


# True when ``vardflytt`` is this process's own program (set by the console entry point,
# etl.cli.main); a command invoked in a host process (a test, a notebook) leaves the host's
# collector alone.
OWN_PROCESS = False


def runs_stages_here(jobs: int) -> None:
    """Before a command runs migration stages: with ``jobs`` 1 they run in this process, so their
    modules are imported now and the heap settled (etl/core/heap.py), as Airflow's task runners
    and the fork server's workers start (with more, the workers do it). Only when ``vardflytt``
    is the process's program (``OWN_PROCESS``)."""
    if jobs != 1 or not OWN_PROCESS:
        return
    from etl.core.heap import preload_and_settle
    from etl.stage_modules import STAGE_MODULES

    preload_and_settle(STAGE_MODULES)


# Expected stops: the pipeline refusing on purpose, with a message that says what to do. Each ends
# the command with that message (redacted) and its own exit code, never a traceback. Matched by
# class (and subclasses) without importing the stages here, so start-up stays light.
EXPECTED_STOPS: dict[str, tuple[int, str]] = {
    "etl.core.residency.ResidencyError": (2, "refused: data residency"),
    "etl.validate.gate.DataQualityGateError": (3, "stopped by the data-quality gate"),
    "etl.load.loader.AccountingError": (4, "stopped: not every source row is accounted for"),
    "etl.extract.readers.SchemaDriftError": (5, "stopped: the source's schema drifted"),
    "etl.load.promote.PromotionError": (6, "refused by the promotion ledger"),
    "etl.cutover.ledger.LedgerError": (6, "refused by the cutover ledger"),
    "etl.core.lease.LeaseHeldError": (6, "refused: another run holds it"),
}


def expected_stop(error: BaseException) -> tuple[int, str] | None:
    """The exit code and heading of an expected stop, or None for anything else (a crash)."""
    for cls in type(error).__mro__:
        found = EXPECTED_STOPS.get(f"{cls.__module__}.{cls.__qualname__}")
        if found:
            return found
    return None
