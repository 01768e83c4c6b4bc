"""Feeding a corpus case to a reader: the case's file in a test's folder, read as landing reads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from etl.catalog import FileDataset, SqlDataset
from etl.extract import readers
from etl.extract.records import ReadStats, Record
from tests.corpus import CorpusCase, cases

RecordReader = Callable[[Path, FileDataset, ReadStats], Iterator[Record]]


def params(*format_names: str) -> list:
    """``pytest.param(case)`` for every case of the formats, with ids ``<format>-<case name>``."""
    return [
        pytest.param(case, id=f"{name}-{case.name}")
        for name in format_names
        for case in cases(name)
    ]


def write(tmp_path: Path, case: CorpusCase) -> tuple[Path, FileDataset]:
    """The case's file, under its own name, and its dataset spec."""
    path = tmp_path / case.filename
    path.write_bytes(case.content)
    return path, FileDataset.model_validate(case.dataset)


def read(
    tmp_path: Path, case: CorpusCase, read_records: RecordReader
) -> tuple[FileDataset, ReadStats, list[Record]]:
    """Every record ``read_records`` gives for the case's file, and what it counted."""
    path, dataset = write(tmp_path, case)
    stats = ReadStats(path)
    return dataset, stats, list(read_records(path, dataset, stats))


@contextmanager
def sql_connection(tmp_path: Path, case: CorpusCase) -> Iterator[tuple[sa.Connection, SqlDataset]]:
    """A read-only snapshot of a SQL case's database, and its dataset spec."""
    path = tmp_path / "source.sqlite"
    path.write_bytes(case.content)
    engine = readers.read_only_engine(f"sqlite:///{path}")
    try:
        with readers.snapshot(engine) as connection:
            yield connection, SqlDataset.model_validate(case.dataset)
    finally:
        engine.dispose()


def assert_frames_are_frames_of_records(path: Path, dataset: FileDataset, chunk_rows: int) -> None:
    """``read_frames`` gives the frames ``frames(read_records(...))`` gives, and the same counts:
    the Arrow path against the record-by-record reference."""
    import pandas as pd

    from etl.extract.records import frames
    from etl.extract.text_records import read_frames, read_records

    expected_stats, stats = ReadStats(path), ReadStats(path)
    records = read_records(path, dataset, expected_stats)
    expected = list(frames(records, dataset.column_names, chunk_rows))

    found = list(read_frames(path, dataset, stats, chunk_rows))

    assert len(found) == len(expected)
    for frame, expected_frame in zip(found, expected, strict=True):
        pd.testing.assert_frame_equal(frame, expected_frame)
    assert stats == expected_stats
