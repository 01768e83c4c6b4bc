"""The data-quality gate: a batch whose check failures exceed their thresholds is not promoted.

After every entity of a system's batch is validated, the per-check tallies are stored in
``dq_result`` (the history), judged against ``expectations/thresholds.yaml``, and the gate either
passes or raises with which check, how many rows and where to look. Stored results can be judged
again under another thresholds file without re-running anything (``reevaluate``).

A wave's slice of a system split by care unit (etl/cutover/slices.py) is judged on the wave's
own rows: the batch is validated whole (reference and plausibility checks see every row), the
cutover writes each row's wave (``wave_rows.parquet``) before the gate, and the gate counts the
failing rows (``<entity>.failures.parquet``, written by the validate stage) and the rows
evaluated of that wave only, so another unit's bad rows neither block nor mask the wave. Both
figures are kept: ``dq_result`` holds what was judged, ``gate.json`` beside the batch's
validated files holds the slice's and the whole batch's. Fail closed: a check failing a row
whose wave is not certain (no unit could be read from it) is judged on the stricter of the
slice and the whole batch, in every wave's gate; an entity whose row-level failures are missing
or do not add up to the counts is judged on the whole batch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import sqlalchemy as sa
from pydantic import BaseModel

from etl.batch import BatchPaths, utc_now, write_json
from etl.catalog import Catalog
from etl.core.arrow import iter_frames
from etl.core.database import core_engine
from etl.core.decisions import deferred_entities
from etl.core.provenance import mapping_version
from etl.core.tables import dq_result
from etl.extract.landing import ROW_NUMBER
from etl.settings import Settings
from etl.validate.checks import SOURCE_PREFIX, Thresholds, read_thresholds, thresholds_for
from etl.validate.references import unresolved
from etl.validate.stage import apply_deferral, checks_file, failures_file, lift_deferral
from etl.validate.suites import suite_references

# How an entity of a wave's slice was judged: on the wave's rows, on the stricter of those and
# the whole batch (rows of no certain wave fail), or on the whole batch (no row-level failures).
SLICE, STRICTER, WHOLE = "slice", "stricter", "whole"
# in validated/: entity, row number, wave, is_certain, transformed rows (etl/cutover/slices.py)
WAVE_ROWS = "wave_rows.parquet"
GATE_EVIDENCE = "gate.json"  # in validated/: what the gate judged, slice and whole batch
WAVE_SLICE = "_wave_slice.json"  # in validated/: the slice's counts (etl/cutover/slices.py)


class DataQualityGateError(RuntimeError):
    """Check failures exceed a reviewed threshold: the batch must not be promoted."""


class CheckResult(BaseModel):
    """Counts only: safe for logs, XCom and reports."""

    source_system: str
    entity: str
    check_name: str
    severity: str
    dimension: str | None
    rows_evaluated: int
    rows_failed: int
    rows_waived: int
    max_failure_rate: float
    is_breached: bool

    @property
    def failure_rate(self) -> float:
        return self.rows_failed / self.rows_evaluated if self.rows_evaluated else 0.0


class GateReport(BaseModel):
    system: str
    batch_id: str
    thresholds_digest: str
    results: list[CheckResult]
    # Entities a steward defers in this batch (steward defer-entity): not promoted, their rows
    # quarantined as entity_deferred; their breaches are stored but do not stop the others.
    deferred: dict[str, int] = {}
    # Reference columns of promoted entities that would point at a deferred entity's rows.
    dangling: list[str] = []
    # A wave's slice of a split system: ``results`` are its figures; ``batch_results`` the
    # whole batch's, for the record; ``basis`` how each entity was judged (SLICE, ...).
    wave: str | None = None
    basis: dict[str, str] = {}
    batch_results: list[CheckResult] = []

    @property
    def breaches(self) -> list[CheckResult]:
        return [r for r in self.results if r.is_breached]

    @property
    def blocking(self) -> list[CheckResult]:
        """Breaches that stop the batch: those of entities not deferred."""
        return [r for r in self.breaches if r.entity not in self.deferred]


def judge(thresholds: Thresholds, system: str, entity: str, tally: dict) -> CheckResult:
    check = tally["check"]
    rule = thresholds.rule_for(check, system)
    counted = tally["rows_failed"] - tally.get("rows_waived", 0)
    return CheckResult(
        source_system=system,
        entity=entity,
        check_name=check,
        severity=rule.severity,
        dimension=tally.get("dimension") or rule.dimension,
        rows_evaluated=tally["rows_evaluated"],
        rows_failed=tally["rows_failed"],
        rows_waived=tally.get("rows_waived", 0),
        max_failure_rate=thresholds.max_rate(check, system),
        is_breached=thresholds.breaches(check, system, counted, tally["rows_evaluated"]),
    )


def wave_rows_file(paths: BatchPaths) -> Path:
    return paths.validated / WAVE_ROWS


def _wave_rows(paths: BatchPaths, system: str, batch_id: str, wave: str) -> pd.DataFrame:
    path = wave_rows_file(paths)
    if not path.exists():
        raise DataQualityGateError(
            f"{system} batch {batch_id}: wave {wave}'s slice has no row assignment "
            f"({path}); the wave assigns the batch's rows before its gate (fail closed)"
        )
    return pq.read_table(path).to_pandas()


def _judge_slice(
    thresholds: Thresholds,
    system: str,
    entity: str,
    paths: BatchPaths,
    by_check: dict[str, dict],
    assignment: pd.DataFrame,
    wave: str,
) -> tuple[list[CheckResult], str]:
    """The entity's checks over the wave's rows (module docstring), and how they were judged."""
    whole = [judge(thresholds, system, entity, t) for t in by_check.values()]
    path = failures_file(paths, entity)
    if not path.exists():
        return whole, WHOLE
    failures = pq.read_table(path).to_pandas()
    per_check = failures["check"].value_counts()
    if any(int(per_check.get(c, 0)) != t["rows_failed"] for c, t in by_check.items()):
        return whole, WHOLE  # row-level failures that do not add up cannot be sliced
    rows = assignment[assignment["entity"] == entity]
    certain = rows["is_certain"].to_numpy(bool)
    counted = (rows["wave"].astype("string") == wave).fillna(False).to_numpy(bool) & certain
    members = rows.loc[counted, ROW_NUMBER]
    mine = failures[failures[ROW_NUMBER].isin(members)]
    failed = mine["check"].value_counts()
    waived = mine.loc[mine["is_waived"], "check"].value_counts()
    unplaced = failures.loc[failures[ROW_NUMBER].isin(rows.loc[~certain, ROW_NUMBER]), "check"]
    validated_rows = int(rows.loc[counted, "transformed_rows"].sum())
    landed_rows = int(counted.sum())
    results = []
    for tally, batch in zip(by_check.values(), whole, strict=True):
        check = tally["check"]
        part = {
            **tally,
            "rows_evaluated": landed_rows if check.startswith(SOURCE_PREFIX) else validated_rows,
            "rows_failed": int(failed.get(check, 0)),
            "rows_waived": int(waived.get(check, 0)),
        }
        result = judge(thresholds, system, entity, part)
        if unplaced.eq(check).any():
            result = max(result, batch, key=lambda r: (r.is_breached, r.failure_rate))
        results.append(result)
    return results, STRICTER if len(unplaced) else SLICE


def judge_checks(
    catalog: Catalog,
    system: str,
    batch_id: str,
    paths: BatchPaths,
    thresholds: Thresholds,
    wave: str | None = None,
) -> tuple[list[CheckResult], list[CheckResult], dict[str, str]]:
    """The batch's check results as judged (with ``wave``: the wave's slice), the whole batch's
    (with ``wave`` only) and how each entity was judged; reads files, stores nothing."""
    results: list[CheckResult] = []
    batch_results: list[CheckResult] = []
    basis: dict[str, str] = {}
    assignment = _wave_rows(paths, system, batch_id, wave) if wave is not None else None
    for entity in catalog.system(system).entities:
        path = checks_file(paths, entity)
        if not path.exists():
            raise DataQualityGateError(
                f"{system} batch {batch_id}: {entity} has no validation results ({path}); "
                "run the validate step first"
            )
        tallies = json.loads(path.read_text("utf-8"))
        by_check = {t["check"]: t for t in tallies["checks"]}
        for check in tallies["suite_checks"]:
            # A check that found nothing is a result too: it proves the check ran.
            by_check.setdefault(
                check,
                {
                    "check": check,
                    "rows_evaluated": tallies["rows_validated"],
                    "rows_failed": 0,
                    "rows_waived": 0,
                },
            )
        if assignment is None or wave is None:
            results.extend(judge(thresholds, system, entity, t) for t in by_check.values())
            continue
        batch_results.extend(judge(thresholds, system, entity, t) for t in by_check.values())
        judged, basis[entity] = _judge_slice(
            thresholds, system, entity, paths, by_check, assignment, wave
        )
        results.extend(judged)
    return results, batch_results, basis


def gate_batch(
    catalog: Catalog,
    system: str,
    batch_id: str,
    settings: Settings,
    run_id: str | None = None,
    wave: str | None = None,
) -> GateReport:
    """Store this batch's check results and raise if any breaches its threshold.

    With ``wave`` (a wave's slice of a system split by care unit) the results are the slice's:
    see the module docstring.

    The refusal names each entity that stops the batch with its checks, and the entities that
    pass. An entity a steward defers for this batch (``vardflytt steward defer-entity``) does not
    stop it: its results are stored as judged, its rows are quarantined as ``entity_deferred``
    when the gate passes, and a deferral undone since the last gate puts its rows back first.
    """
    thresholds = thresholds_for(settings.expectations_dir)
    paths = BatchPaths.of(settings, batch_id, system)
    results, batch_results, basis = judge_checks(catalog, system, batch_id, paths, thresholds, wave)
    entities = list(catalog.system(system).entities)
    deferrals = deferred_entities(settings, system, batch_id)
    for entity in entities:
        if entity not in deferrals:
            # A deferral undone since the last gate: the validate stage's own files come back.
            lift_deferral(paths, entity)
    report = GateReport(
        system=system,
        batch_id=batch_id,
        thresholds_digest=thresholds.digest,
        results=results,
        deferred=dict.fromkeys(sorted(e for e in deferrals if e in entities), 0),
        wave=wave,
        basis=basis,
        batch_results=batch_results,
    )
    report.dangling = _dangling_references(settings, paths, thresholds, report, entities)
    _store(settings, report, run_id)
    if wave is not None:
        write_json(paths.validated / GATE_EVIDENCE, gate_evidence(report))
    if report.blocking or report.dangling:
        raise DataQualityGateError(describe_breaches(report, entities))
    for entity in report.deferred:
        report.deferred[entity] = apply_deferral(
            paths, entity, list(report.deferred), settings.chunk_rows
        )
    return report


def _dangling_references(
    settings: Settings,
    paths: BatchPaths,
    thresholds: Thresholds,
    report: GateReport,
    entities: list[str],
) -> list[str]:
    """Error-severity reference columns of promoted entities whose rows resolve only to rows of
    a deferred entity of this batch: promoting them would leave pointers at nothing."""
    problems = []
    for entity in entities:
        if entity in report.deferred:
            continue
        for reference in suite_references(settings.expectations_dir, entity):
            if reference.target not in report.deferred:
                continue
            if thresholds.rule_for(reference.check_name, report.system).severity != "error":
                continue
            rows = paths.stage_file("validated", entity)
            if not rows.exists():
                continue
            dangling = 0
            core_url = settings.resolved_core_url
            for chunk in iter_frames(rows, settings.chunk_rows):
                values = chunk[reference.column]
                # Resolved only thanks to the batch's (deferred) rows; rows resolving nowhere
                # were judged by the validate stage already.
                system = report.system
                without_batch = unresolved(None, reference, values, core_url, False, system)
                with_batch = unresolved(paths, reference, values, core_url, system=system)
                dangling += int((without_batch & ~with_batch).sum())
            if dangling:
                problems.append(
                    f"{entity}.{reference.column}: {dangling} row(s) point at {reference.target} "
                    f"rows that only this batch holds, and {reference.target} is deferred"
                )
    return problems


def gate_evidence(report: GateReport) -> dict[str, Any]:
    """A sliced gate's record: per entity and check, the slice's and the whole batch's figures."""
    whole = {(r.entity, r.check_name): r for r in report.batch_results}
    checks = []
    for result in report.results:
        batch = whole.get((result.entity, result.check_name))
        checks.append(
            {
                "entity": result.entity,
                "check": result.check_name,
                "basis": report.basis.get(result.entity, WHOLE),
                "judged": _figures(result),
                "slice_is_breached": result.is_breached,
                "batch": _figures(batch) if batch is not None else None,
                "batch_is_breached": batch.is_breached if batch is not None else None,
            }
        )
    return {
        "system": report.system,
        "batch_id": report.batch_id,
        "wave": report.wave,
        "thresholds_digest": report.thresholds_digest,
        "basis": report.basis,
        "checks": checks,
    }


def _figures(result: CheckResult) -> dict[str, Any]:
    return {
        "rows_evaluated": result.rows_evaluated,
        "rows_failed": result.rows_failed,
        "rows_waived": result.rows_waived,
    }


def describe_breaches(report: GateReport, entities: list[str] | None = None) -> str:
    """Which entities stop the batch and why, which pass, and what a steward can do."""
    by_entity: dict[str, list[CheckResult]] = {}
    for result in report.blocking:
        by_entity.setdefault(result.entity, []).append(result)
    failing = sorted(by_entity)
    passing = [e for e in entities or [] if e not in by_entity and e not in report.deferred]
    lines = [
        f"{report.system} batch {report.batch_id} is not promoted: "
        + (
            f"{len(report.blocking)} data-quality check(s) over their threshold in "
            f"{len(failing)} entit{'y' if len(failing) == 1 else 'ies'}: {', '.join(failing)}"
            if failing
            else "a deferred entity is still referred to"
        )
    ]
    if report.wave is not None:
        lines.append(
            f"  judged on wave {report.wave}'s rows of the batch (whole batch figures in "
            f"brackets; {GATE_EVIDENCE} beside the validated files has both)"
        )
    if passing:
        lines.append(f"  within thresholds: {', '.join(passing)}")
    if report.deferred:
        lines.append(f"  deferred by a steward: {', '.join(report.deferred)}")
    whole = {(r.entity, r.check_name): r for r in report.batch_results}
    for entity in failing:
        basis = report.basis.get(entity)
        lines.append(f"  {entity}:" + (f" ({basis})" if basis and basis != SLICE else ""))
        for result in by_entity[entity]:
            batch = whole.get((result.entity, result.check_name))
            lines.append(
                f"    {result.entity} / {result.check_name}: "
                f"{result.rows_failed - result.rows_waived} of {result.rows_evaluated} rows fail "
                f"({result.failure_rate:.2%}, threshold {result.max_failure_rate:.2%})"
                + (
                    f" [whole batch: {batch.rows_failed - batch.rows_waived} of "
                    f"{batch.rows_evaluated}]"
                    if batch is not None
                    else ""
                )
            )
    for problem in report.dangling:
        lines.append(f"  {problem}: defer that entity too, or undo the deferral")
    if failing:
        lines.append(
            f"To promote {report.system} without an entity (its rows are quarantined as "
            "entity_deferred, never lost; recorded, and undone with `vardflytt steward undo`): "
            f"vardflytt steward defer-entity {report.system} {failing[0]} "
            f'--batch {report.batch_id} --justification "..."'
        )
    lines.append(
        f"Look at: vardflytt dq results --batch {report.batch_id}  and  vardflytt steward list "
        f"--system {report.system}; thresholds are in expectations/thresholds.yaml "
        "(change them only through review)."
    )
    return "\n".join(lines)


def _store(settings: Settings, report: GateReport, run_id: str | None) -> None:
    now = utc_now()
    version = mapping_version(settings.mappings_dir.resolve().parent)
    with core_engine(settings.resolved_core_url).begin() as connection:
        connection.execute(
            dq_result.delete().where(
                (dq_result.c.batch_id == report.batch_id)
                & (dq_result.c.source_system == report.system)
            )
        )
        if report.results:
            connection.execute(
                dq_result.insert(),
                [
                    {
                        **result.model_dump(),
                        "batch_id": report.batch_id,
                        "run_id": run_id,
                        "thresholds_digest": report.thresholds_digest,
                        "mapping_version": version,
                        "evaluated_at": now,
                    }
                    for result in report.results
                ],
            )


def latest_per_system(rows: list[dict]) -> list[dict]:
    """Only the rows of each system's most recent batch (by when its checks were evaluated)."""
    latest: dict[str, tuple[Any, str]] = {}
    for row in rows:
        seen = latest.get(row["source_system"])
        if seen is None or (row["evaluated_at"], row["batch_id"]) > seen:
            latest[row["source_system"]] = (row["evaluated_at"], row["batch_id"])
    return [row for row in rows if row["batch_id"] == latest[row["source_system"]][1]]


def stored_results(
    settings: Settings, batch_id: str | None = None, run_id: str | None = None
) -> list[dict]:
    query = sa.select(dq_result)
    if batch_id:
        query = query.where(dq_result.c.batch_id == batch_id)
    if run_id:
        query = query.where(dq_result.c.run_id == run_id)
    query = query.order_by(dq_result.c.evaluated_at, dq_result.c.source_system, dq_result.c.entity)
    with core_engine(settings.resolved_core_url).connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def reevaluate(
    settings: Settings,
    thresholds_path: Path,
    batch_id: str | None = None,
    run_id: str | None = None,
) -> list[CheckResult]:
    """Judge stored results under another thresholds file; nothing is re-run or rewritten."""
    thresholds = read_thresholds(thresholds_path)
    return [
        judge(
            thresholds,
            row["source_system"],
            row["entity"],
            {
                "check": row["check_name"],
                "dimension": row["dimension"],
                "rows_evaluated": row["rows_evaluated"],
                "rows_failed": row["rows_failed"],
                "rows_waived": row["rows_waived"],
            },
        )
        for row in stored_results(settings, batch_id, run_id)
    ]
