"""Properties of the XML and JSON lines readers: valid records round-trip exactly; corrupting
one record makes that record, and only that record, unreadable and changes no other value."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple
from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.catalog import FileDataset
from etl.extract import jsonl, xml_records
from etl.extract.records import ReadStats, Record

pytestmark = pytest.mark.unit

PROPERTIES = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

FIELDS = ["id", "number", "protection", "note"]

# Text a field may hold and give back exactly: no control characters, surrogates, private use
# or unassigned code points, and no surrounding whitespace (XML values are stripped).
_CHARACTER = st.characters(exclude_categories=["Cc", "Cs", "Co", "Cn"])
VALUE = st.text(_CHARACTER, max_size=12).filter(lambda value: value == value.strip())

RECORD = st.fixed_dictionaries(
    {"id": VALUE, "number": VALUE, "protection": VALUE, "note": st.none() | VALUE}
)
RECORDS = st.lists(RECORD, min_size=1, max_size=6)


def read(path: Path, reader: Callable, dataset: FileDataset) -> tuple[list[Record], ReadStats]:
    stats = ReadStats(path)
    return list(reader(path, dataset, stats)), stats


def values(record: dict) -> tuple:
    return tuple(record[name] for name in FIELDS)


# --- XML --------------------------------------------------------------------------------------

XML_DATASET = FileDataset.model_validate(
    {
        "file": "patienter.xml",
        "format": "xml",
        "encoding": "utf-8",
        "key": ["id"],
        "record_path": "Journal/Patient",
        "fields": [
            {"name": "id", "path": "@id"},
            {"name": "number", "path": "Identitet/Nummer", "required": True},
            {"name": "protection", "path": "Skydd", "required": True},
            {"name": "note", "path": "Anteckning"},
        ],
    }
)


def xml_record(record: dict) -> bytes:
    note = "" if record["note"] is None else f"<Anteckning>{escape(record['note'])}</Anteckning>"
    return (
        f"<Patient id={quoteattr(record['id'])}>"
        f"<Identitet><Nummer>{escape(record['number'])}</Nummer></Identitet>"
        f"<Skydd>{escape(record['protection'])}</Skydd>{note}</Patient>"
    ).encode()


def xml_export(records: list[bytes]) -> bytes:
    return b'<?xml version="1.0"?>\n<Journal>\n' + b"\n".join(records) + b"\n</Journal>\n"


XML_CORRUPTIONS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "renamed": ("unexpected_field", lambda r: r.replace(b"Skydd>", b"Skyd>")),
    "dropped": ("missing_field", lambda r: re.sub(rb"<Skydd>.*</Skydd>", b"", r)),
    "doubled": ("duplicate_element", lambda r: r.replace(b"<Skydd>", b"<Skydd/><Skydd>")),
    "nul": ("control_character_in_field", lambda r: r.replace(b"<Skydd>", b"<Skydd>\x00")),
    "ampersand": ("invalid_xml_record", lambda r: r.replace(b"<Skydd>", b"<Skydd>&")),
    "bad-byte": ("undecodable_bytes", lambda r: r.replace(b"<Skydd>", b"<Skydd>\xf6")),
    "deep": (
        "nesting_too_deep",
        lambda r: r.replace(b"<Skydd>", b"<Skydd>" + b"<a>" * 40 + b"</a>" * 40),
    ),
    "end-tag-lost": ("invalid_xml_record", lambda r: r.replace(b"</Patient>", b"")),
}


@PROPERTIES
@given(records=RECORDS)
def test_xml_valid_records_round_trip_exactly(tmp_path, records):
    path = tmp_path / "patienter.xml"
    path.write_bytes(xml_export([xml_record(record) for record in records]))

    rows, stats = read(path, xml_records.read_records, XML_DATASET)

    assert [row.values for row in rows] == [values(record) for record in records]
    assert [row.read_error for row in rows] == [None] * len(records)
    assert [row.record for row in rows] == list(range(1, len(records) + 1))
    assert stats.records == len(records) and not stats.unknown_fields


# --- JSON lines -------------------------------------------------------------------------------

JSONL_DATASET = FileDataset.model_validate(
    {
        "file": "patienter.jsonl",
        "format": "jsonl",
        "encoding": "utf-8",
        "key": ["id"],
        "fields": [
            {"name": "id", "path": "id", "required": True},
            {"name": "number", "path": "identitet.nummer", "required": True},
            {"name": "protection", "path": "skydd", "required": True},
            {"name": "note", "path": "anteckning"},
        ],
    }
)


def json_record(record: dict, ensure_ascii: bool = False) -> bytes:
    document = {"id": record["id"], "identitet": {"nummer": record["number"]}}
    document["skydd"] = record["protection"]
    if record["note"] is not None:
        document["anteckning"] = record["note"]
    return json.dumps(document, ensure_ascii=ensure_ascii).encode()


# A value as written in the file, and as text it must come back as.
JSON_VALUE = st.one_of(
    VALUE.map(lambda text: (json.dumps(text), text)),
    st.just(("null", None)),
    st.integers().map(lambda number: (str(number), str(number))),
    st.sampled_from(["1.10", "-0", "1e3", "-0.0E+3", "12345678901234567890", "true", "false"]).map(
        lambda literal: (literal, literal)
    ),
)

JSON_CORRUPTIONS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "renamed": ("unexpected_field", lambda r: r.replace(b'"skydd":', b'"skyddad":')),
    "dropped": ("missing_field", lambda r: re.sub(rb', "skydd": "(?:[^"\\]|\\.)*"', b"", r)),
    "doubled": ("duplicate_key", lambda r: r.replace(b'"skydd":', b'"skydd": null, "skydd":')),
    "nul-escape": (
        "control_character_in_field",
        lambda r: r.replace(b'"id": "', b'"id": "\\u0000'),
    ),
    "lone-surrogate": ("lone_surrogate", lambda r: r.replace(b'"id": "', b'"id": "\\ud800')),
    "bad-byte": ("undecodable_bytes", lambda r: r.replace(b'"id": "', b'"id": "\xf6')),
    "bare-cr": ("invalid_json", lambda r: r.replace(b'"id": "', b'"id": "\r')),
    "deep": (
        "nesting_too_deep",
        lambda r: r.replace(b'"id":', b'"x": ' + b"[" * 40 + b"]" * 40 + b', "id":'),
    ),
    "truncated": ("invalid_json", lambda r: r.decode()[: len(r.decode()) // 2].encode()),
    "array": ("invalid_json", lambda r: b"[" + r + b"]"),
}


@PROPERTIES
@given(records=RECORDS, ensure_ascii=st.booleans(), crlf=st.booleans())
def test_jsonl_valid_records_round_trip_exactly(tmp_path, records, ensure_ascii, crlf):
    path = tmp_path / "patienter.jsonl"
    end = b"\r\n" if crlf else b"\n"
    path.write_bytes(b"".join(json_record(r, ensure_ascii) + end for r in records))

    rows, stats = read(path, jsonl.read_records, JSONL_DATASET)

    assert [row.values for row in rows] == [values(record) for record in records]
    assert [row.read_error for row in rows] == [None] * len(records)
    assert [row.line for row in rows] == list(range(1, len(records) + 1))
    assert stats.records == len(records) and not stats.unknown_fields


@PROPERTIES
@given(value=JSON_VALUE)
def test_jsonl_numbers_and_literals_stay_as_written(tmp_path, value):
    written, expected = value
    path = tmp_path / "patienter.jsonl"
    path.write_text(f'{{"id": "P1", "identitet": {{"nummer": {written}}}, "skydd": null}}\n')

    (row,), _ = read(path, jsonl.read_records, JSONL_DATASET)

    assert row.values == ("P1", expected, None, None)


def jsonl_export(records: list[bytes]) -> bytes:
    return b"".join(record + b"\n" for record in records)


# --- corrupting one record, in either format --------------------------------------------------


class Format(NamedTuple):
    read_records: Callable[[Path, FileDataset, ReadStats], Iterator[Record]]
    dataset: FileDataset
    record: Callable[[dict], bytes]
    export: Callable[[list[bytes]], bytes]
    first_line: int  # the line record 1 starts on
    corruptions: dict[str, tuple[str, Callable[[bytes], bytes]]]


FORMATS = {  # record 1 is on line 3 of an XML export, after <?xml ...?> and <Journal>
    "xml": Format(
        xml_records.read_records, XML_DATASET, xml_record, xml_export, 3, XML_CORRUPTIONS
    ),
    "jsonl": Format(
        jsonl.read_records, JSONL_DATASET, json_record, jsonl_export, 1, JSON_CORRUPTIONS
    ),
}
# A record whose end tag is lost is only cut short by the next record's start tag.
NEEDS_A_NEXT_RECORD = {"end-tag-lost"}


@pytest.mark.parametrize("format_name", FORMATS)
@PROPERTIES
@given(records=st.lists(RECORD, min_size=2, max_size=6), data=st.data())
def test_one_corrupted_record_is_the_only_one_unreadable(tmp_path, format_name, records, data):
    spec = FORMATS[format_name]
    corruption = data.draw(st.sampled_from(sorted(spec.corruptions)), label="corruption")
    last = len(records) - (2 if corruption in NEEDS_A_NEXT_RECORD else 1)
    damaged = data.draw(st.integers(0, last), label="damaged")
    reason, corrupt = spec.corruptions[corruption]
    texts = [spec.record(record) for record in records]
    texts[damaged] = corrupt(texts[damaged])
    assert texts[damaged] != spec.record(records[damaged])  # the corruption took
    path = tmp_path / spec.dataset.file
    path.write_bytes(spec.export(texts))

    rows, stats = read(path, spec.read_records, spec.dataset)

    assert len(rows) == stats.records == len(records)
    where = f"({spec.dataset.file}, line {damaged + spec.first_line}, "
    for position, (row, record) in enumerate(zip(rows, records, strict=True)):
        if position == damaged:
            assert row.values == (None,) * len(FIELDS)
            assert row.read_error.startswith(f"{reason} {where}")
        else:
            assert (row.values, row.read_error) == (values(record), None)
