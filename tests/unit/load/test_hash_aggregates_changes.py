"""A delta's aggregates (etl/load/hash_aggregates.py ``_changed``): its base's buckets less the
overwritten rows' plus the written rows', in plain integers, must be exactly what two pandas
``add`` calls give: the same buckets, in the same order, with the same figures and dtypes."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.load import hash_aggregates as ha
from tests.unit.load.test_hash_aggregates import HEX, _buckets, hex_strings

pytestmark = pytest.mark.unit

rows = st.dictionaries(st.text(alphabet=HEX, min_size=32, max_size=32), hex_strings, max_size=40)


def _figures(frame: pd.DataFrame, reverse: bool) -> dict[str, tuple[int, int, int]]:
    """A frame as the grouped query hands it back (any order)."""
    items = list(zip(frame.index.tolist(), frame.to_numpy().tolist(), strict=True))
    return {label: tuple(values) for label, values in (items[::-1] if reverse else items)}


def _same(left: pd.DataFrame, right: pd.DataFrame) -> None:
    assert left.index.tolist() == right.index.tolist()
    assert left.columns.tolist() == right.columns.tolist()
    assert left.dtypes.tolist() == right.dtypes.tolist()
    assert left.to_numpy().tolist() == right.to_numpy().tolist()
    assert left.index.name == right.index.name


@settings(max_examples=80, deadline=None)
@given(base=rows, removed=rows, written=rows, reverse=st.booleans(), overlap=st.booleans())
def test_changes_equal_two_adds(base, removed, written, reverse, overlap):
    if overlap:  # the overwritten rows' previous versions come from the base
        removed = dict(list(base.items())[: len(base) // 2]) | removed
    base_frame, before, after = _buckets(base), _buckets(removed), _buckets(written)
    expected = ha.add(ha.add(base_frame, before, -1), after)
    changes = ((-1, _figures(before, reverse)), (1, _figures(after, reverse)))
    _same(ha._changed(base_frame, changes), expected)


def test_a_delta_that_removes_everything_leaves_no_bucket():
    base = _buckets({"ab" + "0" * 30: "0" * 15 + "1", "cd" + "0" * 30: "f" * 16})
    changes = ((-1, _figures(base, False)), (1, {}))
    changed = ha._changed(base, changes)
    assert changed.empty
    assert changed.columns.tolist() == list(ha.MEASURES)


def test_a_delta_without_changes_keeps_its_base():
    base = _buckets({"ab" + "0" * 30: "0" * 15 + "1"})
    _same(
        ha._changed(base, ((-1, {}), (1, {}))),
        ha.add(ha.add(base, ha.empty_buckets(), -1), ha.empty_buckets()),
    )


def test_a_bucket_that_cancels_out_is_dropped_and_a_new_one_added_in_order():
    base = _buckets({"ab" + "0" * 30: "0" * 15 + "1", "cd" + "0" * 30: "0" * 15 + "2"})
    changes = ((-1, {"ab": (1, 0, 1)}), (1, {"00": (1, 5, 6), "ff": (2, 0, 0)}))
    changed = ha._changed(base, changes)
    assert changed.index.tolist() == ["00", "cd", "ff"]
    assert changed.loc["00"].tolist() == [1, 5, 6]
    assert changed.loc["ff"].tolist() == [2, 0, 0]
