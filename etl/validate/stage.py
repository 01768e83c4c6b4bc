"""The validate stage for one entity of one batch: transformed rows in, loadable rows out.

Rows failing an error-severity expectation move to the outcomes (quarantined, never dropped);
warnings are counted and the row still loads.
"""

from __future__ import annotations

import logging

import pandas as pd

from etl.batch import BatchPaths
from etl.catalog import Catalog
from etl.core.arrow import iter_frames, stage_schema, to_arrow
from etl.core.model import ENTITIES
from etl.extract.landing import ROW_NUMBER, SOURCE_KEY
from etl.settings import Settings
from etl.transform.engine import OUTCOME_COLUMNS, QUARANTINED
from etl.transform.stage import (
    OUTCOME_SCHEMA,
    StageReport,
    StageWriter,
    count_outcomes,
    outcomes_table,
)
from etl.validate.suites import validate_chunk

LOG = logging.getLogger(__name__)


def _validated_chunk(
    settings: Settings, entity: str, rows: pd.DataFrame, source_of: dict[str, str]
):
    id_column = ENTITIES[entity].id_field()
    failures = validate_chunk(settings.expectations_dir, entity, rows, id_column)
    quarantined = pd.Series(False, index=rows.index)
    outcome_rows = []
    warnings: dict[str, int] = {}
    for failure in failures:
        failing = rows[id_column].isin(failure.row_ids)
        if failure.severity == "warning":
            warnings[failure.check_name] = warnings.get(failure.check_name, 0) + int(failing.sum())
            continue
        newly = failing & ~quarantined
        quarantined |= failing
        if newly.any():
            outcome_rows.append(
                pd.DataFrame(
                    {
                        ROW_NUMBER: rows.loc[newly, ROW_NUMBER],
                        SOURCE_KEY: rows.loc[newly, "source_key"],
                        "outcome": QUARANTINED,
                        "check_name": failure.check_name,
                        "severity": "error",
                        "field": source_of.get(failure.column or "", failure.column),
                        "reason": failure.reason,
                        "detail": pd.NA,
                    }
                )
            )
    outcomes = (
        pd.concat(outcome_rows, ignore_index=True)
        if outcome_rows
        else pd.DataFrame(columns=OUTCOME_COLUMNS)
    )
    return rows[~quarantined], outcomes, warnings


def validate_entity(
    catalog: Catalog, system: str, entity: str, batch_id: str, settings: Settings
) -> StageReport:
    """Run the entity's suite chunk by chunk; carry the transform outcomes forward."""
    paths = BatchPaths.of(settings, batch_id, system)
    transformed = paths.stage_file("transformed", entity)
    mapping = catalog.system(system).entities[entity]
    # Stewards fix data at source: name the legacy column behind a failing core field.
    source_of = {c.target: ",".join(c.source_columns) for c in mapping.columns if c.source_columns}

    targets = {
        "rows": (paths.stage_file("validated", entity), stage_schema(entity)),
        "outcomes": (paths.stage_file("validated", entity, "outcomes"), OUTCOME_SCHEMA),
    }
    writer = StageWriter(targets)
    rows_in = rows_out = 0
    outcome_frames = []
    warnings: dict[str, int] = {}
    quarantined_ids: list[pd.Series] = []
    id_column = ENTITIES[entity].id_field()
    for rows in iter_frames(transformed, settings.chunk_rows):
        valid, outcomes, chunk_warnings = _validated_chunk(settings, entity, rows, source_of)
        writer.write("rows", to_arrow(valid, entity))
        writer.write("outcomes", outcomes_table(outcomes))
        quarantined_ids.append(rows.loc[~rows.index.isin(valid.index), id_column])
        outcome_frames.append(outcomes[[ROW_NUMBER, "outcome", "reason", "field"]])
        for check, number in chunk_warnings.items():
            warnings[check] = warnings.get(check, 0) + number
        rows_in += len(rows)
        rows_out += len(valid)
    for transform_outcomes in iter_frames(
        paths.stage_file("transformed", entity, "outcomes"), settings.chunk_rows
    ):
        writer.write("outcomes", outcomes_table(transform_outcomes))
        outcome_frames.append(transform_outcomes[[ROW_NUMBER, "outcome", "reason", "field"]])
    writer.close()
    if mapping.identifiers:
        _validate_identifiers(
            settings,
            paths,
            pd.concat(quarantined_ids) if quarantined_ids else pd.Series(dtype="string"),
        )
    source = catalog.system(system).spec.datasets[mapping.dataset].source_name
    log_problem_rows(system, source, outcome_frames)
    counts = count_outcomes(outcome_frames)
    if warnings:
        counts["warnings"] = sum(warnings.values())
    return StageReport(
        system=system,
        entity=entity,
        batch_id=batch_id,
        rows_in=rows_in,
        rows_out=rows_out,
        outcomes=counts,
    )


def log_problem_rows(
    system: str, source: str, frames: list[pd.DataFrame], examples: int = 5
) -> None:
    """One readable line per reason and field: which rows, and what to do. No values, ever."""
    problems = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if problems.empty:
        return
    for (outcome, reason, field), group in problems.groupby(
        ["outcome", "reason", "field"], dropna=False, sort=True
    ):
        rows = ", ".join(str(n) for n in group[ROW_NUMBER].head(examples))
        more = f" and {len(group) - examples} more" if len(group) > examples else ""
        advice = (
            "review with `vardflytt status`; fix at source and re-run the batch"
            if outcome == QUARANTINED
            else "by design (declared rule or exact duplicate)"
        )
        LOG.warning(
            "%s %s: %d row(s) %s, reason %s, field %s, rows %s%s; %s",
            system,
            source,
            len(group),
            outcome,
            reason,
            field,
            rows,
            more,
            advice,
        )


def _validate_identifiers(
    settings: Settings, paths: BatchPaths, quarantined_patient_ids: pd.Series
) -> None:
    """Identifiers follow their patient: only those of loadable patients go on."""
    entity = "patient_identifier"
    writer = StageWriter(
        {
            "rows": (paths.stage_file("validated", entity), stage_schema(entity)),
        }
    )
    for rows in iter_frames(paths.stage_file("transformed", entity), settings.chunk_rows):
        rows = rows[~rows["patient_id"].isin(quarantined_patient_ids)]
        failures = validate_chunk(settings.expectations_dir, entity, rows, "patient_identifier_id")
        failing_ids = [f.row_ids for f in failures if f.severity == "error"]
        if failing_ids:
            # An identifier failing its checks after its patient passed is a mapping bug: stop.
            raise RuntimeError(
                f"{paths.root}: {sum(len(ids) for ids in failing_ids)} patient identifier rows "
                "fail their suite although their patients passed; check the patient mapping"
            )
        writer.write("rows", to_arrow(rows, entity))
    writer.close()
