"""Validation reports for a run: what the quality gate saw, per system, entity and check.

A run is a set of batches: those of one Airflow run (``--run``), or each system's latest batch.
:func:`write_validation_report` writes, under ``<storage root>/reports/validation/<run>/``
(or, for one batch, ``<storage root>/reports/validation/batches/<batch>/``: every batch gets its
own, written by the pipeline's report step whether the batch loaded or the gate stopped it, see
``etl.pipeline.report``):

* ``summary.html``, ``summary.md`` and ``summary.json`` for data stewards: per system, entity
  and check the rows evaluated and failing, the failure rate against its threshold and the
  gate's decision; the trend of the quarantined problem rows against the problems still open
  after the batch before it (new, persisting, resolved, deleted at source, and for a delta
  carried over: see :func:`_trend`); and the record accounting, with, for a wave's slice of a
  system split by care unit, the rows left to other waves (``wave_scope``, per wave: "belongs
  to wave X") and the changes held as conflicts, so a steward sees why rows were not loaded;
* ``data_docs/``: Great Expectations Data Docs built from the same counts (``data_docs.py``).

Safe by construction: the inputs are counts, check ids, row numbers and source keys, and a
source key (it can be an identity number) leaves only as its keyed pseudonym (``pseudonym.py``).
Counts of problem rows from 1 to 4 are shown as ``<5`` (``masking.MIN_COUNT``); a rate computed
from such a count is shown as an upper bound, and a loaded count that would give a withheld
count back by subtraction is withheld too. The worklist of problem rows names each row by
pseudonym and row number only; stewards resolve a pseudonym through the steward queue.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from pydantic import BaseModel, TypeAdapter

from etl.batch import BatchPaths, safe_batch_id, write_model_json
from etl.core.audit import SCOPE_BATCH, record_access
from etl.core.database import core_engine
from etl.core.memo import Memo, folder_key
from etl.core.pseudonym import pseudonym_key, pseudonymise
from etl.core.tables import batch_accounting, dq_result, load_batch
from etl.load.open_problems import (
    LOADED_STATUSES,
    PROBLEMS,
    Scope,
    TrendUnavailableError,
    fates,
    identities,
    last_loaded_before,
    open_problems,
    problem_keys,
    scope,
)
from etl.report.data_docs import build_data_docs, documented_checks
from etl.report.masking import MIN_COUNT
from etl.report.render import render_html, render_markdown, write_text
from etl.settings import Settings
from etl.validate.gate import WAVE_SLICE

WORKLIST_ROWS_SHOWN = 200  # per system in HTML and Markdown; summary.json has every row
SUPPRESSED = f"<{MIN_COUNT}"
LATEST = "latest"
BATCHES = "batches"  # the folder of per-batch reports, beside the run reports

Count = int | str
# new: quarantined now, not open before; persisting: open before, processed again, still fails;
# resolved: open before, its row processed again and no longer failing the check;
# deleted_at_source: open before, its key deleted in the legacy system since (a delta's list);
# carried_over: open before, its row not processed by this delta (unchanged at source), so still
# open although this batch did not check it again.
Status = Literal["new", "persisting", "resolved", "deleted_at_source", "carried_over"]
STATUSES: tuple[Status, ...] = (
    "new",
    "persisting",
    "resolved",
    "deleted_at_source",
    "carried_over",
)


class NoResultsError(LookupError):
    """No stored data-quality results match the requested run."""


def shown(count: int) -> Count:
    """A problem count as a report may show it: 1 to 4 become ``<5``."""
    return SUPPRESSED if 0 < count < MIN_COUNT else int(count)


def is_suppressed(count: int) -> bool:
    return 0 < count < MIN_COUNT


# --- what the report holds (and summary.json is) ----------------------------------------------


class CheckLine(BaseModel):
    entity: str
    check_name: str
    dimension: str | None
    severity: str
    rows_evaluated: int
    rows_failed: Count
    rows_waived: Count
    failure_rate: float | None  # None when the failing count is withheld
    failure_rate_below: float | None  # then the rate is below this
    max_failure_rate: float | None
    is_breached: bool
    in_data_docs: bool


class TrendLine(BaseModel):
    dataset: str
    entity: str
    check_name: str
    new: Count
    persisting: Count
    resolved: Count
    deleted_at_source: Count = 0
    carried_over: Count = 0


class ProblemRow(BaseModel):
    status: Status
    dataset: str
    entity: str
    check_name: str
    pseudonym: str | None  # None: the source row had no key
    row_number: int  # in ``quarantined_in``'s extract
    quarantined_in: str  # the batch whose quarantine holds the row


_PROBLEM_ROWS = TypeAdapter(list[ProblemRow])


class Trend(BaseModel):
    previous_batch_id: str | None
    is_available: bool
    note: str
    new: Count = 0
    persisting: Count = 0
    resolved: Count = 0
    deleted_at_source: Count = 0
    carried_over: Count = 0
    is_delta: bool = False  # a delta batch: only its new, changed and dependent rows were checked
    lines: list[TrendLine] = []
    rows: list[ProblemRow] = []


class AccountingLine(BaseModel):
    entity: str
    dataset: str
    extracted: int
    loaded: Count | None  # None: withheld, it would reveal a withheld count
    quarantined: Count
    excluded: Count
    merged: Count
    residue: Count
    is_verified: bool
    # A wave's slice of a split system: rows of other waves (each loads its own) and rows of
    # cut-over waves changed in the legacy system (conflicts for the stewards, not applied).
    wave_scope: Count = 0
    conflicted: Count = 0
    # Rows of ``wave_scope`` per owning wave, when the batch's slice counts are at hand.
    other_waves: dict[str, Count] = {}


class DeletionLine(BaseModel):
    """A sliced delta's deleted keys, each in one outcome (etl/cutover/slices.py)."""

    listed: Count
    applied: Count
    other_waves: dict[str, Count]  # rows another wave loaded: its own delta deletes them
    conflicted: Count
    absent: Count  # no core row: nothing to delete


class SystemSummary(BaseModel):
    system: str
    batch_id: str
    run_id: str | None
    status: str
    gate: Literal["pass", "breach", "no results"]
    thresholds_digest: str | None
    mapping_version: str | None
    evaluated_at: dt.datetime | None
    checks: list[CheckLine]
    trend: Trend
    accounting: list[AccountingLine]
    wave: str | None = None  # the wave whose slice of a split system this batch is
    deletions: DeletionLine | None = None

    @property
    def breaches(self) -> int:
        return sum(1 for check in self.checks if check.is_breached)

    @property
    def failing_checks(self) -> int:
        return sum(1 for check in self.checks if check.rows_failed != 0)

    @property
    def is_reconciled(self) -> bool | None:
        return all(line.is_verified for line in self.accounting) if self.accounting else None

    @property
    def is_wave_slice(self) -> bool:
        """A wave's slice of a split system: rows went to other waves or were held."""
        return self.wave is not None or any(
            line.wave_scope != 0 or line.conflicted != 0 or line.other_waves
            for line in self.accounting
        )


class ValidationSummary(BaseModel):
    run_label: str
    run_id: str | None
    batch_id: str | None = None  # a report of this one batch
    min_count: int = MIN_COUNT
    worklist_rows_shown: int = WORKLIST_ROWS_SHOWN
    data_docs: str | None  # None: not built yet (a final delta's, built after the decision)
    mapping_docs: str | None
    systems: list[SystemSummary]
    data_docs_note: str | None = None  # why there are no Data Docs yet


@dataclass(frozen=True)
class ReportPaths:
    folder: Path
    summary_html: Path
    summary_markdown: Path
    summary_json: Path
    data_docs_index: Path | None  # None: deferred (``write_validation_report(data_docs=False)``)


# --- which batches ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SelectedBatch:
    batch_id: str
    system: str
    run_id: str | None
    evaluated_at: dt.datetime | None  # when the gate stored its results
    started_at: dt.datetime | None  # when the load began (None: never loaded)
    load_status: str | None

    @property
    def as_of(self) -> dt.datetime:
        times = [t for t in (self.evaluated_at, self.started_at) if t is not None]
        return max(times)


def select_batches(
    connection: sa.Connection, run_id: str | None = None, batch_id: str | None = None
) -> list[SelectedBatch]:
    """The batches of ``run_id``, the batch ``batch_id``, or each system's latest batch (gated
    or loaded)."""
    gated = sa.select(
        dq_result.c.batch_id,
        dq_result.c.source_system,
        sa.func.max(dq_result.c.run_id).label("run_id"),
        sa.func.min(dq_result.c.evaluated_at).label("evaluated_at"),
    ).group_by(dq_result.c.batch_id, dq_result.c.source_system)
    loaded = sa.select(
        load_batch.c.batch_id,
        load_batch.c.source_system,
        load_batch.c.run_id,
        load_batch.c.started_at,
        load_batch.c.status,
    ).where(load_batch.c.is_dry_run.is_(False))
    batches: dict[tuple[str, str], dict] = {}
    for row in connection.execute(gated):
        batches[(row.batch_id, row.source_system)] = {
            "run_id": row.run_id,
            "evaluated_at": row.evaluated_at,
        }
    for loaded_row in connection.execute(loaded):
        entry = batches.setdefault((loaded_row.batch_id, loaded_row.source_system), {})
        entry.update(started_at=loaded_row.started_at, load_status=loaded_row.status)
        entry["run_id"] = entry.get("run_id") or loaded_row.run_id
    selected = [
        SelectedBatch(
            batch_id=batch_id,
            system=system,
            run_id=entry.get("run_id"),
            evaluated_at=entry.get("evaluated_at"),
            started_at=entry.get("started_at"),
            load_status=entry.get("load_status"),
        )
        for (batch_id, system), entry in batches.items()
    ]
    if batch_id is not None:
        selected = [batch for batch in selected if batch.batch_id == batch_id]
    elif run_id is not None:
        selected = [batch for batch in selected if batch.run_id == run_id]
    else:
        latest: dict[str, SelectedBatch] = {}
        for batch in selected:
            if batch.system not in latest or batch.as_of > latest[batch.system].as_of:
                latest[batch.system] = batch
        selected = list(latest.values())
    return sorted(selected, key=lambda batch: batch.system)


def run_label(batches: list[SelectedBatch], run_id: str | None) -> str:
    """The report folder's name: the run id, or ``latest`` when the batches span several runs."""
    runs = {batch.run_id for batch in batches}
    if run_id is None and len(runs) == 1 and None not in runs:
        run_id = runs.pop()
    label = safe_batch_id(run_id) if run_id else LATEST
    return f"run_{label}" if label == BATCHES else label  # a run named so keeps its own folder


def previous_loaded_batch(connection: sa.Connection, batch: SelectedBatch) -> str | None:
    """The system's last loaded batch before this one (the baseline of the trend)."""
    before = batch.started_at or batch.evaluated_at
    return last_loaded_before(connection, batch.system, batch.batch_id, before)


# --- per system -------------------------------------------------------------------------------


def _check_lines(rows: list[dict], in_data_docs: set[tuple[str, str]]) -> list[CheckLine]:
    lines = []
    for row in rows:
        evaluated, failed = row["rows_evaluated"], row["rows_failed"]
        withheld = is_suppressed(failed)
        lines.append(
            CheckLine(
                entity=row["entity"],
                check_name=row["check_name"],
                dimension=row["dimension"],
                severity=row["severity"],
                rows_evaluated=evaluated,
                rows_failed=shown(failed),
                rows_waived=shown(row["rows_waived"]),
                failure_rate=None if withheld else (failed / evaluated if evaluated else 0.0),
                failure_rate_below=MIN_COUNT / evaluated if withheld and evaluated else None,
                max_failure_rate=row["max_failure_rate"],
                is_breached=bool(row["is_breached"]),
                in_data_docs=(row["entity"], row["check_name"]) in in_data_docs,
            )
        )

    def order(line: CheckLine, failed: int) -> tuple:
        # Withheld counts sort together, so the order does not give them away.
        weight = failed if failed >= MIN_COUNT else (1 if failed else 0)
        return (not line.is_breached, -weight, line.entity, line.check_name)

    paired = sorted(zip(lines, rows, strict=True), key=lambda p: order(p[0], p[1]["rows_failed"]))
    return [line for line, _ in paired]


# The open problems after a batch: shared with the steward queue and the dashboard.
_scope = scope
_problem_keys = problem_keys
_open_problems = open_problems


def _trend(
    settings: Settings,
    connection: sa.Connection,
    batch: SelectedBatch,
    key: bytes,
    is_loaded: bool,
    reads: list[tuple[SelectedBatch, int]],
) -> Trend:
    """Quarantined problems of this batch against those open before it; the rows whose source
    keys were read (to pseudonymise them) are added to ``reads`` for the access log.

    Before a full load: the problems open after the system's previous loaded batch. Before a
    delta: those open after its base (the batch it was compared with; after a rollback, an
    earlier one), and a problem of an earlier batch is resolved only if this delta processed its
    row again and the check passed; unprocessed, it is carried over (still open). When what a
    batch processed is no longer known (its landing files removed), there is no trend rather
    than a guess.
    """
    previous = previous_loaded_batch(connection, batch)
    if not is_loaded:
        return Trend(
            previous_batch_id=previous,
            is_available=False,
            note="this batch was not loaded, so no quarantined rows were recorded for it",
        )
    try:
        scope = _scope(settings, connection, batch.system, batch.batch_id)
        if scope.is_delta:
            previous = scope.base_batch_id
        current = _problem_keys(connection, batch.system, batch.batch_id)
        before = (
            _open_problems(settings, connection, batch.system, previous)
            if previous
            else PROBLEMS.empty_table()
        )
    except TrendUnavailableError as unknown:
        return Trend(
            previous_batch_id=previous,
            is_available=False,
            note=f"no trend: {unknown}; none is shown rather than problems wrongly resolved",
        )
    reads.append((batch, current.num_rows + before.num_rows))
    listed = trend_statuses(current, before, scope)
    counts = _status_counts(listed)
    rows = _problem_rows(listed, key, batch.system)
    if scope.is_delta:
        note = (
            f"delta batch: compared with the problems still open after its base batch {previous}; "
            "only the rows this delta processed (new, changed or dependent) were checked again, "
            "so a problem whose row it did not process is carried over (still open), and one whose "
            "key was deleted at source is listed as deleted at source, not resolved"
        )
    elif previous:
        note = (
            f"compared with the problems still open after the previous loaded batch {previous}; "
            "this full load checked every row again (resolved: no longer quarantined, fixed or "
            "no longer in the source)"
        )
    else:
        note = "first loaded batch of this system: every quarantined row counts as new"
    return Trend(
        previous_batch_id=previous,
        is_available=True,
        note=note,
        is_delta=scope.is_delta,
        **{status: shown(sum(n[status] for n in counts.values())) for status in STATUSES},
        lines=[
            TrendLine(
                dataset=dataset,
                entity=entity,
                check_name=check,
                **{status: shown(n[status]) for status in STATUSES},
            )
            for (dataset, entity, check), n in sorted(counts.items())
        ],
        rows=rows,
    )


def trend_statuses(current: pa.Table, before: pa.Table, batch_scope: Scope) -> pa.Table:
    """Every problem of the trend with its ``status``, in the order the report lists them.

    ``current``: the batch's own problems; ``before``: those open before it (both
    etl/load/open_problems.py's ``PROBLEMS``). A problem of ``current`` is persisting if it was
    open before, else new; one open before that the batch did not quarantine is resolved,
    deleted at source or carried over (``fates`` under the batch's scope). Sorted by status (in
    ``STATUSES``' order), dataset, check and row number; ties keep the order of ``current``,
    then ``before``. All in Arrow: a delta's trend holds every problem still open."""
    current_ids, before_ids = identities(current), identities(before)
    was_open = pc.is_in(current_ids, value_set=before_ids.combine_chunks())
    again = pc.is_in(before_ids, value_set=current_ids.combine_chunks())
    gone = before.filter(pc.invert(again))
    status = pa.concat_arrays(
        [
            pc.if_else(was_open, "persisting", "new").combine_chunks().cast(pa.string()),
            fates(batch_scope, gone).cast(pa.string()),
        ]
    )
    rank = pc.index_in(status, value_set=pa.array(STATUSES, pa.string()))
    both = pa.concat_tables([current, gone]).combine_chunks()
    listed = both.append_column("status", status).append_column("rank", rank)
    order = pc.sort_indices(  # a stable sort: ties stay in the order above
        listed,
        sort_keys=[(name, "ascending") for name in ("rank", "dataset", "check", "row_number")],
    )
    return listed.take(order).drop_columns(["rank"])


def _status_counts(listed: pa.Table) -> dict[tuple[str, str, str], dict[Status, int]]:
    """Per (dataset, entity, check), how many problems of each status."""
    counts: dict[tuple[str, str, str], dict[Status, int]] = defaultdict(
        lambda: dict.fromkeys(STATUSES, 0)
    )
    if not listed.num_rows:
        return counts
    grouped = listed.group_by(["dataset", "entity", "check", "status"]).aggregate(
        [("status", "count")]
    )
    for dataset, entity, check, status, count in zip(
        *(grouped[name].to_pylist() for name in ("dataset", "entity", "check", "status")),
        grouped["status_count"].to_pylist(),
        strict=True,
    ):
        counts[(dataset, entity, check)][status] = count
    return counts


def _problem_rows(listed: pa.Table, key: bytes, system: str) -> list[ProblemRow]:
    """The listed problems as the report shows them: each source key as its keyed pseudonym
    (hashed once per distinct key), built as validated models in one call (compiled validation,
    faster than a constructor or ``model_construct`` per row)."""
    shown = pseudonymise(key, system, listed["source_key"].to_pandas())
    names = ("status", "dataset", "entity", "check_name", "pseudonym", "row_number")
    columns = [listed[name].to_pylist() for name in ("status", "dataset", "entity", "check")]
    columns += [shown.astype(object).where(shown.notna(), None).tolist()]
    columns += [listed[name].to_pylist() for name in ("row_number", "quarantined_in")]
    return _PROBLEM_ROWS.validate_python(
        [
            dict(zip((*names, "quarantined_in"), values, strict=True))
            for values in zip(*columns, strict=True)
        ]
    )


def _wave_slice(settings: Settings, batch: SelectedBatch) -> dict:
    """A wave's slice's own counts, beside the batch's validated files (etl/cutover/slices.py);
    empty where the batch was not sliced or its files are not at hand (removed, or on another
    storage root), and the accounting's totals stand alone."""
    path = BatchPaths.of(settings, batch.batch_id, batch.system).validated / WAVE_SLICE
    return json.loads(path.read_text("utf-8")) if path.exists() else {}


def _other_waves(counts: dict) -> dict[str, dict[str, int]]:
    """Per entity, the rows a wave's slice left to each other wave."""
    return {
        str(e["entity"]): {str(w): int(n) for w, n in e.get("wave_scope_by_wave", {}).items()}
        for e in counts.get("entities", [])
    }


def _deletions(counts: dict) -> DeletionLine | None:
    """Where each key a sliced delta deleted went (none listed: no line)."""
    found = counts.get("deletions") or {}
    if not found.get("listed"):
        return None
    return DeletionLine(
        listed=shown(int(found["listed"])),
        applied=shown(int(found.get("kept", 0))),
        other_waves={str(w): shown(int(n)) for w, n in sorted(found.get("by_wave", {}).items())},
        conflicted=shown(int(found.get("conflicted", 0))),
        absent=shown(int(found.get("absent", 0))),
    )


def _accounting(
    connection: sa.Connection, batch: SelectedBatch, other_waves: dict[str, dict[str, int]]
) -> list[AccountingLine]:
    query = (
        sa.select(batch_accounting)
        .where(
            (batch_accounting.c.batch_id == batch.batch_id)
            & (batch_accounting.c.source_system == batch.system)
        )
        .order_by(batch_accounting.c.entity)
    )
    lines = []
    for row in connection.execute(query):
        subtracted = (
            row.quarantined,
            row.excluded,
            row.merged,
            row.residue,
            row.wave_scope,
            row.conflicted,
        )
        lines.append(
            AccountingLine(
                entity=row.entity,
                dataset=row.dataset,
                extracted=row.extracted,
                loaded=None if any(is_suppressed(n) for n in subtracted) else row.loaded,
                quarantined=shown(row.quarantined),
                excluded=shown(row.excluded),
                merged=shown(row.merged),
                residue=shown(row.residue),
                is_verified=row.is_verified,
                wave_scope=shown(row.wave_scope),
                conflicted=shown(row.conflicted),
                other_waves={
                    wave: shown(n)
                    for wave, n in sorted(other_waves.get(row.entity, {}).items())
                    if n
                },
            )
        )
    return lines


def _status(batch: SelectedBatch, breaches: int) -> str:
    if batch.load_status == "loaded":
        return "loaded"
    if batch.load_status == "unreconciled":
        return "loaded, not reconciled"
    if batch.load_status is not None:
        return f"load {batch.load_status}"
    if breaches:
        return "not promoted: stopped by the quality gate"
    return "not loaded (a dry run, or the load has not run yet)"


def summarise(
    settings: Settings,
    run_id: str | None = None,
    data_docs: str = "data_docs/index.html",
    mapping_docs: str | None = None,
    batch_id: str | None = None,
) -> tuple[ValidationSummary, dict[str, list[dict]]]:
    """The summary of a run (or of one batch), and the stored check results per batch (for the
    Data Docs)."""
    key = pseudonym_key(settings)
    with core_engine(settings.resolved_core_url).connect() as connection:
        batches = select_batches(connection, run_id, batch_id)
        if not batches:
            which = f"batch {batch_id}" if batch_id else f"run {run_id}" if run_id else "any batch"
            raise NoResultsError(
                f"no stored data-quality results or loaded batches for {which}; "
                "run a migration first (or check the run id with `vardflytt dq results`)"
            )
        systems, results = [], {}
        reads: list[tuple[SelectedBatch, int]] = []
        for batch in batches:
            rows = [
                dict(row._mapping)
                for row in connection.execute(
                    sa.select(dq_result).where(
                        (dq_result.c.batch_id == batch.batch_id)
                        & (dq_result.c.source_system == batch.system)
                    )
                )
            ]
            results[batch.batch_id] = rows
            in_docs = {
                (r["entity"], r["check_name"])
                for r in rows
                if r["check_name"] in documented_checks(settings.expectations_dir, r["entity"])
            }
            checks = _check_lines(rows, in_docs)
            breaches = sum(1 for check in checks if check.is_breached)
            is_loaded = batch.load_status in LOADED_STATUSES
            sliced = _wave_slice(settings, batch)
            systems.append(
                SystemSummary(
                    system=batch.system,
                    batch_id=batch.batch_id,
                    run_id=batch.run_id,
                    status=_status(batch, breaches),
                    gate="no results" if not checks else "breach" if breaches else "pass",
                    thresholds_digest=_single(r["thresholds_digest"] for r in rows),
                    mapping_version=_single(r["mapping_version"] for r in rows),
                    evaluated_at=batch.evaluated_at,
                    checks=checks,
                    trend=_trend(settings, connection, batch, key, is_loaded, reads),
                    accounting=_accounting(connection, batch, _other_waves(sliced)),
                    wave=sliced.get("wave"),
                    deletions=_deletions(sliced),
                )
            )
    # Source keys can be identity numbers: reading them is an access to patient data.
    for batch, rows_read in reads:
        record_access(
            settings,
            "validation_report",
            batch.system,
            batch.batch_id,
            rows_read,
            run_id=batch.run_id,
            subject_scope=SCOPE_BATCH,
            subject_count=rows_read,
        )
    summary = ValidationSummary(
        run_label=safe_batch_id(batch_id) if batch_id else run_label(batches, run_id),
        run_id=run_id if not batch_id else _single(batch.run_id for batch in batches),
        batch_id=batch_id,
        data_docs=data_docs,
        mapping_docs=mapping_docs,
        systems=systems,
    )
    return summary, results


def _single(values) -> str | None:
    distinct = sorted({v for v in values if v})
    return ", ".join(distinct) if distinct else None


# --- writing ----------------------------------------------------------------------------------


# The mapping documentation last generated, per mappings folder and the bytes of every file in
# it: each file's name and bytes. A fresh storage root (every test, every S3 scratch folder)
# gets the same pages written again instead of loading the catalog and rendering them again.
_mapping_docs = Memo(4)


def mapping_docs_index(settings: Settings) -> Path:
    """Where ``vardflytt docs`` writes the mapping documentation (generated here if missing)."""
    index = settings.storage_dir / "docs" / "index.html"
    if not index.exists():
        _write_mapping_docs(settings.mappings_dir, index.parent)
    return index


def _write_mapping_docs(mappings_dir: Path, out_dir: Path) -> None:
    """``write_docs(load_catalog(mappings_dir), out_dir)``, the pages reused while every file
    under the mappings folder has the same name and bytes as when they were generated."""
    from etl.catalog import load_catalog
    from etl.report.docs import write_docs

    key = folder_key(mappings_dir)
    pages = _mapping_docs.get(key) if key else None
    if pages is not None:
        for name, content in pages:
            write_text(out_dir / name, content.decode("utf-8"))
        return
    written = write_docs(load_catalog(mappings_dir), out_dir)
    if key:
        _mapping_docs.put(
            key,
            tuple((path.relative_to(out_dir).as_posix(), path.read_bytes()) for path in written),
        )


def report_folder(settings: Settings, label: str) -> Path:
    return settings.storage_dir / "reports" / "validation" / label


def batch_report_folder(settings: Settings, batch_id: str) -> Path:
    """Where one batch's report is: keyed by the batch id alone, so writing it again replaces
    it (a re-run of the batch, a retried report task)."""
    return report_folder(settings, BATCHES) / safe_batch_id(batch_id)


# What a summary says in place of its Data Docs while they are deferred: a wave's final delta
# in the freeze window writes them after the go/no-go decision (etl/cutover/waves.py).
DATA_DOCS_DEFERRED = (
    "built after the go/no-go decision (the final delta's Data Docs are left out of the freeze "
    "window); if they are missing after it: `vardflytt cutover data-docs <wave>`"
)


def write_validation_report(
    settings: Settings,
    run_id: str | None = None,
    out: Path | None = None,
    batch_id: str | None = None,
    data_docs: bool = True,
) -> ReportPaths:
    """Write the summary (HTML, Markdown, JSON) and the Data Docs of a run, or of the batch
    ``batch_id``; return the paths. Idempotent: a second write replaces the first whole.
    Without ``data_docs`` the summary is written alone and says its Data Docs come after the
    go/no-go decision (a wave's final delta); writing the report again with them adds them."""
    docs_index = mapping_docs_index(settings)
    summary, results = summarise(settings, run_id, batch_id=batch_id)
    if out:
        folder = Path(out)
    elif batch_id:
        folder = batch_report_folder(settings, batch_id)
    else:
        folder = report_folder(settings, summary.run_label)
    summary.mapping_docs = Path(os.path.relpath(docs_index, folder)).as_posix()
    data_docs_index: Path | None = None
    if data_docs:
        data_docs_index = _replace_folder(
            folder / "data_docs",
            lambda site: build_data_docs(settings, summary, results, site),
        )
        summary.data_docs = data_docs_index.relative_to(folder).as_posix()
    else:
        shutil.rmtree(folder / "data_docs", ignore_errors=True)  # none of an earlier write
        summary.data_docs = None
        summary.data_docs_note = DATA_DOCS_DEFERRED
    paths = ReportPaths(
        folder=folder,
        summary_html=folder / "summary.html",
        summary_markdown=folder / "summary.md",
        summary_json=folder / "summary.json",
        data_docs_index=data_docs_index,
    )
    write_model_json(paths.summary_json, summary)
    write_text(paths.summary_markdown, render_markdown("validation_summary.md", summary=summary))
    write_text(paths.summary_html, render_html("validation_summary.html", summary=summary))
    return paths


def _replace_folder(target: Path, build: Callable[[Path], Path]) -> Path:
    """Build a site in a fresh folder beside it, then swap it in: a reader (the dashboard) finds
    the old site or the new one (for an instant, none), never half of one, and a failed build
    leaves the old one in place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent.resolve()))
    retired = scratch.with_name(scratch.name + ".old")
    try:
        built = build(scratch / target.name)
        if target.exists():
            target.rename(retired)
        (scratch / target.name).rename(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)
    return target / built.relative_to(scratch / target.name)
