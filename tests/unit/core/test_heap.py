"""The collector as a process that runs stages sets it (etl/core/heap.py): what is alive is
frozen, and garbage made afterwards still goes."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref

import pytest

from etl.airflow_main import YOUNG_THRESHOLD
from etl.core.heap import settle

pytestmark = pytest.mark.unit


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_settle_freezes_what_is_alive(unsettled_heap):
    kept = _Node()
    settle()
    assert gc.get_freeze_count() > 0
    frozen = weakref.ref(kept)
    del kept
    gc.collect()
    assert frozen() is not None  # frozen: a cycle alive at the call is never examined again


def test_garbage_made_after_settling_is_still_collected(unsettled_heap):
    settle()
    made_after = _Node()
    gone = weakref.ref(made_after)
    del made_after
    gc.collect()
    assert gone() is None


def test_preload_imports_the_modules_before_freezing():
    """In a fresh interpreter: the module is imported, and its objects are among the frozen."""
    script = (
        "import gc, sys\n"
        "from etl.core.heap import preload_and_settle\n"
        "before = gc.get_freeze_count()\n"
        "assert 'tomllib' not in sys.modules\n"
        "preload_and_settle(['tomllib'])\n"
        "import tomllib\n"
        "examined = {id(o) for o in gc.get_objects()}\n"
        "print(before, gc.get_freeze_count(), id(tomllib.loads) in examined)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    before, after, examined = completed.stdout.split()
    assert int(before) == 0 and int(after) > 0
    assert examined == "False"  # the module's function is frozen, out of every generation


def test_the_suites_workers_run_tests_on_a_settled_heap():
    """tests/conftest.py settles each worker once collection is done, as stage processes do:
    what collection made is frozen and the youngest generation is collected less often."""
    assert gc.get_freeze_count() > 10_000  # pytest, the libraries and test modules collected
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD


def test_a_test_of_the_collector_starts_from_the_interpreters_settings(unsettled_heap):
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold()[0] != YOUNG_THRESHOLD
