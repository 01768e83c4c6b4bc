"""The independent physical count: every corpus case, tricky bytes per format, and the stop.

``etl.extract.physical`` counts records from raw bytes (or ``COUNT(*)``) without any reader
code; landing compares it with each reader's count and stops the batch when they differ.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import textwrap
from pathlib import Path

import pytest

from etl.catalog import FileDataset, FileFormat, load_catalog
from etl.extract import physical, readers, text_records
from etl.extract.landing import PhysicalCountError, extract_system
from tests.corpus import FORMATS, reading

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("case", reading.params(*FORMATS))
def test_every_corpus_case_counts_as_declared(case, tmp_path):
    if "table" in case.dataset:  # a SQL case: COUNT(*)
        with reading.sql_connection(tmp_path, case) as (connection, dataset):
            counted = physical.count_table(connection, dataset.table)
    else:
        name = case.filename if not readers.is_pattern(case.filename) else "case.dat"
        path = tmp_path / Path(name).name
        path.write_bytes(case.content)
        counted = physical.count_physical(path, FileDataset.model_validate(case.dataset)).records
    assert counted == case.physical


# --- each counter on tricky bytes -------------------------------------------------------------

DATASETS = {
    "delimited": {"format": "delimited", "columns": ["ID", "NAMN"]},
    "fixed_width": {"format": "fixed_width", "fields": [{"name": "ID", "width": 2}]},
    "hl7v2": {
        "format": "hl7v2",
        "message_types": ["ADT^A01"],
        "fields": [{"name": "ID", "path": "MSH.10"}],
    },
    "xml": {
        "format": "xml",
        "record_path": "Export/Post",
        "fields": [{"name": "ID", "path": "@id"}],
    },
    "jsonl": {"format": "jsonl", "fields": [{"name": "ID", "path": "id"}]},
}


def dataset_of(format_name: str, encoding: str = "cp1252") -> FileDataset:
    spec = {"file": "f", "encoding": encoding, "key": ["ID"], **DATASETS[format_name]}
    return FileDataset.model_validate(spec)


MSH = b"MSH|^~\\&|A|B|C|D|202401011200||ADT^A01|1|P|2.5"
TRICKY = [
    # delimited: header, then records; the terminator is the file's own
    ("delimited", b"", 0),
    ("delimited", b"ID;NAMN", 0),
    ("delimited", b"ID;NAMN\r\n1;a\r\n2;b\r\n", 2),
    ("delimited", b"ID;NAMN\r\n1;a\r\n2;b", 2),  # last record without terminator
    ("delimited", b"ID;NAMN\r\n1;a\nb\r\n2;c\r\n", 2),  # a bare LF in a CRLF file is content
    ("delimited", b"ID;NAMN\r\n1;a\rb\r\n", 1),  # a bare CR is content
    ("delimited", b"ID;NAMN\n1;a\r\n2;b\n", 2),  # LF file: the CR belongs to record 1
    ("delimited", b'ID;NAMN\r\n1;"rad\r\nrad"\r\n2;b\r\n', 2),  # quoted terminator
    ("delimited", b'ID;NAMN\r\n1;"sa ""hej""\r\n"\r\n2;b\r\n', 2),  # escaped quotes
    ("delimited", b'ID;NAMN\r\n1;"open\r\n2;b\r\n3;c\r\n', 1),  # unterminated quote: the rest
    ("delimited", b"ID;NAMN\r\n1;a\r\n\r\n2;b\r\n", 3),  # an empty line is a record
    ("delimited", b"ID;NAMN\r\n1;a\x00\r\n", 1),  # NUL is content
    # fixed width: no header
    ("fixed_width", b"", 0),
    ("fixed_width", b"AA\r\nBB\r\n", 2),
    ("fixed_width", b"AA\r\nBB", 2),
    ("fixed_width", b"AA\r\nB\rB\r\nC\nC\r\n", 3),
    ("fixed_width", b"AA\nBB\n\n", 3),
    ("fixed_width", b'A"\r\nB"\r\n', 2),  # quotes mean nothing here
    # HL7 v2: MSH + separator at the start, after CR, LF or an MLLP start block
    ("hl7v2", MSH + b"\rPID|1\r" + MSH + b"\rPID|2\r", 2),
    ("hl7v2", MSH + b"\r\nPID|1\r\n" + MSH + b"\n", 2),
    ("hl7v2", b"\x0b" + MSH + b"\rPID|1\r\x1c\r\x0b" + MSH + b"\r\x1c\r", 2),
    ("hl7v2", b"FHS|^~\\&\rBHS|^~\\&\r" + MSH + b"\rBTS|1\rFTS|1\r", 1),  # envelopes
    ("hl7v2", MSH + b"\rOBX|1|TX|||text MSH|x\r", 1),  # MSH inside a field
    ("hl7v2", b"MSH#^~\\&|A\r", 1),  # any field separator
    ("hl7v2", b"MSHX|A\rZMSH|\r", 0),  # neither is a message header
    ("hl7v2", b"garbage\r" + MSH + b"\r", 1),
    ("hl7v2", MSH + b"\rMSH", 1),  # a cut header at the end is not counted
    # XML: start tags of the record element, any prefix, not in comments or CDATA
    ("xml", b"<Export><Post id='1'/><Post id='2'></Post></Export>", 2),
    ("xml", b"<Export>\n<Post\n id='1'>\n</Post><x:Post>1</x:Post></Export>", 2),
    ("xml", b"<Export><Posten/><Post>1</Post><PostX/></Export>", 1),
    ("xml", b"<Export><!-- <Post> --><Post/><![CDATA[<Post>]]></Export>", 1),
    ("xml", b"<Export><Post><Post/></Post></Export>", 2),  # nested: the limit, fails safe
    ("xml", b"<Export><Post>", 1),  # a truncated file still shows its start tag
    # JSON lines: lines holding anything but JSON whitespace
    ("jsonl", b"", 0),
    ("jsonl", b'{"id": 1}\n{"id": 2}\n', 2),
    ("jsonl", b'{"id": 1}\n\n \t\r\n{"id": 2}', 2),
    ("jsonl", b'{"id": 1}\r\n{"id": 2}\r\n', 2),
    ("jsonl", b'{"id": 1}\r{"id": 2}\n', 1),  # a CR does not end a line
    ("jsonl", b"not json\n{\n", 2),  # broken lines are records too
]


@pytest.mark.parametrize(("format_name", "content", "expected"), TRICKY)
@pytest.mark.parametrize("block_bytes", [1, 3, 1 << 20])
def test_counter_on_tricky_bytes(
    format_name, content, expected, block_bytes, tmp_path, monkeypatch
):
    monkeypatch.setattr(physical, "BLOCK_BYTES", block_bytes)  # every record cut across blocks
    path = tmp_path / "f"
    path.write_bytes(content)

    counted = physical.count_physical(path, dataset_of(format_name))

    assert counted.records == expected
    assert counted.bytes == len(content)
    assert counted.sha256 == hashlib.sha256(content).hexdigest()


def test_a_utf8_byte_order_mark_is_not_content_but_is_hashed(tmp_path):
    content = b"\xef\xbb\xbf\n" + b'{"id": 1}\n'
    path = tmp_path / "f"
    path.write_bytes(content)

    counted = physical.count_physical(path, dataset_of("jsonl", encoding="utf-8"))

    assert counted == (len(content), 1, hashlib.sha256(content).hexdigest())


def test_an_encoding_that_does_not_write_ascii_as_ascii_is_refused(tmp_path):
    path = tmp_path / "f"
    path.write_bytes("ID;NAMN\n".encode("utf-16"))

    with pytest.raises(ValueError, match="utf-16"):
        physical.count_physical(path, dataset_of("delimited", encoding="utf-16"))


@pytest.mark.parametrize(
    ("format_name", "content", "lines"),
    [
        ("delimited", b'ID;NAMN\r\n1;"a\r\nb"\r\n2;c\r\n3;d', [2, 4, 5]),
        ("fixed_width", b"AA\r\nB\nB\r\nCC\r\n", [1, 2, 3]),
        ("jsonl", b'{"id": 1}\n\n{"id": 2}\n', [1, 3]),
        ("xml", b"<Export>\n<Post/>\n<!--\n<Post/>\n-->\n<Post/></Export>", [2, 6]),
    ],
)
def test_record_start_lines(format_name, content, lines, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(content)

    assert list(physical.record_start_lines(path, dataset_of(format_name))) == lines


def test_physical_shares_no_code_with_the_readers():
    source = Path(physical.__file__).read_text("utf-8")
    for reader in ["hl7v2", "xml_records", "jsonl", "text_records", "records", "readers"]:
        assert f"import {reader}" not in source and f"extract.{reader}" not in source


# --- a reader that loses or splits a record stops the batch -----------------------------------

SYSTEM_YAML = """
system: kassa
title: A file source with one delimited export
format: files
connection:
  default_path: "{estate_dir}/kassa"
datasets:
  patient:
    file: PATIENT.TXT
    format: delimited
    encoding: cp1252
    delimiter: ";"
    key: [PATIENT_ID]
    columns: [PATIENT_ID, FAMILY_NAME]
"""

PATIENT_YAML = """
dataset: patient
columns:
  - {target: family_name, source: FAMILY_NAME}
"""


@pytest.fixture
def kassa(tmp_path):
    mappings = tmp_path / "mappings"
    (mappings / "kassa").mkdir(parents=True)
    (mappings / "kassa" / "system.yaml").write_text(SYSTEM_YAML, encoding="utf-8")
    (mappings / "kassa" / "patient.yaml").write_text(textwrap.dedent(PATIENT_YAML))
    source = tmp_path / "estate" / "kassa"
    source.mkdir(parents=True)
    (source / "PATIENT.TXT").write_bytes(
        b'PATIENT_ID;FAMILY_NAME\r\nP1;Berg\r\nP2;"Lind\r\nLund"\r\nP3;Ek\r\n'
    )
    return load_catalog(mappings), tmp_path / "estate"


def _dropping_second_record(path, dataset, stats):
    for record in text_records.read_records(path, dataset, stats):
        if record.record == 2:
            stats.records -= 1  # as a reader that never saw it would count
            continue
        yield record


def _splitting_second_record(path, dataset, stats):
    for record in text_records.read_records(path, dataset, stats):
        yield record
        if record.record == 2:  # as a reader cutting "Lind\r\nLund" in two would
            stats.records += 1
            yield record._replace(record=3, line=record.line + 1)


@pytest.mark.parametrize(
    ("reader", "read", "where"),
    [
        (_dropping_second_record, 2, "record 2: the reader starts it at line 5"),
        (_splitting_second_record, 4, "record 3: the reader starts it at line 4"),
    ],
)
def test_a_reader_that_loses_or_splits_a_record_stops_the_batch(
    reader, read, where, kassa, settings_for, monkeypatch
):
    catalog, estate = kassa
    monkeypatch.setitem(readers.RECORD_READERS, FileFormat.DELIMITED, reader)
    monkeypatch.delitem(readers.FRAME_READERS, FileFormat.DELIMITED)
    settings = settings_for(estate)

    with pytest.raises(PhysicalCountError) as error:
        extract_system(catalog, "kassa", "b1", dt.date(2026, 7, 1), settings)

    message = str(error.value)
    assert "kassa dataset patient" in message and "PATIENT.TXT" in message
    assert f"the reader consumed {read} record(s)" in message
    assert "physical count finds 3" in message
    assert where in message
    assert "Lind" not in message and "P2" not in message  # positions, never values
    landed = settings.resolved_landing_dir / "b1" / "kassa" / "landed"
    assert not (landed / "_manifest.json").exists()
    assert not list(landed.glob("*.parquet*"))


def test_the_manifest_records_each_source_file(kassa, settings_for):
    catalog, estate = kassa
    content = (estate / "kassa" / "PATIENT.TXT").read_bytes()

    manifest = extract_system(catalog, "kassa", "b1", dt.date(2026, 7, 1), settings_for(estate))

    (source,) = manifest.datasets["patient"].sources
    assert source.model_dump() == {
        "path": str(estate / "kassa" / "PATIENT.TXT"),
        "bytes": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "physical_records": 3,
        "records": 3,
        "unreadable": 0,
        "stray": 0,
        "rows": 3,
        "unknown_fields": {},
    }
    assert manifest.datasets["patient"].rows == 3
    assert manifest.datasets["patient"].sha256 != source.sha256  # the landed file's own


def test_unknown_fields_are_in_the_manifest_and_logged_as_counts_only(
    kassa, settings_for, monkeypatch, caplog
):
    catalog, estate = kassa

    def reader_seeing_an_undeclared_column(path, dataset, stats):
        for record in text_records.read_records(path, dataset, stats):
            stats.unknown_fields["199001012385"] += 1  # a "name" may well be a value
            yield record

    monkeypatch.setitem(
        readers.RECORD_READERS, FileFormat.DELIMITED, reader_seeing_an_undeclared_column
    )
    monkeypatch.delitem(readers.FRAME_READERS, FileFormat.DELIMITED)
    caplog.set_level("INFO", logger="etl.extract.landing")

    manifest = extract_system(catalog, "kassa", "b1", dt.date(2026, 7, 1), settings_for(estate))

    assert manifest.datasets["patient"].sources[0].unknown_fields == {"199001012385": 3}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "kassa patient: PATIENT.TXT: 1 field name(s) the spec does not declare, in up to 3 "
        "record(s); see the landing manifest"
    ]
    assert "199001012385" not in caplog.text


def test_status_shows_each_source_files_physical_count_beside_what_was_read(kassa, settings_for):
    from etl.status import source_counts

    catalog, estate = kassa
    settings = settings_for(estate)
    extract_system(catalog, "kassa", "b1", dt.date(2026, 7, 1), settings)

    (row,) = [r for r in source_counts(settings, {("b1", "kassa")}) if r["dataset"] == "patient"]
    assert row == {
        "system": "kassa",
        "dataset": "patient",
        "source": "PATIENT.TXT",
        "physical": 3,
        "read": 3,
        "unreadable": 0,
        "stray": 0,
        "undeclared_fields": 0,
    }
    assert source_counts(settings, {("no-such-batch", "kassa")}) == []


# Findings of `make fuzz` (atheris, 60 s per reader) that the readers answer by stopping, not by
# a corpus outcome: the reader and the physical count disagree, so the batch must stop.
FUZZ_FINDINGS = [
    pytest.param(
        {"format": "xml", "record_path": "Export/Post"},
        b'<Export><Post id="1"><t><!-- c\xff\xff-><Post id="2"/></Export>',
        id="xml-record-start-inside-an-unterminated-comment",
    ),
]


@pytest.mark.parametrize(("layout", "content"), FUZZ_FINDINGS)
def test_fuzz_findings_stop_the_batch_naming_the_file(tmp_path, layout, content):
    from etl.extract.landing import _file_frames

    (tmp_path / "export.dat").write_bytes(content)
    dataset = FileDataset(
        file="export.dat",
        encoding="utf-8",
        key=["id"],
        fields=[{"name": "id", "path": "@id"}, {"name": "t", "path": "t"}],
        **layout,
    )
    with pytest.raises((PhysicalCountError, readers.BrokenFileError), match=r"export\.dat"):
        list(_file_frames("fuzz", "posts", dataset, tmp_path, [], 100))
