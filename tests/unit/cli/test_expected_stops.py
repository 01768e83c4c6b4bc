"""Expected stops end the command with one clear message and their own exit code, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from etl import pipeline
from etl.cli import app
from etl.cli.common import EXPECTED_STOPS, expected_stop
from etl.core.lease import SystemLeasedError
from etl.cutover.ledger import LedgerError
from etl.cutover.waves import PlanChangedError
from etl.extract.readers import SchemaDriftError
from etl.load.loader import AccountingError
from etl.load.promote import PromotionError
from etl.validate.gate import DataQualityGateError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[3]
PASSWORD = "s3cret-pw"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (DataQualityGateError("elvis patient: 3 of 10 rows failed (limit 1%)"), 3),
        (AccountingError("elvis: patient (PATIENT) residue 1"), 4),
        (SchemaDriftError("schema drift in elvis table PATIENT: column PNR is missing"), 5),
        (PromotionError("batch b1 was superseded by batch b2"), 6),
        (PlanChangedError("wave w1 plan changed: mappings/waves.yaml"), 6),  # a subclass
        (SystemLeasedError("elvis is held by run r1"), 6),
    ],
)
def test_a_stop_of_the_run_command_is_one_message_and_its_exit_code(
    error, code, monkeypatch, capsys, tmp_path
):
    monkeypatch.setenv("VARDFLYTT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VARDFLYTT_TRACEBACK", raising=False)

    def stopped(*_args, **_kwargs):
        raise error

    monkeypatch.setattr(pipeline, "run_system", stopped)
    with pytest.raises(SystemExit) as ended:
        app(["run", "elvis", "--as-of-date", "2026-07-01"], prog_name="vardflytt")
    output = capsys.readouterr()
    assert ended.value.code == code
    assert str(error) in output.err and f"(exit {code})" in output.err
    assert "Traceback" not in output.err + output.out


def test_an_unexpected_error_is_not_dressed_up_as_a_stop(monkeypatch, tmp_path):
    monkeypatch.setenv("VARDFLYTT_HOME", str(tmp_path / "home"))

    def crashed(*_args, **_kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(pipeline, "run_system", crashed)
    with pytest.raises(KeyError):
        app(["run", "elvis", "--as-of-date", "2026-07-01"], prog_name="vardflytt")


def test_the_traceback_of_a_stop_is_there_when_asked_for(monkeypatch, tmp_path):
    monkeypatch.setenv("VARDFLYTT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VARDFLYTT_TRACEBACK", "1")

    def stopped(*_args, **_kwargs):
        raise DataQualityGateError("gate")

    monkeypatch.setattr(pipeline, "run_system", stopped)
    with pytest.raises(DataQualityGateError):
        app(["run", "elvis", "--as-of-date", "2026-07-01"], prog_name="vardflytt")


def test_every_declared_stop_names_a_real_exception_class():
    import importlib

    for qualified, (code, heading) in EXPECTED_STOPS.items():
        module, _, name = qualified.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        assert issubclass(cls, BaseException) and expected_stop(cls("x")) == (code, heading)
    codes = {code for code, _ in EXPECTED_STOPS.values()}
    assert 1 not in codes and 0 not in codes  # distinct from success and from a plain failure


def test_a_real_ledger_refusal_through_the_console_script_has_no_traceback(tmp_path):
    """`cutover commit` of a wave that was never loaded: the ledger refuses, exit 6."""
    environment = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        VARDFLYTT_HOME=str(tmp_path / "home"),
        VARDFLYTT_CORE_URL=f"sqlite:///{tmp_path / 'core.sqlite'}",
    )
    environment.pop("VARDFLYTT_TRACEBACK", None)
    done = subprocess.run(
        [sys.executable, "-m", "etl.cli", "cutover", "commit", "w1_skaraborg"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 6, output
    assert "Traceback" not in output
    assert "w1_skaraborg" in output
    assert LedgerError.__name__ not in output or "refused" in output


@pytest.mark.parametrize(("jobs", "settled"), [("1", True), ("2", False)])
def test_run_settles_the_heap_only_when_it_runs_stages_in_its_own_process(
    jobs, settled, monkeypatch, tmp_path
):
    """``vardflytt run --jobs 1`` runs every stage in its process: the stages' modules are
    imported and the heap settled first (etl/core/heap.py); with workers, they do it."""
    from etl.cli import common

    monkeypatch.setenv("VARDFLYTT_HOME", str(tmp_path / "home"))
    calls = []
    monkeypatch.setattr("etl.core.heap.preload_and_settle", lambda modules: calls.append(modules))

    def stopped(*_args, **_kwargs):
        calls.append("run_system")
        raise AccountingError("stop here")

    monkeypatch.setattr(pipeline, "run_system", stopped)
    arguments = ["run", "elvis", "--as-of-date", "2026-07-01", "--jobs", jobs]
    monkeypatch.setattr(common, "OWN_PROCESS", False)  # a host process: left alone
    with pytest.raises(SystemExit):
        app(arguments, prog_name="vardflytt")
    assert calls == ["run_system"]
    calls.clear()
    monkeypatch.setattr(common, "OWN_PROCESS", True)  # as etl.cli.main sets it
    with pytest.raises(SystemExit):
        app(arguments, prog_name="vardflytt")
    from etl.stage_modules import STAGE_MODULES

    assert calls == ([STAGE_MODULES, "run_system"] if settled else ["run_system"])


def test_the_console_entry_point_marks_the_process_as_vardflytts_own(monkeypatch):
    import etl.cli
    from etl.cli import common

    monkeypatch.setattr(common, "OWN_PROCESS", False)
    seen = []
    monkeypatch.setattr(etl.cli, "app", lambda: seen.append(common.OWN_PROCESS))
    etl.cli.main()
    assert seen == [True]
