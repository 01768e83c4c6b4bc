"""``vardflytt coexistence``: the core's changes to shared patients, back to the legacy systems
still serving them (HL7 v2 over MLLP; etl/coexistence)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from etl.cli.common import console
from etl.settings import get_settings

coexistence_app = typer.Typer(
    help="The coexistence feed: ADT A31/A08 to the legacy systems that still serve a patient.",
    no_args_is_help=True,
)
_RUN_COLUMNS = ("primed", "queued", "held", "superseded", "acked", "failed", "retrying", "closed")


@coexistence_app.command("run")
def coexistence_run(
    send: Annotated[
        bool, typer.Option("--send/--queue-only", help="Deliver what is due (default) or queue.")
    ] = True,
) -> None:
    """Stop the feed to systems with no live wave, queue the core's changes, deliver them."""
    from etl.coexistence import feed

    runs = feed.run(get_settings(), send=send)
    if not runs:
        console.print("coexistence feed: no shared patients, nothing to send")
        return
    table = Table(title="coexistence feed run")
    table.add_column("system")
    for column in _RUN_COLUMNS:
        table.add_column(column, justify="right")
    table.add_column("note")
    for system, result in sorted(runs.items()):
        note = result.stopped or result.refused or ""
        table.add_row(system, *(str(getattr(result, c)) for c in _RUN_COLUMNS), note)
    console.print(table)
    if any(result.refused for result in runs.values()):
        raise typer.Exit(1)


@coexistence_app.command("status")
def coexistence_status() -> None:
    """Per system: live or stopped, endpoint, messages by state; failed and held messages by
    control id and pseudonym (never their content)."""
    from etl.coexistence import feed

    found = feed.status(get_settings())
    table = Table(title="coexistence feed")
    for column in ("system", "live", "endpoint", "primed", "stopped", *feed.STATES):
        table.add_column(column)
    for row in found["systems"]:
        table.add_row(
            row["system"],
            "yes" if row["live"] else "no",
            row["endpoint"] or "-",
            f"{row['primed_at']:%Y-%m-%d %H:%M}" if row["primed_at"] else "-",
            row["stop_reason"] or "-",
            *(str(row["messages"][state]) for state in feed.STATES),
        )
    console.print(table)
    if found["attention"]:
        attention = Table(title="messages needing a steward (failed or held)")
        for column in ("control id", "system", "event", "patient", "state", "attempts", "ACK"):
            attention.add_column(column)
        for item in found["attention"]:
            attention.add_row(
                item["control_id"],
                item["target_system"],
                item["event"],
                item["subject_pseudonym"],
                item["state"],
                str(item["attempts"]),
                item["ack_code"] or "-",
            )
        console.print(attention)
