"""Where a test run's CPU and wall time go, per test file and per test: a pytest plugin.

    pytest -p tests.cpu_report -n 0 tests/integration/test_cutover_dag.py

prints, at the end, each file's and the slowest tests' CPU seconds (user + system of the pytest
process and of the child processes it waited for: ``vardflytt`` and ``airflow`` commands, Celery
workers; and, on Linux, what its descendants still running used meanwhile: an api-server a module
fixture started, a pool's fork server) beside their wall seconds. CPU seconds are what to compare
on a shared machine: the wall figure grows with everyone else's load, the CPU figure does not.
Setup and teardown count with the test that ran them, so a module-scoped fixture is charged to
the file's first (setup) and last (teardown) test. Servers' CPU (PostgreSQL, MariaDB, Redis) is
not counted: waiting on them shows as wall seconds without CPU.

With ``CPU_REPORT_JSON=<file>`` the figures are also written there (one file per xdist worker:
``<file>.<worker>``).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict

import pytest

_tests: dict[str, tuple[float, float]] = {}


def _cpu() -> tuple[float, float]:
    times = os.times()
    return (
        times.user
        + times.system
        + times.children_user
        + times.children_system
        + _running_descendants_cpu(),
        times.elapsed,
    )


def _running_descendants_cpu() -> float:
    """CPU seconds of this process's descendants not reaped yet, each with the children it reaped.

    ``os.times()`` counts a child only once it is waited for: an api-server that a module fixture
    starts works through the module's tests but is reaped at teardown, so its CPU went to the
    module's last test and the others' showed as waiting. When a descendant is reaped, its figure
    moves into its parent's reaped-children one: the sum goes on growing, never jumps. 0 without
    ``/proc``."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = defaultdict(list)
    spent: dict[int, int] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0.0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (command) "
        pid = int(entry)
        children[int(fields[1])].append(pid)
        spent[pid] = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    total, pending = 0, list(children.get(os.getpid(), []))
    while pending:
        pid = pending.pop()
        total += spent.get(pid, 0)
        pending.extend(children.get(pid, []))
    return total / ticks


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    cpu, wall = _cpu()
    yield
    cpu_after, wall_after = _cpu()
    _tests[item.nodeid] = (cpu_after - cpu, wall_after - wall)


def _by_file() -> dict[str, list[float]]:
    files: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for nodeid, (cpu, wall) in _tests.items():
        entry = files[nodeid.split("::")[0]]
        entry[0] += cpu
        entry[1] += wall
        entry[2] += 1
    return files


def pytest_terminal_summary(terminalreporter):
    if not _tests:
        return
    write = terminalreporter.write_line
    files = _by_file()
    terminalreporter.section("CPU seconds (user+sys, with children) and wall seconds")
    write(f"{'cpu':>8} {'wall':>8} {'tests':>5}  file")
    for name, (cpu, wall, count) in sorted(files.items(), key=lambda kv: -kv[1][0]):
        write(f"{cpu:8.1f} {wall:8.1f} {count:5d}  {name}")
    total_cpu = sum(entry[0] for entry in files.values())
    total_wall = sum(entry[1] for entry in files.values())
    write(f"{total_cpu:8.1f} {total_wall:8.1f} {len(_tests):5d}  total")
    write("")
    write("slowest tests by CPU:")
    for nodeid, (cpu, wall) in sorted(_tests.items(), key=lambda kv: -kv[1][0])[:15]:
        write(f"{cpu:8.1f} {wall:8.1f}  {nodeid}")


def pytest_sessionfinish(session):
    target = os.environ.get("CPU_REPORT_JSON")
    if target and _tests:
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        path = f"{target}.{worker}" if worker else target
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"tests": _tests}, handle, indent=1)
