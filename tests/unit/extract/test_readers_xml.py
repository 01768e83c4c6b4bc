"""XML exports: record paths, attributes, missing elements, bad bytes and records, DTDs, drift."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from etl.catalog import FileDataset
from etl.extract.readers import (
    BrokenFileError,
    SchemaDriftError,
    check_file_schema,
    read_file_chunks,
)
from etl.extract.records import READ_ERROR, reason_of

pytestmark = pytest.mark.unit

PROLOG = '<?xml version="1.0" encoding="ISO-8859-1"?>\n'


def record(
    examination_id: str,
    pnr: str = "199001012385",
    kind: str = "pnr",
    date: str | None = "2024-03-01",
    answer: str = "Normalt fynd",
) -> str:
    date_element = f"<Datum> {date} </Datum>" if date is not None else ""
    return (
        f'  <Undersokning id="{examination_id}">\n'
        f'    <Patient typ="{kind}"><Pnr>{pnr}</Pnr></Patient>\n'
        f"    {date_element}<Kod>RAD01</Kod>\n"
        f"    <Svar>{answer}</Svar>\n"
        "  </Undersokning>\n"
    )


def export(*records: str, prolog: str = PROLOG) -> str:
    return (
        f'{prolog}<!-- RIS-export -->\n<Export skapad="2024-03-02">\n{"".join(records)}</Export>\n'
    )


def xml_dataset(**overrides) -> FileDataset:
    spec = {
        "file": "ris.xml",
        "format": "xml",
        "encoding": "iso-8859-1",
        "key": ["EXAMINATION_ID"],
        "record_path": "Export/Undersokning",
        "fields": [
            {"name": "EXAMINATION_ID", "path": "@id"},
            {"name": "IDENTITY_KIND", "path": "Patient/@typ"},
            {"name": "PERSONNUMMER", "path": "Patient/Pnr"},
            {"name": "EXAMINATION_DATE", "path": "Datum"},
            {"name": "CODE", "path": "Kod"},
            {"name": "ANSWER", "path": "Svar"},
        ],
    }
    return FileDataset.model_validate({**spec, **overrides})


def write(folder: Path, text: str, name: str = "ris.xml", encoding: str = "iso-8859-1") -> Path:
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def read_all(folder: Path, dataset: FileDataset, chunk_rows: int = 1000) -> pd.DataFrame:
    return pd.concat(list(read_file_chunks(folder, dataset, chunk_rows)), ignore_index=True)


def rows(frame: pd.DataFrame, *columns: str) -> list[tuple]:
    return [
        tuple(None if pd.isna(value) else value for value in row)
        for row in frame[list(columns)].itertuples(index=False)
    ]


# --- rows -------------------------------------------------------------------------------------


def test_attributes_nested_paths_and_missing_elements(tmp_path):
    write(
        tmp_path,
        export(
            record("U1"),
            record(
                "U2", pnr="19810829M071", kind="reserv", date=None, answer="Åäö &amp; <b>fet</b>"
            ),
            '  <Undersokning id="U3"/>\n',
        ),
    )

    frame = read_all(tmp_path, xml_dataset())

    assert list(frame.columns) == [*xml_dataset().column_names, READ_ERROR]
    assert rows(frame, *xml_dataset().column_names, READ_ERROR) == [
        ("U1", "pnr", "199001012385", "2024-03-01", "RAD01", "Normalt fynd", None),
        ("U2", "reserv", "19810829M071", None, "RAD01", "Åäö & fet", None),
        ("U3", None, None, None, None, None, None),
    ]


def test_the_dataset_encoding_wins_over_the_prolog(tmp_path):
    utf8_prolog = '<?xml version="1.0" encoding="UTF-8"?>\n'
    write(tmp_path, export(record("U1", answer="Förändrad"), prolog=utf8_prolog))

    frame = read_all(tmp_path, xml_dataset(encoding="iso-8859-1"))

    assert frame["ANSWER"].tolist() == ["Förändrad"]


def test_one_bad_byte_makes_only_its_record_unreadable_naming_the_field(tmp_path):
    path = write(tmp_path, export(record("U1", answer="Svar X"), record("U2")), encoding="cp1252")
    path.write_bytes(path.read_bytes().replace(b"Svar X", b"Svar \x81"))  # undefined in cp1252

    frame = read_all(tmp_path, xml_dataset(encoding="cp1252"))

    assert rows(frame, "EXAMINATION_ID", "ANSWER", READ_ERROR) == [
        (
            None,
            None,
            "undecodable_bytes (ris.xml, line 4, record 1): bytes not valid cp1252 in Svar",
        ),
        ("U2", "Normalt fynd", None),
    ]


def test_namespace_prefixes_are_ignored_in_paths(tmp_path):
    text = (
        '<v:Export xmlns:v="urn:vgr:ris"><v:Undersokning id="U1">'
        '<v:Patient v:typ="pnr"><v:Pnr>199001012385</v:Pnr></v:Patient><Kod>RAD01</Kod>'
        "</v:Undersokning></v:Export>"
    )
    write(tmp_path, text)

    frame = read_all(tmp_path, xml_dataset())

    assert rows(frame, "EXAMINATION_ID", "IDENTITY_KIND", "PERSONNUMMER", "CODE") == [
        ("U1", "pnr", "199001012385", "RAD01")
    ]


# --- bad records and broken exports -----------------------------------------------------------


@pytest.mark.parametrize(
    "bad_record",
    [
        pytest.param(record("U2", answer="Hb & Hct"), id="unescaped-ampersand"),
        pytest.param(record("U2", answer="a < b"), id="stray-less-than"),
        pytest.param(record("U2", answer="<b>fet</i>"), id="mismatched-inner-tags"),
        pytest.param(record("U2", answer="&nbsp;"), id="undeclared-entity"),
        pytest.param(record("U2").replace("</Undersokning>", ""), id="missing-end-tag"),
        pytest.param(
            record("U2", answer='<!DOCTYPE x [<!ENTITY a "aaaaaaaa">]>&a;'),
            id="dtd-inside-a-record",
        ),
    ],
)
def test_a_record_that_does_not_parse_is_an_invalid_row_and_the_file_goes_on(tmp_path, bad_record):
    write(tmp_path, export(record("U1"), bad_record, record("U3")))

    frame = read_all(tmp_path, xml_dataset())

    assert [
        (examination_id, error and reason_of(error))
        for examination_id, error in rows(frame, "EXAMINATION_ID", READ_ERROR)
    ] == [("U1", None), (None, "invalid_xml_record"), ("U3", None)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            export(record("U1")).replace("</Export>", "</Exprt>"),
            r"line 9: </Exprt> where </Export> was due",
            id="mismatched-outer-tags",
        ),
        pytest.param(
            export(record("U1"), record("U2")).split('  <Undersokning id="U2"')[0],
            r"line 9: the file ends inside <Export>",
            id="truncated-between-records",
        ),
        pytest.param(
            export(record("U1"), record("U2")).rsplit("\n  </Undersokning>", 1)[0],
            r"line 12: the file ends inside the <Undersokning> record of line 9",
            id="truncated-inside-a-record",
        ),
        pytest.param(
            '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
            '<!ENTITY lol2 "&lol;&lol;&lol;">]>\n<Export>&lol2;</Export>',
            r"line 2: a DTD \(<!DOCTYPE>\) is refused",
            id="entity-expansion-dtd",
        ),
    ],
)
def test_a_broken_export_stops_with_the_file_and_line(tmp_path, text, expected):
    path = write(tmp_path, text)

    with pytest.raises(BrokenFileError, match=expected) as error:
        read_all(tmp_path, xml_dataset())

    assert str(path) in str(error.value)


def test_records_are_cut_correctly_across_read_blocks(tmp_path, monkeypatch):
    from etl.extract import xml_records

    monkeypatch.setattr(xml_records, "READ_BLOCK_CHARACTERS", 7)
    write(tmp_path, export(*(record(f"U{n}") for n in range(1, 6))))

    frame = read_all(tmp_path, xml_dataset())

    assert frame["EXAMINATION_ID"].tolist() == ["U1", "U2", "U3", "U4", "U5"]
    assert frame[READ_ERROR].isna().all()


def test_chunks_of_two_hold_the_same_rows_as_one_chunk(tmp_path):
    write(tmp_path, export(*(record(f"U{n}") for n in range(1, 6))))

    chunks = list(read_file_chunks(tmp_path, xml_dataset(), 2))

    assert [len(chunk) for chunk in chunks] == [2, 2, 1]
    pd.testing.assert_frame_equal(
        pd.concat(chunks, ignore_index=True), read_all(tmp_path, xml_dataset())
    )


# --- schema drift -----------------------------------------------------------------------------


def test_optional_elements_absent_from_some_records_are_not_drift(tmp_path):
    write(tmp_path, export(record("U1", date=None), record("U2")))

    check_file_schema("ris", tmp_path, xml_dataset())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            export(record("U1")).replace("Undersokning", "Undersokningar"),
            [
                "record path Export/Undersokning yields no record",
                "elements seen: Export, Export/Undersokningar",
            ],
            id="record-path-yields-nothing",
        ),
        pytest.param(
            export(record("U1")).replace("Pnr>", "Personnummer>"),
            ["- Patient/Pnr   (declared", "+ Patient/Personnummer   (in the source"],
            id="renamed-element",
        ),
        pytest.param(
            export(record("U1")).replace(' typ="pnr"', ""),
            ["- Patient/@typ   (declared"],
            id="missing-attribute",
        ),
        pytest.param(
            export(record("U1")).replace("<Kod>", '<Remiss nr="R1"/><Kod>'),
            ["+ Remiss/@nr   (in the source"],
            id="unexpected-element-with-attribute",
        ),
    ],
)
def test_drift_names_the_file_and_the_paths(tmp_path, text, expected):
    path = write(tmp_path, text)

    with pytest.raises(SchemaDriftError) as error:
        check_file_schema("ris", tmp_path, xml_dataset())

    message = str(error.value)
    assert f"ris file {path}" in message
    for part in expected:
        assert part in message
