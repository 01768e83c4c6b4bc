"""column_as_text of object columns (dates, flags, anything else) is pandas' astype("string")."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

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
