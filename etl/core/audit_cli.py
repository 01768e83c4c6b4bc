"""``vardflytt audit``: the access log for a region's log reviewers (Patientdatalagen).

``export`` writes an excerpt with its chain hashes (JSON lines or CSV), ``verify`` walks the
whole chain and names the first broken entry, ``check-export`` verifies an excerpt on its own,
``patient`` answers "who looked at this patient" from a pseudonym or from an identity number
typed at a hidden prompt (never logged, never shown), and ``purge`` applies the retention.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from etl.settings import get_settings

if TYPE_CHECKING:
    import sqlalchemy as sa

audit_app = typer.Typer(
    help="The access log of patient data: export, verify, who looked at a patient, retention.",
    no_args_is_help=True,
)
console = Console(width=None if sys.stdout.isatty() else 200)


def _engine() -> sa.Engine:
    from etl.core.database import core_engine

    return core_engine(get_settings().resolved_audit_url)


def _moment(text: str | None, option: str, end_of_day: bool = False) -> dt.datetime | None:
    """A date (whole day, UTC) or an ISO time; ``--to DATE`` includes that day."""
    if not text:
        return None
    try:
        if len(text) == 10:
            day = dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.UTC)
            return day + dt.timedelta(days=1) if end_of_day else day
        moment = dt.datetime.fromisoformat(text)
    except ValueError as error:
        raise typer.BadParameter(
            f"{text!r} is not YYYY-MM-DD or an ISO time", param_hint=option
        ) from error
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@audit_app.command("export")
def export(
    start: Annotated[
        str | None, typer.Option("--from", help="First day (YYYY-MM-DD, UTC).")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last day, included.")] = None,
    out: Annotated[
        Path | None, typer.Option(help="File to write (default: standard output).")
    ] = None,
    form: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
) -> None:
    """Entries from --from to --to, in chain order, with their hashes (verifiable excerpt)."""
    from etl.core.audit import record_access
    from etl.core.audit_review import entries_between, write_export

    if form not in {"jsonl", "csv"}:
        raise typer.BadParameter("jsonl or csv", param_hint="--format")
    first, last = _moment(start, "--from"), _moment(end, "--to", end_of_day=True)
    engine = _engine()
    with engine.connect() as connection:
        if out is None:
            count = write_export(entries_between(connection, first, last), sys.stdout, form)
        else:
            with out.open("w", encoding="utf-8", newline="") as handle:
                count = write_export(entries_between(connection, first, last), handle, form)
    # Exporting the log is itself an access to who looked at whom: it is logged too.
    record_access(
        get_settings(),
        "audit_export",
        "",
        "",
        count,
        detail={"from": start, "to": end, "format": form},
    )
    if out is not None:
        console.print(f"{count} entries -> {out}")


@audit_app.command("verify")
def verify() -> None:
    """Walk the whole chain; exit 1 naming the first entry that was edited, deleted or moved."""
    from etl.core.audit_review import verify_chain

    with _engine().connect() as connection:
        report = verify_chain(connection)
    if report.is_intact:
        console.print(
            f"access log intact: {report.entries} entries"
            + (f", {report.first_sequence}..{report.last_sequence}" if report.entries else "")
            + (f" (purged through {report.anchor_sequence})" if report.anchor_sequence else "")
        )
        return
    console.print(f"[red]access log broken[/red] at entry {report.broken_at}: {report.problem}")
    raise typer.Exit(1)


@audit_app.command("check-export")
def check_export(path: Annotated[Path, typer.Argument(help="A JSON lines export.")]) -> None:
    """Verify an exported excerpt on its own (each entry's hash and its links)."""
    from etl.core.audit_review import verify_excerpt

    entries = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    problem = verify_excerpt(entries)
    if problem:
        console.print(f"[red]excerpt does not verify[/red]: {problem}")
        raise typer.Exit(1)
    console.print(f"excerpt verifies: {len(entries)} entries")


@audit_app.command("patient")
def patient(
    pseudonym: Annotated[
        str | None, typer.Option(help="The patient row's keyed pseudonym (ps_...).")
    ] = None,
    system: Annotated[
        list[str] | None, typer.Option(help="With --pseudonym: the row's system (bulk accesses).")
    ] = None,
) -> None:
    """Who accessed a patient: give --pseudonym, or type the identity number when asked (the
    number is not echoed, logged or stored; its pseudonyms are computed and looked up)."""
    from etl.core.audit import record_access
    from etl.core.audit_review import accesses_of, pseudonyms_of_identity_number
    from etl.core.pseudonym import pseudonym_key
    from etl.identifiers import normalise_identity_one

    settings = get_settings()
    engine = _engine()
    systems = set(system or [])
    if pseudonym:
        if not pseudonym.startswith("ps_"):
            raise typer.BadParameter("a pseudonym starts with ps_", param_hint="--pseudonym")
        pseudonyms = [pseudonym]
    else:
        typed = typer.prompt("Identity number", hide_input=True)
        number, _kind, error = normalise_identity_one(typed, dt.date.today())
        del typed
        if number is None:
            console.print(f"[red]not a valid identity number[/red] ({error})")
            raise typer.Exit(2)
        from etl.core.database import core_engine

        with core_engine(settings.resolved_core_url).connect() as connection:
            pseudonyms, systems = pseudonyms_of_identity_number(
                connection, pseudonym_key(settings), number
            )
        del number
        if not pseudonyms:
            console.print("no core patient row carries that number")
            raise typer.Exit(1)
    # The lookup reads the log about this patient (and, from a number, the core): log it first.
    record_access(settings, "audit_patient_lookup", "", "", len(pseudonyms), subjects=pseudonyms)
    with engine.connect() as connection:
        found = accesses_of(connection, pseudonyms, systems)
    console.print(f"pseudonyms: {', '.join(found.pseudonyms)}")
    for title, rows in (
        ("Accesses naming the patient", found.listed),
        ("Bulk accesses covering the patient", found.bulk),
    ):
        table = Table(title=f"{title} ({len(rows)})")
        for column in ("#", "at", "who", "action", "purpose", "system", "entity", "batch", "rows"):
            table.add_column(column)
        for row in rows:
            table.add_row(
                str(row["sequence"]),
                row["accessed_at"],
                row["user_name"],
                row["action"],
                row["purpose"] or "",
                row["source_system"],
                row["entity"] or "",
                row["batch_id"],
                str(row["rows"]),
            )
        console.print(table)


@audit_app.command("purge")
def purge_command(
    yes: Annotated[
        bool, typer.Option("--yes", help="Purge; without it, only say what would go.")
    ] = False,
) -> None:
    """Delete entries older than VARDFLYTT_AUDIT_RETENTION_DAYS; the chain stays verifiable."""
    import sqlalchemy as sa

    from etl.batch import utc_now
    from etl.core.audit_review import AuditError, purge, retention_days
    from etl.core.tables import access_log

    try:
        days = retention_days()
    except AuditError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from error
    now = utc_now()
    engine = _engine()
    if not yes:
        with engine.connect() as connection:
            older = connection.execute(
                sa.select(sa.func.count())
                .select_from(access_log)
                .where(access_log.c.accessed_at < now - dt.timedelta(days=days))
            ).scalar_one()
        console.print(f"retention {days} days: {older} entries are older; run with --yes to purge")
        return
    with engine.begin() as connection:
        report = purge(connection, days, now)
    if not report.purged:
        console.print(f"retention {days} days: nothing older than {report.cutoff:%Y-%m-%d}")
        return
    console.print(
        f"purged {report.purged} entries (through {report.purged_through_sequence}); "
        f"recorded as entry {report.checkpoint_sequence}"
    )
