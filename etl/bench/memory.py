"""Measuring time and memory: the RSS sampler, timed blocks and the process's exact peaks."""

from __future__ import annotations

import contextlib
import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# --------------------------------------------------------------------------- measuring
from etl.bench.figures import MIB, SAMPLE_INTERVAL_SECONDS, Measurement, ru_maxrss_bytes

TREE_SAMPLE_SECONDS = 0.05  # a process tree's RSS: one read per process per sample
TREE_LISTING_SECONDS = 0.5  # its processes listed again (workers come and go rarely)


@dataclass(eq=False)  # identity, not value, equality: two windows may hold the same figures
class RssWindow:
    start: int
    peak: int


class RssSampler:
    """A daemon thread that samples this process's RSS; ``window()`` gives a span's peak."""

    def __init__(self, interval: float = SAMPLE_INTERVAL_SECONDS, tree: bool = False) -> None:
        """``tree``: the RSS of this process and all its descendants (worker processes) summed."""
        self.interval = max(interval, TREE_SAMPLE_SECONDS) if tree else interval
        self.tree = tree
        self._children: list = []
        self._listed_at = float("-inf")
        self._windows: list[RssWindow] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            import psutil

            self._process = psutil.Process()
        except ImportError:  # psutil is a dependency, but the bench must still run without it
            self._process = None

    @property
    def available(self) -> bool:
        return self._process is not None

    def _rss(self) -> int | None:
        if self._process is None:
            return None
        rss = self._process.memory_info().rss
        if self.tree:
            import psutil

            now = time.monotonic()
            if now - self._listed_at >= TREE_LISTING_SECONDS:
                # Listing descendants reads every process of the machine: not at each sample,
                # or the sampler takes CPU from the workers it measures.
                self._children = self._process.children(recursive=True)
                self._listed_at = now
            for child in self._children:
                with contextlib.suppress(psutil.Error):  # ended since it was listed
                    rss += child.memory_info().rss
        return rss

    def _observe(self) -> None:
        rss = self._rss()
        if rss is None:
            return
        with self._lock:
            for window in self._windows:
                window.peak = max(window.peak, rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._observe()

    def __enter__(self) -> RssSampler:
        if self.available:
            self._thread = threading.Thread(
                target=self._loop, name="bench-rss-sampler", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @contextmanager
    def window(self) -> Iterator[RssWindow]:
        start = self._rss() or 0
        window = RssWindow(start=start, peak=start)
        with self._lock:
            self._windows.append(window)
        try:
            yield window
        finally:
            self._observe()
            with self._lock:
                self._windows.remove(window)


@contextmanager
def measure(sampler: RssSampler | None) -> Iterator[Measurement]:
    """Time the block; fill in the measurement (seconds, RSS start and peak) when it ends."""
    result = Measurement(seconds=0.0)
    if sampler is None or not sampler.available:
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            yield result
        finally:
            result.seconds = time.perf_counter() - started
            result.cpu_seconds = time.process_time() - cpu_started
        return
    with sampler.window() as window:
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            yield result
        finally:
            result.seconds = time.perf_counter() - started
            result.cpu_seconds = time.process_time() - cpu_started
    result.start_rss_bytes, result.peak_rss_bytes = window.start, window.peak


def parse_vm_hwm(status_text: str) -> int | None:
    """Bytes of ``VmHWM`` in a ``/proc/<pid>/status`` text (None if absent)."""
    for line in status_text.splitlines():
        if line.startswith("VmHWM:"):
            number, unit = line.split()[1:3]
            return int(number) * {"kB": 1024, "mB": MIB}.get(unit, 1)
    return None


def process_peaks() -> dict[str, int | None]:
    """This process's exact peaks: ``ru_maxrss`` and (Linux) ``VmHWM``, in bytes."""
    try:
        vm_hwm = parse_vm_hwm(Path("/proc/self/status").read_text())
    except OSError:
        vm_hwm = None
    return {
        "ru_maxrss_bytes": ru_maxrss_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
        "vm_hwm_bytes": vm_hwm,
    }
