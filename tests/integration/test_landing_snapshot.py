"""On a database server, COUNT(*) and the rows read see one snapshot; bad values are unreadable."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from etl.catalog import SqlDataset
from etl.extract import physical, readers
from etl.extract.landing import READ_ERROR
from etl.extract.records import ReadStats

pytestmark = pytest.mark.integration
# A legacy source on a server: a database of its own (PostgreSQL: a schema nobody migrated).
SOURCE_DATABASE = {"mariadb": "mariadb_url", "postgres": "postgres_empty_url"}


@pytest.mark.parametrize(
    "server",
    [
        pytest.param("mariadb", marks=pytest.mark.mariadb),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ],
)
def test_a_row_committed_after_the_count_is_not_read_and_a_control_character_is_unreadable(
    server, request
):
    url = request.getfixturevalue(SOURCE_DATABASE[server])
    writer = sa.create_engine(url)
    with writer.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE patient (id VARCHAR(10), namn VARCHAR(40))")
        connection.execute(
            sa.text("INSERT INTO patient VALUES ('P1', 'Berg'), ('P2', :name), ('P3', 'Ek')"),
            {"name": "Lind\x07"},
        )
    dataset = SqlDataset(table="patient", key=["id"], columns=["id", "namn"])
    stats = ReadStats(Path("patient"))
    engine = readers.read_only_engine(url)
    try:
        with readers.snapshot(engine) as connection:
            counted = physical.count_table(connection, "patient")
            with writer.begin() as other:  # another session commits meanwhile
                other.exec_driver_sql("INSERT INTO patient VALUES ('P0', 'Ny')")
            chunks = list(readers.read_table(connection, dataset, 2, stats))
    finally:
        engine.dispose()
        writer.dispose()

    assert counted == stats.records == 3
    errors = [error for chunk in chunks for error in chunk[READ_ERROR].dropna()]
    assert errors == [
        "control_character (patient, record 2): column namn holds a control character"
    ]
