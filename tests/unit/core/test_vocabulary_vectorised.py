"""``reference_range_bound`` extracts only the wanted bound of a range now (one group, a column,
where two groups made pandas build a frame value by value); the old function, extracting both,
is kept here as the reference."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.core.vocabulary import (
    RangeArgs,
    TransformContext,
    _decimal_comma_number,
    clean_text,
    errors_where,
    reference_range_bound,
)

pytestmark = pytest.mark.unit

CONTEXT = TransformContext("melior", dt.date(2026, 1, 1))
# What a reference range holds, and what could tell the two regex engines apart: non-ASCII
# digits, a trailing line break, tabs and no-break spaces, signs and separators.
RANGE_TEXT = st.text(alphabet="0123456789,.<>=- \t\n\u00a0٣５x", max_size=9)


def _old_reference_range_bound(values: pd.Series, args: RangeArgs):
    cleaned = clean_text(values).str.replace(" ", "", regex=False)
    parts = cleaned.str.extract(r"^(?P<low>[0-9]+(?:,[0-9]+)?)-(?P<high>[0-9]+(?:,[0-9]+)?)$")
    below = cleaned.str.extract(r"^<=?([0-9]+(?:,[0-9]+)?)$", expand=False)
    above = cleaned.str.extract(r"^>=?([0-9]+(?:,[0-9]+)?)$", expand=False)
    text_bound = parts[args.bound].fillna(below if args.bound == "high" else above)
    numbers = _decimal_comma_number(text_bound.astype("string"))
    readable = parts["low"].notna() | below.notna() | above.notna()
    failed = cleaned.notna() & ~readable
    return numbers.astype("Float64"), errors_where(failed, "invalid_range")


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), RANGE_TEXT, st.sampled_from(["<5", ">=60", "3,5-4,6"]))),
    bound=st.sampled_from(["low", "high"]),
)
def test_reference_range_bound_reads_as_before(values, bound):
    series = pd.Series(values, dtype="string")
    args = RangeArgs(bound=bound)
    expected_values, expected_errors = _old_reference_range_bound(series, args)
    result = reference_range_bound(series, args, CONTEXT)
    pd.testing.assert_series_equal(result.values, expected_values)
    pd.testing.assert_series_equal(result.errors, expected_errors)
