"""The identity number patterns read by Arrow's RE2 (etl.identifiers._extract) give exactly
pandas' ``str.extract`` (Python's ``re``, kept here as the reference) on generated text."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl import identifiers

pytestmark = pytest.mark.unit

PATTERNS = [
    identifiers._PERSONAL_PATTERN,
    identifiers._VGR_RESERVE_PATTERN,
    identifiers._INTERIM_PATTERN,
]
# Pieces of identity numbers as legacy systems write them, and what the engines could read
# differently: a final line break, Arabic-Indic digits, lower-case letters.
PIECES = [
    "19",
    "20",
    "121212",
    "1212",
    "-",
    "+",
    "K",
    "M",
    "X",
    "T",
    "k",
    "12",
    "3",
    "\n",
    "٣",
    " ",
]
TEXT = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=7).map("".join),
    st.text(alphabet="0123456789-+KMXTR\n٣", max_size=14),
)


@settings(max_examples=400, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), TEXT), max_size=25),
    pattern=st.sampled_from(PATTERNS),
    dtype=st.sampled_from(["string", "str", "object"]),
    start=st.integers(0, 5),
    line_break=st.sampled_from([None, "1212121212\n", "121212-1212\n"]),
)
def test_extract_is_pandas_str_extract(values, pattern, dtype, start, line_break):
    if line_break is not None:
        values = [*values, line_break]
    text = pd.Series(values, dtype=dtype, index=pd.RangeIndex(start, start + len(values)))
    expected = text.str.extract(pattern)  # the old way: Python's re, value by value
    pd.testing.assert_frame_equal(identifiers._extract(text, pattern), expected)


@pytest.mark.parametrize("pattern", PATTERNS, ids=["personal", "vgr_reserve", "interim"])
@pytest.mark.parametrize("line_break", [False, True], ids=["one_line", "line_break"])
def test_extract_of_written_numbers(pattern, line_break):
    written = ["191212121212", "121212-1212", "19121212K123", "121212+T123", "1212T121", None]
    text = pd.Series(written + (["1212121212\n"] if line_break else []), dtype="string")
    pd.testing.assert_frame_equal(identifiers._extract(text, pattern), text.str.extract(pattern))
