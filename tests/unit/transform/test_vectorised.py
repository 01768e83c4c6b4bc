"""The vectorised column operations (etl.transform.vectorised) give the pandas answer exactly.

Each property compares the new function with the pandas expression it replaced, kept here as the
reference, on generated text: missing values, blanks, non-ASCII letters and digits, lookalikes.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.transform.vectorised import (
    column_as_text,
    floats_as_text,
    frame_as_text,
    is_in,
    text_array,
    utc_timestamps_as_text,
)

pytestmark = pytest.mark.unit

SETTINGS = settings(max_examples=200, deadline=None)
# Short texts from a small alphabet, so that values and candidates often meet; Swedish letters,
# Arabic-Indic and full-width digits, a combining mark and the replacement character too.
TEXT = st.text(alphabet="ab1 åÄ٣１\u0301\ufffd", max_size=3)
MAYBE_TEXT = st.one_of(st.none(), TEXT)


def _reference_isin(values: pd.Series, candidates) -> pd.Series:
    """The old way: pandas' own ``isin``."""
    return values.isin(candidates)


@SETTINGS
@given(
    values=st.lists(MAYBE_TEXT, max_size=30),
    candidates=st.lists(MAYBE_TEXT, max_size=30),
    dtype=st.sampled_from(["string", "str"]),
    container=st.sampled_from(["list", "set", "index", "series", "object_index"]),
)
def test_is_in_is_pandas_isin(values, candidates, dtype, container):
    series = pd.Series(values, dtype=dtype, index=pd.RangeIndex(5, 5 + len(values)))
    if container in {"list", "set"}:
        given_candidates = [c for c in candidates if c is not None]
        if container == "set":
            given_candidates = set(given_candidates)
    elif container == "index":
        given_candidates = pd.Index(pd.Series(candidates, dtype="string").dropna().unique())
    elif container == "series":
        given_candidates = pd.Series(candidates, dtype="string")
    else:
        given_candidates = pd.Index(candidates, dtype=object)
    expected = _reference_isin(series, given_candidates)
    found = is_in(series, given_candidates)
    assert found.dtype == bool
    assert found.index.equals(series.index)
    assert found.tolist() == expected.tolist()


def test_is_in_keeps_pandas_for_what_is_not_text():
    numbers = pd.Series([1, 2, 3])
    assert is_in(numbers, [2]).tolist() == [False, True, False]
    text = pd.Series(["1", "2"], dtype="string")
    # A candidate that is not text: the pandas path decides (and never matches it).
    assert is_in(text, [2, "1"]).tolist() == text.isin([2, "1"]).tolist() == [True, False]


def test_text_array_refuses_what_is_not_text():
    assert text_array([1, "a"]) is None
    assert text_array(pd.Index([1, 2])) is None
    assert text_array(pa.array([1, 2])) is None
    assert text_array(["a", "b"]).to_pylist() == ["a", "b"]


# Nanoseconds since 1970 anywhere pandas can hold them, with the fractions a source writes:
# whole seconds or minutes, milliseconds, microseconds, nanoseconds; NaT too.
_LIMIT = 2**63 - 1
_GRAINS = [60 * 10**9, 10**9, 10**6, 10**3, 1]


@st.composite
def _utc_nanoseconds(draw) -> list[int | None]:
    grain = draw(st.sampled_from(_GRAINS))
    count = draw(st.integers(0, 12))
    values: list[int | None] = []
    for _ in range(count):
        if draw(st.booleans()) and draw(st.booleans()):
            values.append(None)
            continue
        whole = draw(st.integers(-_LIMIT // grain + 1, _LIMIT // grain))
        values.append(whole * grain)
    return values


def _as_utc(values: list[int | None]) -> pd.Series:
    missing = np.array([v is None for v in values], dtype=bool)
    raw = np.array([0 if v is None else v for v in values], dtype="int64")
    series = pd.Series(raw.view("datetime64[ns]"), index=pd.RangeIndex(3, 3 + len(values)))
    return series.mask(missing).dt.tz_localize("UTC").rename("at")


@settings(max_examples=300, deadline=None)
@given(values=_utc_nanoseconds())
def test_utc_timestamps_as_text_is_pandas_astype(values):
    series = _as_utc(values)
    expected = series.astype("string")  # the old way: a pandas Timestamp per value
    pd.testing.assert_series_equal(utc_timestamps_as_text(series), expected)


@settings(max_examples=100, deadline=None)
@given(values=_utc_nanoseconds(), other=st.lists(MAYBE_TEXT, min_size=12, max_size=12))
def test_frame_as_text_is_pandas_astype(values, other):
    at = _as_utc(values)
    rows = len(at)
    frame = pd.DataFrame(
        {
            "at": at,
            # not UTC: left to pandas
            "local": pd.Series(
                pd.Timestamp("2025-06-01 12:30", tz="Europe/Stockholm"), index=at.index
            ),
            "text": pd.Series(other[:rows], index=at.index, dtype="string"),
            "count": pd.Series(range(rows), index=at.index, dtype="Int64"),
            "born": pd.Series([dt.date(1912, 2, 29)] * rows, index=at.index, dtype=object),
            "flag": pd.Series([True] * rows, index=at.index, dtype="boolean"),
        }
    )
    pd.testing.assert_frame_equal(frame_as_text(frame), frame.astype("string"))


def test_frame_without_utc_timestamps_is_pandas_astype():
    frame = pd.DataFrame({"a": [1.5, None], "b": ["x", None]})
    pd.testing.assert_frame_equal(frame_as_text(frame), frame.astype("string"))


# Any double, and the ones lab values are: a few decimals, whole numbers, zeros, the limits of
# Python's positional writing (1e-4, 1e16) and of Arrow's.
FLOATS = st.one_of(
    st.none(),
    st.floats(width=64),
    st.builds(round, st.floats(-1e6, 1e6), st.integers(0, 4)),
    st.sampled_from([0.0, -0.0, 1e-4, 9.999e-5, 1e14, 1e15, 1e16, 9999999999999998.0, 5e-324]),
)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(FLOATS, max_size=30), start=st.integers(0, 5))
def test_floats_as_text_is_pandas_astype(values, start):
    series = pd.Series(
        values, dtype="Float64", index=pd.RangeIndex(start, start + len(values)), name="value"
    )
    expected = series.astype("string")  # the old way: Python's repr per value
    pd.testing.assert_series_equal(floats_as_text(series), expected)


DATES = st.one_of(
    st.dates(),
    st.none(),
    st.sampled_from([np.nan, pd.NaT, pd.NA]),
)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(DATES, max_size=20),
    other=st.sampled_from([None, dt.datetime(2020, 1, 2, 3, 4), "2020-01-02", 7]),
    start=st.integers(0, 5),
)
def test_column_as_text_of_dates_is_pandas_astype(values, other, start):
    _column_as_text_is_pandas_astype(values, other, start, "born")


def _column_as_text_is_pandas_astype(values: list, other, start: int, name: str) -> None:
    """The object column of ``values`` (and with ``other`` after them), as text, is pandas'."""
    for column in (values, [*values, other]):
        series = pd.Series(
            column, dtype=object, index=pd.RangeIndex(start, start + len(column)), name=name
        )
        pd.testing.assert_series_equal(column_as_text(series), series.astype("string"))


FLAGS = st.one_of(st.booleans(), st.none(), st.sampled_from([np.nan, pd.NA, np.True_, np.False_]))


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(FLAGS, max_size=20),
    other=st.sampled_from([None, 1, 0, "True", 1.0]),
    start=st.integers(0, 5),
)
def test_column_as_text_of_flags_is_pandas_astype(values, other, start):
    _column_as_text_is_pandas_astype(values, other, start, "is_x")


@settings(max_examples=300, deadline=None)
@given(
    distinct=st.lists(FLOATS, min_size=1, max_size=6),
    picks=st.lists(st.integers(0, 5), max_size=40),
    start=st.integers(0, 5),
)
def test_floats_as_text_of_repeated_values_is_pandas_astype(distinct, picks, start):
    """A column repeating a few values (each written once, then taken per row), missing ones,
    0.0 beside -0.0 and values pandas writes among them."""
    values = [distinct[pick % len(distinct)] for pick in picks]
    series = pd.Series(
        values, dtype="Float64", index=pd.RangeIndex(start, start + len(values)), name="value"
    )
    pd.testing.assert_series_equal(floats_as_text(series), series.astype("string"))
