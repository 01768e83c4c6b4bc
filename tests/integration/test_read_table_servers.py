"""On PostgreSQL and MariaDB, readers.read_table gives exactly the chunks pandas' read_sql gives
(tests/pandas_reference.py) for columns of every common type, NULLs and awkward text."""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from etl.catalog import SqlDataset
from etl.extract import readers
from etl.extract.records import ReadStats
from tests.pandas_reference import read_sql_table

pytestmark = pytest.mark.integration
# A legacy source on a server: a database of its own (PostgreSQL: a schema nobody migrated).
SOURCE_DATABASE = {"mariadb": "mariadb_url", "postgres": "postgres_empty_url"}

COLUMNS = {  # name: (PostgreSQL type, MariaDB type)
    "id": ("varchar(40)", "varchar(40)"),
    "whole": ("bigint", "bigint"),
    "amount": ("numeric(12,2)", "decimal(12,2)"),
    "ratio": ("double precision", "double"),
    "small": ("real", "float"),
    "day": ("date", "date"),
    "moment": ("timestamp(6)", "datetime(6)"),
    "flag": ("boolean", "tinyint(1)"),
    "payload": ("bytea", "blob"),
    "note": ("text", "mediumtext"),
}
TEXTS = [
    None,
    "",
    " ",
    "Åström Öberg",
    "emoji \U0001f600",
    "rad ett\r\nrad två\ttab",
    "bell\x07",
    "stored \ufffd",
    "x" * 100_000,
]


def _rows() -> list[dict]:
    rows = []
    for position in range(30):
        rows.append(
            {
                "id": None
                if position == 29
                else ("key\nbreak" if position == 3 else f"P{position:03d}"),
                "whole": [0, -1, 2**63 - 1, -(2**63), None][position % 5],
                "amount": [decimal.Decimal("12.50"), decimal.Decimal("-0.01"), None][position % 3],
                "ratio": [0.1 + 0.2, 1e300, -0.0, None][position % 4],
                "small": [1.5, None][position % 2],
                "day": [dt.date(2024, 2, 29), None][position % 2],
                "moment": [dt.datetime(2024, 1, 2, 3, 4, 5, 123456), None][position % 2],
                "flag": [True, False, None][position % 3],
                "payload": [b"abc", b"", None][position % 3],
                "note": TEXTS[position % len(TEXTS)],
            }
        )
    return rows


@pytest.mark.parametrize(
    "server",
    [
        pytest.param("mariadb", marks=pytest.mark.mariadb),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ],
)
@pytest.mark.parametrize("chunk_rows", [4, 1000])
def test_every_common_type_reads_exactly_as_read_sql_reads_it(server, chunk_rows, request):
    url = request.getfixturevalue(SOURCE_DATABASE[server])
    types = {name: pair[server == "mariadb"] for name, pair in COLUMNS.items()}
    writer = sa.create_engine(url)
    with writer.begin() as connection:
        columns = ", ".join(f"{name} {kind}" for name, kind in types.items())
        connection.exec_driver_sql(f"CREATE TABLE awkward ({columns})")
        names = ", ".join(f":{name}" for name in COLUMNS)
        connection.execute(sa.text(f"INSERT INTO awkward VALUES ({names})"), _rows())
    writer.dispose()
    dataset = SqlDataset(table="awkward", key=["id"], columns=list(COLUMNS))
    engine = readers.read_only_engine(url)
    try:
        with readers.snapshot(engine) as connection:
            expected = list(read_sql_table(connection, dataset, chunk_rows))
        stats = ReadStats(Path("awkward"))
        with readers.snapshot(engine) as connection:
            chunks = list(readers.read_table(connection, dataset, chunk_rows, stats))
    finally:
        engine.dispose()

    assert len(chunks) == len(expected)
    for chunk, (reference, _) in zip(chunks, expected, strict=True):
        pd.testing.assert_frame_equal(chunk, reference, check_exact=True)
    assert stats.records == 30
    assert stats.unreadable == sum(unreadable for _, unreadable in expected) > 0
