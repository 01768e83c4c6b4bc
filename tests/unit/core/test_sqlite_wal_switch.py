"""A SQLite core's switch to WAL while another connection writes the new file.

SQLite answers the switch with "database is locked" at once, without waiting out the busy
timeout, while another connection holds the write lock of a file still in rollback-journal mode:
two processes opening a new core at the same moment failed one of them (seen in CI:
test_two_processes_creating_the_schema_of_an_empty_database_both_succeed[sqlite], 2 of 40 races
in a loop before the fix, 0 of 60 after)."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from etl.core import database

pytestmark = pytest.mark.unit


def _writer_holding_the_lock(path) -> sqlite3.Connection:
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("CREATE TABLE created_meanwhile (x)")
    return writer


def test_the_switch_waits_for_a_writer_of_the_new_file_then_takes_wal(tmp_path):
    path = tmp_path / "core.sqlite"
    writer = _writer_holding_the_lock(path)
    reader = sqlite3.connect(path, isolation_level=None)
    # What the connection would have met without waiting: the lock, reported at once.
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        reader.execute("PRAGMA busy_timeout=30000")
        reader.execute("PRAGMA journal_mode=WAL")
    released = threading.Timer(0.3, lambda: writer.execute("COMMIT"))
    released.start()
    started = time.monotonic()
    try:
        database._sqlite_pragmas(reader, None)
    finally:
        released.join()
    assert time.monotonic() - started >= 0.2  # it waited for the writer, and then:
    assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert reader.execute("SELECT count(*) FROM created_meanwhile").fetchone() == (0,)
    reader.close()
    writer.close()


def test_a_lock_held_past_the_busy_timeout_is_raised(tmp_path, monkeypatch):
    monkeypatch.setattr(database, "_SQLITE_BUSY_SECONDS", 0.2)
    path = tmp_path / "core.sqlite"
    writer = _writer_holding_the_lock(path)
    reader = sqlite3.connect(path, isolation_level=None)
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        database._sqlite_pragmas(reader, None)
    assert 0.2 <= time.monotonic() - started < 5
    reader.close()
    writer.execute("ROLLBACK")
    writer.close()


def test_any_other_error_is_raised_at_once(tmp_path):
    reader = sqlite3.connect(tmp_path / "core.sqlite", isolation_level=None)
    reader.close()  # a closed connection: "Cannot operate on a closed database."
    with pytest.raises(sqlite3.ProgrammingError):
        database._sqlite_pragmas(reader, None)
