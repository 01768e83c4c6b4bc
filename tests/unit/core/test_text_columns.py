"""The Arrow text column operations (etl.core.text_columns) give the pandas answer exactly.

Each property compares the function with the pandas expression it replaced, kept here as the
reference, on generated text: ranges and comparators as the laboratories write them, signs,
zeros, long numbers, line breaks, no-break spaces and Arabic-Indic digits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.core.text_columns import (
    extract_group,
    extract_where_possible,
    may_contain,
    missing_text,
    plain_decimals,
    replace_where_possible,
    stripped_or_missing,
    text_masked,
    text_where,
)

pytestmark = pytest.mark.unit

SETTINGS = settings(max_examples=300, deadline=None)
KEY_OR_NONE = st.one_of(st.none(), st.text(alphabet="ab åÄ٣", max_size=3))
NUMBER = r"[0-9]+(?:,[0-9]+)?"
PATTERNS = [
    f"^(?P<low>{NUMBER})-{NUMBER}$",
    f"^{NUMBER}-(?P<high>{NUMBER})$",
    f"^<=?({NUMBER})$",
    f"^>=?({NUMBER})$",
    r"^\s*([<>]=?)\s*",  # a Unicode class: stays with pandas
    r"([a-c]+)[(]x",
    r"(?:x)?(b|1)",
]
# Pieces of lab notation, and what Python's re and RE2 read differently (a final line break
# before ``$``, a no-break space for ``\s``, an Arabic-Indic digit).
LAB_PIECES = ["<", ">", "=", "-", "3", "12", ",5", ".", "\n", "\u00a0", " ", "٣", "a", "(x"]
LAB_TEXT = st.one_of(
    st.text(alphabet="0123456789,.<>=- +\n\u00a0٣ab", max_size=10),
    st.lists(st.sampled_from(LAB_PIECES), max_size=6).map("".join),
)


def _reference_extract(values: pd.Series, pattern: str) -> pd.Series:
    """The old way: pandas runs Python's ``re`` on every value."""
    return values.str.extract(pattern, expand=False)


@SETTINGS
@given(
    values=st.lists(st.one_of(st.none(), LAB_TEXT), max_size=30),
    pattern=st.sampled_from(PATTERNS),
    dtype=st.sampled_from(["string", "str", "object"]),
    start=st.integers(0, 5),
    name=st.sampled_from([None, "REFERENSINTERVALL"]),
)
def test_extract_group_is_pandas_extract(values, pattern, dtype, start, name):
    series = pd.Series(
        values, dtype=dtype, index=pd.RangeIndex(start, start + len(values)), name=name
    )
    expected = _reference_extract(series, pattern)
    found = extract_group(series, pattern)
    assert found.dtype == expected.dtype
    assert found.name == expected.name
    assert found.index.equals(expected.index)
    assert found.isna().tolist() == expected.isna().tolist()
    assert found.dropna().tolist() == expected.dropna().tolist()


ENGINES_DIFFER = ["3-4\n", "<5\n", "\u00a0<5", "\u00a0<", "3,5-4,6", "b(x", "٣-4"]


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("value", ENGINES_DIFFER)
def test_extract_group_where_the_regex_engines_differ(pattern, value):
    series = pd.Series([value, "<5", None], dtype="string")
    expected = _reference_extract(series, pattern)
    found = extract_group(series, pattern)
    assert found.isna().tolist() == expected.isna().tolist()
    assert found.dropna().tolist() == expected.dropna().tolist()


def _reference_decimals(values: pd.Series) -> pd.Series:
    plain = values.where(values.str.fullmatch(r"[+-]?[0-9]+(\.[0-9]+)?"))
    return pd.to_numeric(plain, errors="coerce").astype("Float64")


DECIMAL_TEXT = st.one_of(
    st.text(alphabet="0123456789.+-", max_size=20),
    st.from_regex(r"[+-]?0*[0-9]{1,17}(\.[0-9]{1,6})?", fullmatch=True),
    st.sampled_from(["-0", "-0.0", "+0", "0.000", "-0.5", "1e5", " 1", "٣", "1.", ".5"]),
)


@SETTINGS
@given(
    values=st.lists(st.one_of(st.none(), DECIMAL_TEXT), max_size=30),
    dtype=st.sampled_from(["string", "str"]),
    start=st.integers(0, 5),
)
def test_plain_decimals_are_pandas_to_numeric(values, dtype, start):
    series = pd.Series(values, dtype=dtype, index=pd.RangeIndex(start, start + len(values)))
    expected = _reference_decimals(series)
    found = plain_decimals(series)
    assert found.dtype == expected.dtype
    assert found.index.equals(expected.index)
    assert found.isna().tolist() == expected.isna().tolist()
    # repr tells -0.0 from 0.0, as the content hash's text does
    assert [repr(v) for v in found.dropna()] == [repr(v) for v in expected.dropna()]


def test_plain_decimals_read_a_lab_column():
    values = pd.Series(["5.4", "-0", "12", None, "x", "0.8"], dtype="string")
    assert plain_decimals(values).tolist() == [5.4, 0.0, 12.0, pd.NA, pd.NA, 0.8]


def _reference_clean_text(values: pd.Series) -> pd.Series:
    """The old ``clean_text``: pandas' strip, then ``Series.mask`` of the blanks."""
    stripped = values.astype("string").str.strip()
    return stripped.mask(stripped == "")


# Blanks of every kind: Python's and Arrow's white space, the zero-width and no-break spaces.
PADDED = st.text(alphabet=" \t\n\r\x0b\x0c\x1c\u00a0\u2003\u200b\u3000ab٣", max_size=6)


@SETTINGS
@given(
    values=st.lists(st.one_of(st.none(), PADDED), max_size=30),
    dtype=st.sampled_from(["string", "str", "object"]),
    start=st.integers(0, 5),
    name=st.sampled_from([None, "PATNR"]),
)
def test_stripped_or_missing_is_the_old_clean_text(values, dtype, start, name):
    series = pd.Series(
        values, dtype=dtype, index=pd.RangeIndex(start, start + len(values)), name=name
    )
    pd.testing.assert_series_equal(stripped_or_missing(series), _reference_clean_text(series))


@SETTINGS
@given(
    failed=st.lists(st.one_of(st.none(), st.booleans()), max_size=30),
    dtype=st.sampled_from(["boolean", "object"]),
    start=st.integers(0, 5),
)
def test_text_where_is_the_old_errors_where(failed, dtype, start):
    mask = pd.Series(failed, dtype=dtype, index=pd.RangeIndex(start, start + len(failed)))
    expected = pd.Series(pd.NA, index=mask.index, dtype="string")  # the old no_errors
    pd.testing.assert_series_equal(missing_text(mask.index), expected)
    expected[mask.fillna(False).astype(bool)] = "invalid_code"  # the old errors_where
    found = text_where(mask.fillna(False).astype(bool).to_numpy(), "invalid_code", mask.index)
    pd.testing.assert_series_equal(found, expected)


REPLACEMENTS = st.one_of(
    st.none(),
    st.sampled_from(["quarantined", "ä٣"]),
    st.just("series"),
    st.just("shifted"),
    st.just("object"),
)


@SETTINGS
@given(
    rows=st.lists(st.tuples(KEY_OR_NONE, st.booleans(), KEY_OR_NONE), max_size=30),
    replacement=REPLACEMENTS,
    start=st.integers(0, 5),
)
def test_text_masked_is_series_mask(rows, replacement, start):
    index = pd.RangeIndex(start, start + len(rows))
    column = pd.Series([r[0] for r in rows], dtype="string", index=index)
    condition = np.array([r[1] for r in rows], dtype=bool)
    others = [r[2] for r in rows]
    value: object = replacement
    if replacement == "series":
        value = pd.Series(others, dtype="string", index=index)
    elif replacement == "shifted":  # another index: aligned by pandas
        value = pd.Series(others, dtype="string", index=index + 1)
    elif replacement == "object":
        value = pd.Series(others, dtype=object, index=index)
    expected = column.mask(pd.Series(condition, index=index), value)  # the old way
    pd.testing.assert_series_equal(text_masked(column, condition, value), expected)


@SETTINGS
@given(
    values=st.lists(st.one_of(st.none(), st.text(alphabet="ab\ufffdä", max_size=3)), max_size=20),
    dtype=st.sampled_from(["string", "str", "object"]),
)
def test_may_contain_only_says_no_when_no_value_contains(values, dtype):
    series = pd.Series(values, dtype=dtype)
    contains = series.str.contains("\ufffd", regex=False).fillna(False).astype(bool).any()
    assert may_contain(series, "\ufffd") or not contains
    if dtype == "string":
        assert may_contain(series, "\ufffd") == contains


COMPARATOR = r"^\s*([<>]=?)\s*"


@SETTINGS
@given(
    values=st.lists(st.one_of(st.none(), LAB_TEXT), max_size=30),
    start=st.integers(0, 5),
    name=st.sampled_from([None, "RESULTAT"]),
)
def test_comparator_work_only_where_a_sign_is_is_the_pandas_answer(values, start, name):
    series = pd.Series(
        values, dtype="string", index=pd.RangeIndex(start, start + len(values)), name=name
    )
    pd.testing.assert_series_equal(
        replace_where_possible(series, COMPARATOR, "", "<>"),
        series.str.replace(COMPARATOR, "", regex=True),
    )
    pd.testing.assert_series_equal(
        extract_where_possible(series, COMPARATOR, "<>"),
        series.str.extract(COMPARATOR, expand=False),
    )
    named = r"^\s*(?P<sign>[<>]=?)"
    pd.testing.assert_series_equal(
        extract_where_possible(series, named, "<>"), series.str.extract(named, expand=False)
    )
