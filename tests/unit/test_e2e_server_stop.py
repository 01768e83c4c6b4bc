"""tests/e2e/airflow_server.py stops a server's whole process tree at once: its own process group
and a descendant that moved to a group of its own (as Airflow runs each task), even when the
server ignores SIGTERM; and ended descendants, orphans too (tests/e2e/reaping.py), are reaped by
this process, so their CPU seconds count in its ``os.times()``, as tests/cpu_report.py reads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress

import pytest

from tests.e2e.airflow_server import _stop

pytestmark = pytest.mark.unit

# A "server" that ignores SIGTERM, with a child in its group and a child in a group of its own
# that spins SPIN_SECONDS of CPU first; it prints the two pids once the spin is done.
SPIN_SECONDS = 0.5
SERVER = f"""
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
spinner = [sys.executable, "-c", "import time\\n"
           "end = time.process_time() + {SPIN_SECONDS}\\n"
           "while time.process_time() < end: pass\\n"
           "print('spun', flush=True); time.sleep(60)"]
in_group = subprocess.Popen(sleeper)
own_group = subprocess.Popen(spinner, process_group=0, stdout=subprocess.PIPE, text=True)
own_group.stdout.readline()
print(in_group.pid, own_group.pid, flush=True)
time.sleep(60)
"""


def _reaped_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def _gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_the_server_its_group_and_a_descendant_in_its_own_group_are_stopped_at_once():
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    in_group, own_group = map(int, server.stdout.readline().split())
    before = _reaped_cpu()
    try:
        assert os.getpgid(own_group) == own_group != server.pid
        started = time.monotonic()
        _stop(server)
        took = time.monotonic() - started
        assert server.returncode is not None
        assert _gone(in_group)
        assert _gone(own_group), "a descendant in its own process group outlived the server"
        assert took < 3, f"stopping took {took:.1f} s"
        # The spinner, killed and reaped here rather than by init, brings its CPU seconds.
        if sys.platform.startswith("linux"):
            assert _reaped_cpu() - before >= SPIN_SECONDS * 0.9
    finally:
        for pid in (server.pid, in_group, own_group):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        server.wait()


# A parent that leaves its spinning child behind (as chromium leaves its renderers): it prints the
# child's pid once the spin is done and exits without waiting for it.
LEAVES_A_CHILD = f"""
import subprocess, sys
spinner = [sys.executable, "-c", "import time\\n"
           "end = time.process_time() + {SPIN_SECONDS}\\n"
           "while time.process_time() < end: pass\\n"
           "print('spun', flush=True); time.sleep(0.2)"]
child = subprocess.Popen(spinner, stdout=subprocess.PIPE, text=True)
child.stdout.readline()
print(child.pid, flush=True)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a subreaper is Linux's")
def test_an_orphan_that_ends_while_adopted_is_reaped_here_with_its_cpu_seconds():
    from tests.e2e.reaping import adopting_orphans, reap

    before = _reaped_cpu()
    with adopting_orphans():
        parent = subprocess.Popen(
            [sys.executable, "-c", LEAVES_A_CHILD], stdout=subprocess.PIPE, text=True
        )
        orphan = int(parent.stdout.readline())
        parent.wait()
        reap({orphan})
    assert _gone(orphan)
    assert _reaped_cpu() - before >= SPIN_SECONDS * 0.9
