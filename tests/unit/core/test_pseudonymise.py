"""``pseudonymise`` hashes each distinct (system, source key) once and lays the pseudonyms out
over the rows: the same as ``pseudonym`` of each row, NA where the row has no key, for one system
or a system per row."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.core.pseudonym import pseudonym, pseudonymise

pytestmark = pytest.mark.unit

KEY = b"k" * 32
_keys = st.lists(st.one_of(st.none(), st.sampled_from(["1", "2", "19121212-1212", "x\x1fy", ""])))


@settings(max_examples=100, deadline=None)
@given(keys=_keys, data=st.data())
def test_each_row_gets_the_pseudonym_of_its_own_system_and_key(keys, data):
    systems = data.draw(st.lists(st.sampled_from(["elvis", "melior"]), min_size=len(keys),
                                 max_size=len(keys)))  # fmt: skip
    index = pd.RangeIndex(10, 10 + len(keys))
    source_keys = pd.Series(keys, index=index, dtype="string")
    per_row = pseudonymise(KEY, pd.Series(systems, index=index, dtype="string"), source_keys)
    one_system = pseudonymise(KEY, "elvis", source_keys)
    assert per_row.dtype == "string" and list(per_row.index) == list(index)
    assert [None if pd.isna(v) else v for v in per_row] == [
        None if k is None else pseudonym(KEY, s, k) for s, k in zip(systems, keys, strict=True)
    ]
    assert [None if pd.isna(v) else v for v in one_system] == [
        None if k is None else pseudonym(KEY, "elvis", k) for k in keys
    ]
