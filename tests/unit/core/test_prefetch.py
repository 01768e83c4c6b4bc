"""``in_background``: an iterator's items produced ahead in a thread, in order, at most ``depth``
ahead, its errors raised at their item, and stopped when the consumer stops."""

from __future__ import annotations

import threading
import time
from contextlib import closing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.core.prefetch import in_background

pytestmark = pytest.mark.unit


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers()), st.integers(min_value=1, max_value=4))
def test_the_items_come_in_their_order(items, depth):
    assert list(in_background(iter(items), depth)) == items


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=20), st.integers(min_value=1, max_value=3))
def test_an_error_is_raised_at_its_item_after_the_items_before_it(failing_at, depth):
    def produce():
        for n in range(30):
            if n == failing_at:
                raise ValueError(f"item {n}")
            yield n

    received = []
    with pytest.raises(ValueError, match=f"item {failing_at}"):
        for item in in_background(produce(), depth):
            received.append(item)
    assert received == list(range(failing_at))


def test_the_producer_runs_in_another_thread_at_most_depth_items_ahead():
    produced = []
    threads = set()

    def produce():
        for n in range(10):
            threads.add(threading.get_ident())
            produced.append(n)
            yield n

    items = in_background(produce(), depth=2)
    assert next(items) == 0
    time.sleep(0.3)  # the producer fills the hand-over and waits
    # 0 was taken; 1 and 2 wait in the hand-over; 3 is made and waits to be handed over.
    assert len(produced) <= 4
    assert list(items) == list(range(1, 10))
    assert threading.get_ident() not in threads


def test_a_consumer_that_stops_stops_the_producer():
    produced = []

    def produce():
        for n in range(1000):
            produced.append(n)
            yield n

    with closing(in_background(produce(), depth=1)) as items:
        assert next(items) == 0
    count = len(produced)
    time.sleep(0.3)
    assert len(produced) == count <= 3  # nothing runs on behind a closed consumer


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth"):
        next(in_background(iter([1]), 0))
