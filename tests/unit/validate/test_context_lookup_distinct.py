"""Lookups (etl.validate.context) join the chunk's distinct key combinations once each: the same
columns, values and dtypes as the old join of every row's keys (kept here as the reference)."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.validate import context
from etl.validate.context import CONTEXT_SEPARATOR, _join_lookup, _key_text

pytestmark = pytest.mark.unit

TABLE = "lab.csv"
LOOKUP = {
    "table": TABLE,
    "on": {"code": "npu_code", "unit": "unit"},
    "columns": ["lowest", "label"],
    "match": "unit_is_allowed",
}
# Key texts that trim alike, differ only in space, or are empty; a number and its text.
CODES = st.sampled_from(
    ["NPU1", " NPU1", "NPU1 ", "npu1", "NPU2", "", "  ", "1", "1.0", "0.0", "Ö3"]
)
UNITS = st.sampled_from(["mmol/L", " mmol/L", "g/L", "", "%", "1"])


def _reference(rows: pd.DataFrame, table: pd.DataFrame, lookup: dict) -> pd.DataFrame:
    """The join as it was: every row's keys trimmed, merged, then the match flag."""
    on = lookup["on"]
    keys = pd.DataFrame(
        {table_column: _key_text(rows[column]) for column, table_column in on.items()},
        index=rows.index,
    )
    matched = keys.merge(table, how="left", on=list(on.values()), indicator=True)
    matched.index = rows.index
    out = pd.DataFrame(index=rows.index)
    for column in lookup["columns"]:
        out[f"lab{CONTEXT_SEPARATOR}{column}"] = matched[column]
    first = next(iter(on.values()))
    in_scope = keys.notna().all(axis=1) & keys[first].isin(table[first])
    is_match = (matched["_merge"] == "both").astype("boolean")
    out[f"lab{CONTEXT_SEPARATOR}{lookup['match']}"] = is_match.where(in_scope, pd.NA)
    return out


def _column(values: list, kind: str) -> pd.Series:
    if kind == "string":
        return pd.Series(values, dtype="string")
    if kind == "object":
        return pd.Series(values, dtype=object)
    # "" is 0.0 and "  " is -0.0: one value to a hash table, two texts ("0.0", "-0.0").
    numbers = [None if v is None else -0.0 if v == "  " else float(len(v)) for v in values]
    return pd.Series(numbers, dtype="float64")


@settings(max_examples=200, deadline=None)
@given(
    table_rows=st.dictionaries(
        st.tuples(CODES, UNITS),
        st.tuples(st.one_of(st.none(), st.floats(-5, 5)), st.one_of(st.none(), CODES)),
        max_size=8,
    ),
    chunk=st.lists(
        st.tuples(st.one_of(st.none(), CODES), st.one_of(st.none(), UNITS)), max_size=40
    ),
    kinds=st.tuples(
        st.sampled_from(["string", "object", "float"]), st.sampled_from(["string", "object"])
    ),
    start=st.integers(0, 1000),
)
def test_lookup_columns_are_the_join_of_every_rows_keys(
    tmp_path_factory, table_rows, chunk, kinds, start
):
    lines = ["npu_code,unit,lowest,label"] + [
        f'"{c}","{u}",{"" if low is None else low},"{label or ""}"'
        for (c, u), (low, label) in table_rows.items()
    ]
    folder = tmp_path_factory.mktemp("mappings")
    (folder / TABLE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        table = context.reference_table(folder / TABLE, ("npu_code", "unit"))
    except context.ContextError:  # keys that trim alike repeat: refused either way
        return
    rows = pd.DataFrame(
        {
            "code": _column([c for c, _u in chunk], kinds[0]),
            "unit": _column([u for _c, u in chunk], kinds[1]),
        }
    )
    rows.index = pd.RangeIndex(start, start + len(rows))
    expected = _reference(rows, table, LOOKUP)
    _join_lookup(rows, "lab", LOOKUP, folder)
    for name in expected.columns:
        pd.testing.assert_series_equal(rows[name], expected[name], check_names=False)
        assert rows[name].dtype == expected[name].dtype


def test_a_chunk_of_many_rows_and_few_pairs_gets_each_pairs_answer(tmp_path):
    (tmp_path / TABLE).write_text(
        "npu_code,unit,lowest,label\nNPU1,mmol/L,1.5,a\nNPU1,g/L,2,b\nNPU2,%,,c\n", encoding="utf-8"
    )
    pairs = [("NPU1", "mmol/L"), (" NPU1", "g/L "), ("NPU1", "%"), ("NPU9", "%"), (None, "%")]
    rows = pd.DataFrame(
        {
            "code": pd.Series([c for c, _u in pairs] * 1000, dtype="string"),
            "unit": pd.Series([u for _c, u in pairs] * 1000, dtype="string"),
        }
    )
    _join_lookup(rows, "lab", LOOKUP, tmp_path)
    first = rows.iloc[:5]
    assert first["lab__lowest"].tolist()[:2] == [1.5, 2.0]
    assert first["lab__lowest"].isna().tolist()[2:] == [True, True, True]
    assert first["lab__label"].tolist()[:2] == ["a", "b"]
    assert first["lab__unit_is_allowed"].tolist() == [True, True, False, pd.NA, pd.NA]
    assert (rows["lab__unit_is_allowed"].iloc[5:10].tolist()) == first[
        "lab__unit_is_allowed"
    ].tolist()


def test_numbers_that_are_one_value_but_two_texts_stay_two_keys(tmp_path):
    """0.0 and -0.0 are equal (one value to a hash table) but read "0.0" and "-0.0" as text,
    the keys compared: the row of -0.0 does not take the answer of 0.0."""
    (tmp_path / TABLE).write_text("npu_code,unit,lowest,label\n0.0,%,1,zero\n", encoding="utf-8")
    rows = pd.DataFrame(
        {
            "code": pd.Series([0.0, -0.0, -0.0, 0.0], dtype="float64"),
            "unit": pd.Series(["%"] * 4, dtype="string"),
        }
    )
    _join_lookup(rows, "lab", LOOKUP, tmp_path)
    assert rows["lab__label"].tolist()[::3] == ["zero", "zero"]
    assert rows["lab__label"].iloc[1:3].isna().all()
    assert rows["lab__unit_is_allowed"].tolist() == [True, pd.NA, pd.NA, True]
