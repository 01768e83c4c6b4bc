"""readers.read_table builds a table's chunks column-wise from the driver's rows: every chunk,
value, dtype and read error is exactly what pandas' read_sql (tests/pandas_reference.py) gives."""

from __future__ import annotations

import gc
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.catalog import SqlDataset
from etl.extract import readers
from etl.extract.records import ReadStats
from tests.pandas_reference import read_sql_table

pytestmark = pytest.mark.unit

COLUMNS = ["id", "whole", "real", "numeric", "day", "note", "raw", "blob", "untyped"]
DATASET = SqlDataset(table="awkward", key=["id"], columns=COLUMNS)
CREATE = (
    "CREATE TABLE awkward (id TEXT, whole INTEGER, real REAL, numeric NUMERIC, day DATE, "
    "note TEXT, raw TEXT, blob BLOB, untyped)"
)
# ``raw``: bytes stored as text (a legacy system writing Latin-1 into SQLite), valid or not.
INSERT = "INSERT INTO awkward VALUES (?, ?, ?, ?, ?, ?, CAST(? AS TEXT), ?, ?)"

NOTES = [
    None,
    "",
    " ",
    "Åström Öberg",
    "emoji \U0001f600 and \U0010ffff",
    "rad ett\r\nrad två\ttab",
    "nul\x00inside",
    "bell\x07",
    "stored \ufffd",
    "x" * 300_000,
    "ÅÄÖ" * 50_000 + "\x1f",
    "0",
    "NULL",
    "nan",
]
RAW = [
    None,
    b"",
    b"plain",
    b"\xc5str\xf6m",  # Latin-1: not UTF-8
    b"\xed\xa0\x80",  # an encoded surrogate
    b"\xc0\x80",  # overlong NUL
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\xf0\x9f\x98",  # cut short
    "Åström".encode(),
    b"\xef\xbf\xbd",
]
NUMBERS = [
    (0, 0.0, "12.50"),
    (-1, -0.0, "0012"),
    (2**63 - 1, 1e300, "1e5"),
    (-(2**63), 0.1 + 0.2, "abc"),
    (None, 1e-7, None),
    (7, None, "-3.14159265358979"),
]
DAYS = ["2024-02-29", "19700101", None, "2024-13-45", 20240101]
BLOBS = [None, b"", b"\x00\xff", b"abc", "Å".encode("latin-1")]
UNTYPED = [None, 1, 1.5, "text", b"\x01\x02", "", 10**18]
KEYS = ["P001", "P002", "key\nbreak", "key\ttab", "P\u00e5", "\U0001f600", "", "P003\x00"]


def _rows() -> list[tuple]:
    count = max(len(NOTES), len(RAW), len(NUMBERS) * 4, len(KEYS)) + 12
    rows = []
    for position in range(count):
        whole, real, numeric = NUMBERS[position % len(NUMBERS)]
        key = KEYS[position] if position < len(KEYS) else f"K{position:04d}"
        rows.append(
            (
                None if position == count - 1 else key,  # a NULL key sorts first
                whole,
                real,
                numeric,
                DAYS[position % len(DAYS)],
                NOTES[position % len(NOTES)],
                RAW[position % len(RAW)],
                BLOBS[position % len(BLOBS)],
                UNTYPED[position % len(UNTYPED)],
            )
        )
    return rows


def _database(path: Path, rows: list[tuple]) -> str:
    connection = sqlite3.connect(path)
    connection.execute(CREATE)
    connection.executemany(INSERT, rows)
    connection.commit()
    connection.close()
    return f"sqlite:///{path}"


def _both(url: str, dataset: SqlDataset, chunk_rows: int):
    engine = readers.read_only_engine(url)
    try:
        with readers.snapshot(engine) as connection:
            expected = list(read_sql_table(connection, dataset, chunk_rows))
        stats = ReadStats(Path(dataset.table))
        with readers.snapshot(engine) as connection:
            chunks = list(readers.read_table(connection, dataset, chunk_rows, stats))
    finally:
        engine.dispose()
    return expected, chunks, stats


def assert_same_as_read_sql(url: str, dataset: SqlDataset, chunk_rows: int) -> list:
    expected, chunks, stats = _both(url, dataset, chunk_rows)
    assert len(chunks) == len(expected)
    for chunk, (reference, _) in zip(chunks, expected, strict=True):
        pd.testing.assert_frame_equal(chunk, reference, check_exact=True)
    assert stats.records == sum(len(reference) for reference, _ in expected)
    assert stats.unreadable == sum(unreadable for _, unreadable in expected)
    return chunks


@pytest.mark.parametrize("chunk_rows", [1, 4, 100_000])
def test_awkward_values_read_exactly_as_read_sql_reads_them(tmp_path, chunk_rows):
    rows = _rows()
    url = _database(tmp_path / "source.sqlite", rows)

    chunks = assert_same_as_read_sql(url, DATASET, chunk_rows)

    frame = pd.concat(chunks, ignore_index=True)
    assert len(frame) == len(rows)
    assert frame["_read_error"].isna().sum() >= 5  # some rows are readable, most are not
    reasons = {error.split(" ", 1)[0] for error in frame["_read_error"].dropna()}
    assert reasons == {"nul_in_field", "control_character", "undecodable_bytes"}


def test_an_empty_table_gives_one_empty_chunk_as_read_sql_does(tmp_path):
    url = _database(tmp_path / "source.sqlite", [])

    chunks = assert_same_as_read_sql(url, DATASET, 10)

    assert len(chunks) == 1 and chunks[0].empty


def test_the_connection_decodes_text_as_before_and_the_collector_runs_after_a_read(tmp_path):
    url = _database(tmp_path / "source.sqlite", _rows())
    engine = readers.read_only_engine(url)
    try:
        with readers.snapshot(engine) as connection:
            chunks = readers.read_table(connection, DATASET, 2, ReadStats(Path("awkward")))
            next(chunks)  # a reader left half-way: nothing else on the connection sees bytes
            value = connection.exec_driver_sql("SELECT CAST(X'C5' AS TEXT)").scalar()
            assert value == "\ufffd"
            assert gc.isenabled()
            chunks.close()
    finally:
        engine.dispose()


TEXT = st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["", "\x00", "\ufffd", "\t"]))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(TEXT, TEXT, st.one_of(st.none(), st.binary(max_size=8))),
        max_size=12,
    ),
    chunk_rows=st.integers(1, 5),
)
def test_any_text_and_any_bytes_read_exactly_as_read_sql_reads_them(tmp_path, rows, chunk_rows):
    path = tmp_path / "source.sqlite"
    path.unlink(missing_ok=True)
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE t (k TEXT, v TEXT, b TEXT)")
    connection.executemany("INSERT INTO t VALUES (?, ?, CAST(? AS TEXT))", rows)
    connection.commit()
    connection.close()
    dataset = SqlDataset(table="t", key=["k", "v"], columns=["k", "v", "b"])

    assert_same_as_read_sql(f"sqlite:///{path}", dataset, chunk_rows)


def test_a_driver_error_is_raised_as_sqlalchemy_raises_it_naming_the_statement(tmp_path):
    url = _database(tmp_path / "source.sqlite", _rows())
    engine = sa.create_engine(url)  # not read_only_engine: text that is not UTF-8 is an error
    try:
        with engine.connect() as connection, pytest.raises(sa.exc.OperationalError) as raised:
            list(readers.read_table(connection, DATASET, 3, ReadStats(Path("awkward"))))
    finally:
        engine.dispose()

    assert "Could not decode to UTF-8" in str(raised.value)
    assert "FROM awkward ORDER BY awkward.id" in str(raised.value)
