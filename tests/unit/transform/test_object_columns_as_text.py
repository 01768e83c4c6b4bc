"""column_as_text of object columns (text, dates, flags, only missing values, anything else) is
pandas' astype("string")."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.transform.vectorised import column_as_text

pytestmark = pytest.mark.unit

COLUMNS = {
    "dates": [dt.date(1912, 2, 29), None, dt.date(2025, 1, 1)],
    "dates_missing_as_na": [pd.NA, dt.date(2000, 12, 31), None],
    "datetimes": [dt.datetime(2020, 1, 2, 3, 4, 5), None, dt.datetime(2020, 1, 2)],
    "dates_and_datetimes": [dt.date(2020, 1, 2), dt.datetime(2020, 1, 2, 3, 4), None],
    "flags": [True, None, False],
    "numpy_flags": [np.bool_(True), np.bool_(False), None],
    "flags_and_numbers": [True, 1, None],
    "texts": ["a", None, "b"],
    "nothing": [None, None, None],
    "empty": [],
}


@pytest.mark.parametrize("name", sorted(COLUMNS))
def test_object_column_as_text_is_pandas_astype(name):
    values = COLUMNS[name]
    column = pd.Series(values, dtype=object, index=range(4, 4 + len(values)), name=name)
    pd.testing.assert_series_equal(column_as_text(column), column.astype("string"))


MISSING = st.sampled_from([None, np.nan, pd.NA, pd.NaT])
OBJECTS = st.one_of(
    MISSING,
    st.text(alphabet="aÅ ٣\u0301\ufffd0.-", max_size=5),
    st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)),
    st.booleans(),
    st.integers(-3, 3),
)


@settings(max_examples=300, deadline=None)
@given(
    values=st.one_of(
        st.lists(st.one_of(MISSING, st.text(alphabet="aÅ ٣\u0301\ufffd0.-", max_size=5))),
        st.lists(MISSING),
        st.lists(OBJECTS),
    ),
    start=st.integers(0, 3),
)
def test_generated_object_columns_as_text_are_pandas_astype(values, start):
    """Text with missing values of every kind, only missing values, or any mixture."""
    column = pd.Series(values, dtype=object, index=range(start, start + len(values)), name="x")
    pd.testing.assert_series_equal(column_as_text(column), column.astype("string"))
