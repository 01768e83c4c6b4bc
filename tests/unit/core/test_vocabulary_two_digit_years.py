"""read_with_format reads ``%y`` formats from their bytes exactly as pandas reads them."""

from __future__ import annotations

import pandas as pd
import pytest

from etl.core.vocabulary import read_with_format

pytestmark = pytest.mark.unit


def _by_pandas(values: pd.Series, date_format: str) -> pd.Series:
    return pd.to_datetime(values, format=date_format, errors="coerce").astype("datetime64[ns]")


@pytest.mark.parametrize("date_format", ["%y%m%d", "%d.%m.%y", "%y-%m-%d %H:%M"])
def test_two_digit_years_read_as_pandas_reads_them(date_format):
    days = ["0101", "0229", "0228", "1231", "1301", "0132", "0431", "0001", "1100"]
    texts = []
    for year in range(100):
        for month_day in days:
            text = date_format.replace("%y", f"{year:02d}")
            text = text.replace("%m", month_day[:2]).replace("%d", month_day[2:])
            texts.append(text.replace("%H", "23").replace("%M", "59"))
    texts += ["", " 450101", "45011", "4501011", "4a0101", None, "450101 ", "9x1231"]
    values = pd.Series(texts, dtype="string", index=range(5, 5 + len(texts)))
    got = read_with_format(values, date_format)
    expected = _by_pandas(values, date_format)
    pd.testing.assert_series_equal(got, expected, check_names=False)
    assert got.notna().sum() >= 3 * 100 + 25  # 01-01, 02-28, 12-31, and 02-29 of leap years
