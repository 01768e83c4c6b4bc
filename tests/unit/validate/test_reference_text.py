"""A reference's keys are trimmed and looked up in Arrow (``references._unresolved``): the same
rows fail as with the pandas expression it replaced, whatever the text's storage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


@settings(max_examples=60, deadline=None)
@given(
    picks=st.lists(st.integers(0, len(_POOL) - 1), min_size=0, max_size=60),
    in_batch=st.sets(st.sampled_from([v for v in _POOL if v and v.strip()])),
    in_core=st.sets(st.sampled_from([v.strip() for v in _POOL if v and v.strip()])),
    dtype=st.sampled_from([pd.StringDtype("pyarrow"), pd.StringDtype("python"), object]),
)
def test_each_key_resolved_once_fails_the_rows_the_expression_fails(
    picks, in_batch, in_core, dtype
):
    """Keys found in the batch, then the rest asked of the core: a row fails when its trimmed
    key is in neither (the keys' answers taken to the rows through their positions)."""
    values = pd.Series([_POOL[i] for i in picks], dtype=dtype, index=range(7, 7 + len(picks)))
    batch_keys = pa.array(sorted(in_batch), type=pa.large_string())
    asked: list[list[str]] = []

    def core(_url, _reference, remaining, _system=None):
        asked.append(remaining)
        return set(in_core) & set(remaining)

    reference = Reference("encounter", "patient_id", "patient", "patient_id")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(references, "_in_batch", lambda _paths, _reference, _wanted: batch_keys)
        patch.setattr(references, "_in_core", core)
        failing, _text = references._unresolved(object(), reference, values, "sqlite://")

    trimmed = values.astype("string").str.strip()
    trimmed = trimmed.mask(trimmed == "")
    known = pd.Series(sorted(set(in_batch) | set(in_core)), dtype="string")
    expected = trimmed.notna() & ~is_in(trimmed, known)
    assert failing.equals(expected)
    # The core is asked only for the distinct keys the batch did not resolve.
    wanted = set(trimmed.dropna())
    assert [set(a) for a in asked] == ([wanted - set(in_batch)] if wanted - set(in_batch) else [])
