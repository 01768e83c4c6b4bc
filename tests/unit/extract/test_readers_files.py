"""Glob patterns for every file format, and landing HL7 v2, XML and JSON lines end to end."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from etl.catalog import FileDataset, load_catalog
from etl.extract import landing, records
from etl.extract.landing import READ_ERROR, ROW_NUMBER, SOURCE_KEY, extract_system
from etl.extract.readers import SchemaDriftError, check_file_schema, read_file_chunks

pytestmark = pytest.mark.unit

AS_OF = dt.date(2026, 7, 1)


def hl7_message(control_id: str, event: str = "A01") -> str:
    return (
        f"MSH|^~\\&|PAS|SU|CORE|VGR|202403011200||ADT^{event}|{control_id}|P|2.5\r"
        f"PID|1|P{control_id}|199001012385^^^SKV^PN||Åström^Göran||19900101|F\r"
    )


# Each format: the dataset, and how a file holding the given ids is written.
FORMATS = {
    "delimited": (
        {"format": "delimited", "columns": ["ID", "NAME"]},
        lambda ids: "ID;NAME\n" + "".join(f"{i};Namn {i}\n" for i in ids),
    ),
    "fixed_width": (
        {
            "format": "fixed_width",
            "fields": [{"name": "ID", "width": 4}, {"name": "NAME", "width": 8}],
        },
        lambda ids: "".join(f"{i:<4}{'Namn':<8}\r\n" for i in ids),
    ),
    "jsonl": (
        {
            "format": "jsonl",
            "fields": [{"name": "ID", "path": "id"}, {"name": "NAME", "path": "n"}],
        },
        lambda ids: "".join(f'{{"id": "{i}", "n": "Namn"}}\n' for i in ids),
    ),
    "xml": (
        {
            "format": "xml",
            "record_path": "Export/Post",
            "fields": [{"name": "ID", "path": "@id"}, {"name": "NAME", "path": "Namn"}],
        },
        lambda ids: (
            "<Export>" + "".join(f'<Post id="{i}"><Namn>N</Namn></Post>' for i in ids) + "</Export>"
        ),
    ),
    "hl7v2": (
        {
            "format": "hl7v2",
            "message_types": ["ADT^A01"],
            "fields": [{"name": "ID", "path": "MSH.10"}, {"name": "NAME", "path": "PID.5.1"}],
        },
        lambda ids: "".join(hl7_message(i) for i in ids),
    ),
}


def dataset_of(format_name: str, file: str) -> FileDataset:
    spec, _ = FORMATS[format_name]
    return FileDataset.model_validate({"file": file, "encoding": "cp1252", "key": ["ID"], **spec})


@pytest.mark.parametrize("format_name", list(FORMATS))
def test_a_glob_reads_its_files_in_sorted_order_as_one_dataset(tmp_path, format_name):
    _, content = FORMATS[format_name]
    folder = tmp_path / "export"
    folder.mkdir()
    # Written out of order; one file that does not match the pattern.
    for name, ids in [
        ("2024-03.dat", ["C1", "C2"]),
        ("2024-01.dat", ["A1"]),
        ("2024-02.dat", ["B1"]),
    ]:
        (folder / name).write_bytes(content(ids).encode("cp1252"))
    (folder / "notes.txt").write_text("not part of the dataset")
    dataset = dataset_of(format_name, "export/2024-*.dat")

    check_file_schema("sys", tmp_path, dataset)
    frame = pd.concat(list(read_file_chunks(tmp_path, dataset, 2)), ignore_index=True)

    assert frame["ID"].str.strip().tolist() == ["A1", "B1", "C1", "C2"]


@pytest.mark.parametrize("format_name", list(FORMATS))
def test_a_glob_that_matches_nothing_is_drift(tmp_path, format_name):
    dataset = dataset_of(format_name, "export/*.dat")

    with pytest.raises(
        SchemaDriftError, match=r"sys file pattern .*export/\*\.dat: no files match"
    ):
        check_file_schema("sys", tmp_path, dataset)


def test_drift_in_one_file_of_a_glob_names_that_file(tmp_path):
    _, content = FORMATS["delimited"]
    (tmp_path / "a.csv").write_text(content(["A1"]))
    (tmp_path / "b.csv").write_text(content(["B1"]).replace("NAME", "NAMN"))

    with pytest.raises(SchemaDriftError) as error:
        check_file_schema("sys", tmp_path, dataset_of("delimited", "*.csv"))

    assert f"sys file {tmp_path / 'b.csv'}" in str(error.value)
    assert "- NAME" in str(error.value) and "+ NAMN" in str(error.value)


def test_the_read_error_column_is_the_one_landing_writes():
    assert records.READ_ERROR == landing.READ_ERROR


# --- landing end to end -----------------------------------------------------------------------

SYSTEM_YAML = """
system: lab
title: Test system with message archives, an XML export and JSON lines
format: files
connection:
  default_path: "{estate_dir}/lab"
datasets:
  adt:
    file: adt/*.hl7
    format: hl7v2
    encoding: iso-8859-1
    key: [PATIENT_NUMBER]
    message_types: ["ADT^A01"]
    fields:
      - {name: PATIENT_NUMBER, path: PID.2}
      - {name: PERSONNUMMER, path: PID.3.1}
      - {name: FAMILY_NAME, path: PID.5.1}
      - {name: GIVEN_NAME, path: PID.5.2}
  labsvar:
    file: lab.hl7
    format: hl7v2
    encoding: iso-8859-1
    key: [MESSAGE_ID, RESULT_SET]
    message_types: ["ORU^R01"]
    row_segment: OBX
    fields:
      - {name: MESSAGE_ID, path: MSH.10}
      - {name: PATIENT_NUMBER, path: PID.2}
      - {name: PANEL, path: OBR.4.2}
      - {name: RESULT_SET, path: OBX.1}
      - {name: ANALYSIS, path: OBX.3.1}
      - {name: VALUE, path: OBX.5}
  undersokning:
    file: ris.xml
    format: xml
    encoding: iso-8859-1
    key: [EXAMINATION_ID]
    record_path: Export/Undersokning
    fields:
      - {name: EXAMINATION_ID, path: "@id"}
      - {name: PATIENT_NUMBER, path: Patient/@nr}
      - {name: KVA, path: Kod}
  vaccination:
    file: vaccination.jsonl
    format: jsonl
    encoding: utf-8
    key: [VACCINATION_ID]
    fields:
      - {name: VACCINATION_ID, path: id}
      - {name: PATIENT_NUMBER, path: patient.nr}
      - {name: ATC, path: vaccine.atc}
"""

ENTITY_YAML = {
    "patient": """
        dataset: adt
        identifiers:
          - {source: PERSONNUMMER}
        columns:
          - {target: family_name, source: FAMILY_NAME}
          - {target: given_name, source: GIVEN_NAME}
    """,
    "observation": """
        dataset: labsvar
        columns:
          - {target: patient_id, source: PATIENT_NUMBER, transform: reference_id,
             args: {entity: patient}}
          - {target: analysis_name, source: PANEL}
    """,
    "procedure": """
        dataset: undersokning
        columns:
          - {target: patient_id, source: PATIENT_NUMBER, transform: reference_id,
             args: {entity: patient}}
          - {target: kva_code, source: KVA, transform: normalise_kva, source_system: kva}
    """,
    "immunization": """
        dataset: vaccination
        columns:
          - {target: patient_id, source: PATIENT_NUMBER, transform: reference_id,
             args: {entity: patient}}
          - {target: atc_code, source: ATC, source_system: atc}
    """,
}


def _oru(control_id: str) -> str:
    return (
        f"MSH|^~\\&|LIS|SU|CORE|VGR|202403011200||ORU^R01|{control_id}|P|2.5\r"
        "PID|1|P1|199001012385^^^SKV^PN\r"
        "OBR|1|ORD1|LIS1|BLOD^Blodstatus\r"
        "OBX|1|NM|NPU02319^Hb||135|g/L\r"
        "OBX|2|NM|NPU03568^Trombocyter||250|x10(9)/L\r"
    )


@pytest.fixture
def lab_system(tmp_path) -> tuple[Path, Path]:
    mappings = tmp_path / "mappings"
    (mappings / "lab").mkdir(parents=True)
    (mappings / "lab" / "system.yaml").write_text(SYSTEM_YAML, encoding="utf-8")
    for entity, text in ENTITY_YAML.items():
        (mappings / "lab" / f"{entity}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")

    source = tmp_path / "estate" / "lab"
    (source / "adt").mkdir(parents=True)
    (source / "adt" / "2024-02.hl7").write_bytes(hl7_message("2").encode("iso-8859-1"))
    (source / "adt" / "2024-01.hl7").write_bytes(
        (hl7_message("1") + hl7_message("9", event="A08")).encode("iso-8859-1")
    )
    (source / "lab.hl7").write_bytes(
        (_oru("LAB1") + "\x0bTRASIGT\x1c\r" + _oru("LAB2")).encode("iso-8859-1")
    )
    (source / "ris.xml").write_bytes(
        (
            '<?xml version="1.0" encoding="ISO-8859-1"?>\n<Export>\n'
            '<Undersokning id="U1"><Patient nr="P1"/><Kod>AAA00</Kod></Undersokning>\n'
            '<Undersokning id="U2"><Patient nr="P2"/><Kod>Röntgen & co</Kod></Undersokning>\n'
            '<Undersokning id="U3"><Patient nr="P2"/><Kod>TEA00</Kod></Undersokning>\n'
            "</Export>\n"
        ).encode("iso-8859-1")
    )
    (source / "vaccination.jsonl").write_text(
        '{"id": "V1", "patient": {"nr": "P1"}, "vaccine": {"atc": "J07BB02"}}\n'
        "{trasig rad\n"
        "\n"
        '{"id": "V2", "patient": {"nr": "P2"}, "vaccine": {"atc": "J07BX03"}}\n',
        encoding="utf-8",
    )
    return mappings, tmp_path / "estate"


def nullable(values: pd.Series) -> list:
    return [None if pd.isna(value) else value for value in values]


def test_extract_system_lands_hl7_xml_and_jsonl_with_lineage_and_read_errors(
    lab_system, settings_for
):
    mappings, estate = lab_system
    catalog = load_catalog(mappings)

    settings = settings_for(estate)
    manifest = extract_system(catalog, "lab", "b1", AS_OF, settings)

    expected = {
        "adt": (["P1", None, "P2"], [None, "unexpected_message_type", None]),
        "labsvar": (
            ["LAB1|1", "LAB1|2", None, "LAB2|1", "LAB2|2"],
            [None, None, "invalid_hl7_message", None, None],
        ),
        "undersokning": (["U1", None, "U3"], [None, "invalid_xml_record", None]),
        "vaccination": (["V1", None, "V2"], [None, "invalid_json", None]),
    }
    assert set(manifest.datasets) == set(expected)
    for name, (source_keys, read_errors) in expected.items():
        landed = manifest.datasets[name]
        table = pq.read_table(settings.resolved_landing_dir / landed.path).to_pandas()
        assert landed.rows == len(table) == len(source_keys), name
        assert table[ROW_NUMBER].tolist() == list(range(1, landed.rows + 1)), name
        assert nullable(table[SOURCE_KEY]) == source_keys, name
        # The reason code; the rest of the text is its position (records.describe).
        assert [
            None if error is None else records.reason_of(error)
            for error in nullable(table[READ_ERROR])
        ] == read_errors, name
    assert manifest.datasets["adt"].source == "adt/*.hl7"


def test_extract_system_stops_on_drift_in_an_xml_export_before_landing_anything(
    lab_system, settings_for
):
    mappings, estate = lab_system
    path = estate / "lab" / "ris.xml"
    path.write_bytes(
        path.read_bytes().replace(b"<Kod>", b"<KvaKod>").replace(b"</Kod>", b"</KvaKod>")
    )
    settings = settings_for(estate)

    with pytest.raises(SchemaDriftError, match=r"lab file .*ris\.xml(.|\n)*- Kod(.|\n)*\+ KvaKod"):
        extract_system(load_catalog(mappings), "lab", "b1", AS_OF, settings)

    assert not (settings.resolved_landing_dir / "b1" / "lab").exists()
