"""When a SQLite database file's bytes prove its tables (etl.extract.sqlite_file): only in
rollback-journal mode with nothing beside it; and which URLs name such a file."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.extract import sqlite_file

pytestmark = pytest.mark.unit


def _database(path: Path, journal_mode: str = "delete") -> Path:
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA journal_mode={journal_mode}")
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT)")
    connection.executemany("INSERT INTO t (note) VALUES (?)", [("x" * 50,)] * 200)
    connection.commit()
    connection.close()
    return path


def test_a_database_in_rollback_journal_mode_gives_its_size_and_sha256(tmp_path):
    path = _database(tmp_path / "a.sqlite")
    content = path.read_bytes()
    assert sqlite_file.digest(path, sqlite_file.identity(path)) == (
        len(content),
        hashlib.sha256(content).hexdigest(),
    )


def test_a_database_in_wal_mode_gives_nothing_even_with_no_wal_beside_it(tmp_path):
    path = _database(tmp_path / "a.sqlite", "wal")
    assert not path.with_name("a.sqlite-wal").exists()  # folded in as the connection closed
    assert path.read_bytes()[18:20] == b"\x02\x02"
    assert sqlite_file.digest(path, sqlite_file.identity(path)) is None


@pytest.mark.parametrize("suffix", ["-journal", "-wal"])
def test_a_journal_or_wal_beside_the_file_gives_nothing(tmp_path, suffix):
    path = _database(tmp_path / "a.sqlite")
    path.with_name(path.name + suffix).write_bytes(b"")
    assert sqlite_file.digest(path, sqlite_file.identity(path)) is None


def test_a_file_renamed_over_the_path_gives_nothing(tmp_path, monkeypatch):
    """The connection read the file it opened; a copy renamed over the path since (as rsync
    delivers one) is not what it read, whenever the rename happens."""
    path = _database(tmp_path / "a.sqlite")
    opened = sqlite_file.identity(path)
    replacement = _database(tmp_path / "b.sqlite")
    replacement.replace(path)
    assert sqlite_file.digest(path, opened) is None

    path = _database(tmp_path / "c.sqlite")
    opened = sqlite_file.identity(path)
    hashed = sqlite_file.file_digest

    def renamed_over_while_hashing(file: Path) -> bytes:
        result = hashed(file)
        _database(tmp_path / "d.sqlite").replace(file)
        return result

    monkeypatch.setattr(sqlite_file, "file_digest", renamed_over_while_hashing)
    assert sqlite_file.digest(path, opened) is None


def test_a_file_that_appears_beside_it_while_hashing_gives_nothing(tmp_path, monkeypatch):
    path = _database(tmp_path / "a.sqlite")
    hashed = sqlite_file.file_digest

    def hash_then_a_writer_starts(file: Path) -> bytes:
        result = hashed(file)
        file.with_name(file.name + "-journal").write_bytes(b"")
        return result

    monkeypatch.setattr(sqlite_file, "file_digest", hash_then_a_writer_starts)
    assert sqlite_file.digest(path, sqlite_file.identity(path)) is None


@settings(max_examples=200, deadline=None)
@given(content=st.binary(max_size=300), prefix=st.booleans())
def test_any_bytes_give_a_digest_only_as_a_rollback_journal_database(
    tmp_path_factory, content, prefix
):
    """Arbitrary files (some with SQLite's magic in front): never an exception, and a digest only
    for a full header that says rollback-journal mode, then of exactly the file's bytes."""
    if prefix:
        content = sqlite_file.MAGIC + content
    path = tmp_path_factory.mktemp("any") / "x.sqlite"
    path.write_bytes(content)
    found = sqlite_file.digest(path, sqlite_file.identity(path))
    header_says_rollback = (
        len(content) >= 100 and content.startswith(sqlite_file.MAGIC) and content[18:20] == b"\1\1"
    )
    if header_says_rollback:
        assert found == (len(content), hashlib.sha256(content).hexdigest())
    else:
        assert found is None


def test_database_path_names_a_sqlite_file_only(tmp_path):
    path = _database(tmp_path / "a.sqlite")
    assert sqlite_file.database_path(f"sqlite:///{path}") == path
    assert sqlite_file.database_path(f"sqlite:///file:{path}?mode=ro&uri=true") == path
    assert sqlite_file.database_path("sqlite://") is None
    assert sqlite_file.database_path("sqlite:///:memory:") is None
    assert sqlite_file.database_path(f"sqlite:///{tmp_path / 'missing.sqlite'}") is None
    assert sqlite_file.database_path("postgresql+psycopg://u@127.0.0.1:5432/legacy") is None
