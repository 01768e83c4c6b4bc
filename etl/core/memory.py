"""Give memory a finished stage no longer uses back to the operating system.

A stage reads and writes chunk by chunk, so its working set is bounded by the chunk; but the
allocators keep what a stage freed (glibc's arenas for pandas and NumPy; the Arrow pool's
pages, jemalloc's as etl/__init__.py chooses, which it returns a second after or here), so a
process running stage after stage (``vardflytt run``, the bench, a worker running several
tasks) would otherwise carry each stage's high-water mark into the next and its resident memory
would creep with the data. Called between stages, never per row."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import cache


@cache
def _malloc_trim():  # type: ignore[no-untyped-def]
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


def release_unused() -> None:
    """Return the Arrow pool's and the C heap's free pages to the system (a few ms).

    No ``gc.collect()``: with Great Expectations' objects in the heap a full collection costs
    about 130 ms of CPU, measured 2.3 s over one Melior run's 18 stages; what reference counting
    frees is enough."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
