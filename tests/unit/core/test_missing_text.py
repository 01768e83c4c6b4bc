"""``missing_text`` (the transform's empty outcome and identity columns) is the pandas Series
of missing text it replaced, on any index."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.core.text_columns import missing_text

pytestmark = pytest.mark.unit


@settings(max_examples=100, deadline=None)
@given(
    start=st.integers(0, 5),
    length=st.integers(0, 40),
    labels=st.lists(st.integers(-5, 50), max_size=20),
)
def test_missing_text_is_a_series_of_missing_text(start, length, labels):
    for index in (pd.RangeIndex(start, start + length), pd.Index(labels, dtype="int64")):
        expected = pd.Series(pd.NA, index=index, dtype="string")
        found = missing_text(index)
        pd.testing.assert_series_equal(found, expected)
        assert found.array.dtype == expected.array.dtype
