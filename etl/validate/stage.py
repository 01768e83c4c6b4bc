"""The validate stage for one entity of one batch: transformed rows in, loadable rows out.

Rows failing an error-severity expectation move to the outcomes (quarantined, never dropped);
warnings are counted and the row still loads.
"""

from __future__ import annotations

import pandas as pd

from etl.batch import BatchPaths
from etl.catalog import Catalog
from etl.core.arrow import iter_frames, stage_schema, to_arrow
from etl.core.model import ENTITIES
from etl.extract.landing import ROW_NUMBER, SOURCE_KEY
from etl.settings import Settings
from etl.transform.engine import OUTCOME_COLUMNS, QUARANTINED
from etl.transform.stage import OUTCOME_SCHEMA, StageReport, StageWriter, count_outcomes, outcomes_table
from etl.validate.suites import validate_chunk


def _validated_chunk(settings: Settings, entity: str, rows: pd.DataFrame):
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
            outcome_rows.append(pd.DataFrame({
                ROW_NUMBER: rows.loc[newly, ROW_NUMBER],
                SOURCE_KEY: rows.loc[newly, "source_key"],
                "outcome": QUARANTINED,
                "check_name": failure.check_name,
                "severity": "error",
                "field": failure.column,
                "reason": failure.reason,
                "detail": pd.NA,
            }))
    outcomes = pd.concat(outcome_rows, ignore_index=True) if outcome_rows else pd.DataFrame(columns=OUTCOME_COLUMNS)
    return rows[~quarantined], outcomes, warnings


def validate_entity(catalog: Catalog, system: str, entity: str, batch_id: str, settings: Settings) -> StageReport:
    """Run the entity's suite chunk by chunk; carry the transform outcomes forward."""
    paths = BatchPaths.of(settings, batch_id, system)
    transformed = paths.stage_file("transformed", entity)
    mapping = catalog.system(system).entities[entity]

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
        valid, outcomes, chunk_warnings = _validated_chunk(settings, entity, rows)
        writer.write("rows", to_arrow(valid, entity))
        writer.write("outcomes", outcomes_table(outcomes))
        quarantined_ids.append(rows.loc[~rows.index.isin(valid.index), id_column])
        outcome_frames.append(outcomes[["outcome"]])
        for check, number in chunk_warnings.items():
            warnings[check] = warnings.get(check, 0) + number
        rows_in += len(rows)
        rows_out += len(valid)
    for transform_outcomes in iter_frames(paths.stage_file("transformed", entity, "outcomes"), settings.chunk_rows):
        writer.write("outcomes", outcomes_table(transform_outcomes))
        outcome_frames.append(transform_outcomes[["outcome"]])
    writer.close()
    if mapping.identifiers:
        _validate_identifiers(settings, paths, pd.concat(quarantined_ids) if quarantined_ids else pd.Series(dtype="string"))
    counts = count_outcomes(outcome_frames)
    if warnings:
        counts["warnings"] = sum(warnings.values())
    return StageReport(system=system, entity=entity, batch_id=batch_id, rows_in=rows_in, rows_out=rows_out, outcomes=counts)


def _validate_identifiers(settings: Settings, paths: BatchPaths, quarantined_patient_ids: pd.Series) -> None:
    """Identifiers follow their patient: only those of loadable patients go on."""
    entity = "patient_identifier"
    writer = StageWriter({
        "rows": (paths.stage_file("validated", entity), stage_schema(entity)),
    })
    for rows in iter_frames(paths.stage_file("transformed", entity), settings.chunk_rows):
        rows = rows[~rows["patient_id"].isin(quarantined_patient_ids)]
        failures = validate_chunk(settings.expectations_dir, entity, rows, "patient_identifier_id")
        failing_ids = [f.row_ids for f in failures if f.severity == "error"]
        if failing_ids:
            # An identifier failing its checks after its patient passed is a mapping bug: stop.
            raise RuntimeError(
                f"{paths.root}: {sum(len(ids) for ids in failing_ids)} patient identifier rows fail "
                "their suite although their patients passed; check the patient mapping"
            )
        writer.write("rows", to_arrow(rows, entity))
    writer.close()
