"""PostgreSQL COPY in the binary format (etl.load.bulk) stores exactly what the CSV format does."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
import sqlalchemy as sa

from etl.load import bulk

pytestmark = [pytest.mark.unit, pytest.mark.postgres]

_COLUMNS = (
    "t text, v varchar(20), b bigint, i integer, f double precision, o boolean, d date, "
    "ts timestamptz, n text"
)


def _table() -> pa.Table:
    utc = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "t": pa.array(["x", None, "", 'åäö "q",\r\n\\N', "\t", "NULL"]),
            "v": pa.array(["a", "", None, "ü" * 20, "b", "c"]),
            "b": pa.array([1, None, -3, 2**62, 0, -(2**63)]),
            "i": pa.array([1, None, -(2**31), 2**31 - 1, 0, 7], pa.int32()),
            "f": pa.array([1.5, float("nan"), None, -0.0, 0.1 + 0.2, float("-inf")]),
            "o": pa.array([True, None, False, True, False, True]),
            "d": pa.array(
                [
                    dt.date(1969, 12, 31),
                    None,
                    dt.date(2000, 1, 1),
                    dt.date(1, 1, 1),
                    dt.date(2026, 2, 28),
                    dt.date(9999, 12, 31),
                ]
            ),
            "ts": pa.array(
                [
                    dt.datetime(1999, 12, 31, 23, 59, 59, 999_999),
                    None,
                    dt.datetime(2000, 1, 1),
                    dt.datetime(1900, 3, 1, 0, 0, 0, 1),
                    dt.datetime(2026, 6, 1, 12, 0, 0, 5),
                    dt.datetime(1970, 1, 1),
                ],
                utc,
            ),
            "n": pa.nulls(6),
        }
    )


def _stored(connection: sa.Connection, table: str) -> list[tuple[object, ...]]:
    # as text, so NaN, -0 and every timestamp digit compare exactly
    columns = ", ".join(f"{c}::text" for c in ("t", "v", "b", "i", "f", "o", "d", "ts", "n"))
    return [tuple(r) for r in connection.exec_driver_sql(f"SELECT {columns} FROM {table}")]


def test_binary_copy_stores_what_csv_stores(postgres_url, monkeypatch):
    engine = sa.create_engine(postgres_url)
    data = _table()
    with engine.begin() as connection:
        for name in ("via_binary", "via_csv"):
            connection.exec_driver_sql(f"CREATE TABLE {name} ({_COLUMNS})")
        types = bulk.column_types(connection, "via_binary")
        assert bulk.binary_copy_rows(data, types) is not None  # every column pairs up
        bulk.bulk_insert(connection, "via_binary", data)
        with monkeypatch.context() as patched:
            patched.setattr(bulk, "binary_copy_rows", lambda *_: None)
            bulk.bulk_insert(connection, "via_csv", data)
        binary, csv = _stored(connection, "via_binary"), _stored(connection, "via_csv")
    engine.dispose()
    assert len(binary) == data.num_rows
    assert binary == csv


@pytest.mark.parametrize(
    ("column", "database_type"),
    [
        (pa.array([1.5], pa.float32()), "double precision"),  # CSV prints float32's digits
        (pa.array([1], pa.int64()), "integer"),  # may not fit: PostgreSQL's range check
        (pa.array([dt.datetime(2020, 1, 1)], pa.timestamp("us")), "timestamp with time zone"),
        (pa.array([1_000_000_001], pa.timestamp("ns", tz="UTC")), "timestamp with time zone"),
        (pa.array([1], pa.int64()), "text"),
        (pa.array(["1"]), "bigint"),
        (pa.array([1.5]), "numeric"),
    ],
)
def test_pairings_not_handled_take_csv(column, database_type):
    assert bulk.binary_copy_rows(pa.table({"c": column}), {"c": database_type}) is None


def test_a_column_the_table_lacks_takes_csv():
    assert bulk.binary_copy_rows(pa.table({"c": [1]}), {"other": "bigint"}) is None
