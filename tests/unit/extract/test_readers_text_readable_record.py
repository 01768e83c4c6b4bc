"""The one-record check of the delimited reader (``_Reader.readable_record``, a regex) calls a
record readable exactly when ``_Reader.judge`` does: the column-wise reader skips judging the
records it passes, so it must never pass one that ``judge`` would quarantine (and it should pass
the free text ``judge`` reads, or those records are judged one by one, slowly)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.catalog import FileDataset
from etl.extract.records import ReadStats
from etl.extract.text_records import _Problem, _Reader

pytestmark = pytest.mark.unit

# Letters, the delimiter, quotes, every text break and control character a record may hold, an
# undecodable byte (a lone surrogate), U+FFFD, U+007F (the reader's own joiner).
PIECES = ["a", "ö", " ", ";", '"', '""', "\r\n", "\n", "\r", "\t", "\x00", "\x1c", "\udc81"]
PIECES += ["\ufffd", "\x7f", '";', ';"']


def _reader(tmp_path: Path, terminator: str, width: int, keys: list[str]) -> _Reader:
    path = tmp_path / f"t{len(terminator)}.csv"
    names = [f"C{i}" for i in range(width)]
    path.write_bytes((";".join(names) + terminator + "x" + terminator).encode())
    dataset = FileDataset.model_validate(
        {
            "file": path.name,
            "format": "delimited",
            "encoding": "utf-8",
            "key": keys,
            "columns": names,
        }
    )
    return _Reader(path, dataset, ReadStats(path))


@st.composite
def records(draw):
    width = draw(st.integers(1, 4))
    keys = draw(st.lists(st.sampled_from([f"C{i}" for i in range(width)]), min_size=1, unique=True))
    fields = draw(
        st.lists(
            st.tuples(st.booleans(), st.lists(st.sampled_from(PIECES), max_size=5).map("".join)),
            min_size=1,
            max_size=width + 1,
        )
    )
    text = ";".join(f'"{value}"' if quoted else value for quoted, value in fields)
    return width, keys, text


@settings(max_examples=1500, deadline=None)
@given(drawn=records(), terminator=st.sampled_from(["\n", "\r\n"]))
def test_the_one_record_check_agrees_with_judge(tmp_path_factory, drawn, terminator):
    width, keys, text = drawn
    reader = _reader(tmp_path_factory.mktemp("r"), terminator, width, keys)
    is_readable = not isinstance(reader.judge(text, 1), _Problem)
    assert (reader.readable_record.fullmatch(text) is not None) == is_readable


@pytest.mark.parametrize("terminator", ["\n", "\r\n"])
@pytest.mark.parametrize(
    ("text", "is_readable"),
    [
        pytest.param('1;"a\r\nb\tc"', True, id="free-text-breaks"),
        pytest.param("1;a\tb", True, id="unquoted-tab"),
        pytest.param('1;"a\rb"', False, id="bare-cr"),
        pytest.param('"1\t";a', False, id="tab-in-key"),
        pytest.param('1;"a""b"', True, id="escaped-quote"),
        pytest.param('1;a"b', False, id="stray-quote"),
        pytest.param("1;a;b", False, id="a-field-too-many"),
        pytest.param("1;a\udc81", False, id="undecodable"),
    ],
)
def test_the_one_record_check_by_example(tmp_path, terminator, text, is_readable):
    reader = _reader(tmp_path, terminator, 2, ["C0"])
    assert (reader.readable_record.fullmatch(text) is not None) is is_readable
    assert (not isinstance(reader.judge(text, 1), _Problem)) is is_readable
