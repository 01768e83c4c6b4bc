"""may_contain of one character searches the values' bytes: the answer of a per-value match."""

from __future__ import annotations

import pandas as pd
import pytest

from etl.core.text_columns import may_contain

pytestmark = pytest.mark.unit

REPLACEMENT = "\ufffd"


def _by_values(values: pd.Series, text: str) -> bool:
    return bool(values.str.contains(text, regex=False).fillna(False).any())


@pytest.mark.parametrize(
    "texts",
    [
        [],
        [None, None],
        ["", None, "abc"],
        [f"a{REPLACEMENT}", "b"],
        ["a", "b", f"x{REPLACEMENT}"],
        ["\u00e5\u00e4", "\uffef", "\ufffc"],  # other characters sharing its first bytes
        ["\xef\xbf\xbd"],  # its UTF-8 bytes written as three characters
    ],
)
@pytest.mark.parametrize("cut", [0, 1])
def test_answer_is_the_per_value_match(texts, cut):
    values = pd.Series(texts, dtype="string").iloc[cut:]
    assert may_contain(values, REPLACEMENT) is _by_values(values, REPLACEMENT)


def test_only_the_series_rows_are_searched():
    values = pd.Series([f"a{REPLACEMENT}", "b", "c", f"{REPLACEMENT}d"], dtype="string")
    assert may_contain(values.iloc[1:3], REPLACEMENT) is False
    assert may_contain(values.iloc[1:], REPLACEMENT) is True
    assert may_contain(values.iloc[:1], REPLACEMENT) is True
