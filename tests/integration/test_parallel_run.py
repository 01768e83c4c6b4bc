"""Systems side by side in worker processes (etl/parallel.py) give what one after another gives.

The same estate migrated twice, once system after system in this process (``run_system``) and
once by ``run_systems`` with two worker processes: the core tables, the quarantine, the
accounting and every file the batches wrote (landed, transformed, validated, outcomes, checks)
must be identical. A system that stops stops alone: the other loads, and nothing is held.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from etl import pipeline
from etl.core import lease
from etl.core.database import core_engine
from etl.extract.readers import SchemaDriftError
from etl.parallel import run_systems
from etl.settings import Settings
from tests.core_fingerprint import core_rows
from tests.cores import BOTH_CORES
from tests.reports_off import without_batch_reports

# The runs in this process (the sequential references) skip each batch's validation report
# (tests/conftest.py, tests/reports_off.py): nothing here reads one, and the files compared are
# the landing zone's. The runs in worker processes write theirs as ever.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("without_batch_reports")]

AS_OF = dt.date(2026, 7, 1)
SYSTEMS = ("elvis", "melior")
BACKENDS = BOTH_CORES
SAME = "-same"  # the batch ids' suffix of the sequential reference and the runs compared with it


def _settings(home: Path, estate: Path, core_url: str) -> Settings:
    return Settings(home=home, estate_dir=estate, landing_dir=home / "landing", core_url=core_url)


@pytest.fixture(scope="module")
def sequential(small_estate, core_of, tmp_path_factory):
    """``sequential(backend)``: the settings and load reports of both systems migrated one after
    the other in this process (``run_system``, batches ``<system>-same``) on a core of that
    backend; made once per module and read only, the reference of every parallel run of the same
    batches (a run in workers, and one whose workers are killed)."""
    made: dict[str, tuple[Settings, dict]] = {}
    with contextlib.ExitStack() as cores:

        def make(backend: str) -> tuple[Settings, dict]:
            if backend not in made:
                home = tmp_path_factory.mktemp(f"sequential-{backend}")
                settings = _settings(
                    home, small_estate, cores.enter_context(core_of(backend, home))
                )
                with pytest.MonkeyPatch.context() as patch:
                    without_batch_reports(patch)
                    made[backend] = (
                        settings,
                        {
                            s: pipeline.run_system(s, f"{s}{SAME}", AS_OF, settings=settings)
                            for s in SYSTEMS
                        },
                    )
            return made[backend]

        yield make


def _core(settings: Settings) -> dict[str, list[tuple]]:
    """Every core table's rows (ids, content hashes, batches), and the quarantine."""
    with core_engine(settings.resolved_core_url).connect() as connection:
        rows = core_rows(connection)
        rows["quarantine"] = connection.exec_driver_sql(
            "SELECT source_system, dataset, row_number, reason, field FROM quarantine "
            "ORDER BY source_system, dataset, row_number, reason, field"
        ).all()
    return rows


def _files(settings: Settings) -> dict[str, object]:
    """Every Parquet file of the landing zone by its path (its rows), every other by its bytes
    (manifests hold times: only their names are compared)."""
    root = settings.home / "landing"
    found: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        name = str(path.relative_to(root))
        found[name] = pq.read_table(path) if path.suffix == ".parquet" else None
    return found


def _accounting(report) -> list[dict]:
    return [row.model_dump() for row in report.accounting]


@pytest.mark.parametrize("backend", BACKENDS)
def test_systems_in_worker_processes_give_the_same_core_accounting_and_files(
    backend, small_estate, core_of, sequential, tmp_path
):
    one, alone = sequential(backend)
    with core_of(backend, tmp_path / "b") as two_url:
        (tmp_path / "b").mkdir(exist_ok=True)
        two = _settings(tmp_path / "b", small_estate, two_url)
        parallel = run_systems([(s, f"{s}{SAME}") for s in SYSTEMS], AS_OF, settings=two, jobs=2)

        assert [outcome.system for outcome in parallel] == list(SYSTEMS)
        assert all(outcome.ok for outcome in parallel), [(o.failed_task, o.error) for o in parallel]
        # The work was shared by worker processes (two computing, loads beside them).
        workers = {t.worker for outcome in parallel for t in outcome.timings}
        assert len(workers) >= 2
        for outcome in parallel:
            assert outcome.report is not None and outcome.report.is_reconciled
            assert _accounting(outcome.report) == _accounting(alone[outcome.system])
        assert _core(one) == _core(two)
        assert sum(len(rows) for rows in _core(two).values()) > 0
        files_one, files_two = _files(one), _files(two)
        assert sorted(files_one) == sorted(files_two)
        assert any(name.endswith(".parquet") for name in files_one)
        for name, table in files_one.items():
            if table is not None:
                assert table.equals(files_two[name]), name


def _kill_workers() -> int:
    """SIGKILL every worker of this process's pools (the fork server's children)."""
    import psutil

    killed = 0
    for child in psutil.Process().children():
        if "forkserver" in " ".join(child.cmdline()):
            for worker in child.children():
                worker.kill()
                killed += 1
    return killed


def test_work_lost_with_a_killed_worker_is_run_again_and_nothing_differs(
    small_estate, core_of, sequential, tmp_path
):
    one, alone = sequential("sqlite")
    with core_of("sqlite", tmp_path / "b") as two_url:
        two = _settings(tmp_path / "b", small_estate, two_url)
        killed = []

        def on_event(system: str, message: str) -> None:
            if (system, message) == ("melior", "validate encounter") and not killed:
                killed.append(_kill_workers())
                time.sleep(1)  # the pool sees its workers gone

        parallel = run_systems(
            [(s, f"{s}{SAME}") for s in SYSTEMS], AS_OF, settings=two, jobs=2, on_event=on_event
        )

        assert killed and killed[0] >= 2
        assert all(outcome.ok for outcome in parallel), [(o.failed_task, o.error) for o in parallel]
        for outcome in parallel:
            assert outcome.report is not None
            assert _accounting(outcome.report) == _accounting(alone[outcome.system])
        assert _core(one) == _core(two)
        files_one, files_two = _files(one), _files(two)
        assert sorted(files_one) == sorted(files_two)
        for name, table in files_one.items():
            if table is not None:
                assert table.equals(files_two[name]), name


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_system_that_stops_in_its_worker_stops_alone(backend, small_estate, core_of, tmp_path):
    estate = tmp_path / "estate"
    shutil.copytree(small_estate, estate, ignore=shutil.ignore_patterns("PATREG.DAT"))
    with core_of(backend, tmp_path / "a") as one_url, core_of(backend, tmp_path / "b") as two_url:
        (tmp_path / "a").mkdir(exist_ok=True)
        (tmp_path / "b").mkdir(exist_ok=True)
        one = _settings(tmp_path / "a", estate, one_url)
        two = _settings(tmp_path / "b", estate, two_url)
        alone = pipeline.run_system("elvis", "elvis-alone", AS_OF, settings=one)
        elvis, melior = run_systems(
            [("elvis", "elvis-alone"), ("melior", "melior-broken")], AS_OF, settings=two, jobs=2
        )

        assert elvis.ok and elvis.report is not None and elvis.report.is_reconciled
        assert _accounting(elvis.report) == _accounting(alone)
        assert _core(one) == _core(two)  # Melior wrote nothing, ELVIS all of its rows
        assert isinstance(melior.error, SchemaDriftError)
        assert "PATREG.DAT: the file is missing" in str(melior.error)
        assert melior.failed_task == "extract" and melior.report is None
        # Nothing keeps Melior: the next run takes it at once.
        engine = core_engine(two.resolved_core_url)
        assert lease.acquire(engine, lease.SYSTEM, "melior", "melior-next").replaced is None


def test_the_run_command_runs_several_systems_and_ends_with_the_stop(
    sqlite_core, small_estate, settings_for, tmp_path, monkeypatch, capsys
):
    from etl.cli import app

    estate = tmp_path / "estate"
    shutil.copytree(small_estate, estate, ignore=shutil.ignore_patterns("PATREG.DAT"))
    settings = settings_for(estate, sqlite_core(tmp_path))
    monkeypatch.delenv("VARDFLYTT_TRACEBACK", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    arguments = ["run", "elvis", "melior", "--jobs", "2", "--as-of-date", "2026-07-01"]
    with pytest.raises(SystemExit) as ended:
        app([*arguments, "--batch-id", "b1"], prog_name="vardflytt")
    output = capsys.readouterr()
    assert ended.value.code == 5  # Melior's stop, schema drift, with its own exit code
    assert "elvis batch elvis__b1" in output.out
    assert "melior batch melior__b1 stopped at extract: SchemaDriftError" in output.out
    assert "1 of 2 systems loaded" in output.out
    assert "PATREG.DAT: the file is missing" in output.err
    with core_engine(settings.resolved_core_url).connect() as connection:
        batches = connection.exec_driver_sql(
            "SELECT source_system, batch_id FROM promotion WHERE state = 'promoted'"
        ).all()
    assert batches == [("elvis", "elvis__b1")]
