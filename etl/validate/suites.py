"""Run the entity's Great Expectations suite over a chunk and say which rows fail which check.

Suites are versioned JSON files, ``expectations/<entity>.json``. Each expectation carries
``meta.reason`` (the quarantine reason stewards see) and a GX severity: ``critical`` quarantines
the row, ``warning`` loads it and counts it. Only row keys leave this module, never values.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pandas as pd

# Great Expectations must never phone home: patient data and metadata stay on our hosts.
os.environ["GX_ANALYTICS_ENABLED"] = "False"
# GX narrates every registry step at INFO; task logs should show our lines, not its internals.
logging.getLogger("great_expectations").setLevel(logging.WARNING)

DEFAULT_REASONS = {
    "expect_column_values_to_not_be_null": "missing_value",
    "expect_column_values_to_match_regex": "invalid_format",
    "expect_column_values_to_be_in_set": "invalid_value",
    "expect_column_values_to_be_between": "out_of_range",
    "expect_column_values_to_be_unique": "duplicate_value",
}


class SuiteError(ValueError):
    """An expectation suite file is missing or malformed."""


@dataclass(frozen=True)
class Failure:
    check_name: str
    column: str | None
    reason: str
    severity: str  # "error" quarantines, "warning" loads and flags
    row_ids: pd.Series


def suite_path(expectations_dir: Path, entity: str) -> Path:
    return expectations_dir / f"{entity}.json"


def read_suite_definition(expectations_dir: Path, entity: str) -> dict:
    path = suite_path(expectations_dir, entity)
    if not path.exists():
        raise SuiteError(f"no expectation suite for entity '{entity}': {path} is missing")
    try:
        definition = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as error:
        raise SuiteError(f"{path}: not valid JSON: {error}") from error
    if definition.get("name") != entity or not isinstance(definition.get("expectations"), list):
        raise SuiteError(f"{path}: needs 'name': '{entity}' and a list of 'expectations'")
    return definition


@cache
def _context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


@cache
def _suite_and_batch_definition(expectations_dir: Path, entity: str):
    import great_expectations as gx

    definition = read_suite_definition(expectations_dir, entity)
    context = _context()
    suite = context.suites.add_or_update(
        gx.ExpectationSuite(
            name=entity, expectations=definition["expectations"], meta=definition.get("meta")
        )
    )
    source = context.data_sources.add_or_update_pandas(f"vardflytt_{entity}")
    asset = source.add_dataframe_asset(entity)
    return suite, asset.add_batch_definition_whole_dataframe("chunk")


def validate_chunk(
    expectations_dir: Path, entity: str, rows: pd.DataFrame, id_column: str
) -> list[Failure]:
    """Every failing expectation with the ids of the rows that fail it."""
    if rows.empty:
        return []
    suite, batch_definition = _suite_and_batch_definition(expectations_dir, entity)
    batch = batch_definition.get_batch(batch_parameters={"dataframe": rows})
    result = batch.validate(
        suite,
        result_format={
            "result_format": "COMPLETE",
            "unexpected_index_column_names": [id_column],
            "return_unexpected_index_query": False,
        },
    )
    failures = []
    for outcome in result.results:
        if outcome.success:
            continue
        configuration = outcome.expectation_config
        column = configuration.kwargs.get("column")
        check_name = f"{configuration.type}:{column}" if column else configuration.type
        if outcome.exception_info and outcome.exception_info.get("raised_exception"):
            raise SuiteError(
                f"expectation {check_name} of suite '{entity}' could not run: "
                f"{outcome.exception_info.get('exception_message')}"
            )
        index_list = outcome.result.get("unexpected_index_list") or []
        row_ids = pd.Series([item[id_column] for item in index_list], dtype="string")
        meta = configuration.meta or {}
        severity = (
            "warning" if str(configuration.severity.value) in {"warning", "info"} else "error"
        )
        failures.append(
            Failure(
                check_name,
                column,
                meta.get("reason") or DEFAULT_REASONS.get(configuration.type, configuration.type),
                severity,
                row_ids,
            )
        )
    return failures
