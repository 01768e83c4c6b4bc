"""The runs compare and write links and persons as text from the columns' buffers; what they
give is what the per-value code they replaced gave (kept here and as ``_changed_keys_as_frames``):
``str`` of each value, None and float NaN as missing, whatever the column's dtype."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.identity import runs

pytestmark = pytest.mark.unit

TEXT = st.text(alphabet='ab "Ö\\', max_size=3)
# Missing values of every kind a column can hold: None and float NaN are missing, pd.NA, NaT
# and a float32 NaN are not (their str is kept).
MISSING = st.sampled_from([None, float("nan"), np.float64("nan"), pd.NA, pd.NaT, np.float32("nan")])
VALUE = st.one_of(TEXT, MISSING, st.integers(-3, 3), st.floats(allow_nan=False, width=16))
DTYPES = ("object", "str", "string", "string[pyarrow]", "int64", "float64", "bool")


def per_value(values: pd.Series, missing: str | None) -> list[str | None]:
    """The code before: one Python ``str`` per value."""
    return [
        missing if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
        for value in values.tolist()
    ]


@st.composite
def columns(draw) -> pd.Series:
    dtype = draw(st.sampled_from(DTYPES))
    if dtype in ("int64", "bool"):
        values = draw(st.lists(st.integers(0, 1) if dtype == "bool" else st.integers(-5, 10**12)))
        return pd.Series(values, dtype=dtype)
    if dtype == "float64":
        return pd.Series(draw(st.lists(st.one_of(st.none(), st.floats()))), dtype=dtype)
    if dtype == "object":
        values = draw(st.one_of(st.lists(st.one_of(TEXT, MISSING)), st.lists(VALUE)))
        return pd.Series(values, dtype=object)
    values = draw(st.lists(st.one_of(TEXT, st.sampled_from([None, float("nan")]))))
    return pd.Series(values, dtype=dtype)


@settings(max_examples=200, deadline=None)
@given(columns(), st.sampled_from(["", None]))
def test_texts_equal_str_of_each_value(values, missing):
    got = runs._texts(values, missing)
    assert got.type == pa.large_string()
    assert got.to_pylist() == per_value(values, missing)
    written = runs._text_array(values)
    assert written.type == pa.string()
    assert written.to_pylist() == per_value(values, None)


def test_texts_of_a_list_and_of_repeated_values():
    assert runs._text_array(["run-1"] * 3).to_pylist() == ["run-1"] * 3
    assert runs._text_array([None] * 2).to_pylist() == [None, None]
    assert runs._text_array([]).to_pylist() == []


KEYS = st.sampled_from(["p1", "p2", "p3", "p4", "p5"])
ROW = st.tuples(st.sampled_from(["a", "b", None]), st.sampled_from([None, "r1", float("nan")]))


@st.composite
def link_frames(draw, unique: bool = True) -> pd.DataFrame:
    keys = draw(st.lists(KEYS, unique=unique, max_size=5))
    rows = [draw(ROW) for _ in keys]
    dtype = draw(st.sampled_from(["object", "str"]))
    return pd.DataFrame(
        {
            "patient_id": pd.Series(keys, dtype=dtype),
            "person_id": pd.Series([person for person, _ in rows], dtype=dtype),
            "review_id": pd.Series([review for _, review in rows], dtype=object),
            "patient_count": pd.Series(range(len(keys)), dtype="int64") % 2,
        }
    )


@settings(max_examples=150, deadline=None)
@given(link_frames(), link_frames())
def test_changed_keys_equal_the_comparison_of_text_frames(desired, current):
    columns = ["person_id", "review_id", "patient_count"]
    ended, new = runs._changed_keys(desired, current, "patient_id", columns)
    ended_before, new_before = runs._changed_keys_as_frames(desired, current, "patient_id", columns)
    pd.testing.assert_index_equal(ended, ended_before)
    pd.testing.assert_index_equal(new, new_before)


def test_changed_keys_of_a_key_given_twice_are_compared_as_before():
    desired = pd.DataFrame({"patient_id": ["p1", "p2"], "person_id": ["a", "b"]})
    current = pd.DataFrame({"patient_id": ["p1", "p1"], "person_id": ["a", "c"]})
    with pytest.raises(ValueError, match="identically-labeled"):
        runs._changed_keys(desired, current, "patient_id", ["person_id"])
