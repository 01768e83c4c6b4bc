"""A delta reuses the base's landed snapshot of a SQLite table only when the database file is the
same to the byte as when the base read the table (etl.extract.landing._table_unchanged_since_base),
and reads it in full at any doubt: a changed file (even one keeping its size and modification
time), a database in WAL mode, a journal beside it, a base whose snapshot or reader differs.

ELVIS (a SQLite database file) on a SQLite core, from a copy of the small estate."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from etl import pipeline
from etl.batch import BatchPaths
from etl.core.database import core_engine
from etl.extract.delta import CHANGE, CHANGED, delta_file
from etl.extract.landing import read_manifest
from etl.load.promote import core_checksums
from tests.carry_over import assert_all_carried_over, doubt_the_base

pytestmark = pytest.mark.integration

SYSTEM = "elvis"
AS_OF = dt.date(2026, 7, 1)
ELVIS_ENTITIES = ["appointment", "care_unit", "encounter", "patient", "practitioner", "referral"]


@pytest.fixture
def estate(small_estate, tmp_path) -> Path:
    copy = tmp_path / "estate"
    shutil.copytree(small_estate, copy)
    return copy


def _database(estate: Path) -> Path:
    return estate / SYSTEM / "elvis.sqlite"


def _full(settings):
    report = pipeline.run_system(SYSTEM, "full", AS_OF, settings=settings)
    assert report.is_reconciled
    return read_manifest(settings, "full", SYSTEM)


def _delta(settings, batch_id: str):
    report = pipeline.run_system(SYSTEM, batch_id, AS_OF, settings=settings, kind="delta")
    assert report.is_reconciled
    return read_manifest(settings, batch_id, SYSTEM)


def _core(settings) -> dict:
    engine = core_engine(settings.resolved_core_url)
    with engine.connect() as connection:
        return core_checksums(connection, ELVIS_ENTITIES)


def _booking_changed_in_place(database: Path) -> None:
    """One booking's length changed, the file's size and modification time kept."""
    stat = database.stat()
    with sqlite3.connect(database) as connection:
        changed = connection.execute(
            "UPDATE bokning SET langd_min = langd_min + 5 "
            "WHERE bokning_id = (SELECT min(bokning_id) FROM bokning)"
        ).rowcount
    connection.close()
    assert changed == 1
    os.utime(database, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = database.stat()
    assert (after.st_size, after.st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    assert not database.with_name(database.name + "-journal").exists()


def test_an_unchanged_database_file_is_carried_over_and_a_change_keeping_size_and_mtime_is_caught(
    estate, sqlite_core, tmp_path, settings_for
):
    settings = settings_for(estate, sqlite_core(tmp_path))
    database = _database(estate)
    full = _full(settings)
    content = database.read_bytes()
    for dataset in full.datasets.values():
        [source] = dataset.sources
        # Recorded as each table was read: what a later delta compares with.
        assert (source.bytes, source.sha256) == (len(content), hashlib.sha256(content).hexdigest())
        assert dataset.reader and not dataset.carried_over
    before = _core(settings)

    same = _delta(settings, "delta-same")
    assert_all_carried_over(same, full)
    assert _core(settings) == before

    _booking_changed_in_place(database)
    changed = _delta(settings, "delta-changed")
    # The file's bytes prove nothing about any of its tables now: every one is read in full.
    assert not any(d.carried_over for d in changed.datasets.values())
    assert changed.datasets["bokning"].delta.changed == 1
    assert sum(d.delta.rows for n, d in changed.datasets.items() if n != "bokning") == 0
    rows = pq.read_table(delta_file(BatchPaths.of(settings, "delta-changed", SYSTEM), "bokning"))
    assert rows[CHANGE].to_pylist() == [CHANGED]
    after = _core(settings)
    assert after["appointment"] != before["appointment"]
    assert {k: v for k, v in after.items() if k != "appointment"} == {
        k: v for k, v in before.items() if k != "appointment"
    }


def test_a_database_in_wal_mode_records_no_digest_and_is_read_in_full(
    estate, sqlite_core, tmp_path, settings_for
):
    database = _database(estate)
    connection = sqlite3.connect(database)
    assert connection.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
    connection.close()  # the last connection folds the WAL in: the file alone, in WAL mode
    assert not database.with_name(database.name + "-wal").exists()
    settings = settings_for(estate, sqlite_core(tmp_path))

    full = _full(settings)
    assert all(d.sources[0].sha256 is None for d in full.datasets.values())
    same = _delta(settings, "delta-same")
    assert not any(d.carried_over for d in same.datasets.values())
    assert all(d.delta.rows == d.delta.deleted == 0 for d in same.datasets.values())


def test_a_journal_beside_the_database_or_any_doubt_about_the_base_reads_in_full(
    estate, sqlite_core, tmp_path, settings_for
):
    settings = settings_for(estate, sqlite_core(tmp_path))
    database = _database(estate)
    _full(settings)

    journal = database.with_name(database.name + "-journal")
    journal.write_bytes(b"")  # an empty journal is not hot: SQLite reads on, and so do we
    in_doubt = _delta(settings, "delta-journal")
    journal.unlink()
    assert not any(d.carried_over for d in in_doubt.datasets.values())
    assert all(d.delta.rows == d.delta.deleted == 0 for d in in_doubt.datasets.values())
    # Read with a journal beside the file, the tables were recorded without its digest...
    assert all(d.sources[0].sha256 is None for d in in_doubt.datasets.values())
    # ...so the next delta, its base that one, reads them in full again (and records it).
    clean = _delta(settings, "delta-clean")
    assert not any(d.carried_over for d in clean.datasets.values())
    assert all(d.sources[0].sha256 for d in clean.datasets.values())

    # The base (now delta-clean) doubted: one snapshot no longer what its manifest says, another
    # table recorded with another reader.
    doubt_the_base(settings, "delta-clean", SYSTEM, altered="bokning", other_reader="remiss")
    delta = _delta(settings, "delta-doubt")
    assert not delta.datasets["bokning"].carried_over
    assert not delta.datasets["remiss"].carried_over
    assert all(d.carried_over for n, d in delta.datasets.items() if n not in {"bokning", "remiss"})
    assert all(d.delta.rows == d.delta.deleted == 0 for d in delta.datasets.values())


def test_a_copy_renamed_over_the_database_while_a_table_is_read_is_not_recorded_as_read(
    estate, sqlite_core, tmp_path, settings_for, monkeypatch
):
    """A newer copy delivered over the path (written beside, then renamed, as rsync does) while
    ``bokning`` is read: that table was read from the file it opened, not the newer one, so its
    digest is not recorded, and the next delta reads it and finds the change."""
    from etl.extract import readers

    settings = settings_for(estate, sqlite_core(tmp_path))
    database = _database(estate)
    newer = tmp_path / "newer.sqlite"
    shutil.copy2(database, newer)
    _booking_changed_in_place(newer)
    read = readers.read_table_arrays

    def renamed_over_midway(connection, dataset, *args, **kwargs):
        for chunk in read(connection, dataset, *args, **kwargs):
            if dataset.table == "bokning" and newer.exists():
                newer.replace(database)
            yield chunk

    monkeypatch.setattr(readers, "read_table_arrays", renamed_over_midway)
    full = _full(settings)
    monkeypatch.setattr(readers, "read_table_arrays", read)
    assert not newer.exists()
    assert full.datasets["bokning"].sources[0].sha256 is None

    delta = _delta(settings, "delta-after")
    assert not delta.datasets["bokning"].carried_over
    assert delta.datasets["bokning"].delta.changed == 1


def test_a_copy_renamed_over_the_database_between_two_tables_is_what_the_next_table_reads(
    estate, sqlite_core, tmp_path, settings_for, monkeypatch
):
    """Renamed over the path after ``patient`` was read: every later table reads the newer copy
    (a connection is opened per table, not kept from before), so the digest each records is of
    the file it read, and a delta against it may carry them over."""
    from etl.extract import readers

    settings = settings_for(estate, sqlite_core(tmp_path))
    database = _database(estate)
    with sqlite3.connect(database) as connection:
        first, length = connection.execute(
            "SELECT bokning_id, langd_min FROM bokning ORDER BY bokning_id LIMIT 1"
        ).fetchone()
    connection.close()
    newer = tmp_path / "newer.sqlite"
    shutil.copy2(database, newer)
    _booking_changed_in_place(newer)
    read = readers.read_table_arrays

    def renamed_over_after_patient(connection, dataset, *args, **kwargs):
        yield from read(connection, dataset, *args, **kwargs)
        if dataset.table == "patient":
            newer.replace(database)

    monkeypatch.setattr(readers, "read_table_arrays", renamed_over_after_patient)
    full = _full(settings)
    monkeypatch.setattr(readers, "read_table_arrays", read)
    assert not newer.exists()
    landed = pq.read_table(settings.resolved_landing_dir / full.datasets["bokning"].path)
    lengths = dict(
        zip(landed["bokning_id"].to_pylist(), landed["langd_min"].to_pylist(), strict=True)
    )
    assert int(lengths[str(first)]) == int(length) + 5  # read from the newer copy
    content = database.read_bytes()
    assert full.datasets["bokning"].sources[0].sha256 == hashlib.sha256(content).hexdigest()
    assert full.datasets["patient"].sources[0].sha256 != hashlib.sha256(content).hexdigest()

    delta = _delta(settings, "delta-after")
    assert not delta.datasets["patient"].carried_over  # read from the older file
    assert delta.datasets["bokning"].carried_over
    assert all(d.delta.rows == d.delta.deleted == 0 for d in delta.datasets.values())
