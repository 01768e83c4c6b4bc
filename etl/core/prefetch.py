"""An iterator's next items computed in a background thread while the consumer uses the current.

For a consumer that waits on something else most of the time (a database server writing the rows
it was sent) and a producer whose work runs mostly without the GIL (Arrow and NumPy kernels):
the two overlap instead of taking turns. At most ``depth`` items wait in between, so memory stays
bounded by the items, not by the iterable. What the producer raises is raised to the consumer,
at the item where it happened; a consumer that stops early (an error, ``close``) stops the
producer at its next item and waits for it, so nothing runs on behind it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable
from typing import TypeVar

T = TypeVar("T")

_DONE = object()
_POLL_SECONDS = 0.1


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def in_background(items: Iterable[T], depth: int = 2) -> Generator[T, None, None]:
    """``items`` in their order, produced ahead of use in a thread of their own."""
    if depth < 1:
        raise ValueError("depth must be at least 1")
    handoff: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not hand_over(item):
                    return
        except BaseException as error:  # raised to the consumer, at this item
            hand_over(_Failed(error))
            return
        hand_over(_DONE)

    producer = threading.Thread(target=produce, name="vardflytt-prefetch", daemon=True)
    producer.start()
    try:
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item  # type: ignore[misc]  # anything but the two markers is an item
    finally:
        stop.set()
        producer.join()
