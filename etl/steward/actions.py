"""Steward decisions on quarantined and flagged rows, and re-running a system to test them.

A decision is keyed by what identifies the problem across runs (system, dataset, source key,
check), records who and when, and supersedes the previous decision on that key; none is deleted.
Every decision is also an access to patient rows, so it is access-logged (Patientdatalagen).
Results name rows by handle and keyed pseudonym only, for the command line and the dashboard.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from pydantic import BaseModel

from etl.batch import utc_now
from etl.core.audit import SCOPE_BATCH, record_access
from etl.core.batch_states import PROMOTED, STAGED
from etl.core.database import core_engine
from etl.core.decisions import (
    ALL_ROWS,
    DECISIONS,
    ENTITY_DEFERRAL_UNDONE,
    ENTITY_DEFERRED,
    FIXED_AT_SOURCE,
    REINJECT,
    WAIVED,
)
from etl.core.pseudonym import pseudonym, pseudonym_key
from etl.core.tables import (
    ENTITY_TABLES,
    dq_flag,
    dq_result,
    promotion,
    quarantine,
    quarantine_decision,
)
from etl.extract.landing import read_manifest
from etl.settings import Settings
from etl.steward import screening
from etl.steward.queue import (
    WAIVED_REASON_PREFIX,
    QueueFilter,
    list_queue,
    problem_query,
    with_pseudonyms,
)
from etl.validate.checks import SOURCE_PREFIX, ThresholdsError, thresholds_for
from etl.validate.stage import deferred_check

MIN_HANDLE_CHARACTERS = 8
MIN_JUSTIFICATION_CHARACTERS = 20
MIN_JUSTIFICATION_WORDS = 3
_WORD = re.compile(r"[^\W\d_]{2,}")

RESOLVED, PERSISTING, ABSENT, NOT_RUN = "resolved", "persisting", "absent", "not_run"
FLAGGED_OUTCOME = "flagged"


class StewardError(ValueError):
    """A steward action that cannot be carried out as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Problem:
    """A quarantined or flagged row as this module acts on it (source key included: internal)."""

    handle: str
    kind: str
    batch_id: str
    system: str
    dataset: str
    entity: str
    row_number: int
    source_key: str | None
    check: str
    severity: str
    reason: str
    decision: str | None

    @property
    def key(self) -> tuple[str, str, str | None, str]:
        return (self.system, self.dataset, self.source_key, self.check)


class DecisionOutcome(BaseModel):
    """What happened to one row's decision: recorded, or unchanged because already current."""

    handle: str
    decision_id: str | None
    system: str
    dataset: str
    entity: str
    pseudonym: str | None
    check: str
    decision: str
    justification: str | None
    decided_by: str
    decided_at: dt.datetime
    batch_id: str
    is_recorded: bool
    superseded: str | None = None  # the decision this one replaced
    note: str | None = None


class HistoryEntry(BaseModel):
    decision_id: str
    handle: str | None
    batch_id: str | None
    system: str
    dataset: str
    entity: str
    pseudonym: str | None
    check: str
    decision: str
    justification: str | None
    decided_by: str
    decided_at: dt.datetime
    is_current: bool


class RowOutcome(BaseModel):
    """After a re-run: does the row now load (resolved), load flagged, or still fail?"""

    handle: str
    system: str
    dataset: str
    entity: str
    pseudonym: str | None
    check: str
    decision: str | None
    outcome: str  # resolved | waived | flagged | persisting | absent | not_run
    detail: str | None = None


class RerunReport(BaseModel):
    batches: dict[str, str]  # system -> the new batch id
    is_reconciled: dict[str, bool]
    problems: list[str]
    outcomes: list[RowOutcome]


def steward_name(by: str | None = None) -> str:
    """Who decides: ``by`` when an authenticated caller names its user (the dashboard's signed-in
    steward), else the acting identity (``etl.core.audit.current_user``: the Airflow run's
    triggering user or the operating-system account). Never free text from the command line."""
    from etl.core.audit import current_user

    name = (by or current_user() or "").strip()
    if not name:
        raise StewardError("no acting user: run as a named operating-system account")
    return name


def resolve_handles(settings: Settings, handles: list[str]) -> list[Problem]:
    """The rows named by handles (a quarantine_id or flag_id, or a unique prefix of one)."""
    if not handles:
        raise StewardError("name at least one row by its handle (see `vardflytt steward list`)")
    short = [h for h in handles if len(h.strip()) < MIN_HANDLE_CHARACTERS]
    if short:
        raise StewardError(
            f"handles need at least {MIN_HANDLE_CHARACTERS} characters: {', '.join(short)}"
        )
    wanted = list(dict.fromkeys(h.strip().lower() for h in handles))
    found: dict[str, list[Problem]] = {handle: [] for handle in wanted}
    with core_engine(settings.resolved_core_url).connect() as connection:
        for is_flagged in (False, True):
            query = problem_query(
                connection, QueueFilter(is_flagged=is_flagged, limit=None), handles=wanted
            )
            for row in connection.execute(query).mappings():
                problem = Problem(
                    handle=row["handle"],
                    kind="flagged" if is_flagged else "quarantined",
                    batch_id=row["batch_id"],
                    system=row["system"],
                    dataset=row["dataset"],
                    entity=row["entity"],
                    row_number=int(row["row_number"]),
                    source_key=row["source_key"],
                    check=row["check"],
                    severity=row["severity"],
                    reason=row["reason"],
                    decision=row["decision"],
                )
                for handle in wanted:
                    if problem.handle.startswith(handle):
                        found[handle].append(problem)
    unknown = [handle for handle, rows in found.items() if not rows]
    if unknown:
        raise StewardError(
            f"no quarantined or flagged row has the handle {', '.join(unknown)} "
            "(see `vardflytt steward list`, or `--flagged` for loaded-and-flagged rows)"
        )
    ambiguous = [handle for handle, rows in found.items() if len(rows) > 1]
    if ambiguous:
        raise StewardError(
            f"the handle {', '.join(ambiguous)} matches several rows; give more characters"
        )
    return [rows[0] for rows in found.values()]


def handles_for_check(
    settings: Settings, system: str, check: str, batch_id: str | None = None
) -> list[str]:
    """Every quarantined row of a system failing a check (by default every one still open,
    carried over from earlier batches too)."""
    page = list_queue(
        settings, QueueFilter(system=system, check=check, batch_id=batch_id, limit=None)
    )
    if not page.rows:
        where = f"batch {batch_id}" if batch_id else "its open problems"
        raise StewardError(f"{system} has no quarantined row failing {check} in {where}")
    return [row.handle for row in page.rows]


def check_justification(text: str | None, problems: list[Problem], is_required: bool) -> str | None:
    """A justification a reviewer can follow, that names no patient: or a clear refusal."""
    cleaned = " ".join((text or "").split())
    if not cleaned:
        if is_required:
            raise StewardError(
                "a waiver needs --justification saying why the row may load as it is"
            )
        return None
    if is_required and (
        len(cleaned) < MIN_JUSTIFICATION_CHARACTERS
        or len(_WORD.findall(cleaned)) < MIN_JUSTIFICATION_WORDS
    ):
        raise StewardError(
            f"justification too thin: write at least {MIN_JUSTIFICATION_CHARACTERS} characters "
            f"and {MIN_JUSTIFICATION_WORDS} words saying why the row may load as it is "
            "(e.g. which source document confirms it)"
        )
    # Identity numbers however typed (Unicode dashes and spaces, digit groups): screening.py.
    if screening.has_identity_number(cleaned):
        raise StewardError(screening.IDENTITY_REFUSAL)
    source_keys = {p.source_key for p in problems if p.source_key and len(p.source_key) >= 4}
    readable = screening.normalise(cleaned)
    if any(
        re.search(rf"(?<![0-9A-Za-z]){re.escape(key)}(?![0-9A-Za-z])", text)
        for key in source_keys
        for text in (cleaned, readable)
    ):
        raise StewardError(
            "the justification must not contain the rows' source keys (steward views show it); "
            "refer to the row by its handle or pseudonym instead"
        )
    return cleaned


def screen_against_batches(
    settings: Settings, text: str | None, batches: set[tuple[str, str]], by: str
) -> None:
    """Refuse a justification naming a patient of these ``(system, batch_id)`` batches (their
    names and identity numbers, compared by keyed hash; see ``screening.py``)."""
    if not text:
        return
    refusal = screening.screen(text, screening.load_batch_patients(settings, batches, by))
    if refusal:
        raise StewardError(refusal)


def _refuse_unwaivable(settings: Settings, problems: list[Problem]) -> None:
    thresholds = thresholds_for(settings.expectations_dir)
    refused = []
    for problem in problems:
        try:
            is_waivable = thresholds.is_waivable(problem.check, problem.system)
        except ThresholdsError:
            is_waivable = False
        if not is_waivable:
            refused.append(f"{problem.handle[:12]} ({problem.system}, {problem.check})")
    if refused:
        raise StewardError(
            "not waived: thresholds.yaml does not allow a steward to waive "
            + "; ".join(refused)
            + ". Fix these rows at source (`vardflytt steward fix`); nothing was recorded"
        )


def _decision_note(problem: Problem, decision: str, superseded: str | None) -> str | None:
    if decision == WAIVED and problem.check.startswith(SOURCE_PREFIX):
        # etl/validate/stage.py reads waivers for expectation-suite failures only; a row that
        # failed while transforming never reaches the suite, so the waiver cannot load it yet.
        return (
            "found while transforming: the pipeline applies waivers to expectation-suite checks "
            "only, so a re-run still quarantines this row"
        )
    if superseded == WAIVED and decision != WAIVED:
        return "supersedes a waiver: the next run judges the row afresh (quarantined if it fails)"
    return None


_Recorded = tuple[Problem, str | None, str | None, str, dt.datetime]


def decide(
    settings: Settings,
    handles: list[str],
    decision: str,
    by: str | None = None,
    justification: str | None = None,
    decided_at: dt.datetime | None = None,
) -> list[DecisionOutcome]:
    """Record one decision per named row, superseding the current one on the same key."""
    if decision not in DECISIONS:
        raise StewardError(f"unknown decision {decision!r}; one of {', '.join(DECISIONS)}")
    decided_by = steward_name(by)
    problems = list({p.key: p for p in resolve_handles(settings, handles)}.values())
    _refuse_keyless(problems)
    if decision == WAIVED:
        _refuse_unwaivable(settings, problems)
    justification = check_justification(justification, problems, is_required=decision == WAIVED)
    screen_against_batches(
        settings, justification, {(p.system, p.batch_id) for p in problems}, decided_by
    )
    decided_at = decided_at or utc_now()

    # Log the access before acting: an access that happened is never missing from the log.
    _log_decision_access(settings, problems, decision, decided_by)

    recorded: list[_Recorded] = []
    with core_engine(settings.resolved_core_url).begin() as connection:
        for problem in problems:
            recorded.append(
                _record_decision(
                    connection, problem, decision, justification, decided_by, decided_at
                )
            )
    return _decision_outcomes(settings, recorded, decision, justification)


def _refuse_keyless(problems: list[Problem]) -> None:
    """Refuse rows without a source key: no decision can follow them across runs."""
    keyless = [p.handle[:12] for p in problems if not p.source_key]
    if keyless:
        raise StewardError(
            f"rows {', '.join(keyless)} have no source key, so no decision can follow them "
            "across runs; fix them at source. Nothing was recorded"
        )


def _log_decision_access(
    settings: Settings, problems: list[Problem], decision: str, decided_by: str
) -> None:
    """Access-log the decision, once per system, entity and batch of the rows."""
    key = pseudonym_key(settings)
    groups: dict[tuple[str, str, str], list[Problem]] = {}
    for problem in problems:
        groups.setdefault((problem.system, problem.entity, problem.batch_id), []).append(problem)
    for (system, entity, batch_id), rows in sorted(groups.items()):
        record_access(
            settings,
            f"steward_{decision}",
            system,
            batch_id,
            len(rows),
            entity,
            subjects=[pseudonym(key, p.system, p.source_key) for p in rows if p.source_key],
            detail={"decided_by": decided_by},
        )


def _record_decision(
    connection: sa.Connection,
    problem: Problem,
    decision: str,
    justification: str | None,
    decided_by: str,
    decided_at: dt.datetime,
) -> _Recorded:
    """Supersede the row's current decision with this one, unless it is already current.

    Gives the row, the new decision id (None if unchanged), the decision replaced, who and when."""
    table = quarantine_decision
    on_key = (
        (table.c.source_system == problem.system)
        & (table.c.dataset == problem.dataset)
        & (table.c.source_key == problem.source_key)
        & (table.c.check_name == problem.check)
    )
    current = connection.execute(
        sa.select(
            table.c.decision,
            table.c.justification,
            table.c.decided_by,
            table.c.decided_at,
        )
        .where(on_key & table.c.is_current)
        .order_by(table.c.decided_at.desc())
    ).first()
    if current and (current.decision, current.justification) == (decision, justification):
        # Already current: nothing recorded; report who decided it, and when.
        return (problem, None, None, current.decided_by, current.decided_at)
    decision_id = _supersede(
        connection,
        on_key,
        source_system=problem.system,
        dataset=problem.dataset,
        entity=problem.entity,
        source_key=problem.source_key,
        check_name=problem.check,
        decision=decision,
        justification=justification,
        decided_by=decided_by,
        decided_at=decided_at,
        batch_id=problem.batch_id,
        quarantine_id=problem.handle,
    )
    superseded = current.decision if current else None
    return (problem, decision_id, superseded, decided_by, decided_at)


def _supersede(connection: sa.Connection, key: sa.ColumnElement[bool], **values: object) -> str:
    """The decisions matching ``key`` no longer current, and a new current one of ``values`` in
    their place; its decision id."""
    table = quarantine_decision
    connection.execute(table.update().where(key).values(is_current=False))
    decision_id = str(uuid.uuid4())
    connection.execute(table.insert().values(decision_id=decision_id, is_current=True, **values))
    return decision_id


def _decision_outcomes(
    settings: Settings, recorded: list[_Recorded], decision: str, justification: str | None
) -> list[DecisionOutcome]:
    """The outcome of each recorded (or unchanged) decision, naming its row by pseudonym."""
    pseudonym_rows = with_pseudonyms(
        settings, [{"system": p.system, "source_key": p.source_key} for p, *_ in recorded]
    )
    return [
        DecisionOutcome(
            handle=problem.handle,
            decision_id=decision_id,
            system=problem.system,
            dataset=problem.dataset,
            entity=problem.entity,
            pseudonym=pseudonym_row["pseudonym"],
            check=problem.check,
            decision=decision,
            justification=justification,
            decided_by=by_whom,
            decided_at=when,
            batch_id=problem.batch_id,
            is_recorded=decision_id is not None,
            superseded=superseded,
            note=_decision_note(problem, decision, superseded),
        )
        for (problem, decision_id, superseded, by_whom, when), pseudonym_row in zip(
            recorded, pseudonym_rows, strict=True
        )
    ]


def fix_at_source(
    settings: Settings,
    handles: list[str],
    by: str | None = None,
    justification: str | None = None,
    decided_at: dt.datetime | None = None,
) -> list[DecisionOutcome]:
    """The source system has been (or will be) corrected; the next run should load the row."""
    return decide(settings, handles, FIXED_AT_SOURCE, by, justification, decided_at)


def waive(
    settings: Settings,
    handles: list[str],
    justification: str,
    by: str | None = None,
    decided_at: dt.datetime | None = None,
) -> list[DecisionOutcome]:
    """Accept failing rows as they are: the next run loads them, flagged ``waived:<reason>``."""
    return decide(settings, handles, WAIVED, by, justification, decided_at)


def reinject(
    settings: Settings,
    handles: list[str],
    by: str | None = None,
    justification: str | None = None,
    decided_at: dt.datetime | None = None,
) -> list[DecisionOutcome]:
    """Send rows through validation again (supersedes a waiver: the row is judged afresh)."""
    return decide(settings, handles, REINJECT, by, justification, decided_at)


def history(
    settings: Settings,
    handle: str | None = None,
    system: str | None = None,
    limit: int | None = 50,
) -> list[HistoryEntry]:
    """The decision trail of one row (oldest first), or the latest decisions (newest first)."""
    table = quarantine_decision
    query = sa.select(table)
    if handle:
        keys = _decision_keys(settings, handle)
        query = query.where(
            sa.or_(
                *(
                    (table.c.source_system == s)
                    & (table.c.dataset == d)
                    & (table.c.source_key == k)
                    & (table.c.check_name == c)
                    for s, d, k, c in keys
                )
            )
        ).order_by(table.c.decided_at, table.c.decision_id)
    else:
        query = query.order_by(table.c.decided_at.desc(), table.c.decision_id.desc())
    if system:
        query = query.where(table.c.source_system == system)
    if limit and not handle:
        query = query.limit(limit)
    renamed = {"source_system": "system", "check_name": "check", "quarantine_id": "handle"}
    with core_engine(settings.resolved_core_url).connect() as connection:
        rows = [
            {renamed.get(name, name): value for name, value in row.items()}
            for row in connection.execute(query).mappings()
        ]
    for row in rows:
        if row["source_key"] == ALL_ROWS:
            row["source_key"] = None  # an entity deferral names no row, so no pseudonym
    entries = [HistoryEntry(**row) for row in with_pseudonyms(settings, rows)]
    for name in sorted({entry.system for entry in entries}):
        shown = [entry for entry in entries if entry.system == name]
        record_access(
            settings,
            "steward_history",
            name,
            "",
            len(shown),
            subjects=[entry.pseudonym for entry in shown],
        )
    return entries


def _decision_keys(settings: Settings, handle: str) -> list[tuple[str, str, str | None, str]]:
    try:
        return [p.key for p in resolve_handles(settings, [handle]) if p.source_key]
    except StewardError:
        # The row's batch may have been re-run since: decisions remember the handle they were
        # made on.
        table = quarantine_decision
        with core_engine(settings.resolved_core_url).connect() as connection:
            keys = connection.execute(
                sa.select(
                    table.c.source_system, table.c.dataset, table.c.source_key, table.c.check_name
                )
                .where(table.c.quarantine_id.startswith(handle.strip().lower()))
                .distinct()
            ).all()
        if not keys:
            raise
        return [tuple(key) for key in keys]


def _as_of_date(settings: Settings, problems: list[Problem]) -> dt.date:
    """The reference date the rows were judged under, from their batches' manifests."""
    dates = set()
    for batch_id, system in {(p.batch_id, p.system) for p in problems}:
        try:
            dates.add(read_manifest(settings, batch_id, system).as_of_date)
        except FileNotFoundError as error:
            raise StewardError(
                f"{system} batch {batch_id} is no longer in the landing zone; "
                "give the reference date with --as-of-date"
            ) from error
    if len(dates) > 1:
        raise StewardError(
            f"the rows come from batches with different reference dates "
            f"({', '.join(sorted(d.isoformat() for d in dates))}); choose one with --as-of-date"
        )
    return dates.pop()


def rerun(
    settings: Settings,
    handles: list[str],
    run_label: str,
    as_of_date: dt.date | None = None,
    on_stage: Callable[[str, str], None] | None = None,
) -> RerunReport:
    """Re-run every system the rows come from in a new batch, then say what became of each row.

    ``run_label`` names the run (the caller's clock, e.g. ``steward__20261125T101500``); the new
    batch of each system is ``<system>__<run_label>``.
    """
    from etl import pipeline
    from etl.validate.gate import DataQualityGateError

    problems = resolve_handles(settings, handles)
    batches: dict[str, str] = {}
    reconciled: dict[str, bool] = {}
    messages: list[str] = []
    not_run: set[str] = set()
    for system in sorted({p.system for p in problems}):
        of_system = [p for p in problems if p.system == system]
        as_of = as_of_date or _as_of_date(settings, of_system)
        batch_id = pipeline.batch_id_for(system, run_label)
        batches[system] = batch_id
        step = (lambda name, system=system: on_stage(system, name)) if on_stage else None
        try:
            report = pipeline.run_system(system, batch_id, as_of, settings=settings, on_stage=step)
            reconciled[system] = report.is_reconciled
        except DataQualityGateError as error:
            messages.append(f"{system}: the quality gate stopped batch {batch_id}: {error}")
            reconciled[system] = False
            not_run.add(system)
        except pipeline.ReconciliationError as error:
            messages.append(str(error))
            reconciled[system] = False
    outcomes = _assess(settings, problems, batches, not_run)
    return RerunReport(
        batches=batches, is_reconciled=reconciled, problems=messages, outcomes=outcomes
    )


def _assess(
    settings: Settings, problems: list[Problem], batches: dict[str, str], not_run: set[str]
) -> list[RowOutcome]:
    current = {
        p.handle: p.decision for p in resolve_handles(settings, [p.handle for p in problems])
    }
    results = []
    detail: str | None
    with core_engine(settings.resolved_core_url).connect() as connection:
        for problem in problems:
            outcome, detail = NOT_RUN, "the quality gate stopped the re-run"
            if problem.system not in not_run:
                outcome, detail = _outcome(connection, problem, batches[problem.system])
            results.append((problem, outcome, detail))
    rows = with_pseudonyms(
        settings, [{"system": p.system, "source_key": p.source_key} for p, _, _ in results]
    )
    return [
        RowOutcome(
            handle=problem.handle,
            system=problem.system,
            dataset=problem.dataset,
            entity=problem.entity,
            pseudonym=row["pseudonym"],
            check=problem.check,
            decision=current.get(problem.handle),
            outcome=outcome,
            detail=detail,
        )
        for (problem, outcome, detail), row in zip(results, rows, strict=True)
    ]


def _outcome(connection: sa.Connection, problem: Problem, batch_id: str) -> tuple[str, str | None]:
    """Where the row ended up in the new batch: quarantined, flagged, loaded, or not extracted."""
    if problem.source_key is None:
        return PERSISTING, "no source key: the row cannot be followed across runs"
    for table in (quarantine, dq_flag):
        rows = connection.execute(
            sa.select(table.c.check_name, table.c.reason).where(
                (table.c.batch_id == batch_id)
                & (table.c.source_system == problem.system)
                & (table.c.dataset == problem.dataset)
                & (table.c.source_key == problem.source_key)
            )
        ).all()
        if not rows:
            continue
        reasons = ", ".join(sorted({row.reason for row in rows}))
        if table is quarantine:
            return PERSISTING, f"still quarantined: {reasons}"
        is_waived = any(row.reason.startswith(WAIVED_REASON_PREFIX) for row in rows)
        return (WAIVED if is_waived else FLAGGED_OUTCOME), f"loaded and flagged: {reasons}"
    entity = ENTITY_TABLES[problem.entity]
    is_loaded = connection.execute(
        sa.select(sa.literal(1))
        .where(
            (entity.c.source_system == problem.system) & (entity.c.source_key == problem.source_key)
        )
        .limit(1)
    ).first()
    if is_loaded:
        return RESOLVED, "loaded"
    return ABSENT, "not in the re-run's extract (removed at source?)"


# --- deferring a whole entity of one batch ----------------------------------------------------


class DeferralOutcome(BaseModel):
    """A recorded (or undone) entity deferral: counts and check ids only."""

    decision_id: str
    system: str
    entity: str
    batch_id: str
    decision: str
    justification: str | None
    decided_by: str
    decided_at: dt.datetime
    breaching_checks: list[str]
    rows: int
    is_recorded: bool
    superseded: str | None = None
    note: str | None = None


def _deferral_key(system: str, entity: str, batch_id: str):
    table = quarantine_decision
    return (
        (table.c.source_system == system)
        & (table.c.entity == entity)
        & (table.c.batch_id == batch_id)
        & (table.c.source_key == ALL_ROWS)
        & (table.c.check_name == deferred_check(entity))
    )


def _promotion_note(connection: sa.Connection, entity: str, batch_id: str) -> str | None:
    state = connection.execute(
        sa.select(promotion.c.state).where(promotion.c.batch_id == batch_id)
    ).scalar()
    if state in (STAGED, PROMOTED):
        return (
            f"batch {batch_id} is already {state} without {entity}; this changes what the gate "
            f"decides for it from now on. Remove it with `vardflytt cutover rollback --batch "
            f"{batch_id}` if it must not stay"
        )
    return None


@dataclass(frozen=True)
class _EntityDecision:
    """An entity-wide decision on one batch (source key ``ALL_ROWS``), as it is recorded."""

    system: str
    entity: str
    batch_id: str
    dataset: str
    check_name: str
    decision: str
    justification: str | None
    decided_by: str
    decided_at: dt.datetime


def _record_entity_decision(connection: sa.Connection, record: _EntityDecision) -> str:
    """Supersede every decision on the entity of the batch with this one; its decision id."""
    return _supersede(
        connection,
        _deferral_key(record.system, record.entity, record.batch_id),
        source_system=record.system,
        dataset=record.dataset,
        entity=record.entity,
        source_key=ALL_ROWS,
        check_name=record.check_name,
        decision=record.decision,
        justification=record.justification,
        decided_by=record.decided_by,
        decided_at=record.decided_at,
        batch_id=record.batch_id,
        quarantine_id=None,
    )


def _recorded_deferral(
    record: _EntityDecision,
    decision_id: str,
    breaching_checks: list[str],
    rows: int,
    superseded: str | None,
    note: str | None,
) -> DeferralOutcome:
    """The outcome of a newly recorded entity decision."""
    return DeferralOutcome(
        decision_id=decision_id,
        system=record.system,
        entity=record.entity,
        batch_id=record.batch_id,
        decision=record.decision,
        justification=record.justification,
        decided_by=record.decided_by,
        decided_at=record.decided_at,
        breaching_checks=breaching_checks,
        rows=rows,
        is_recorded=True,
        superseded=superseded,
        note=note,
    )


def _entity_dataset(settings: Settings, system: str, entity: str) -> str:
    """The dataset an entity of the system is read from; refused when it has no such entity."""
    from etl.pipeline import catalog

    entities = catalog(settings).system(system).entities
    if entity not in entities:
        raise StewardError(
            f"{system} has no entity {entity!r}; its entities: {', '.join(entities)}"
        )
    return entities[entity].dataset


def _breaching_checks(
    settings: Settings, system: str, entity: str, batch_id: str
) -> tuple[list[str], int]:
    """The entity's checks over threshold in the batch's gate, and the rows they evaluated.

    Refused when the batch has no gate result for the entity, or none is over threshold."""
    with core_engine(settings.resolved_core_url).connect() as connection:
        results = connection.execute(
            sa.select(dq_result.c.check_name, dq_result.c.rows_evaluated, dq_result.c.is_breached)
            .where(
                (dq_result.c.batch_id == batch_id)
                & (dq_result.c.source_system == system)
                & (dq_result.c.entity == entity)
            )
            .order_by(dq_result.c.check_name)
        ).all()
    if not results:
        raise StewardError(
            f"{system} batch {batch_id} has no quality-gate result for {entity}: run the batch "
            "(its gate names the entities that stop it) before deferring one. Nothing was recorded"
        )
    breaching = [row.check_name for row in results if row.is_breached]
    if not breaching:
        raise StewardError(
            f"{entity} is within every threshold in {system} batch {batch_id}: nothing to defer. "
            "Nothing was recorded"
        )
    return breaching, max(row.rows_evaluated for row in results)


def _already_deferred(
    current: sa.Row, record: _EntityDecision, breaching_checks: list[str], rows: int
) -> DeferralOutcome:
    """The outcome when the entity is already deferred: the current deferral, nothing recorded."""
    return DeferralOutcome(
        decision_id=current.decision_id,
        system=record.system,
        entity=record.entity,
        batch_id=record.batch_id,
        decision=ENTITY_DEFERRED,
        justification=current.justification,
        decided_by=current.decided_by,
        decided_at=current.decided_at,
        breaching_checks=breaching_checks,
        rows=rows,
        is_recorded=False,
        note="already deferred",
    )


def defer_entity(
    settings: Settings,
    system: str,
    entity: str,
    batch_id: str,
    justification: str | None,
    by: str | None = None,
    decided_at: dt.datetime | None = None,
) -> DeferralOutcome:
    """Let the gate promote ``system``'s batch without ``entity``, whose checks exceed thresholds.

    The entity's rows are quarantined as ``entity_deferred`` when the gate next runs for the
    batch (accounted, never lost, not waivable); the other entities' checks gate as before.
    Recorded with who, when and why; ``undo_deferral`` reverses it.

    A deferral waives nothing: no row failing any check loads because of it, so ``source.*``
    problems stay unwaivable, and what stops a batch before the gate (physical accounting, drift
    found while extracting) is never within its reach.
    """
    decided_by = steward_name(by)
    dataset = _entity_dataset(settings, system, entity)
    justification = check_justification(justification, [], is_required=True)
    breaching, rows = _breaching_checks(settings, system, entity, batch_id)
    screen_against_batches(settings, justification, {(system, batch_id)}, decided_by)
    decided_at = decided_at or utc_now()
    # Log the access before acting: an access that happened is never missing from the log.
    record_access(
        settings,
        f"steward_{ENTITY_DEFERRED}",
        system,
        batch_id,
        rows,
        entity,
        subject_scope=SCOPE_BATCH,
        subject_count=rows,
        detail={"decided_by": decided_by},
    )
    record = _EntityDecision(
        system=system,
        entity=entity,
        batch_id=batch_id,
        dataset=dataset,
        check_name=deferred_check(entity),
        decision=ENTITY_DEFERRED,
        justification=justification,
        decided_by=decided_by,
        decided_at=decided_at,
    )
    table = quarantine_decision
    key = _deferral_key(system, entity, batch_id)
    with core_engine(settings.resolved_core_url).begin() as connection:
        current = connection.execute(
            sa.select(table).where(key & table.c.is_current).order_by(table.c.decided_at.desc())
        ).first()
        note = _promotion_note(connection, entity, batch_id)
        if current and current.decision == ENTITY_DEFERRED:
            return _already_deferred(current, record, breaching, rows)
        decision_id = _record_entity_decision(connection, record)
    superseded = current.decision if current else None
    return _recorded_deferral(record, decision_id, breaching, rows, superseded, note)


def _current_deferral(settings: Settings, decision_id: str) -> sa.Row:
    """The current entity deferral a decision id (or a unique prefix of 8+ characters) names."""
    prefix = decision_id.strip().lower()
    if len(prefix) < MIN_HANDLE_CHARACTERS:
        raise StewardError(f"give at least {MIN_HANDLE_CHARACTERS} characters of the decision id")
    table = quarantine_decision
    with core_engine(settings.resolved_core_url).connect() as connection:
        found = connection.execute(
            sa.select(table).where(
                table.c.decision_id.startswith(prefix) & (table.c.source_key == ALL_ROWS)
            )
        ).all()
    if len(found) != 1:
        raise StewardError(
            f"no entity deferral has the decision id {prefix}"
            if not found
            else f"the decision id {prefix} matches several decisions; give more characters"
        )
    deferral = found[0]
    if deferral.decision != ENTITY_DEFERRED or not deferral.is_current:
        raise StewardError(
            f"decision {deferral.decision_id} is not a current entity deferral "
            f"({deferral.decision}{'' if deferral.is_current else ', superseded'}); nothing to undo"
        )
    return deferral


def undo_deferral(
    settings: Settings,
    decision_id: str,
    by: str | None = None,
    justification: str | None = None,
    decided_at: dt.datetime | None = None,
) -> DeferralOutcome:
    """Reverse an entity deferral (by its decision id or a unique prefix of 8+ characters).

    The deferral is superseded, never deleted, by an ``entity_deferral_undone`` decision; the
    next gate of the batch judges the entity again and refuses as before."""
    decided_by = steward_name(by)
    deferral = _current_deferral(settings, decision_id)
    justification = check_justification(justification, [], is_required=False)
    decided_at = decided_at or utc_now()
    system, entity, batch_id = deferral.source_system, deferral.entity, deferral.batch_id
    screen_against_batches(settings, justification, {(system, batch_id)}, decided_by)
    record_access(
        settings,
        f"steward_{ENTITY_DEFERRAL_UNDONE}",
        system,
        batch_id,
        0,
        entity,
        detail={"decided_by": decided_by},
    )
    record = _EntityDecision(
        system=system,
        entity=entity,
        batch_id=batch_id,
        dataset=deferral.dataset,
        check_name=deferral.check_name,
        decision=ENTITY_DEFERRAL_UNDONE,
        justification=justification,
        decided_by=decided_by,
        decided_at=decided_at,
    )
    with core_engine(settings.resolved_core_url).begin() as connection:
        note = _promotion_note(connection, entity, batch_id)
        undo_id = _record_entity_decision(connection, record)
    return _recorded_deferral(record, undo_id, [], 0, ENTITY_DEFERRED, note)
