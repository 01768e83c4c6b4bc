"""Shortcuts of the extract's hot paths give what the longer way gives.

* A batch of records that is not suspect (``_texts``: no control byte but CR, LF and the
  delimiter, decoded strictly, no U+FFFD) is flagged by plain substring searches for CR and LF:
  the same records the ``bad`` regex flags in a suspect batch, with the same lines and joins.
* A suspect batch without a control byte (undecodable bytes or U+FFFD only) of a one-byte code
  page is flagged by substring searches for CR, LF and the few characters such bytes decode to
  (``_escapes``): again the records the regex flags.
* A delimited batch holding as many delimiters as its records should is not counted record by
  record (``may_defer_field_counts``): Arrow's CSV reader refuses a row of another field count,
  and then the records are counted after all. Records whose wrong counts make up for each other
  are still unreadable, as ``read_records`` (which counts every record) finds them.
* SQLite rows of text as bytes become Arrow columns in one row-wise pass (``_utf8_columns``):
  the arrays ``_text_array`` makes column by column, and the column-by-column way whenever a
  value is not bytes or not UTF-8.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from etl.catalog import FileDataset
from etl.extract import readers, text_records
from etl.extract.records import ReadStats
from etl.extract.text_records import _Batch, _Reader, read_frames
from tests.corpus import reading

pytestmark = pytest.mark.unit

# What a record of a block that is not suspect may hold: text, the delimiter, quotes, and the
# line breaks (bare or not) that only the record splitting and the checks tell apart.
PIECES = ["a", "ö", "€", " ", ";", '"', "\r\n", "\n", "\r", "x;y"]


def _reader(tmp_path: Path, terminator: str, file_format: str, width: int) -> _Reader:
    names = [f"C{i}" for i in range(width)]
    path = tmp_path / f"{file_format}{len(terminator)}.txt"
    spec: dict = {"file": path.name, "format": file_format, "encoding": "cp1252", "key": ["C0"]}
    if file_format == "delimited":
        spec |= {"columns": names, "delimiter": ";"}
        path.write_bytes((";".join(names) + terminator).encode("cp1252"))
    else:
        spec |= {"fields": [{"name": name, "width": 2} for name in names]}
        path.write_bytes(("x" * 2 * width + terminator).encode("cp1252"))
    return _Reader(path, FileDataset.model_validate(spec), ReadStats(path))


@settings(max_examples=400, deadline=None)
@given(
    records=st.lists(
        st.lists(st.sampled_from(PIECES), max_size=6).map("".join), min_size=1, max_size=8
    ),
    terminator=st.sampled_from(["\n", "\r\n"]),
    file_format=st.sampled_from(["delimited", "fixed_width"]),
    width=st.integers(1, 3),
    separator=st.sampled_from([None, "\n"]),
)
def test_a_batch_that_is_not_suspect_is_flagged_as_the_regex_flags_it(
    tmp_path_factory, records, terminator, file_format, width, separator
):
    folder = tmp_path_factory.mktemp("take")
    plain, searched = (_reader(folder, terminator, file_format, width) for _ in range(2))
    if file_format != "delimited":
        separator = None

    taken = plain._take(_Batch(records, is_suspect=False), separator)
    expected = searched._take(_Batch(records, is_suspect=True), separator)

    first, lines, flagged, joined, is_deferred = taken
    assert (first, list(lines), flagged, joined, is_deferred) == (
        expected[0],
        list(expected[1]),
        expected[2],
        expected[3],
        False,
    )
    assert (plain.ordinal, plain.line, plain.stats.records) == (
        searched.ordinal,
        searched.line,
        searched.stats.records,
    )
    # Every record holding CR or LF is flagged (the regex would flag it for either).
    assert {i for i, text in enumerate(records) if "\r" in text or "\n" in text} <= flagged


# Fields of a three-column file, the delimiter among them: a record may hold 1 to 5 fields.
FIELD = st.sampled_from(["", "a", "ö", "€1", " b ", '"q"', '"x;y"'])


@settings(max_examples=300, deadline=None)
@given(
    counts=st.lists(st.integers(1, 5), min_size=1, max_size=8),
    fields=st.data(),
    terminator=st.sampled_from(["\n", "\r\n"]),
)
def test_records_whose_wrong_field_counts_make_up_for_each_other_are_unreadable(
    tmp_path_factory, counts, fields, terminator
):
    # Often a last record that makes the batch's delimiters as many as three fields a record.
    missing = 3 * (len(counts) + 1) - sum(counts)
    if 1 <= missing <= 5:
        counts = [*counts, missing]
    records = [";".join(fields.draw(st.lists(FIELD, min_size=n, max_size=n))) for n in counts]
    folder = tmp_path_factory.mktemp("counts")
    path = folder / "three.txt"
    path.write_bytes(terminator.join(["A;B;C", *records, ""]).encode("cp1252"))
    dataset = _three_columns(path)

    reading.assert_frames_are_frames_of_records(path, dataset, 100)


def test_an_empty_record_is_unreadable_when_quoted_delimiters_make_up_for_it(tmp_path):
    # Arrow's CSV reader reads an empty line as a row of empty fields, without complaint; the
    # batch holds as many delimiters as three records of three fields (two inside quotes).
    path = tmp_path / "three.txt"
    path.write_bytes(b'A;B;C\n\n"x;y";"x;y"\n;;"x;y"\n')
    dataset = _three_columns(path)
    stats = ReadStats(path)

    (frame,) = read_frames(path, dataset, stats, 100)

    assert frame["_read_error"].isna().tolist() == [False, False, True]
    assert (stats.records, stats.unreadable) == (3, 2)


def test_two_records_of_wrong_counts_that_make_up_for_each_other(tmp_path):
    path = tmp_path / "three.txt"
    path.write_bytes(b"A;B;C\r\n1;a;b\r\n2;a;b;c\r\n3;a\r\n4;a;b\r\n")
    dataset = _three_columns(path)
    stats = ReadStats(path)

    (frame,) = read_frames(path, dataset, stats, 100)

    assert frame["A"].tolist()[::3] == ["1", "4"]
    assert frame["_read_error"].isna().tolist() == [True, False, False, True]
    assert (stats.records, stats.unreadable) == (4, 2)


# What a suspect record without control bytes of a cp1252 file may hold besides: the lone
# surrogates its undefined bytes (0x81, 0x8D, 0x8F, 0x90, 0x9D) decode to, and U+FFFD.
ODD_PIECES = [*PIECES, "\udc81", "\udc9d", "\udc90", "\ufffd", "\u20ac\udc8d"]


@settings(max_examples=400, deadline=None)
@given(
    records=st.lists(
        st.lists(st.sampled_from(ODD_PIECES), max_size=6).map("".join), min_size=1, max_size=8
    ),
    terminator=st.sampled_from(["\n", "\r\n"]),
    file_format=st.sampled_from(["delimited", "fixed_width"]),
    width=st.integers(1, 3),
)
@example(records=["a", "b\ufffd", "c"], terminator="\n", file_format="delimited", width=1)
@example(records=["\udc81b", "c"], terminator="\r\n", file_format="fixed_width", width=1)
def test_a_suspect_batch_without_control_bytes_is_flagged_as_the_regex_flags_it(
    tmp_path_factory, records, terminator, file_format, width
):
    folder = tmp_path_factory.mktemp("odd")
    plain, searched = (_reader(folder, terminator, file_format, width) for _ in range(2))

    taken = plain._take(_Batch(records, is_suspect=True, has_controls=False))
    expected = searched._take(_Batch(records, is_suspect=True, has_controls=True))

    assert (taken[0], list(taken[1]), *taken[2:]) == (expected[0], list(expected[1]), *expected[2:])
    assert plain.stats.records == searched.stats.records


def test_the_escapes_are_the_undefined_bytes_of_a_one_byte_code_page():
    assert text_records._escapes("cp1252") == (
        "\udc81",
        "\udc8d",
        "\udc8f",
        "\udc90",
        "\udc9d",
        "\ufffd",
    )
    assert text_records._escapes("iso8859-15") == ("\ufffd",)  # every byte defined
    for encoding in ("utf-8", "latin-1", "ascii", "shift_jis", "utf-16"):
        assert text_records._escapes(encoding) is None  # searched by the regex
    for byte in (0x81, 0x8D, 0x8F, 0x90, 0x9D):
        decoded = bytes([byte]).decode("cp1252", "surrogateescape")
        assert decoded in text_records._escapes("cp1252")


VALUES = st.one_of(
    st.none(),
    st.binary(max_size=6),
    st.text(max_size=6).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"\xc5str\xf6m", b"\xed\xa0\x80", "Åström".encode(), b"\xef\xbf\xbd"]),
)


def _column_by_column(rows: list[tuple], columns: list[str]) -> dict[str, pa.Array] | None:
    by_column = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
    arrays = {}
    for name, values in zip(columns, by_column, strict=True):
        array = readers._text_array(values, is_bytes=True)
        if array is None:
            return None
        arrays[name] = array
    return arrays


@settings(max_examples=300, deadline=None)
@given(
    rows=st.integers(1, 3).flatmap(
        lambda width: st.lists(st.tuples(*[VALUES] * width), max_size=8)
    ),
    odd=st.sampled_from([None, 7, 1.5, "text"]),
)
def test_rows_of_bytes_become_the_arrays_column_by_column_conversion_makes(rows, odd):
    columns = [f"c{i}" for i in range(len(rows[0]) if rows else 2)]
    if odd is not None and rows:
        rows = [(odd, *rows[0][1:]), *rows[1:]]

    arrays = readers._text_frame(rows, columns, is_bytes=True)
    expected = _column_by_column(rows, columns)

    if expected is None:
        assert arrays is None
        return
    assert arrays is not None and list(arrays) == columns
    for name in columns:
        assert arrays[name].type == pa.large_string()
        assert arrays[name].equals(expected[name]), name


def test_a_chunk_of_utf8_text_takes_the_one_pass_way_and_other_values_do_not():
    columns = ["k", "v"]
    assert readers._utf8_columns([(b"1", "Åström".encode()), (None, b"")], columns) is not None
    assert readers._utf8_columns([(b"1", b"\xc5str\xf6m")], columns) is None  # Latin-1
    assert readers._utf8_columns([(1, b"x")], columns) is None  # not text


def _three_columns(path) -> FileDataset:
    """A delimited cp1252 file of columns A, B and C (key A), separated by ';'."""
    return FileDataset.model_validate(
        {
            "file": path.name,
            "format": "delimited",
            "encoding": "cp1252",
            "delimiter": ";",
            "key": ["A"],
            "columns": ["A", "B", "C"],
        }
    )
