"""Lookups (etl.validate.context): every row of a chunk gets its key pair's columns and match,
and numbers are compared as the text they read as."""

from __future__ import annotations

import pandas as pd
import pytest

from etl.validate.context import _join_lookup

pytestmark = pytest.mark.unit

TABLE = "lab.csv"
LOOKUP = {
    "table": TABLE,
    "on": {"code": "npu_code", "unit": "unit"},
    "columns": ["lowest", "label"],
    "match": "unit_is_allowed",
}


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
