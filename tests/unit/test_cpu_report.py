"""tests/cpu_report.py charges a child's CPU while it runs, not only once it is reaped."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests import cpu_report

pytestmark = pytest.mark.unit

SPIN = """
import sys, time
end = time.process_time() + 0.5
while time.process_time() < end:
    pass
print("spun", flush=True)
time.sleep(60)
"""


def test_a_child_still_running_counts_and_counts_once_when_reaped():
    before, _ = cpu_report._cpu()
    child = subprocess.Popen([sys.executable, "-c", SPIN], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "spun\n"
        running, _ = cpu_report._cpu()
    finally:
        child.kill()
        child.wait()
    reaped, _ = cpu_report._cpu()
    assert running - before >= 0.5  # the child's spin (and its start), before any wait
    # Reaping moves it into os.times(): no second count. The figures are sums of clock ticks
    # (1/100 s) added in another order once reaped: equal up to a float's rounding.
    assert -1e-9 < reaped - running < 0.2
