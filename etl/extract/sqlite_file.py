"""A SQLite source's database file, and the bytes a delta may compare with its base's.

A table of a SQLite source is carried over from a delta's base batch (etl.extract.landing) only
when the database file is the same to the byte. That proves the table unchanged only where the
file alone holds the database:

- a database in WAL mode keeps committed changes in ``<file>-wal`` beside it, and a checkpoint
  rewrites the file while a reader reads;
- a ``<file>-journal`` beside it may be a hot journal (a write interrupted half-way), or a writer
  at work.

So :func:`digest` gives the file's size and SHA-256 only for a database in rollback-journal mode
(its header says so) with neither file beside it, before and after the file is hashed; None
otherwise, and the table is read in full. It is taken inside a read transaction that has read the
database: SQLite's shared lock is then held, and no writer can change the file until it ends.

A lock does not stop a new file being renamed over the path (a nightly copy delivered the way
rsync writes, say): the connection reads the file it opened, the hash would read the new one. So
the caller takes the path's :func:`identity` (device and inode) before its connection opens the
file (the read-only engine opens one per snapshot: etl.extract.readers), and the digest is None
unless the path names that same file before and after it is hashed.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from etl.core.files import file_digest

# The first 100 bytes of every SQLite database file (https://www.sqlite.org/fileformat.html).
HEADER_BYTES = 100
MAGIC = b"SQLite format 3\x00"
# Offsets 18 and 19: the file format's write and read versions, 1 for rollback-journal mode and
# 2 for WAL mode.
WRITE_VERSION, READ_VERSION = 18, 19
ROLLBACK_JOURNAL = 1
BESIDE = ("-journal", "-wal")


def database_path(url: str) -> Path | None:
    """The database file of a SQLite URL (plain or ``file:`` URI form); None for another
    backend, an in-memory database, or a path that is not a file."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database.startswith("file:"):
        database = database.removeprefix("file:").split("?", 1)[0]
    if not database or database == ":memory:":
        return None
    path = Path(database)
    return path if path.is_file() else None


def _anything_beside(path: Path) -> bool:
    return any(path.with_name(path.name + suffix).exists() for suffix in BESIDE)


def _rollback_journal_mode(path: Path) -> bool:
    with path.open("rb") as handle:
        header = handle.read(HEADER_BYTES)
    return (
        len(header) == HEADER_BYTES
        and header.startswith(MAGIC)
        and header[WRITE_VERSION] == ROLLBACK_JOURNAL
        and header[READ_VERSION] == ROLLBACK_JOURNAL
    )


def identity(path: Path) -> tuple[int, int]:
    """The file the path names now: its device and inode."""
    status = path.stat()
    return status.st_dev, status.st_ino


def digest(path: Path, opened: tuple[int, int]) -> tuple[int, str] | None:
    """``(bytes, SHA-256)`` of the database file if it alone holds the database and is still
    the file ``opened`` (its :func:`identity` taken before the connection opened it; module
    docstring), else None. Call it inside a read transaction that has read the database."""
    if identity(path) != opened or _anything_beside(path) or not _rollback_journal_mode(path):
        return None
    size = path.stat().st_size
    # Read again only when the file's stat (device, inode, size, modification and change time)
    # moved since this process last hashed it, or is too recent to tell (etl.core.files): each
    # table of a system records the digest, and the file is hashed once for all of them.
    sha256 = file_digest(path).hex()
    after = path.stat()
    if (after.st_dev, after.st_ino) != opened or after.st_size != size or _anything_beside(path):
        return None
    return size, sha256
