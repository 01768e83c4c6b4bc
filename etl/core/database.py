"""Connections to the core database; creates the schema on first use."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import sqlalchemy as sa

from etl.core.tables import metadata


@cache
def core_engine(url: str) -> sa.Engine:
    """One engine per URL per process; the schema is created if missing (idempotent)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    metadata.create_all(engine)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the CLI read status while an Airflow task writes; busy_timeout rides out the overlap.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
