"""Conflicts of a closed legacy slice, raised for the stewards (etl/cutover/slices.py).

The same legacy change seen by several waves' deltas is one conflict; a later, different change
to a row whose conflict is still open is a conflict of its own, beside the earlier one.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from etl.core.tables import cutover_conflict
from etl.cutover.slices import OPEN, _conflict, _not_raised_yet

pytestmark = pytest.mark.unit

DETECTED = dt.datetime(2027, 1, 20, tzinfo=dt.UTC)


def _change(batch_id: str, content: str, row_id: str = "row-1", kind: str = "changed") -> dict:
    found = _conflict(
        "w1_skaraborg", "w2_rest", batch_id, "melior", "encounter", row_id, "K1", kind, content
    )
    return {**found, "detected_at": DETECTED}


def _raise(connection: sa.Connection, conflicts: list[dict]) -> list[dict]:
    """What slice_batch records: only the conflicts not raised yet."""
    new = _not_raised_yet(connection, conflicts)
    if new:
        connection.execute(cutover_conflict.insert(), new)
    return new


@pytest.fixture
def connection():
    engine = sa.create_engine("sqlite://")
    cutover_conflict.create(engine)
    with engine.begin() as connection:
        yield connection


def _open(connection: sa.Connection) -> list[dict]:
    query = sa.select(cutover_conflict).where(cutover_conflict.c.state == OPEN)
    return [dict(r._mapping) for r in connection.execute(query.order_by("batch_id"))]


def test_the_same_change_seen_by_another_delta_is_raised_once(connection):
    assert len(_raise(connection, [_change("w2_delta_1", "hash-b")])) == 1
    assert _raise(connection, [_change("w0_delta_1", "hash-b")]) == []
    assert [c["batch_id"] for c in _open(connection)] == ["w2_delta_1"]


def test_a_new_change_to_a_row_with_an_open_conflict_is_listed_beside_it(connection):
    _raise(connection, [_change("w2_delta_1", "hash-b")])
    again = _raise(connection, [_change("w2_delta_2", "hash-c")])
    assert len(again) == 1
    listed = _open(connection)
    assert [c["batch_id"] for c in listed] == ["w2_delta_1", "w2_delta_2"]  # the earlier kept
    assert len({c["conflict_id"] for c in listed}) == 2
    assert {c["row_id"] for c in listed} == {"row-1"}
    # ...and the latest change seen again by the patients wave's delta is not a third.
    assert _raise(connection, [_change("w0_delta_1", "hash-c")]) == []
    assert len(_open(connection)) == 2


def test_one_batch_carrying_a_change_twice_raises_it_once(connection):
    raised = _raise(connection, [_change("w2_delta_1", "hash-b"), _change("w2_delta_1", "hash-b")])
    assert len(raised) == 1


def test_a_deletion_after_a_change_is_its_own_conflict(connection):
    _raise(connection, [_change("w2_delta_1", "hash-b")])
    deleted = _raise(connection, [_change("w2_delta_2", "deleted", kind="deleted")])
    assert [c["change"] for c in deleted] == ["deleted"]
    assert len(_open(connection)) == 2
