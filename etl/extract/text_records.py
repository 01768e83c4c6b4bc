"""Delimited and fixed-width text exports, one record at a time (``read_records``).

A record ends at the file's own terminator (``CRLF`` or ``LF``, decided by the first line
ending) outside double quotes; the first record of a delimited file is its header. A record is
unreadable, never repaired, when it has the wrong number of fields (delimited) or the wrong
width (fixed width), holds a NUL byte or a bare CR or LF that is not the file's terminator, or
its quotes do not pair up. Undecodable bytes stay U+FFFD in the value (the transform stage
quarantines them per column). These are the same record boundaries the independent physical
count (etl.extract.physical) uses. A placeholder: the text-format helper's reader replaces it.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from itertools import accumulate, pairwise
from pathlib import Path

from etl.catalog import FileDataset, FileFormat
from etl.extract.records import ReadStats, Record, describe

INVALID_FIELD_COUNT = "invalid_field_count"
INVALID_WIDTH = "invalid_record_width"
INVALID_QUOTING = "invalid_quoting"
NUL_IN_FIELD = "nul_in_field"
LINE_BREAK_IN_FIELD = "line_break_in_field"


def _terminator(path: Path) -> str:
    with path.open("rb") as handle:
        while block := handle.read(1 << 16):
            first = block.find(b"\n")
            if first > 0:
                return "\r\n" if block[first - 1 : first] == b"\r" else "\n"
            if first == 0:
                return "\n"
    return "\n"


def _physical_records(path: Path, dataset: FileDataset, quoted: bool) -> Iterator[tuple[int, str]]:
    """Each record's first line and text (without its terminator)."""
    terminator = _terminator(path)
    with path.open(encoding=dataset.encoding, errors="replace", newline=terminator) as handle:
        parts: list[str] = []
        start, quotes = 1, 0
        for number, line in enumerate(handle, start=1):
            if number == 1:
                line = line.removeprefix("\ufeff")
            if not parts:
                start = number
            parts.append(line)
            if quoted:
                quotes += line.count('"')
                if quotes % 2:
                    continue
            text = "".join(parts)
            yield start, text.removesuffix(terminator)
            parts, quotes = [], 0
        if parts:
            yield start, "".join(parts)


# A CR or LF that is not part of a line break the file uses: inside quotes the terminator is
# content, and so is a CRLF in an LF file (Windows line breaks in a note); a lone CR never is.
_BARE_IN_CRLF = re.compile(r"\r(?!\n)|(?<!\r)\n")
_BARE_IN_LF = re.compile(r"\r(?!\n)")
_ANY_LINE_BREAK = re.compile(r"[\r\n]")


def _problem(text: str, line_breaks: re.Pattern) -> tuple[str, str] | None:
    if "\x00" in text:
        return NUL_IN_FIELD, "a NUL byte"
    if line_breaks.search(text):
        return LINE_BREAK_IN_FIELD, "a CR or LF that is not the file's record terminator"
    return None


def read_records(path: Path, dataset: FileDataset, stats: ReadStats) -> Iterator[Record]:
    """Rows of one delimited or fixed-width file, one per physical record."""
    is_delimited = dataset.format is FileFormat.DELIMITED
    names = dataset.column_names
    widths = [field.width or 0 for field in dataset.fields]
    crlf = _terminator(path) == "\r\n"
    line_breaks = (_BARE_IN_CRLF if crlf else _BARE_IN_LF) if is_delimited else _ANY_LINE_BREAK
    records = _physical_records(path, dataset, quoted=is_delimited)
    if is_delimited:
        next(records, None)  # the header (checked by the drift check)
    for ordinal, (line, text) in enumerate(records, start=1):
        stats.records += 1
        problem = _problem(text, line_breaks)
        values: list[str] | None = None
        if problem is None and is_delimited:
            try:
                values = next(
                    csv.reader([text], delimiter=dataset.delimiter, quotechar='"', strict=True)
                )
            except (csv.Error, StopIteration):
                problem = INVALID_QUOTING, "quotes that do not pair up"
            else:
                if len(values) != len(names):
                    problem = INVALID_FIELD_COUNT, f"{len(values)} fields, {len(names)} declared"
        elif problem is None:
            if len(text) != sum(widths):
                problem = INVALID_WIDTH, f"{len(text)} characters, {sum(widths)} declared"
            else:
                values = [text[a:b] for a, b in pairwise(accumulate(widths, initial=0))]
        if problem is not None:
            stats.unreadable += 1
            reason, detail = problem
            error = describe(reason, path, line=line, record=ordinal, detail=detail)
            yield Record.unreadable(len(names), error, ordinal, line)
        else:
            assert values is not None
            yield Record(tuple(values), None, ordinal, line)
