"""The steward queue: quarantined and flagged rows with their current decision, filtered.

What leaves this module is what a steward screen may show: the row's handle (its
``quarantine_id`` or ``flag_id``), system, dataset, entity, row number, a keyed pseudonym of the
source key, the check, reason and field, and the current decision. Never the source key itself
(it can be an identity number), never a value. The command line and the web dashboard both call
these functions.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import sqlalchemy as sa
from pydantic import BaseModel

from etl.core.audit import SCOPE_BATCH, record_access
from etl.core.database import core_engine
from etl.core.decisions import DECISIONS, ReviewStatus
from etl.core.pseudonym import pseudonym_key, pseudonymise
from etl.core.tables import dq_flag, load_batch, quarantine, quarantine_decision
from etl.load.open_problems import open_problems_fail_closed
from etl.settings import Settings
from etl.status import latest_batches
from etl.validate.checks import SOURCE_PREFIX

QUARANTINED, FLAGGED = "quarantined", "flagged"
WAIVED_REASON_PREFIX = "waived:"


class QueueFilter(BaseModel):
    """Which rows to list; ``batch_id`` None means every problem still open of each system: its
    latest batch's own and, after a delta, those carried over from earlier batches (each row's
    ``batch_id`` is the batch that quarantined it). Loaded-and-flagged rows: the latest batch's."""

    system: str | None = None
    entity: str | None = None
    check: str | None = None
    reason: str | None = None
    batch_id: str | None = None
    status: ReviewStatus = ReviewStatus.ALL
    is_flagged: bool = False
    limit: int | None = 50


class QueueRow(BaseModel):
    """One quarantined (or loaded-and-flagged) row as a steward sees it: no source key, no value."""

    handle: str
    kind: str  # quarantined | flagged
    batch_id: str
    system: str
    dataset: str
    entity: str
    row_number: int
    pseudonym: str | None
    check: str
    severity: str
    reason: str
    field: str | None
    decision: str | None  # None: open
    decided_by: str | None
    decided_at: dt.datetime | None


class QueuePage(BaseModel):
    rows: list[QueueRow]
    total: int  # rows matching the filter, before the limit
    # Why the default view may list problems that are resolved (what a batch checked is not
    # known): counts and batch ids only.
    notes: list[str] = []


class OpenScope(BaseModel):
    """The quarantine records still open in each system (the default view), and why more than
    proven open may be listed."""

    # The open problems of earlier batches (carried over); every quarantined row of the latest
    # batches (``own_batch_ids``, the batches the walks started from) is open too.
    carried_ids: list[str]
    own_batch_ids: list[str]
    latest_batch_ids: list[str]
    notes: list[str] = []


def open_scope(
    settings: Settings, connection: sa.Connection, system: str | None = None
) -> OpenScope:
    """Every quarantined problem still open after each system's latest batch (one system's when
    named): its own quarantine plus, after a delta, the problems of earlier batches whose rows it
    did not process (etl/load/open_problems.py). Fails closed: when what a batch checked is no
    longer known, the earlier batches' problems are kept open and a note says why."""
    latest = latest_batches(connection)
    anchors = connection.execute(
        sa.select(load_batch.c.source_system, load_batch.c.batch_id)
        .where(load_batch.c.batch_id.in_(latest or [""]))
        .order_by(load_batch.c.source_system)
    ).all()
    carried: list[str] = []
    own: list[str] = []
    notes: list[str] = []
    for name, batch_id in anchors:
        if system and name != system:
            continue
        found = open_problems_fail_closed(settings, connection, name, batch_id)
        own.append(batch_id)
        carried.extend(found.carried_quarantine_ids(batch_id))
        notes.extend(found.notes)
    return OpenScope(carried_ids=carried, own_batch_ids=own, latest_batch_ids=latest, notes=notes)


def open_quarantine(settings: Settings, connection: sa.Connection) -> sa.ColumnElement[bool]:
    """A condition on table ``quarantine``: the rows still open (:func:`open_scope`)."""
    scope = open_scope(settings, connection)
    return _open_rows(quarantine, scope)


def _open_rows(table: sa.Table, scope: OpenScope) -> sa.ColumnElement[bool]:
    # The latest batches' own rows by batch, only the carried-over ones by id: a full load's
    # thousands of problems never become a list of ids in the statement.
    handle_column = table.primary_key.columns.values()[0]
    return table.c.batch_id.in_(scope.own_batch_ids or [""]) | _in_ids(
        handle_column, scope.carried_ids
    )


def _in_ids(column: sa.ColumnElement, ids: list[str]) -> sa.ColumnElement[bool]:
    # Rendered inline: a backlog can hold more open problems than a statement has parameters.
    return column.in_(sa.bindparam("open_ids", ids, expanding=True, literal_execute=True))


class SummaryRow(BaseModel):
    """Counts for one system and check in the chosen batches."""

    system: str
    check: str
    quarantined: int
    open: int
    fixed_at_source: int
    waived: int
    reinject: int
    flagged: int


def problem_table(is_flagged: bool) -> sa.Table:
    return dq_flag if is_flagged else quarantine


def check_id(table: sa.Table) -> sa.ColumnElement[str]:
    """The stable check id of a stored problem row, as thresholds.yaml and decisions name it.

    Expectation-suite failures carry their own id (``<entity>.<field>.<rule>``); problems found
    while transforming carry the transform's name (``transform:parse_legacy_date``), and their
    check id is ``source.<reason>`` (see etl/validate/stage.py).
    """
    prefix = table.c.entity + "."
    is_suite_check = sa.func.substr(table.c.check_name, 1, sa.func.length(prefix)) == prefix
    return sa.case(
        (is_suite_check, table.c.check_name),
        else_=sa.literal(SOURCE_PREFIX, sa.Text) + table.c.reason,
    )


def current_decisions() -> sa.Subquery:
    """The current decision per (system, dataset, source key, check).

    Writers supersede before they insert, in one transaction; should two stewards still race,
    the newest decision wins here.
    """
    table = quarantine_decision
    key = (table.c.source_system, table.c.dataset, table.c.source_key, table.c.check_name)
    ranked = (
        sa.select(
            *key,
            table.c.decision,
            table.c.decided_by,
            table.c.decided_at,
            sa.func.row_number()
            .over(
                partition_by=key, order_by=(table.c.decided_at.desc(), table.c.decision_id.desc())
            )
            .label("rank"),
        )
        .where(table.c.is_current)
        .subquery("ranked_decision")
    )
    return sa.select(ranked).where(ranked.c.rank == 1).subquery("current_decision")


def problem_query(
    connection: sa.Connection,
    query_filter: QueueFilter,
    handles: list[str] | None = None,
    scope: OpenScope | None = None,
) -> sa.Select:
    """Problem rows with their check id and current decision, source key included.

    Without handles or a batch, ``scope`` (:func:`open_scope`) is required: the problems still
    open, not only the latest batch's. For this package only: callers outside it get
    ``QueueRow``s, which carry a pseudonym instead.
    """
    table = problem_table(query_filter.is_flagged)
    handle_column = table.primary_key.columns.values()[0]
    check = check_id(table)
    current = current_decisions()
    query = sa.select(
        handle_column.label("handle"),
        table.c.batch_id,
        table.c.source_system.label("system"),
        table.c.dataset,
        table.c.entity,
        table.c.row_number,
        table.c.source_key,
        check.label("check"),
        table.c.severity,
        table.c.reason,
        table.c.field,
        current.c.decision,
        current.c.decided_by,
        current.c.decided_at,
    ).select_from(
        table.outerjoin(
            current,
            (current.c.source_system == table.c.source_system)
            & (current.c.dataset == table.c.dataset)
            & (current.c.source_key == table.c.source_key)
            & (current.c.check_name == check),
        )
    )
    if handles is not None:
        # Handles are hex ids; a unique prefix of one is enough to type.
        query = query.where(
            sa.or_(*(handle_column.startswith(h, autoescape=True) for h in handles))
        )
    elif query_filter.batch_id:
        query = query.where(table.c.batch_id == query_filter.batch_id)
    elif scope is None:
        raise ValueError("the default view lists the open problems: give their scope")
    elif query_filter.is_flagged:
        query = query.where(table.c.batch_id.in_(scope.latest_batch_ids))
    else:
        query = query.where(_open_rows(table, scope))
    if query_filter.system:
        query = query.where(table.c.source_system == query_filter.system)
    if query_filter.entity:
        query = query.where(table.c.entity == query_filter.entity)
    if query_filter.check:
        query = query.where(check == query_filter.check)
    if query_filter.reason:
        reason = query_filter.reason.removeprefix(WAIVED_REASON_PREFIX)
        query = query.where(table.c.reason.in_([reason, WAIVED_REASON_PREFIX + reason]))
    if query_filter.status == ReviewStatus.OPEN:
        query = query.where(current.c.decision.is_(None))
    elif query_filter.status != ReviewStatus.ALL:
        query = query.where(current.c.decision == query_filter.status.value)
    return query.order_by(
        table.c.source_system, table.c.entity, table.c.batch_id, table.c.row_number, check
    )


def with_pseudonyms(settings: Settings, rows: list[dict]) -> list[dict]:
    """The rows with ``source_key`` replaced by its keyed pseudonym."""
    if not rows:
        return []
    keys = pd.Series([row["source_key"] for row in rows], dtype="string")
    systems = pd.Series([row["system"] for row in rows], dtype="string")
    pseudonyms = pseudonymise(pseudonym_key(settings), systems, keys)
    return [
        {name: value for name, value in row.items() if name != "source_key"}
        | {"pseudonym": None if pd.isna(pseudonym) else pseudonym}
        for row, pseudonym in zip(rows, pseudonyms, strict=True)
    ]


def list_queue(settings: Settings, query_filter: QueueFilter) -> QueuePage:
    """The steward queue under a filter: every problem still open of each system (latest batch's
    own and carried over from earlier ones) unless a batch is named."""
    with core_engine(settings.resolved_core_url).connect() as connection:
        scope = (
            None if query_filter.batch_id else open_scope(settings, connection, query_filter.system)
        )
        query = problem_query(connection, query_filter, scope=scope)
        total = connection.execute(
            sa.select(sa.func.count()).select_from(query.order_by(None).subquery())
        ).scalar_one()
        if query_filter.limit:
            query = query.limit(query_filter.limit)
        rows = [dict(row) for row in connection.execute(query).mappings()]
    kind = FLAGGED if query_filter.is_flagged else QUARANTINED
    listed = [QueueRow(kind=kind, **row) for row in with_pseudonyms(settings, rows)]
    _log_shown(settings, "steward_list", listed)
    return QueuePage(rows=listed, total=total, notes=scope.notes if scope else [])


def _log_shown(settings: Settings, action: str, rows: list[QueueRow]) -> None:
    """One access-log entry per system and batch shown, naming the rows' pseudonyms; before the
    rows are returned, so nothing is shown that is not logged."""
    groups: dict[tuple[str, str], list[QueueRow]] = {}
    for row in rows:
        groups.setdefault((row.system, row.batch_id), []).append(row)
    for (system, batch_id), shown in sorted(groups.items()):
        entities = sorted({row.entity for row in shown})
        record_access(
            settings,
            action,
            system,
            batch_id,
            len(shown),
            entities[0] if len(entities) == 1 else None,
            subjects=[row.pseudonym for row in shown],
        )


def summary(
    settings: Settings, batch_id: str | None = None, system: str | None = None
) -> list[SummaryRow]:
    """Rows per system and check: quarantined by current decision, and loaded-and-flagged. Without
    a batch, the quarantined problems still open (carried over ones too, see :func:`open_scope`)."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    with core_engine(settings.resolved_core_url).connect() as connection:
        scope = None if batch_id else open_scope(settings, connection, system)
        for is_flagged in (False, True):
            rows = problem_query(
                connection,
                QueueFilter(batch_id=batch_id, system=system, is_flagged=is_flagged, limit=None),
                scope=scope,
            ).subquery()
            grouped = sa.select(
                rows.c.system, rows.c.check, rows.c.decision, sa.func.count().label("rows")
            ).group_by(rows.c.system, rows.c.check, rows.c.decision)
            for row in connection.execute(grouped):
                tally = counts.setdefault((row.system, row.check), {})
                if is_flagged:
                    tally[FLAGGED] = tally.get(FLAGGED, 0) + row.rows
                else:
                    status = row.decision or ReviewStatus.OPEN.value
                    tally[status] = tally.get(status, 0) + row.rows
                    tally[QUARANTINED] = tally.get(QUARANTINED, 0) + row.rows
    # Counts of patients' problem rows, no one row shown: one entry, by scope.
    rows_counted = sum(
        tally.get(QUARANTINED, 0) + tally.get(FLAGGED, 0) for tally in counts.values()
    )
    record_access(
        settings,
        "steward_summary",
        system or "",
        batch_id or "",
        rows_counted,
        subject_scope=SCOPE_BATCH,
        subject_count=rows_counted,
        detail={"systems": sorted({name for name, _check in counts})},
    )
    return [
        SummaryRow(
            system=system_name,
            check=check,
            **{name: tally.get(name, 0) for name in (QUARANTINED, "open", *DECISIONS, FLAGGED)},
        )
        for (system_name, check), tally in sorted(counts.items())
    ]
