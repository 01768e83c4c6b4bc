"""Bulk writes of Arrow tables: PostgreSQL ``COPY`` (production), ``executemany`` on SQLite.

On PostgreSQL the rows go in ``COPY``'s binary format when every column's Arrow type maps
exactly onto its column's type in the database (text, bigint, integer, double precision,
boolean, date, timestamp with time zone): encoded column by column in Arrow and NumPy, no
Python per row, and the server parses no text (no timestamp, date or number input functions).
Any other pairing (a naive timestamp, a float32, a numeric column, ...) takes the CSV format,
whose text PostgreSQL reads as it always did. Either way the stored values are the same.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa

# PostgreSQL's binary COPY: signature, flags (no OIDs), header extension length; trailer -1.
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_BINARY_TRAILER = b"\xff\xff"
# PostgreSQL's epoch for dates and timestamps is 2000-01-01.
_EPOCH_DAYS = 10_957
_EPOCH_MICROS = _EPOCH_DAYS * 86_400 * 1_000_000
_MICROS_PER = {"s": 1_000_000, "ms": 1_000, "us": 1}
_TEXT_TYPES = ("text", "character varying")


def _quote(connection: sa.Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(name)


def _cursor(connection: sa.Connection) -> Any:
    """The connection's driver cursor (psycopg's: ``COPY`` goes through it)."""
    driver_connection = connection.connection.driver_connection
    assert driver_connection is not None  # a checked-out connection always holds its driver's
    return driver_connection.cursor()


def column_types(connection: sa.Connection, table: str) -> dict[str, str]:
    """The table's columns and their types as the database has them (format_type): what
    ``binary_copy_rows`` pairs with the Arrow types."""
    rows = connection.execute(
        sa.text(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = CAST(:t AS regclass) AND attnum > 0 AND NOT attisdropped"
        ),
        {"t": _quote(connection, table)},
    ).all()
    return {str(name): str(kind) for name, kind in rows}


def _binary(n: int, sizes: np.ndarray, data: np.ndarray) -> pa.Array:
    """A large_binary array of ``n`` values, value i being ``sizes[i]`` bytes of ``data``."""
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return pa.Array.from_buffers(
        pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def _fixed(values: np.ndarray, big_endian: str) -> np.ndarray:
    """Each value's bytes in network order, one row of the returned (n, width) matrix each."""
    encoded = np.ascontiguousarray(values.astype(big_endian, copy=False))
    return encoded.view(np.uint8).reshape(len(values), -1)


def _payload(column: pa.Array, database_type: str) -> tuple[np.ndarray, pa.Array] | None:
    """The field lengths (-1 for NULL) and the field bytes (NULL rows: none) of one column in
    the binary format; None if the pairing of Arrow type and column type is not one handled
    here (then the whole write takes the CSV format)."""
    n = len(column)
    kind = column.type
    valid = np.asarray(pc.is_valid(column).to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_null(kind):
        return np.full(n, -1, dtype=np.int32), pa.nulls(n, pa.large_binary())
    if database_type.startswith(_TEXT_TYPES):
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            return None
        # The UTF-8 bytes as they are: PostgreSQL checks their encoding as for text input.
        values = column.cast(pa.large_binary())
        lengths = pc.fill_null(pc.binary_length(values), -1).to_numpy().astype(np.int32)
        return lengths, values
    if database_type == "bigint" and pa.types.is_integer(kind) and kind != pa.uint64():
        matrix = _fixed(column.fill_null(0).to_numpy().astype(np.int64), ">i8")
    elif database_type == "integer" and kind in (pa.int8(), pa.int16(), pa.int32()):
        matrix = _fixed(column.fill_null(0).to_numpy().astype(np.int32), ">i4")
    elif database_type == "double precision" and kind == pa.float64():
        matrix = _fixed(column.fill_null(0.0).to_numpy(), ">f8")
    elif database_type == "boolean" and pa.types.is_boolean(kind):
        matrix = column.fill_null(False).to_numpy(zero_copy_only=False).astype(np.uint8)[:, None]
    elif database_type == "date" and kind == pa.date32():
        days = column.cast(pa.int32()).fill_null(0).to_numpy().astype(np.int32) - _EPOCH_DAYS
        matrix = _fixed(days, ">i4")
    elif database_type == "timestamp with time zone" and (
        pa.types.is_timestamp(kind) and kind.tz is not None
    ):
        micros = column.cast(pa.int64()).fill_null(0).to_numpy()
        if kind.unit == "ns":
            if (micros % 1000).any():
                return None  # sub-microsecond values: PostgreSQL's own rounding, via text
            micros = micros // 1000
        else:
            micros = micros * _MICROS_PER[kind.unit]
        matrix = _fixed(micros - _EPOCH_MICROS, ">i8")
    else:
        return None
    width = matrix.shape[1]
    lengths = np.where(valid, width, -1).astype(np.int32)
    data = matrix[valid].reshape(-1)
    return lengths, _binary(n, np.where(valid, width, 0), data)


def binary_copy_rows(data: pa.Table, database_types: dict[str, str]) -> pa.Buffer | None:
    """The table's rows in PostgreSQL's binary COPY format (without header and trailer), or
    None if a column's pairing of types is not handled (see ``_payload``)."""
    n = data.num_rows
    if len(data.column_names) > 32_767:
        return None
    parts: list[pa.Array] = [
        _binary(n, np.full(n, 2), np.tile(_fixed(np.array([data.num_columns]), ">i2"), n))
    ]
    for name, column in zip(data.column_names, data.columns, strict=True):
        database_type = database_types.get(name)
        if database_type is None:
            return None
        encoded = _payload(column.combine_chunks(), database_type)
        if encoded is None:
            return None
        lengths, values = encoded
        parts.append(_binary(n, np.full(n, 4), _fixed(lengths, ">i4").reshape(-1)))
        parts.append(values)
    joined = pc.binary_join_element_wise(
        *parts,
        pa.scalar(b"", pa.large_binary()),
        null_handling="replace",
        null_replacement="",
    )
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int64)
    start, end = int(offsets[joined.offset]), int(offsets[joined.offset + n])
    buffer: pa.Buffer = joined.buffers()[2]
    return buffer.slice(start, end - start)


def copy_into_postgres(connection: sa.Connection, table: str, data: pa.Table) -> None:
    """``COPY table FROM STDIN``: one round trip per chunk, no per-row statements; binary when
    every column's types pair up (module docstring), CSV otherwise."""
    rows = binary_copy_rows(data, column_types(connection, table))
    if rows is not None:
        copy_binary_stream(connection, table, data.column_names, [rows])
        return
    columns = ", ".join(_quote(connection, name) for name in data.column_names)
    cursor = _cursor(connection)
    statement = f"COPY {_quote(connection, table)} ({columns}) FROM STDIN"
    buffer = io.BytesIO()
    # Null is written as an unquoted empty field and "" as a quoted one, which is exactly how
    # PostgreSQL's CSV format tells NULL from the empty string.
    pacsv.write_csv(data, buffer, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    with cursor.copy(f"{statement} (FORMAT csv)") as copy:
        copy.write(buffer.getbuffer())


class NotBinary(Exception):
    """A chunk of a streamed ``COPY`` whose column types do not pair up for the binary format
    (``binary_copy_rows`` returned None): the stream cannot change format half-way."""


def binary_copy_payload(data: pa.Table, database_types: dict[str, str]) -> pa.Buffer:
    """``binary_copy_rows`` of the chunk, for ``copy_binary_stream``; raises ``NotBinary``
    where the types do not pair up."""
    rows = binary_copy_rows(data, database_types)
    if rows is None:
        raise NotBinary(f"columns {', '.join(data.column_names)} do not all pair up")
    return rows


def copy_binary_stream(
    connection: sa.Connection, table: str, columns: list[str], payloads: Iterable[pa.Buffer]
) -> None:
    """One binary ``COPY table (columns) FROM STDIN`` of the payloads in turn (each a chunk's
    rows from ``binary_copy_payload``). While one payload is sent, the server parses and
    writes it, so a producer that encodes the next one meanwhile (a background thread,
    etl/load/direct.py) keeps the client's work off the server's path. Whatever ``payloads``
    raises ends the ``COPY`` with an error: nothing of it is written."""
    names = ", ".join(_quote(connection, name) for name in columns)
    statement = f"COPY {_quote(connection, table)} ({names}) FROM STDIN (FORMAT binary)"
    with _cursor(connection).copy(statement) as copy:
        copy.write(_BINARY_HEADER)
        for payload in payloads:
            copy.write(memoryview(payload))
        copy.write(_BINARY_TRAILER)


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
