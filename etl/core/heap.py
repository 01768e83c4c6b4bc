"""CPython's cyclic garbage collector, set for a process that imports a large library stack and
then runs migration stages: what the process keeps for good is taken out of the collector's work.

A process that runs stages holds a few hundred thousand objects it never frees (pandas, PyArrow,
SQLAlchemy, Great Expectations, the parsed mappings: ~250,000 in the bench's process), and every
full collection walks all of them although a stage's garbage is a small part of the heap.
Measured on a wave's final delta of ELVIS and Melior in one process (the bench's freeze window,
20,000 people, time inside the collector from ``gc.callbacks``): 0.20-0.25 s of 2.7-3.1 s, and
0.05-0.08 s once what was alive after the imports was frozen.

:func:`settle` freezes what is alive now (``gc.freeze``: never examined again; it lives as long as
the process anyway). Nothing else about collection changes: objects made after the call are
collected as before. Called once the stages' modules are imported, by every process that runs
stages: ``airflow`` as the project starts it (etl/airflow_main.py, which also collects the
youngest generation less often, measured for its commands), the fork server's workers
(etl/parallel.py), ``vardflytt run`` and ``vardflytt cutover load`` / ``rehearse`` when they run
the stages in their own process (etl/cli/common.py), and the bench.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Iterable

# Allocations between collections of the youngest generation for a process that builds a large
# heap and then ends (CPython's default: 700): ``airflow`` as the project starts it
# (etl/airflow_main.py) and the test suite's workers (tests/conftest.py).
YOUNG_THRESHOLD = 10_000


def settle(young_threshold: int | None = None) -> None:
    """Freeze every object alive now: the collector never examines them again. With
    ``young_threshold``, the youngest generation is collected that often (allocations) from
    now on, the older generations' thresholds kept."""
    gc.freeze()
    if young_threshold is not None:
        _, middle, oldest = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, oldest)


def preload_and_settle(modules: Iterable[str]) -> None:
    """Import ``modules`` (a process about to run stages would import them anyway), then
    :func:`settle`."""
    for name in modules:
        importlib.import_module(name)
    settle()
