"""What the record-oriented readers (HL7 v2, XML, JSON lines) share: rows, chunks, paths.

A reader turns each source record into a ``Record``: one value per declared field (``None``
where the record has no such field), or, when the record cannot be parsed, no values and a
short reason in ``read_error``. ``frames`` cuts a stream of records into DataFrames of
``chunk_rows`` rows, so no reader ever holds more than one chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import NamedTuple

import pandas as pd

# The column landing.READ_ERROR names. Not imported from there: landing imports the readers.
READ_ERROR = "_read_error"

# How many records the schema-drift checks look at, per file, before anything is read.
DRIFT_SAMPLE_RECORDS = 20


class BrokenFileError(RuntimeError):
    """A file is broken beyond one record (truncated, malformed outside any record, a DTD):
    the source stops; the message names the file and the line."""


class Record(NamedTuple):
    values: tuple[str | None, ...]
    read_error: str | None = None

    @classmethod
    def unreadable(cls, field_count: int, reason: str) -> Record:
        return cls((None,) * field_count, reason)


def frames(
    records: Iterable[Record], columns: list[str], chunk_rows: int
) -> Iterator[pd.DataFrame]:
    """Chunks of ``chunk_rows`` rows: nullable string columns, then ``_read_error``."""
    iterator = iter(records)
    while batch := list(islice(iterator, chunk_rows)):
        by_column = list(zip(*(record.values for record in batch), strict=True))
        frame = pd.DataFrame(
            {
                name: pd.array(by_column[position], dtype="string")
                for position, name in enumerate(columns)
            }
        )
        frame[READ_ERROR] = pd.array([record.read_error for record in batch], dtype="string")
        yield frame


def compare_paths(declared: list[str], actual: list[str], separator: str) -> tuple[list, list]:
    """Declared paths absent from the source, and source paths the spec does not cover.

    A declared path covers its descendants (``Patient`` covers ``Patient/Pnr``) and is present
    when the source has it or something below it.
    """

    def is_within(path: str, ancestor: str) -> bool:
        return path == ancestor or path.startswith(ancestor + separator)

    missing = [d for d in declared if not any(is_within(a, d) for a in actual)]
    unexpected = [a for a in actual if not any(is_within(a, d) for d in declared)]
    return missing, unexpected
