"""Properties of the delimited and fixed-width reader (etl.extract.text_records).

Valid tables written and read back come back exactly (and as the pandas readers read them);
corrupting one record makes exactly that record unreadable, with the right reason and position,
and changes no other record's values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from etl.catalog import FileDataset
from etl.extract.records import READ_ERROR, ReadStats, Record, frames, reason_of
from etl.extract.text_records import read_frames, read_records
from tests.pandas_reference import read_text_table as _read_text_table

pytestmark = pytest.mark.unit

SETTINGS = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# Text a legacy export holds: letters (Swedish too), digits, spaces, punctuation; € is in both
# cp1252 and UTF-8. The delimiter and the quote only appear in quoted values.
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,-/()'åäöÅÄÖé€:+"
ENCODINGS = ["cp1252", "utf-8"]
# A byte each encoding cannot decode, as ``surrogateescape`` writes it.
UNDECODABLE = {"cp1252": "\udc81", "utf-8": "\udcff"}


def read(path: Path, dataset: FileDataset) -> tuple[list[Record], ReadStats]:
    stats = ReadStats(path)
    return list(read_records(path, dataset, stats)), stats


def read_frame(path: Path, dataset: FileDataset) -> pd.DataFrame:
    """Both ways to frames (through Records, and column-wise): the same, then one frame."""
    records = read_records(path, dataset, ReadStats(path))
    through_records = pd.concat(list(frames(records, dataset.column_names, 4)), ignore_index=True)
    columnwise = pd.concat(list(read_frames(path, dataset, ReadStats(path), 4)), ignore_index=True)
    pd.testing.assert_frame_equal(columnwise, through_records)
    return columnwise


# --- the tables: delimited and fixed width, the same interface ----------------------------------


@dataclass
class Table:
    """A delimited table: a header line, then records of quoted or plain values."""

    values: list[list[str]]
    is_quoted: list[list[bool]]
    terminator: str
    encoding: str
    has_final_terminator: bool

    filename: ClassVar[str] = "t.csv"
    first_line: ClassVar[int] = 2  # the header is line 1
    damages: ClassVar[dict[str, str]] = {
        "drop_field": "invalid_field_count",
        "add_field": "invalid_field_count",
        "nul": "control_character_in_field",
        "bare_cr": "control_character_in_field",
        "undecodable_byte": "undecodable_bytes",
    }

    @property
    def columns(self) -> list[str]:
        return [f"C{i}" for i in range(len(self.values[0]) if self.values else 2)]

    def dataset(self) -> FileDataset:
        return FileDataset.model_validate(
            {
                "file": "t.csv",
                "format": "delimited",
                "encoding": self.encoding,
                "key": ["C0"],
                "columns": self.columns,
            }
        )

    def record(self, index: int, values: list[str] | None = None) -> str:
        values = self.values[index] if values is None else values
        is_quoted = self.is_quoted[index] + [False] * (len(values) - len(self.is_quoted[index]))
        return ";".join(
            quote(value) if quoted else value
            for value, quoted in zip(values, is_quoted, strict=False)
        )

    def records(self) -> list[str]:
        return [self.record(i) for i in range(len(self.values))]

    def content(self, records: list[str]) -> bytes:
        lines = [";".join(self.columns), *records]
        text = self.terminator.join(lines)
        if self.has_final_terminator:
            text += self.terminator
        return text.encode(self.encoding, errors="surrogateescape")

    def is_read_by_pandas(self) -> bool:
        return True

    def damaged_record(self, data: st.DataObject, damaged: int, damage: str) -> str:
        values = list(self.values[damaged])
        if damage == "drop_field":
            values.pop()
        elif damage == "add_field":
            values.append(data.draw(st.text(alphabet=ALPHABET, max_size=5)))
        else:
            column = data.draw(st.integers(0, len(values) - 1))
            at = data.draw(st.integers(0, len(values[column])))
            inserted = {"nul": "\x00", "bare_cr": "\r"}.get(damage) or UNDECODABLE[self.encoding]
            values[column] = values[column][:at] + inserted + values[column][at:]
        return self.record(damaged, values)


def layout(draw) -> tuple[str, str, bool]:
    """A table's terminator, encoding, and whether its last record has a terminator."""
    return (
        draw(st.sampled_from(["\r\n", "\n"])),
        draw(st.sampled_from(ENCODINGS)),
        draw(st.booleans()),
    )


def quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


@st.composite
def tables(draw, min_rows: int = 0) -> Table:
    width = draw(st.integers(2, 5))
    rows = draw(st.integers(min_rows, 8))
    plain = st.text(alphabet=ALPHABET, max_size=10)
    delimited = st.text(alphabet=ALPHABET + ';"', min_size=1, max_size=10)
    values, is_quoted = [], []
    for _ in range(rows):
        row, quoted = [], []
        for _ in range(width):
            value = draw(st.one_of(plain, delimited))
            row.append(value)
            quoted.append(";" in value or '"' in value or draw(st.booleans()))
        values.append(row)
        is_quoted.append(quoted)
    return Table(values, is_quoted, *layout(draw))


@dataclass
class FixedTable:
    """A fixed-width table: no header, records of values exactly their field's width."""

    widths: list[int]
    values: list[list[str]]
    terminator: str
    encoding: str
    has_final_terminator: bool

    filename: ClassVar[str] = "t.dat"
    first_line: ClassVar[int] = 1
    damages: ClassVar[dict[str, str]] = {
        "short": "invalid_record_width",
        "long": "invalid_record_width",
        "nul": "control_character_in_field",
        "bare_cr": "control_character_in_field",
        "undecodable_byte": "undecodable_bytes",
    }

    def dataset(self) -> FileDataset:
        fields = [{"name": f"F{i}", "width": w} for i, w in enumerate(self.widths)]
        return FileDataset.model_validate(
            {
                "file": "t.dat",
                "format": "fixed_width",
                "encoding": self.encoding,
                "key": ["F0"],
                "fields": fields,
            }
        )

    def records(self) -> list[str]:
        return ["".join(row) for row in self.values]

    def content(self, records: list[str]) -> bytes:
        text = self.terminator.join(records)
        if self.has_final_terminator and records:
            text += self.terminator
        return text.encode(self.encoding, errors="surrogateescape")

    def is_read_by_pandas(self) -> bool:
        # pandas skipped a record of spaces only; such a record is read (see the corpus).
        return all("".join(row).strip() for row in self.values)

    def damaged_record(self, data: st.DataObject, damaged: int, damage: str) -> str:
        text = "".join(self.values[damaged])
        at = data.draw(st.integers(0, len(text) - 1))
        # The first line ending decides the terminator: a CR that ends the first line of an LF
        # file makes it a CRLF file (all of it shifts), which is not damage to one record.
        assume(not (damage == "bare_cr" and damaged == 0 and at == len(text) - 1))
        if damage == "short":
            return text[:at] + text[at + 1 :]
        if damage == "long":
            return text[:at] + data.draw(st.sampled_from(ALPHABET)) + text[at:]
        replacement = {"nul": "\x00", "bare_cr": "\r"}.get(damage) or UNDECODABLE[self.encoding]
        return text[:at] + replacement + text[at + 1 :]


@st.composite
def fixed_tables(draw, min_rows: int = 0) -> FixedTable:
    widths = draw(st.lists(st.integers(1, 6), min_size=1, max_size=5))
    rows = draw(st.integers(min_rows, 8))
    values = [
        [draw(st.text(alphabet=ALPHABET + '";', min_size=w, max_size=w)) for w in widths]
        for _ in range(rows)
    ]
    return FixedTable(widths, values, *layout(draw))


TABLES = {"delimited": tables, "fixed_width": fixed_tables}


# --- the properties, per format ---------------------------------------------------------------


@pytest.mark.parametrize("format_name", TABLES)
@SETTINGS
@given(data=st.data())
def test_a_valid_table_round_trips_exactly(tmp_path, format_name, data):
    table = data.draw(TABLES[format_name](), label="table")
    path = tmp_path / table.filename
    path.write_bytes(table.content(table.records()))

    records, stats = read(path, table.dataset())

    first = table.first_line
    assert [r.read_error for r in records] == [None] * len(table.values)
    assert [list(r.values) for r in records] == table.values
    assert [(r.record, r.line) for r in records] == [
        (i + 1, i + first) for i in range(len(records))
    ]
    assert (stats.records, stats.unreadable) == (len(table.values), 0)


@pytest.mark.parametrize("format_name", TABLES)
@SETTINGS
@given(data=st.data())
def test_a_valid_table_reads_as_pandas_read_it(tmp_path, format_name, data):
    table = data.draw(TABLES[format_name](min_rows=1), label="table")
    assume(table.is_read_by_pandas())
    path = tmp_path / table.filename
    path.write_bytes(table.content(table.records()))
    dataset = table.dataset()

    old = pd.concat(list(_read_text_table(path, dataset, 4)), ignore_index=True)

    pd.testing.assert_frame_equal(read_frame(path, dataset).drop(columns=READ_ERROR), old)


@pytest.mark.parametrize("format_name", TABLES)
@SETTINGS
@given(data=st.data())
def test_corrupting_one_record_touches_only_that_record(tmp_path, format_name, data):
    table = data.draw(TABLES[format_name](min_rows=1), label="table")
    damaged = data.draw(st.integers(0, len(table.values) - 1))
    damage = data.draw(st.sampled_from(sorted(table.damages)))
    records = table.records()
    records[damaged] = table.damaged_record(data, damaged, damage)
    # An empty last record without terminator is no record at all.
    assume(records[-1] or table.has_final_terminator)
    path = tmp_path / table.filename
    path.write_bytes(table.content(records))

    read_back, stats = read(path, table.dataset())
    read_frame(path, table.dataset())  # column-wise, the same as through Records

    assert len(read_back) == stats.records == len(table.values)
    assert stats.unreadable == 1
    for index, (record, expected) in enumerate(zip(read_back, table.values, strict=True)):
        assert (record.record, record.line) == (index + 1, index + table.first_line)
        if index == damaged:
            assert reason_of(record.read_error) == table.damages[damage]
            # No values; the key only as the source has it (only another column was bad).
            keys = {table.dataset().column_names.index(k) for k in table.dataset().key}
            for position, value in enumerate(record.values):
                assert value is None or (position in keys and value == expected[position])
        else:
            assert record.read_error is None
            assert list(record.values) == expected
