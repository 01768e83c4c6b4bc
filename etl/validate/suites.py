"""Run the entity's Great Expectations suite over a chunk and say which rows fail which check.

Suites are versioned JSON files, ``expectations/<entity>.json``: what is checked, with
``meta.check`` (the check's stable id) and ``meta.reason`` (the quarantine reason stewards see).
A check's severity and dimension are written once, in ``expectations/thresholds.yaml``; a suite
that carries them too is refused. Before GX runs, each expectation gets its GX severity from
there: ``critical`` quarantines the row, ``warning`` loads it and counts it. Only row keys leave
this module, never values.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import pandas as pd

from etl.validate import direct
from etl.validate.checks import thresholds_for
from etl.validate.references import Reference, ReferenceDeclarationError, declared_references

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


# Said once, in thresholds.yaml (etl/validate/checks.py); never again in a suite file.
THRESHOLD_KEYS = ("severity",)
THRESHOLD_META_KEYS = ("dimension",)


class SuiteError(ValueError):
    """An expectation suite file is missing or malformed."""


@dataclass(frozen=True)
class Failure:
    check_name: str  # the stable check id from the suite's meta.check
    column: str | None
    reason: str
    severity: str  # "error" quarantines, "warning" loads and flags
    row_ids: pd.Series
    dimension: str | None = None


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
    try:
        references = declared_references(entity, definition.get("meta"))
    except ReferenceDeclarationError as error:
        raise SuiteError(f"{path}: {error}") from error
    seen: set[str] = {check for reference in references for check in reference.check_names()}
    for number, expectation in enumerate(definition["expectations"], start=1):
        check = (expectation.get("meta") or {}).get("check")
        if not check or not str(check).startswith(f"{entity}."):
            raise SuiteError(
                f"{path}: expectation {number} ({expectation.get('type')}) needs meta.check, "
                f"a stable id starting with '{entity}.'"
            )
        if check in seen:
            raise SuiteError(f"{path}: check id '{check}' is used twice")
        seen.add(check)
        repeated = [key for key in THRESHOLD_KEYS if key in expectation] + [
            f"meta.{key}" for key in THRESHOLD_META_KEYS if key in expectation["meta"]
        ]
        if repeated:
            raise SuiteError(
                f"{path}: expectation '{check}' sets {', '.join(repeated)}; a check's severity "
                "and dimension are written once, in thresholds.yaml: remove them from the suite"
            )
    return definition


def resolved_expectations(expectations_dir: Path, entity: str) -> list[dict]:
    """The suite's expectations as GX runs them: severity and ``meta.dimension`` from the
    reviewed thresholds file (``error`` is GX ``critical``), everything else from the suite."""
    definition = read_suite_definition(expectations_dir, entity)
    thresholds = thresholds_for(expectations_dir)
    resolved = []
    for expectation in definition["expectations"]:
        rule = thresholds.rule_for(expectation["meta"]["check"])
        meta = dict(expectation["meta"])
        if rule.dimension is not None:
            meta["dimension"] = rule.dimension
        resolved.append(
            {
                **expectation,
                "meta": meta,
                "severity": "critical" if rule.severity == "error" else "warning",
            }
        )
    return resolved


def expectation_checks(expectations_dir: Path, entity: str) -> list[str]:
    """The check ids of the suite's Great Expectations expectations, in file order."""
    definition = read_suite_definition(expectations_dir, entity)
    return [e["meta"]["check"] for e in definition["expectations"]]


def suite_checks(expectations_dir: Path, entity: str) -> list[str]:
    """The check ids the entity's suite declares, in file order: expectations, then references."""
    return expectation_checks(expectations_dir, entity) + [
        check
        for reference in suite_references(expectations_dir, entity)
        for check in reference.check_names()
    ]


def suite_references(expectations_dir: Path, entity: str) -> list[Reference]:
    """The reference columns the suite declares in ``meta.references`` (etl/validate/references)."""
    definition = read_suite_definition(expectations_dir, entity)
    return declared_references(entity, definition.get("meta"))


def _kwargs_built_once() -> None:
    """GX 1.24 rebuilds an expectation's whole configuration (a pydantic ``dict()`` of every
    field) once per key when it collects its domain and success kwargs, about 800 times per
    validation of a suite: most of the fixed cost of validating a chunk, whatever its rows, and
    the final delta of a freeze window validates many chunks of a handful of rows. These
    replacements build the configuration once per call and read every key from it: the same
    values (nothing changes the expectation during the call), the same errors. Only the version
    whose code they copy is patched; any other runs unchanged."""
    from etl.validate.gx_import import gx  # first: GX imported the project's way

    # isort: split
    from great_expectations.exceptions import InvalidExpectationKwargsError
    from great_expectations.expectations.expectation import Expectation

    if gx.__version__ != _KWARGS_PATCHED_VERSION or getattr(Expectation, _PATCHED, False):
        return

    def _get_success_kwarg(self, key, default=None):
        kwargs = self.configuration.kwargs
        if key in kwargs:
            return kwargs[key]
        field = self.__fields__.get(key)
        if field is not None:
            return field.default if not field.required else default
        logging.getLogger(Expectation.__module__).warning(
            f'_get_success_kwarg called with key "{key}", '
            f"but it is not a known field of {type(self).__name__}"
        )
        return default

    def _domain_kwargs(self, kwargs):
        domain_kwargs = {
            key: kwargs.get(key, self._get_default_value(key)) for key in self.domain_keys
        }
        missing_kwargs = set(self.domain_keys) - set(domain_kwargs.keys())
        if missing_kwargs:
            raise InvalidExpectationKwargsError(f"Missing domain kwargs: {list(missing_kwargs)}")
        return domain_kwargs

    def _get_domain_kwargs(self):
        return _domain_kwargs(self, self.configuration.kwargs)

    def _get_success_kwargs(self):
        kwargs = self.configuration.kwargs
        domain_kwargs = _domain_kwargs(self, kwargs)
        success_kwargs = {
            key: kwargs.get(key, self._get_default_value(key)) for key in self.success_keys
        }
        success_kwargs.update(domain_kwargs)
        return success_kwargs

    Expectation._get_success_kwarg = _get_success_kwarg  # type: ignore[method-assign]
    Expectation._get_domain_kwargs = _get_domain_kwargs  # type: ignore[method-assign]
    Expectation._get_success_kwargs = _get_success_kwargs  # type: ignore[method-assign]
    setattr(Expectation, _PATCHED, True)


_KWARGS_PATCHED_VERSION = "1.24.1"
_PATCHED = "_vardflytt_kwargs_built_once"


@cache
def _context():
    from etl.validate.gx_import import gx  # first: GX imported the project's way

    # isort: split
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import pandas_execution_engine

    _kwargs_built_once()

    # GX fingerprints every in-memory batch (pandas' hash of every value, then MD5) for batch
    # markers nothing here reads; with Arrow-backed text pandas hashes value by value in Python,
    # a sixth of the validate stage. Batches at or above this size are not fingerprinted (GX's
    # own switch, a module constant in GX 1.x): 0 turns it off. The results are the same.
    pandas_execution_engine.HASH_THRESHOLD = 0
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _suite_key(expectations_dir: Path, entity: str) -> tuple[Path, str, str, str]:
    """The suite's version: its folder, entity, the thresholds' digest and the SHA-256 of the
    suite file's bytes (read on every call, a few kB), never a modification time, which a file
    rewritten within the clock's resolution, or copied with its time kept, leaves unchanged."""
    thresholds = thresholds_for(expectations_dir)
    path = suite_path(expectations_dir, entity)
    content = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""
    return expectations_dir, entity, thresholds.digest, content


@lru_cache(maxsize=64)
def _direct_plan(suite_key: tuple[Path, str, str, str], parameters_json: str):
    """The suite as ``etl.validate.direct`` evaluates it, once per suite version and parameters
    (a batch's as-of date): None when GX must validate its chunks itself."""
    suite = _cached_suite(*suite_key)
    return direct.plan(suite, json.loads(parameters_json))


@lru_cache(maxsize=64)
def _cached_suite(expectations_dir: Path, entity: str, _digest: str, _content: str):
    """The GX suite of one version of the suite file (``_suite_key``)."""
    from etl.validate.gx_import import gx

    definition = read_suite_definition(expectations_dir, entity)
    expectations = resolved_expectations(expectations_dir, entity)
    context = _context()
    return context.suites.add_or_update(
        gx.ExpectationSuite(name=entity, expectations=expectations, meta=definition.get("meta"))
    )


@lru_cache(maxsize=64)
def _batch_definition(suite_key: tuple[Path, str, str, str]):
    """The in-memory data source GX validates a suite version's chunks through, built only when
    the suite falls back to GX (a directly evaluated suite never needs one: each costs GX a data
    source, an asset and a batch definition, and saves of its whole project configuration)."""
    entity = suite_key[1]
    source = _context().data_sources.add_or_update_pandas(f"vardflytt_{entity}")
    asset = source.add_dataframe_asset(entity)
    return asset.add_batch_definition_whole_dataframe("chunk")


def validate_chunk(
    expectations_dir: Path,
    entity: str,
    rows: pd.DataFrame,
    id_column: str,
    parameters: dict | None = None,
) -> list[Failure]:
    """Every failing expectation with the ids of the rows that fail it.

    ``parameters`` fill suite parameters (``{"$PARAMETER": "as_of_date"}``) such as the run's
    as-of date, so "not in the future" means the future of the batch, not of the machine clock.
    """
    if rows.empty:
        return []
    suite_key = _suite_key(expectations_dir, entity)
    planned = _direct_plan(suite_key, json.dumps(parameters or {}, sort_keys=True, default=str))
    evaluated = direct.evaluate(planned, rows, id_column) if planned is not None else None
    if evaluated is not None:
        # GX's own conditions on GX's own domains, without its graph and result formatting.
        return [_failure(entity, configuration, row_ids) for configuration, row_ids in evaluated]
    suite = _cached_suite(*suite_key)
    batch = _batch_definition(suite_key).get_batch(batch_parameters={"dataframe": rows})
    result = batch.validate(
        suite,
        result_format={
            "result_format": "COMPLETE",
            "unexpected_index_column_names": [id_column],
            "return_unexpected_index_query": False,
        },
        expectation_parameters=parameters or {},
    )
    failures = []
    for outcome in result.results:
        if outcome.success:
            continue
        configuration = outcome.expectation_config
        if outcome.exception_info and outcome.exception_info.get("raised_exception"):
            check_name = (configuration.meta or {})["check"]
            raise SuiteError(
                f"expectation {check_name} of suite '{entity}' could not run: "
                f"{outcome.exception_info.get('exception_message')}"
            )
        index_list = outcome.result.get("unexpected_index_list") or []
        row_ids = pd.Series([item[id_column] for item in index_list], dtype="string")
        failures.append(_failure(entity, configuration, row_ids))
    return failures


def _failure(entity: str, configuration, row_ids: pd.Series) -> Failure:
    """A failing expectation as the validate stage reads it."""
    meta = configuration.meta or {}
    # meta.field names the row's own column at fault when the checked one is a context column.
    column = (
        meta.get("field")
        or configuration.kwargs.get("column")
        or configuration.kwargs.get("column_A")
    )
    severity = "warning" if str(configuration.severity.value) in {"warning", "info"} else "error"
    return Failure(
        meta["check"],
        column,
        meta.get("reason") or DEFAULT_REASONS.get(configuration.type, configuration.type),
        severity,
        row_ids,
        meta.get("dimension"),
    )
