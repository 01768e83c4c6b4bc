"""What the record-oriented readers (HL7 v2, XML, JSON lines) share: rows, chunks, paths.

A reader turns each source record into a ``Record``: one value per declared field (``None``
where the record has no such field), or, when the record cannot be parsed, no values and a
short reason in ``read_error``. ``frames`` cuts a stream of records into DataFrames of
``chunk_rows`` rows, so no reader ever holds more than one chunk.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
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
    """One row of a source record.

    ``record`` is the ordinal (1-based, in its file) of the physical record the row comes from:
    rows of one record (HL7 v2 OBX rows of one message) share it, and text outside any record
    (stray lines between HL7 messages) has ``None``. ``line`` is the 1-based line (HL7 v2:
    segment) where that record starts, when the reader knows it.
    """

    values: tuple[str | None, ...]
    read_error: str | None = None
    record: int | None = None
    line: int | None = None

    @classmethod
    def unreadable(
        cls,
        field_count: int,
        reason: str,
        record: int | None = None,
        line: int | None = None,
    ) -> Record:
        return cls((None,) * field_count, reason, record, line)


def describe(
    reason: str,
    path: Path | str,
    *,
    line: int | None = None,
    offset: int | None = None,
    record: int | None = None,
    detail: str = "",
) -> str:
    """The ``_read_error`` text of an unreadable record: reason code first, then where.

    ``invalid_field_count (patients.csv, line 12, record 11): 7 fields, 8 declared``. The detail
    says what is wrong, never the record's values (they may identify a patient).
    """
    where = [Path(path).name]
    if line is not None:
        where.append(f"line {line}")
    if offset is not None:
        where.append(f"byte {offset}")
    if record is not None:
        where.append(f"record {record}")
    text = f"{reason} ({', '.join(where)})"
    return f"{text}: {detail}" if detail else text


def reason_of(read_error: str) -> str:
    """The reason code of a ``_read_error`` text written by ``describe`` (or a bare code)."""
    return read_error.split(" ", 1)[0].rstrip(":")


@dataclass
class ReadStats:
    """What a reader saw in one file, filled in as it reads (landing checks it afterwards).

    ``records`` counts the physical records the reader consumed (readable or not); the
    extract stage compares it with an independent physical count of the file. ``stray`` counts
    stretches of text outside any record (each becomes one quarantined row). ``unknown_fields``
    counts, per name or path the spec does not declare, the records that carried it.
    """

    path: Path
    records: int = 0
    unreadable: int = 0
    stray: int = 0
    unknown_fields: Counter[str] = field(default_factory=Counter)


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
