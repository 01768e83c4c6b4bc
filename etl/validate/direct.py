"""Great Expectations' own row conditions, run on a chunk without its validation graph.

Validating a chunk through GX (``batch.validate``) builds a metric graph per expectation
(configurations, metric kwargs, ids), resolves it, then formats a result per expectation; with
``COMPLETE`` results that includes a Python dict per failing row (``.at`` per value) and every
unexpected value. For the row-level (map) expectations the suites use, the answer the validate
stage reads (did the expectation fail, and the id of every failing row) is the pandas condition
GX evaluates on the rows of its domain. This module evaluates exactly that, with GX's own code
for everything that decides an answer:

- suite parameters substituted and the expectations ordered as GX orders them
  (``Validator.process_expectations_for_validation``),
- domain and value kwargs resolved by GX (``registry.get_metric_kwargs``, defaults included),
- the domain's rows chosen as ``PandasExecutionEngine.get_domain_records`` chooses them (nulls of
  the column left out where the metric says so, ``ignore_row_if`` for column pairs),
- the condition is the metric provider's own pandas function (``inspect.unwrap``), called the
  way GX calls it, and the failing rows are the domain's rows where it does not hold.

Anything else falls back to GX for the whole chunk (``plan`` or ``evaluate`` return None): another
GX version, an expectation type or kwarg not listed here (``mostly``, ``row_condition``), a column
not in the chunk, an index GX would read differently, or any exception (GX then reports its own
error). ``tests/unit/validate/test_direct.py`` holds the two paths to the same failures.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Literal

import pandas as pd

SUPPORTED_GX_VERSION = "1.24.1"

# Expectation type -> its domain kind and the kwargs it may carry here (any other: GX runs it).
_COLUMN = ("column",)
_SUPPORTED: dict[str, tuple[str, frozenset[str]]] = {
    "expect_column_values_to_not_be_null": ("column", frozenset(_COLUMN)),
    "expect_column_values_to_match_regex": ("column", frozenset({*_COLUMN, "regex"})),
    "expect_column_values_to_be_in_set": ("column", frozenset({*_COLUMN, "value_set"})),
    "expect_column_values_to_be_between": (
        "column",
        frozenset({*_COLUMN, "min_value", "max_value", "strict_min", "strict_max"}),
    ),
    "expect_column_values_to_be_unique": ("column", frozenset(_COLUMN)),
    "expect_column_pair_values_a_to_be_greater_than_b": (
        "column_pair",
        frozenset({"column_A", "column_B", "ignore_row_if", "or_equal"}),
    ),
}
_IGNORE_ROW_IF: dict[str, Literal["all", "any"]] = {
    "both_values_are_missing": "all",
    "either_value_is_missing": "any",
}


@dataclass(frozen=True)
class Planned:
    """One expectation as GX would evaluate it on any chunk of this batch."""

    configuration: Any  # GX's ExpectationConfiguration, suite parameters substituted
    kind: str  # "column" or "column_pair"
    domain: dict[str, Any]
    values: dict[str, Any]
    provider: type
    condition: Callable[..., Any]
    filter_nulls: bool


def plan(suite: Any, parameters: dict[str, Any]) -> list[Planned] | None:
    """The suite's expectations in GX's order with their resolved kwargs; None when any of them
    is not one this module evaluates exactly as GX does (then GX validates the chunk)."""
    try:
        return _plan(suite, parameters)
    except Exception:  # GX raises its own error when it runs the chunk itself
        return None


def _plan(suite: Any, parameters: dict[str, Any]) -> list[Planned] | None:
    from etl.validate.gx_import import gx  # first: GX imported the project's way

    # isort: split
    from great_expectations.expectations.registry import (
        _registered_metrics,
        get_expectation_impl,
        get_metric_kwargs,
    )
    from great_expectations.validator.validator import Validator

    if gx.__version__ != SUPPORTED_GX_VERSION:
        return None
    configurations = suite.expectation_configurations  # fresh copies: substitution is in place
    for configuration in configurations:
        supported = _SUPPORTED.get(configuration.type)
        if supported is None or not set(configuration.kwargs) <= supported[1]:
            return None
    # The same substitution and order as batch.validate (its validator's own method).
    holder = SimpleNamespace(interactive_evaluation=True, _data_context=None)
    ordered = Validator.process_expectations_for_validation(
        holder,  # type: ignore[arg-type]
        configurations,
        copy.deepcopy(parameters),
    )
    planned = []
    for configuration in ordered:
        kind = _SUPPORTED[configuration.type][0]
        implementation: Any = get_expectation_impl(configuration.type)  # a map expectation
        metric = f"{implementation.map_metric}.condition"
        provider, function = _registered_metrics[metric]["providers"]["PandasExecutionEngine"]
        kwargs = get_metric_kwargs(metric, configuration=configuration)
        domain = dict(kwargs["metric_domain_kwargs"])
        if domain.get("row_condition") or domain.get("condition_parser") or domain.get("table"):
            return None
        if kind == "column_pair" and domain.get("ignore_row_if") not in _IGNORE_ROW_IF:
            return None
        planned.append(
            Planned(
                configuration=configuration,
                kind=kind,
                domain=domain,
                values=dict(kwargs["metric_value_kwargs"]),
                provider=provider,
                condition=inspect.unwrap(function),
                filter_nulls=kind == "column" and getattr(provider, "filter_column_isnull", True),
            )
        )
    return planned


def evaluate(
    planned: list[Planned], rows: pd.DataFrame, id_column: str
) -> list[tuple[Any, pd.Series]] | None:
    """Each failing expectation (configuration) with the ids of its failing rows, in GX's order;
    None when GX must run the chunk itself."""
    if (
        rows.empty
        or id_column not in rows.columns
        or rows.index.names[0] is not None
        or not rows.index.is_unique
        or not rows.columns.is_unique
    ):
        return None
    failures = []
    try:
        for expectation in planned:
            failing = _failing_ids(expectation, rows, id_column)
            if failing is None:
                return None
            if len(failing):
                ids = failing.astype("string").reset_index(drop=True)
                failures.append((expectation.configuration, ids))
    except Exception:  # GX raises or reports its own error when it runs the chunk itself
        return None
    return failures


def _failing_ids(expectation: Planned, rows: pd.DataFrame, id_column: str) -> pd.Series | None:
    """The ids of the domain's rows where the condition does not hold
    (``_pandas_map_condition_index``). Choosing rows is row by row, so the condition's input is
    GX's own (the domain's values of the column, with their index) without copying the chunk: a
    column's domain is its column and the id column taken through the same mask, not a frame."""
    domain = expectation.domain
    if expectation.kind == "column":
        column = domain["column"]
        if column not in rows.columns:
            return None
        values, ids = rows[column], rows[id_column]
        if expectation.filter_nulls:
            present = values.notnull()
            if not present.all():  # all present: the domain is the column as it is, uncopied
                values, ids = values[present], ids[present]
        if expectation.configuration.type in _PER_VALUE and expectation.filter_nulls:
            meets = _per_distinct_value(expectation, values)
        else:
            meets = expectation.condition(
                expectation.provider, values, **expectation.values, _metrics={}
            )
        return ids[~meets]
    first, second = domain["column_A"], domain["column_B"]
    if first not in rows.columns or second not in rows.columns:
        return None
    # ``frame.dropna(axis=0, how=how, subset=[first, second])`` of the pair and the id column,
    # taken column by column through one mask: the same values and index, without copying the
    # pair into a frame first.
    values_a, values_b, ids = rows[first], rows[second], rows[id_column]
    missing_a, missing_b = values_a.isna(), values_b.isna()
    dropped = (
        missing_a & missing_b
        if _IGNORE_ROW_IF[domain["ignore_row_if"]] == "all"
        else (missing_a | missing_b)
    )
    if dropped.any():
        kept = ~dropped
        values_a, values_b, ids = values_a[kept], values_b[kept], ids[kept]
    meets = expectation.condition(
        expectation.provider, values_a, values_b, **expectation.values, _metrics={}
    )
    return ids[~meets]


# Conditions that judge each value on its own (a regex match, a range) and cost more per value
# than finding the column's distinct values: evaluated once per distinct value.
_PER_VALUE = frozenset(
    {"expect_column_values_to_match_regex", "expect_column_values_to_be_between"}
)


def _per_distinct_value(expectation: Planned, values: pd.Series) -> pd.Series:
    """The condition on each row: GX's condition called on the column's distinct values (same
    dtype, nulls already left out), each row given its value's answer. Whatever the condition
    decides from the column as a whole (pandas choosing Python's ``re`` over RE2 for non-ASCII
    text or a newline, GX's path by dtype) it decides from the same set of values."""
    codes, distinct = values.array.factorize(use_na_sentinel=False)
    meets = expectation.condition(
        expectation.provider, pd.Series(distinct), **expectation.values, _metrics={}
    )
    return pd.Series(meets.array.take(codes), index=values.index)
