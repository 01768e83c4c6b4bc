"""The delimited and fixed-width hostile corpus through text_records: block boundaries, frames,
error texts, the pandas oracle. Each case's rows and unreadable records: test_corpus_readers.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from etl.catalog import FileDataset
from etl.extract import text_records
from etl.extract.records import READ_ERROR, ReadStats, frames, reason_of
from etl.extract.text_records import read_frames, read_records
from tests.corpus import delimited as delimited_corpus
from tests.corpus import fixed_width as fixed_width_corpus
from tests.corpus import reading
from tests.pandas_reference import read_text_table as _read_text_table

pytestmark = pytest.mark.unit

CASES = reading.params("delimited", "fixed_width")


def read_frame(path: Path, dataset: FileDataset, chunk_rows: int = 3) -> pd.DataFrame:
    """read_records as landing sees it: string columns and ``_read_error``, in chunks."""
    records = read_records(path, dataset, ReadStats(path))
    chunks = list(frames(records, dataset.column_names, chunk_rows))
    if not chunks:
        return pd.DataFrame(columns=[*dataset.column_names, READ_ERROR], dtype="string")
    return pd.concat(chunks, ignore_index=True)


@pytest.mark.parametrize("case", CASES)
def test_an_unreadable_record_has_no_values_and_says_where_without_values(tmp_path, case):
    dataset, _, records = reading.read(tmp_path, case, read_records)
    # Words of the file that are data (not column names): none may appear in an error text.
    text = case.content.decode("latin-1")
    words = set(re.findall(r"[A-Za-z0-9ÅÄÖåäö]{2,}", text)) - set(dataset.column_names)
    for record in records:
        if record.read_error is None:
            assert all(isinstance(value, str) for value in record.values)
            continue
        # No values, but the key when the fields split cleanly and only another column is bad.
        names = dataset.column_names
        kept = [v for _, v in zip(names, record.values, strict=True) if v is not None]
        assert all(value in case.content.decode(dataset.encoding, "replace") for value in kept)
        assert all(
            v is None
            for n, v in zip(dataset.column_names, record.values, strict=True)
            if n not in dataset.key
        )
        where = f"({case.filename}, line {record.line}, record {record.record})"
        assert where in record.read_error
        detail = record.read_error.split("): ", 1)[1]
        leaked = {w for w in words if re.search(rf"\b{re.escape(w)}\b", detail)}
        assert not leaked, (record.read_error, leaked)


@pytest.mark.parametrize("block_bytes", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("case", CASES)
def test_block_boundaries_change_nothing(tmp_path, monkeypatch, case, block_bytes):
    _, expected_stats, expected = reading.read(tmp_path, case, read_records)
    monkeypatch.setattr(text_records, "BLOCK_BYTES", block_bytes)

    _, stats, records = reading.read(tmp_path, case, read_records)

    assert records == expected
    assert stats == expected_stats


@pytest.mark.parametrize("chunk_rows", [1, 2, 1000])
@pytest.mark.parametrize("case", CASES)
def test_read_frames_is_frames_of_read_records(tmp_path, monkeypatch, case, chunk_rows):
    monkeypatch.setattr(text_records, "BLOCK_BYTES", 16)  # several batches per file
    path, dataset = reading.write(tmp_path, case)

    reading.assert_frames_are_frames_of_records(path, dataset, chunk_rows)


def test_details_say_what_is_wrong(tmp_path):
    path = tmp_path / "patienter.csv"
    path.write_bytes(
        b"PATIENT_ID;NAMN;KOD\r\nP1;Anna;A01;X;Y;Z;W\r\nP2;Bo\x00;A02\r\nP\x81;Bo;A03\r\n"
        b'P4;"Dan;A04\r\n'
    )
    dataset = FileDataset.model_validate(delimited_corpus.dataset())

    errors = [r.read_error for r in read_records(path, dataset, ReadStats(path))]

    assert errors == [
        "invalid_field_count (patienter.csv, line 2, record 1): 7 fields, 3 declared",
        "control_character_in_field (patienter.csv, line 3, record 2): U+0000 in column NAMN",
        "undecodable_bytes (patienter.csv, line 4, record 3): "
        "byte 0x81 in column PATIENT_ID does not decode as cp1252",
        "unterminated_quote (patienter.csv, line 5, record 4): "
        "the quote opened on line 5 is not closed before the end of file",
    ]


def test_a_record_longer_than_the_limit_is_skipped_without_being_held(tmp_path, monkeypatch):
    monkeypatch.setattr(text_records, "BLOCK_BYTES", 4)
    monkeypatch.setattr(text_records, "MAX_RECORD_CHARS", 16)
    path = tmp_path / "patienter.csv"
    long_name = b"x" * 40
    path.write_bytes(
        b"PATIENT_ID;NAMN;KOD\r\nP1;Anna;A01\r\nP2;"
        + long_name
        + b';"quoted\r\nstill '
        + long_name
        + b'";A02\r\nP3;Bo;A03\r\nP4;"'
        + long_name
        + b"\r\n"
    )
    dataset = FileDataset.model_validate(delimited_corpus.dataset())
    stats = ReadStats(path)

    records = list(read_records(path, dataset, stats))

    assert [(r.values, r.record, r.line) for r in records if r.read_error is None] == [
        (("P1", "Anna", "A01"), 1, 2),
        (("P3", "Bo", "A03"), 3, 5),
    ]
    assert [(reason_of(r.read_error), r.record, r.line) for r in records if r.read_error] == [
        ("record_too_long", 2, 3),
        ("unterminated_quote", 4, 6),
    ]
    assert (stats.records, stats.unreadable) == (4, 2)
    columnwise = pd.concat(list(read_frames(path, dataset, ReadStats(path), 3)), ignore_index=True)
    pd.testing.assert_frame_equal(columnwise, read_frame(path, dataset))


def test_a_fixed_width_line_without_end_longer_than_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(text_records, "BLOCK_BYTES", 8)
    monkeypatch.setattr(text_records, "MAX_RECORD_CHARS", 20)
    path = tmp_path / "patreg.dat"
    path.write_bytes(b"P1  Anna  K1\r\n" + b"y" * 100 + b"\r\nP2  Bo    K2")
    dataset = FileDataset.model_validate(fixed_width_corpus.dataset())
    stats = ReadStats(path)

    records = list(read_records(path, dataset, stats))

    assert [(reason_of(r.read_error or ""), r.record, r.line) for r in records] == [
        ("", 1, 1),
        ("invalid_record_width", 2, 2),
        ("", 3, 3),
    ]
    assert records[2].values == ("P2  ", "Bo    ", "K2")


# Valid files the pandas readers read too. Not "valid_spaces_are_kept": pandas skipped an
# all-blank fixed-width record; it is a record (its key is empty, the transform judges it).
VALID_FOR_BOTH_READERS = {
    "delimited-valid_crlf_with_empty_fields_and_spaces",
    "delimited-quoted_delimiter_and_escaped_quotes",
    "delimited-trailing_record_without_terminator",
    "delimited-tab_delimited_with_a_quoted_tab",
    "fixed_width-trailing_record_without_terminator",
    "fixed_width-quotes_are_plain_text",
}


@pytest.mark.parametrize("case", [c for c in CASES if c.id in VALID_FOR_BOTH_READERS])
def test_a_valid_file_reads_as_the_pandas_reader_read_it(tmp_path, case):
    path, dataset = reading.write(tmp_path, case)

    new = read_frame(path, dataset)
    old = pd.concat(list(_read_text_table(path, dataset, 3)), ignore_index=True)

    assert new[READ_ERROR].isna().all()
    pd.testing.assert_frame_equal(new.drop(columns=READ_ERROR), old)


def test_a_quoted_field_longer_than_the_csv_module_allows_is_read(tmp_path):
    path = tmp_path / "patienter.csv"
    note = "anteckning " * 20_000  # 220,000 characters; the csv module stops at 131,072
    path.write_bytes(f'PATIENT_ID;NAMN;KOD\r\nP1;"{note}";A01\r\nP2;"Bo";A02\r\n'.encode())
    dataset = FileDataset.model_validate(delimited_corpus.dataset())

    records = list(read_records(path, dataset, ReadStats(path)))
    frame = read_frame(path, dataset, chunk_rows=10)

    assert [r.values for r in records] == [("P1", note, "A01"), ("P2", "Bo", "A02")]
    assert frame["NAMN"].tolist() == [note, "Bo"]
