"""A reference's keys are trimmed and looked up in Arrow (``references._unresolved``): the same
rows fail as with the pandas expression it replaced, whatever the text's storage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from etl.transform.vectorised import is_in
from etl.validate import references
from etl.validate.references import Reference

pytestmark = pytest.mark.unit

_POOL = ["a", " a", "a ", "\u00a0a", "b\u2003", "", "  ", "\t", "c", None, "é", "x\u200b", "\x1cf"]
_FOUND = ["a", "é", "x\u200b"]


@pytest.mark.parametrize("dtype", [pd.StringDtype("pyarrow"), pd.StringDtype("python"), object])
def test_unresolved_is_the_pandas_expression(dtype, monkeypatch):
    rng = np.random.default_rng(7)
    values = pd.Series([_POOL[i] for i in rng.integers(0, len(_POOL), 500)], dtype=dtype)
    values.index = values.index + 100
    found = pa.array(_FOUND, type=pa.large_string())
    monkeypatch.setattr(references, "_in_batch", lambda _paths, _reference, _wanted: found)
    reference = Reference("encounter", "patient_id", "patient", "patient_id")

    failing, text = references._unresolved(object(), reference, values, None)

    trimmed = values.astype("string").str.strip()
    trimmed = trimmed.mask(trimmed == "")
    expected = trimmed.notna() & ~is_in(trimmed, found)
    assert failing.equals(expected)
    assert text.cast(pa.large_string()).equals(pa.array(trimmed, type=pa.large_string()))
    assert 0 < failing.sum() < len(values)
