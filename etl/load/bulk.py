"""Bulk writes of Arrow tables: PostgreSQL ``COPY`` (production), ``executemany`` on SQLite."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa


def _quote(connection: sa.Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(name)


def copy_into_postgres(connection: sa.Connection, table: str, data: pa.Table) -> None:
    """``COPY table FROM STDIN`` in CSV: one round trip per chunk, no per-row statements."""
    buffer = io.BytesIO()
    # Null is written as an unquoted empty field and "" as a quoted one, which is exactly how
    # PostgreSQL's CSV format tells NULL from the empty string.
    pacsv.write_csv(data, buffer, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    columns = ", ".join(_quote(connection, name) for name in data.column_names)
    driver_connection = connection.connection.driver_connection
    assert driver_connection is not None  # a checked-out connection always holds its driver's
    cursor = driver_connection.cursor()
    with cursor.copy(
        f"COPY {_quote(connection, table)} ({columns}) FROM STDIN (FORMAT csv)"
    ) as copy:
        copy.write(buffer.getbuffer())


def _sqlite_values(data: pa.Table) -> pa.Table:
    """SQLite stores dates and times as ISO text (SQLAlchemy's format): convert in Arrow."""
    columns = []
    for field, column in zip(data.schema, data.columns, strict=True):
        if pa.types.is_timestamp(field.type):
            column = pc.strftime(column, format="%Y-%m-%d %H:%M:%S")
        elif pa.types.is_date(field.type):
            column = pc.strftime(column, format="%Y-%m-%d")
        columns.append(column)
    return pa.table(columns, names=data.column_names)


def insert_into_sqlite(connection: sa.Connection, table: str, data: pa.Table) -> None:
    converted = _sqlite_values(data)
    columns = ", ".join(_quote(connection, name) for name in data.column_names)
    placeholders = ", ".join("?" for _ in data.column_names)
    rows = zip(*(column.to_pylist() for column in converted.columns), strict=True)
    connection.exec_driver_sql(
        f"INSERT INTO {_quote(connection, table)} ({columns}) VALUES ({placeholders})", list(rows)
    )


def bulk_insert(connection: sa.Connection, table: str, data: pa.Table) -> None:
    if data.num_rows == 0:
        return
    if connection.dialect.name == "postgresql":
        copy_into_postgres(connection, table, data)
    else:
        insert_into_sqlite(connection, table, data)
