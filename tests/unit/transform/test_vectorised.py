"""The vectorised column operations (etl.transform.vectorised) give the pandas answer exactly.

Each property compares the new function with the pandas expression it replaced, kept here as the
reference, on generated text: missing values, blanks, non-ASCII letters and digits, lookalikes.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.transform.vectorised import is_in, text_array

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
