"""A core database's rows saved to a folder and put back into another core, for tests that share
one expensive set-up (loads of several waves) instead of running it again per module.

- SQLite: the file, copied with SQLite's backup API (consistent whatever the WAL holds);
- PostgreSQL: each table's rows in COPY's binary format, in foreign-key order, and the
  sequences' positions; restored into a fresh schema that the migrations made (so the schema is
  exactly head's), after deleting the rows the migrations put there (the access log's head:
  the log itself is append-only, and empty in a new schema).

The core as a database only: the state folder (``VARDFLYTT_HOME``) that goes with it is copied
by the caller. The rows hold no path of the folder they were made in.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import sqlalchemy as sa

SQLITE_FILE = "core.sqlite"
INDEX = "tables.json"
_VERSION_TABLE = "alembic_version"  # the migrations write it; never copied


def save_core(url: str, folder: Path) -> None:
    """The rows of the core at ``url`` into the new folder ``folder``."""
    from etl.core.database import core_engine

    folder.mkdir(parents=True)
    engine = core_engine(url)
    if engine.dialect.name == "sqlite":
        _sqlite_copy(Path(str(engine.url.database)), folder / SQLITE_FILE)
        return
    with engine.connect() as connection:
        tables = [
            name
            for name, _ in sa.inspect(connection).get_sorted_table_and_fkc_names()
            if name is not None and name != _VERSION_TABLE
        ]
        sequences = connection.exec_driver_sql(
            "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = current_schema()"
        ).all()
        cursor = connection.connection.driver_connection.cursor()
        for table in tables:
            with (
                (folder / f"{table}.copy").open("wb") as out,
                cursor.copy(f'COPY "{table}" TO STDOUT (FORMAT binary)') as copy,
            ):
                for data in copy:
                    out.write(data)
    index = {"tables": tables, "sequences": [[name, value] for name, value in sequences]}
    (folder / INDEX).write_text(json.dumps(index), "utf-8")


def restore_core(folder: Path, url: str) -> None:
    """The rows ``save_core`` saved in ``folder`` into the new, empty core at ``url``."""
    from etl.core.database import core_engine

    if url.startswith("sqlite:///"):
        target = Path(url.removeprefix("sqlite:///"))
        assert not target.exists() or _new_sqlite_core(target), f"{target} is not a new core"
        _sqlite_copy(folder / SQLITE_FILE, target)
        core_engine(url)  # at head already: nothing to migrate
        return
    index = json.loads((folder / INDEX).read_text("utf-8"))
    engine = core_engine(url)  # a fresh schema: migrated to head here
    with engine.begin() as connection:
        for table in reversed(index["tables"]):  # rows the migrations made (the log's head)
            if connection.exec_driver_sql(f'SELECT EXISTS (SELECT FROM "{table}")').scalar():
                connection.exec_driver_sql(f'DELETE FROM "{table}"')
        cursor = connection.connection.driver_connection.cursor()
        for table in index["tables"]:
            with cursor.copy(f'COPY "{table}" FROM STDIN (FORMAT binary)') as copy:
                copy.write((folder / f"{table}.copy").read_bytes())
        for name, value in index["sequences"]:
            if value is not None:  # None: never used, as fresh as the migrations left it
                connection.exec_driver_sql("SELECT setval(%s, %s)", (name, value))


def _sqlite_copy(source: Path, target: Path) -> None:
    source_connection = sqlite3.connect(source)
    target_connection = sqlite3.connect(target)
    try:
        source_connection.backup(target_connection)
    finally:
        target_connection.close()
        source_connection.close()


def _new_sqlite_core(path: Path) -> bool:
    """Whether the SQLite core at ``path`` holds no rows but those the migrations write (a copy
    of a freshly migrated core: tests/conftest.py's ``sqlite_core``)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        tables = [
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if name not in (_VERSION_TABLE, "access_log_head") and not name.startswith("sqlite_")
        ]
        return not any(
            connection.execute(f'SELECT EXISTS (SELECT 1 FROM "{name}")').fetchone()[0]
            for name in tables
        )
