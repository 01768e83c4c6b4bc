"""Processes a test ends are reaped by the test process itself, so their CPU seconds count in its
``os.times()`` (tests/cpu_report.py, ``/usr/bin/time``) instead of going to init with the orphans.

A process whose parent exits first is handed to init, which reaps it: its CPU never reaches the
test's figures. Chromium's renderers, and Airflow's components when their server is killed, end
that way: chromium's descendants had used 13.1 CPU s when ``driver.quit()`` reaped 1.9 of them
into the test process's figures, and make airflow's module showed -104 CPU s at teardown. While
``adopting_orphans`` runs, this process is their subreaper (Linux's PR_SET_CHILD_SUBREAPER):
orphans are handed to it, and ``reap`` waits for each."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
REAP_SECONDS = 10.0


def _set_subreaper(on: bool) -> bool:
    """Make this process the reaper of its descendants' orphans (Linux; False elsewhere)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0


@contextmanager
def adopting_orphans() -> Iterator[None]:
    """This process reaps its descendants' orphans until the block ends."""
    subreaper = _set_subreaper(True)
    try:
        yield
    finally:
        if subreaper:
            _set_subreaper(False)


def reap(pids: set[int], seconds: float = REAP_SECONDS) -> None:
    """Wait for each of these ending processes: reaped here (an orphan handed to this process) or
    gone (its own parent reaped it)."""
    deadline = time.monotonic() + seconds
    while pids and time.monotonic() < deadline:
        for pid in list(pids):
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    pids.discard(pid)
            except ChildProcessError:  # not (yet) this process's child: gone, or being handed
                if not Path(f"/proc/{pid}").exists():
                    pids.discard(pid)
        time.sleep(0.01)
