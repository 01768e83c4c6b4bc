"""Promote only what is accounted for, one run per system, on SQLite and the real PostgreSQL.

Stage -> accounting -> promote: a batch whose accounting fails never reaches the core (by
checksum) and its state says why; an older extraction is never promoted over a newer one; a
killed (staged, never promoted) batch is superseded and cleaned by the next run and shown as
such; a second run of a system is refused naming the first; two processes creating the schema
of an empty database at once both succeed with one schema.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from etl import pipeline
from etl.batch import BatchPaths
from etl.cli import app
from etl.core import lease
from etl.core.database import HEAD_REVISION, core_engine, schema_revision
from etl.core.tables import STAGED_TABLES, load_batch, metadata
from etl.load.promote import PromotionError, promotion_row
from tests.core_fingerprint import core_fingerprint
from tests.cores import BOTH_CORES

pytestmark = pytest.mark.integration

AS_OF = dt.date(2026, 7, 1)
SYSTEM = "melior"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=BOTH_CORES)
def settings(sqlite_core, request, small_estate, settings_for, tmp_path):
    if request.param == "sqlite":
        url = sqlite_core(tmp_path)
    else:
        url = request.getfixturevalue("postgres_url")
    return settings_for(small_estate, url)


def _sums(settings) -> dict[str, str]:
    with core_engine(settings.resolved_core_url).connect() as connection:
        return core_fingerprint(connection)


def _prepare(settings, batch_id: str, clean_abandoned: bool = True) -> None:
    """Everything before the load: extract, transform, validate, gate."""
    pipeline.extract(SYSTEM, batch_id, AS_OF, settings, clean_abandoned=clean_abandoned)
    pipeline.transform_and_validate(SYSTEM, batch_id, settings)
    pipeline.gate(SYSTEM, batch_id, settings=settings)


def _row(settings, batch_id: str) -> dict:
    with core_engine(settings.resolved_core_url).connect() as connection:
        row = promotion_row(connection, batch_id)
        status = connection.execute(
            sa.select(load_batch.c.status).where(load_batch.c.batch_id == batch_id)
        ).scalar()
    return {**row, "status": status}


def _staged_rows(settings, batch_id: str) -> int:
    """Rows staged for the batch: in staged_<entity>, or recorded by reference to its files."""
    with core_engine(settings.resolved_core_url).connect() as connection:
        in_tables = sum(
            connection.execute(
                sa.select(sa.func.count()).where(table.c.batch_id == batch_id)
            ).scalar_one()
            for table in STAGED_TABLES.values()
        )
        record = (promotion_row(connection, batch_id) or {}).get("staged_files")
    by_reference = sum(e["rows"] for e in json.loads(record).values()) if record else 0
    return in_tables + by_reference


def test_a_batch_whose_staged_accounting_fails_is_never_promoted(settings):
    before = _sums(settings)
    _prepare(settings, "short")
    # One validated row disappears between validation and staging: residue 1.
    validated = BatchPaths.of(settings, "short", SYSTEM).stage_file("validated", "diagnosis")
    rows = pq.read_table(validated)
    pq.write_table(rows.slice(1), validated)

    with pytest.raises(pipeline.ReconciliationError) as refused:
        pipeline.load(SYSTEM, "short", settings=settings)
    assert "diagnosis (" in str(refused.value) and "residue 1" in str(refused.value)
    assert "Nothing of it was promoted" in str(refused.value)
    assert _sums(settings) == before, "a batch that fails its accounting must not touch the core"
    row = _row(settings, "short")
    assert (row["state"], row["status"]) == ("unaccounted", "unaccounted")
    assert "diagnosis (" in row["note"] and "residue 1" in row["note"]
    assert _staged_rows(settings, "short") == 0
    with pytest.raises(PromotionError, match="failed its accounting"):
        pipeline.promote(SYSTEM, "short", settings=settings)
    assert _sums(settings) == before
    engine = core_engine(settings.resolved_core_url)
    assert lease.holder_of(engine, lease.SYSTEM, SYSTEM) is None, "the failed run let go"


def test_a_promotion_whose_verification_fails_is_rolled_back(settings, monkeypatch):
    """Accounting after the upsert (loaded rows verified by content hash) fails: the promotion's
    transaction rolls back, so not one row of the batch is visible."""
    from etl.load import promote as promote_module

    real = promote_module._promote_entity

    def one_row_not_verified(connection, entity, batch_id, *direct):
        result = real(connection, entity, batch_id, *direct)
        if entity == "diagnosis":
            result.verified -= 1
        return result

    before = _sums(settings)
    _prepare(settings, "unverified")
    monkeypatch.setattr(promote_module, "_promote_entity", one_row_not_verified)
    with pytest.raises(pipeline.ReconciliationError, match=r"diagnosis .*residue 1"):
        pipeline.load(SYSTEM, "unverified", settings=settings)
    assert _sums(settings) == before
    row = _row(settings, "unverified")
    assert (row["state"], row["status"], row["seq"]) == ("unaccounted", "unaccounted", None)


def test_a_killed_batch_is_superseded_by_the_next_run_and_status_shows_it(settings):
    _prepare(settings, "killed")
    pipeline.load(SYSTEM, "killed", settings=settings, promote_now=False)  # then the kill
    assert _staged_rows(settings, "killed") > 0
    killed_files = BatchPaths.of(settings, "killed", SYSTEM).root
    assert killed_files.exists()

    report = pipeline.run_system(SYSTEM, "next", AS_OF, settings=settings)
    assert report.is_reconciled

    row = _row(settings, "killed")
    assert (row["state"], row["superseded_by"], row["status"]) == (
        "superseded",
        "next",
        "superseded",
    )
    assert _staged_rows(settings, "killed") == 0
    assert not killed_files.exists()
    assert BatchPaths.of(settings, "next", SYSTEM).root.exists()
    with pytest.raises(PromotionError, match="killed was superseded by batch next"):
        pipeline.promote(SYSTEM, "killed", settings=settings)

    status = CliRunner().invoke(app, ["status"])
    assert status.exit_code == 0, status.output
    assert "killed" in status.output and "superseded" in status.output
    listed = CliRunner().invoke(app, ["batches", "list", "--system", SYSTEM])
    assert "killed" in listed.output and "next" in listed.output

    # Reconciling the wave reads the source again in a scratch batch: it lets go of the system
    # and supersedes nothing, so the next run is not refused.
    from etl.cutover.reconcile import reconcile_system

    reconcile_system(pipeline.catalog(settings), SYSTEM, settings, AS_OF, label="check")
    engine = core_engine(settings.resolved_core_url)
    assert lease.holder_of(engine, lease.SYSTEM, SYSTEM) is None
    assert _row(settings, "next")["state"] == "promoted"


def test_an_older_staged_batch_is_never_promoted_over_a_newer_one(settings):
    _prepare(settings, "zz_older")
    pipeline.load(SYSTEM, "zz_older", settings=settings, promote_now=False)
    # The newer run does not clean up (as if cleaning had been skipped): both are staged.
    _prepare(settings, "aa_newer", clean_abandoned=False)
    pipeline.load(SYSTEM, "aa_newer", settings=settings, promote_now=False)

    with pytest.raises(PromotionError) as refused:
        pipeline.promote(SYSTEM, "zz_older", settings=settings)
    message = str(refused.value)
    assert "batch zz_older (extracted" in message and "older than aa_newer (staged" in message
    promoted = pipeline.promote(SYSTEM, "aa_newer", settings=settings)
    assert all(row["is_verified"] for row in promoted["accounting"])
    after = _sums(settings)
    with pytest.raises(PromotionError, match="older than aa_newer \\(promoted"):
        pipeline.promote(SYSTEM, "zz_older", settings=settings)
    assert _sums(settings) == after

    cleaned = CliRunner().invoke(app, ["batches", "clean", SYSTEM])
    assert cleaned.exit_code == 0, cleaned.output
    assert "zz_older (staged) superseded" in cleaned.output
    assert _row(settings, "zz_older")["state"] == "superseded"
    assert _row(settings, "aa_newer")["state"] == "promoted"


def test_a_second_run_of_a_system_is_refused_naming_the_first(settings):
    at_gate, go_on = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def first_run() -> None:
        def on_stage(name: str) -> None:
            if name == "quality gate":
                at_gate.set()
                assert go_on.wait(300)

        try:
            results["first"] = pipeline.run_system(
                SYSTEM, "first", AS_OF, settings=settings, on_stage=on_stage
            )
        except Exception as error:  # reported below
            results["first"] = error

    worker = threading.Thread(target=first_run)
    worker.start()
    try:
        assert at_gate.wait(600), "the first run never reached its quality gate"
        with pytest.raises(lease.SystemLeasedError) as refused:
            pipeline.run_system(SYSTEM, "second", AS_OF, settings=settings)
        message = str(refused.value)
        assert "system melior is held by first by" in message
        assert "vardflytt batches unlock melior" in message
        # An Airflow task of another run (same lease, other process) is refused the same way.
        with pytest.raises(lease.SystemLeasedError, match="held by first by"):
            pipeline.gate(SYSTEM, "second", settings=settings)
    finally:
        go_on.set()
        worker.join(600)
    assert getattr(results["first"], "is_reconciled", False), results["first"]
    assert not BatchPaths.of(settings, "second", SYSTEM).root.exists(), "refused before landing"
    engine = core_engine(settings.resolved_core_url)
    assert lease.holder_of(engine, lease.SYSTEM, SYSTEM) is None


def _race_to_create(url: str) -> list[subprocess.CompletedProcess]:
    """Two processes create the schema at the same moment: each imports first and says so, and
    both are let go together once both are ready (a start barrier, not a guessed clock time)."""
    code = (
        "import sys; from etl.core.database import core_engine, schema_revision;"
        "print('ready', flush=True); sys.stdin.readline();"
        "print(schema_revision(core_engine(sys.argv[1])))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code, url],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    ready = [worker.stdout.readline() for worker in workers]
    for worker in workers:
        with contextlib.suppress(BrokenPipeError):  # a worker that failed to import
            worker.stdin.write("go\n")
            worker.stdin.flush()
    results = [(worker, *worker.communicate(timeout=300)) for worker in workers]
    assert ready == ["ready\n"] * 2, [error[-2000:] for _, _, error in results]
    return results


@pytest.mark.parametrize("database", BOTH_CORES)
def test_two_processes_creating_the_schema_of_an_empty_database_both_succeed(
    database, tmp_path, request
):
    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'race.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_empty_url")
    empty = sa.create_engine(url)
    assert schema_revision(empty) is None  # nobody has created the schema yet
    empty.dispose()
    for worker, out, err in _race_to_create(url):
        assert worker.returncode == 0, err[-2000:]
        assert out.strip() == HEAD_REVISION
    engine = sa.create_engine(url)
    try:
        assert schema_revision(engine) == HEAD_REVISION
        with engine.connect() as connection:
            versions = connection.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar()
            assert versions == 1
        assert set(metadata.tables) <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
