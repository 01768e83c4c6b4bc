"""Canary proof: planted identities never leave the source and the core.

An estate with canaries (``generate_estate(..., canaries=True)``: Skatteverket test numbers no
one else has, names, streets and free texts that all contain ``kanarie``, and two canary rows
with a defect so they are quarantined) is migrated through Airflow (``airflow dags test``) for
ELVIS (SQL), Melior (flat files) and one satellite (fixed-width ISO 646-SE). Then the validation
report, the mapping documentation and the source profiles are generated, and none of the
canaries, in any spelling, may appear in any report file, the Airflow task logs, the XCom table
(or anywhere in the Airflow metadata database) or the pipeline's own log output.

Positive controls keep the proof honest: the same detector finds every canary in the estate's
files and in the core database, and the canaries' quarantined rows reach the report as keyed
pseudonyms.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from etl.core.pseudonym import KEY_VARIABLE, pseudonym
from etl.estate import generate_estate
from etl.estate.canaries import CANARY_FILE
from etl.layout import ARCHETYPE_DIR, CROSSWALK_DIR
from tests.commands import copy_migrated_airflow_db, run_vardflytt

pytestmark = pytest.mark.integration

SYSTEMS = ["elvis", "melior", "vaccinationsregister"]
PSEUDONYM_KEY = "canary-test-pseudonym-key-000001"
MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


@dataclass
class Canaries:
    marker: str
    patterns: list[re.Pattern]
    content: dict

    @classmethod
    def read(cls, estate: Path) -> Canaries:
        content = json.loads((estate / CANARY_FILE).read_text("utf-8"))
        patterns = []
        for number in content["identity_numbers"] + content["defective_identity_numbers"]:
            century, date, serial = number[:2], number[2:8], number[8:11]
            # 12 or 10 digits, '-', '+' or no separator, any check digit (or none): a number
            # damaged by a planted defect, or cut short, is still the canary's.
            patterns.append(
                re.compile(rf"(?<![0-9])(?:{century})?{date}[-+]?{serial}[0-9]?(?![0-9])")
            )
        return cls(content["marker"], patterns, content)

    def find(self, text: str) -> list[str]:
        """Every canary trace in ``text``, with a little context."""
        found = []
        lowered = text.lower()
        start = lowered.find(self.marker)
        if start >= 0:
            found.append(text[max(0, start - 40) : start + 40])
        for pattern in self.patterns:
            match = pattern.search(text)
            if match:
                found.append(text[max(0, match.start() - 40) : match.end() + 40])
        return found


@dataclass
class CanaryRun:
    home: Path
    estate: Path
    canaries: Canaries
    run_id: str
    task_log: Path
    report_folder: Path
    captured: dict[str, str]  # in-process command output and log records


def _text(data: bytes) -> str:
    # Files we write are UTF-8; decoding errors must not hide an ASCII number or the marker.
    return data.decode("utf-8", errors="replace")


def _environment(home: Path, estate: Path) -> dict[str, str]:
    """Everything under ``home``; the mappings of the three systems only, so Airflow parses and
    runs three task groups instead of every system's (CI time)."""
    mappings = home / "mappings"
    mappings.mkdir()
    for name in [*SYSTEMS, ARCHETYPE_DIR, CROSSWALK_DIR]:
        (mappings / name).symlink_to(MAPPINGS / name, target_is_directory=True)
    return {
        "VARDFLYTT_HOME": str(home),
        "VARDFLYTT_ESTATE_DIR": str(estate),
        "VARDFLYTT_MAPPINGS_DIR": str(mappings),
        KEY_VARIABLE: PSEUDONYM_KEY,
    }


def _dump(database: Path) -> str:
    """Every row of a SQLite database as SQL text (committed WAL pages included)."""
    with sqlite3.connect(database) as connection:
        return "\n".join(connection.iterdump())


def _vardflytt(environment: dict[str, str], log: Path, *arguments: str) -> None:
    run_vardflytt(*arguments, environment=environment, log=log, timeout=300)


@pytest.fixture(scope="module")
def canary_run(tmp_path_factory, airflow_db_template) -> CanaryRun:
    home = tmp_path_factory.mktemp("canary_home")
    estate = home / "estate"
    generate_estate(estate, patients=300, seed=11, canaries=True)
    environment = _environment(home, estate)
    task_log = home / "airflow_task_output.log"
    copy_migrated_airflow_db(airflow_db_template, home / "airflow")
    conf = json.dumps({"systems": SYSTEMS, "as_of_date": "2026-07-01"})
    _vardflytt(
        environment, task_log, "airflow", "dags", "test", "vardflytt_migrate", "--conf", conf
    )
    with sqlite3.connect(home / "core" / "core.sqlite") as core:
        (run_id,) = core.execute("SELECT DISTINCT run_id FROM load_batch").fetchone()
        batches = dict(core.execute("SELECT source_system, batch_id FROM load_batch"))

    captured = _run_reports_in_process(environment, run_id, batches)
    summary_paths = list((home / "reports" / "validation").glob("*/summary.json"))
    assert len(summary_paths) == 1
    return CanaryRun(
        home=home,
        estate=estate,
        canaries=Canaries.read(estate),
        run_id=run_id,
        task_log=task_log,
        report_folder=summary_paths[0].parent,
        captured=captured,
    )


def _run_reports_in_process(
    environment: dict[str, str], run_id: str, batches: dict[str, str]
) -> dict[str, str]:
    """``vardflytt dq report --run``, ``docs`` and ``profile`` with their output and every log
    record captured (the same commands as a steward runs, without a new interpreter each)."""
    from etl.cli import app

    records = io.StringIO()
    handler = logging.StreamHandler(records)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    captured: dict[str, str] = {}
    runner = CliRunner()
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in environment.items():
                patch.setenv(name, value)
            screen = io.StringIO()
            patch.setattr("etl.cli.console", Console(file=screen, width=200))
            commands = {
                "dq report": ["dq", "report", "--run", run_id],
                "docs": ["docs"],
                **{f"profile {s}": ["profile", s, "--batch", batches[s]] for s in SYSTEMS},
            }
            for name, arguments in commands.items():
                result = runner.invoke(app, arguments, catch_exceptions=False)
                printed, _ = screen.getvalue(), screen.truncate(0) or screen.seek(0)
                assert result.exit_code == 0, f"{name}: {result.output}\n{printed}"
                captured[name] = result.output + printed
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
    captured["log records"] = records.getvalue()
    return captured


# --- positive controls: the canaries are there to be found -------------------------------------


def test_canaries_are_in_every_migrated_source_and_in_the_core(canary_run):
    canaries, estate = canary_run.canaries, canary_run.estate
    assert canaries.content["free_text_rows"]["melior.anteckning"] > 0
    assert canaries.content["free_text_rows"]["elvis.remiss"] > 0
    sources = {
        "elvis": estate / "elvis" / "elvis.sqlite",
        "melior": estate / "melior" / "PATREG.DAT",
        "melior notes": estate / "melior" / "ANTECKNING.TXT",
        "vaccinationsregister": estate / "vaccinationsregister" / "PATIENT.DAT",
    }
    for name, path in sources.items():
        assert canaries.find(path.read_bytes().decode("latin-1")), f"no canary in {name}"
    core = _dump(canary_run.home / "core" / "core.sqlite")
    numbers = canaries.content["identity_numbers"]
    assert all(pattern.search(core) for pattern in canaries.patterns[: len(numbers)])
    assert canaries.marker in core.lower()


def test_canary_rows_are_quarantined_and_reported_by_pseudonym_only(canary_run):
    planted = canary_run.canaries.content["quarantined_rows"]
    assert {row["system"] for row in planted} == {"elvis", "melior"}
    with sqlite3.connect(canary_run.home / "core" / "core.sqlite") as core:
        quarantined = set(core.execute("SELECT source_system, dataset, source_key FROM quarantine"))
    summary = json.loads((canary_run.report_folder / "summary.json").read_text("utf-8"))
    reported = {
        (system["system"], row["dataset"], row["pseudonym"], row["row_number"])
        for system in summary["systems"]
        for row in system["trend"]["rows"]
    }
    key = PSEUDONYM_KEY.encode()
    for row in planted:
        assert (row["system"], row["dataset"], row["source_key"]) in quarantined
        handle = pseudonym(key, row["system"], row["source_key"])
        assert (row["system"], row["dataset"], handle, row["row_number"]) in reported
    assert summary["run_id"] == canary_run.run_id
    assert {system["system"] for system in summary["systems"]} == set(SYSTEMS)


# --- the proof: no canary anywhere it must not be ----------------------------------------------


def _files(root: Path) -> list[Path]:
    return [path for path in sorted(root.rglob("*")) if path.is_file()]


def test_no_canary_in_any_report_file(canary_run):
    folders = [canary_run.home / "reports", canary_run.home / "docs"]
    files = [path for folder in folders for path in _files(folder)]
    kinds = {path.relative_to(canary_run.home).parts[1] for path in files}
    assert {"validation", "profile"} <= kinds
    assert any(path.parts[-2:] == ("data_docs", "index.html") for path in files)
    leaks = {
        str(path.relative_to(canary_run.home)): found
        for path in files
        if (found := canary_run.canaries.find(_text(path.read_bytes())))
    }
    assert leaks == {}


def test_no_canary_in_the_airflow_task_logs(canary_run):
    output = canary_run.task_log.read_text("utf-8", errors="replace")
    assert "quarantined" in output and "vaccinationsregister" in output  # the logs are there
    assert canary_run.canaries.find(output) == []
    for path in _files(canary_run.home / "airflow" / "logs"):
        assert canary_run.canaries.find(_text(path.read_bytes())) == [], path


def test_no_canary_in_xcom_or_the_airflow_metadata_database(canary_run):
    database = canary_run.home / "airflow" / "airflow.db"
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT * FROM xcom").fetchall()
    assert len(rows) > 10
    xcom = "\n".join(
        " ".join(_text(v) if isinstance(v, bytes) else str(v) for v in row) for row in rows
    )
    assert "batch_id" in xcom
    assert canary_run.canaries.find(xcom) == []
    # Beyond XCom: nothing in the whole metadata database (rendered fields, events, conf).
    assert canary_run.canaries.find(_dump(database)) == []


def test_no_canary_in_the_pipelines_own_output(canary_run):
    captured = canary_run.captured
    assert "validation summary" in captured["dq report"]
    assert captured["log records"]
    for name, text in captured.items():
        assert canary_run.canaries.find(text) == [], name
