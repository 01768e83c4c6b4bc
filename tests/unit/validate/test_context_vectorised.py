"""Joined-in dates (etl.validate.context) are what they were when each date was parsed in Python.

The context columns of a suite come from the batch's Parquet rows; a date column used to become
``datetime.date`` objects that ``pd.to_datetime`` parsed one by one. It is now cast to second
timestamps in Arrow. The old way is kept here as the reference.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.validate.context import _as_timestamps, _dates_as_timestamps, _string_array

pytestmark = pytest.mark.unit

DATES = st.one_of(st.none(), st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)))
KEYS = st.sampled_from(["p1", "p2", "p3", "p4", "ö5"])


def _reference(table: pa.Table, keys: pd.Series) -> pd.Series:
    """The old way: ``datetime.date`` objects through ``pd.to_datetime``."""
    found = table.to_pandas().drop_duplicates("key").set_index("key")
    return _as_timestamps(keys.map(found["born"]))


@settings(max_examples=150, deadline=None)
@given(
    rows=st.dictionaries(KEYS, DATES, max_size=5),
    wanted=st.lists(st.one_of(st.none(), KEYS, st.just("nobody")), max_size=12),
)
def test_dates_join_in_as_before(rows, wanted):
    table = pa.table(
        {
            "key": pa.array(list(rows), type=pa.string()),
            "born": pa.array(list(rows.values()), type=pa.date32()),
        }
    )
    keys = pd.Series(wanted, dtype="string")
    expected = _reference(table, keys)
    found = _dates_as_timestamps(table).to_pandas().drop_duplicates("key").set_index("key")
    actual = _as_timestamps(keys.map(found["born"]))
    assert actual.dtype == expected.dtype
    pd.testing.assert_series_equal(actual, expected)


def test_string_array_of_text_is_the_text():
    text = pd.Series(["a", "ö"], dtype="string").unique()
    assert _string_array(text).to_pylist() == ["a", "ö"]
    assert _string_array([1, "a"]).to_pylist() == ["1", "a"]  # anything else: its str()
