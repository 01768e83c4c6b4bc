"""``airflow`` as the project starts it (etl/airflow_main.py): Airflow's own command line, named
``airflow``, with the collector set for a short command and no collection at exit."""

from __future__ import annotations

import atexit
import gc
import subprocess
import sys
import types

import pytest

from etl.airflow_main import AIRFLOW_COMMAND, YOUNG_THRESHOLD, main

pytestmark = pytest.mark.unit


def test_airflow_runs_its_own_command_line_with_the_collector_set(monkeypatch):
    seen = {}

    def airflow_main():
        seen["argv0"] = sys.argv[0]
        seen["threshold"] = gc.get_threshold()
        seen["frozen"] = gc.get_freeze_count()
        return 3

    module = types.ModuleType("airflow.__main__")
    module.main = airflow_main
    monkeypatch.setitem(sys.modules, "airflow.__main__", module)
    monkeypatch.setattr(sys, "argv", ["/somewhere/etl/airflow_main.py", "version"])
    threshold = gc.get_threshold()
    registered = []
    monkeypatch.setattr(atexit, "register", registered.append)
    try:
        with pytest.raises(SystemExit) as ended:
            main()
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()

    assert ended.value.code == 3  # Airflow's exit code
    assert seen["argv0"].endswith("/airflow")  # the command line Airflow records in its log
    assert seen["threshold"] == (YOUNG_THRESHOLD, *threshold[1:])
    assert seen["frozen"] > 0  # what was alive once Airflow was imported
    assert registered == [gc.freeze]  # at exit: no collection of what is left


def test_the_command_is_airflows_command_line():
    completed = subprocess.run(
        [*AIRFLOW_COMMAND, "--help"], capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.startswith("Usage: airflow "), completed.stdout[:200]
    assert "dags" in completed.stdout.split()
