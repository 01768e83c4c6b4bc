"""Connections to the core database; its schema is created and upgraded by Alembic migrations.

``core_engine`` upgrades the schema on first use in a process, and ``vardflytt core upgrade``
does it on purpose. Two processes starting at once on an empty database must not both create
tables: on PostgreSQL the upgrade runs under a transaction-level advisory lock, on a SQLite file
under an exclusive file lock beside the database, so the second waits and then finds the schema
at head.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from etl.core import files, residency

MIGRATIONS = Path(__file__).with_name("migrations")
# The newest revision in migrations/versions (a unit test keeps them equal). Knowing it here lets
# every process check the schema with one query instead of loading Alembic.
HEAD_REVISION = "0012"
# pg_advisory_xact_lock key: any constant the project owns ("vardflytt" in ASCII, truncated).
_ADVISORY_KEY = 0x7661726466
_VERSION_TABLE = "alembic_version"


@cache
def core_engine(url: str) -> sa.Engine:
    """One engine per URL per process; the schema is upgraded to head on first use."""
    engine = new_engine(url)
    upgrade_core(engine)
    return engine


def new_engine(url: str) -> sa.Engine:
    """An engine on the core database as it is (no upgrade), on an allowed host only; a SQLite
    file's folder is made owner-only, and so is the file with its journals once connected."""
    residency.check_database_url(url, "the core database (VARDFLYTT_CORE_URL)")
    if url.startswith("sqlite:///"):
        files.private_dir(Path(url.removeprefix("sqlite:///")).parent)
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def schema_revision(engine: sa.Engine) -> str | None:
    """The core schema's Alembic revision, or None before the first migration."""
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table(_VERSION_TABLE):
            return None
        return connection.exec_driver_sql(f"SELECT version_num FROM {_VERSION_TABLE}").scalar()


def upgrade_core(engine: sa.Engine) -> str | None:
    """Run the migrations up to head, serialised across processes; returns the revision before
    (None: the schema was empty or made before migrations). Idempotent."""
    before = schema_revision(engine)
    if before == HEAD_REVISION:
        return before
    with _migration_lock(engine) as connection:
        before = _revision_on(connection)
        if before != HEAD_REVISION:
            _run_alembic(connection)
    return before


def _revision_on(connection: sa.Connection) -> str | None:
    if not sa.inspect(connection).has_table(_VERSION_TABLE):
        return None
    return connection.exec_driver_sql(f"SELECT version_num FROM {_VERSION_TABLE}").scalar()


def _run_alembic(connection: sa.Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


@contextlib.contextmanager
def _migration_lock(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection in a transaction that no other process's upgrade can enter at the same time."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            # Released by the commit: the schema and its version row become visible together.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_KEY})")
            yield connection
        return
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        with engine.begin() as connection:
            yield connection
        return
    lock_path = Path(f"{database}.migrate.lock")
    with lock_path.open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            with engine.begin() as connection:
                yield connection
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


# How long a connection waits for another's lock on a SQLite core (its busy_timeout), and how
# often it asks again for the switch to WAL, which SQLite does not wait for by itself.
_SQLITE_BUSY_SECONDS = 30.0
_WAL_RETRY_SECONDS = 0.05


def _switch_to_wal(cursor: Any) -> None:
    """``PRAGMA journal_mode=WAL``, asked again while another connection holds the file's lock.

    On a new database file the switch needs an exclusive lock, and SQLite answers "database is
    locked" at once rather than calling the busy handler when another connection is writing it:
    two processes that open a new core at the same moment (two workers' first tasks, say) would
    otherwise fail one of them. Once the file is in WAL mode (it stays so), the pragma takes no
    such lock. Any other error, or a lock held longer than the busy timeout, is raised."""
    import sqlite3
    import time

    deadline = time.monotonic() + _SQLITE_BUSY_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
        time.sleep(_WAL_RETRY_SECONDS)


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    # WAL lets the CLI read status while an Airflow task writes; busy_timeout rides out the overlap.
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(_SQLITE_BUSY_SECONDS * 1000)}")
    _switch_to_wal(cursor)
    database = cursor.execute("PRAGMA database_list").fetchone()[2]
    cursor.close()
    # The file and its -wal/-shm journals hold patient rows: owner-only, whatever the umask.
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            files.private_file(Path(f"{database}{suffix}"))
