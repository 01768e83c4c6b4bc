"""HL7 v2 archives: rows per message or per OBX, paths, framing, escapes, bad messages, drift."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from etl.catalog import FileDataset, MappingError
from etl.extract.readers import SchemaDriftError, check_file_schema, read_file_chunks
from etl.extract.records import READ_ERROR, reason_of

pytestmark = pytest.mark.unit

# Skatteverket test personnummer and a VGR reservnummer: never a real person.
PNR_1, PNR_2, RESERVNUMMER = "199001012385", "199001022384", "19810829M071"


def message(*segments: str) -> str:
    return "\r".join(segments) + "\r"


def oru(control_id: str, pnr: str = PNR_1) -> str:
    return message(
        f"MSH|^~\\&|LIS|SU|CORE|VGR|202403011200||ORU^R01^ORU_R01|{control_id}|P|2.5",
        f"PID|1||{pnr}^^^SKV^PN||Åström^Göran",
        "OBR|1|ORD1|LIS1|BLOD^Blodstatus",
        "OBX|1|NM|NPU02319^Hb||135|g/L|117-153",
        "OBX|2|NM|NPU03568^Trombocyter||250|x10(9)/L",
        "NTE|1||Analyserad på akutlab",
        "OBR|2|ORD2|LIS2|ELST^Elektrolyter",
        "OBX|1|NM|NPU03429^Natrium||140|mmol/L",
    )


def adt(control_id: str, event: str = "A01", pnr: str = PNR_1, name: str = "Åström^Göran") -> str:
    return message(
        f"MSH|^~\\&|PAS|SU|CORE|VGR|202403011200||ADT^{event}|{control_id}|P|2.5",
        f"EVN|{event}|202403011200",
        f"PID|1|P{control_id}|{pnr}^^^SKV^PN||{name}||19900101|F",
        "PV1|1|I|MED^^^SU",
    )


def oru_dataset(**overrides) -> FileDataset:
    spec = {
        "file": "lab.hl7",
        "format": "hl7v2",
        "encoding": "iso-8859-1",
        "key": ["MESSAGE_ID", "ORDER_SET", "RESULT_SET"],
        "message_types": ["ORU^R01"],
        "row_segment": "OBX",
        "fields": [
            {"name": "MESSAGE_ID", "path": "MSH.10"},
            {"name": "PERSONNUMMER", "path": "PID.3.1"},
            {"name": "ORDER_SET", "path": "OBR.1"},
            {"name": "PANEL", "path": "OBR.4.2"},
            {"name": "RESULT_SET", "path": "OBX.1"},
            {"name": "ANALYSIS", "path": "OBX.3.1"},
            {"name": "VALUE", "path": "OBX.5"},
            {"name": "UNIT", "path": "OBX.6"},
        ],
    }
    return FileDataset.model_validate({**spec, **overrides})


def adt_dataset(**overrides) -> FileDataset:
    spec = {
        "file": "adt.hl7",
        "format": "hl7v2",
        "encoding": "iso-8859-1",
        "key": ["PATIENT_NUMBER"],
        "message_types": ["ADT^A01"],
        "fields": [
            {"name": "PATIENT_NUMBER", "path": "PID.2"},
            {"name": "PERSONNUMMER", "path": "PID.3.1"},
            {"name": "FAMILY_NAME", "path": "PID.5.1"},
            {"name": "GIVEN_NAME", "path": "PID.5.2"},
            {"name": "SEX", "path": "PID.8"},
            {"name": "WARD", "path": "PV1.3.1"},
            {"name": "EVENT", "path": "MSH.9"},
        ],
    }
    return FileDataset.model_validate({**spec, **overrides})


def write(folder: Path, name: str, text: str, encoding: str = "iso-8859-1") -> Path:
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def read_all(folder: Path, dataset: FileDataset, chunk_rows: int = 1000) -> pd.DataFrame:
    chunks = list(read_file_chunks(folder, dataset, chunk_rows))
    return pd.concat(chunks, ignore_index=True)


def rows(frame: pd.DataFrame, *columns: str) -> list[tuple]:
    return [
        tuple(None if pd.isna(value) else value for value in row)
        for row in frame[list(columns)].itertuples(index=False)
    ]


def reasons(frame: pd.DataFrame, *columns: str) -> list[tuple]:
    """Like ``rows``, with ``_read_error`` reduced to its reason code."""
    return [
        tuple(
            reason_of(value) if name == READ_ERROR and value else value
            for name, value in zip(columns, row, strict=True)
        )
        for row in rows(frame, *columns)
    ]


# --- rows -------------------------------------------------------------------------------------


def test_each_obx_is_a_row_carrying_its_own_obr(tmp_path):
    write(tmp_path, "lab.hl7", oru("LAB1"))

    frame = read_all(tmp_path, oru_dataset())

    assert list(frame.columns) == [*oru_dataset().column_names, READ_ERROR]
    assert all(dtype == "string" for dtype in frame.dtypes)
    assert rows(frame, "ORDER_SET", "PANEL", "RESULT_SET", "ANALYSIS", "VALUE", "UNIT") == [
        ("1", "Blodstatus", "1", "NPU02319", "135", "g/L"),
        ("1", "Blodstatus", "2", "NPU03568", "250", "x10(9)/L"),
        ("2", "Elektrolyter", "1", "NPU03429", "140", "mmol/L"),
    ]
    assert set(frame["MESSAGE_ID"]) == {"LAB1"} and set(frame["PERSONNUMMER"]) == {PNR_1}
    assert frame[READ_ERROR].isna().all()


def test_adt_gives_one_row_per_message(tmp_path):
    write(tmp_path, "adt.hl7", adt("1") + adt("2", pnr=PNR_2, name="Öberg^Åsa"))

    frame = read_all(tmp_path, adt_dataset())

    assert rows(frame, "PATIENT_NUMBER", "PERSONNUMMER", "FAMILY_NAME", "GIVEN_NAME") == [
        ("P1", PNR_1, "Åström", "Göran"),
        ("P2", PNR_2, "Öberg", "Åsa"),
    ]
    assert rows(frame, "SEX", "WARD", "EVENT") == [("F", "MED", "ADT^A01")] * 2


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("PID.3", f"{PNR_1}^^^SKV^PN"),  # a whole field as written
        ("PID.3.4", "SKV"),
        ("PID.5.2", "Göran"),
        ("MSH.9.2", "R01"),
        ("MSH.1", "|"),
        ("OBX.5.2", None),  # a plain value has no second component
        ("OBX.30", None),  # past the segment's last field
        ("PID.4", None),  # empty field
        ("ZPV.1", None),  # no such segment in the message
        ("NTE.3", "Analyserad på akutlab"),  # after the first OBX, so not 'preceding' it
    ],
    ids=lambda value: str(value),
)
def test_field_paths_resolve_or_give_na(tmp_path, path, expected):
    write(tmp_path, "lab.hl7", oru("LAB1"))
    dataset = oru_dataset(
        key=["MESSAGE_ID"],
        fields=[{"name": "MESSAGE_ID", "path": "MSH.10"}, {"name": "VALUE", "path": path}],
    )

    frame = read_all(tmp_path, dataset)

    value = frame["VALUE"].iloc[0]
    assert (None if pd.isna(value) else value) == expected


# --- framing, line endings, encodings, escapes ------------------------------------------------


@pytest.mark.parametrize(
    "frame_messages",
    [
        pytest.param(lambda ms: "".join(ms), id="consecutive-cr"),
        pytest.param(lambda ms: "".join(ms).replace("\r", "\r\n"), id="consecutive-crlf"),
        pytest.param(lambda ms: "".join(ms).replace("\r", "\n"), id="consecutive-lf"),
        pytest.param(lambda ms: "".join(f"\x0b{m}\x1c\r" for m in ms), id="mllp"),
        pytest.param(lambda ms: "".join(f"\x0b{m}\x1c\r\n" for m in ms), id="mllp-crlf"),
        pytest.param(lambda ms: "\n\n".join(ms) + "\n", id="blank-lines-between"),
        pytest.param(
            lambda ms: "FHS|^~\\&\rBHS|^~\\&\r" + "".join(ms) + "BTS|2\rFTS|1\r",
            id="batch-envelope",
        ),
    ],
)
def test_framing_and_line_endings_give_the_same_rows(tmp_path, frame_messages):
    write(tmp_path, "lab.hl7", frame_messages([oru("LAB1"), oru("LAB2", pnr=PNR_2)]))

    frame = read_all(tmp_path, oru_dataset())

    assert rows(frame, "MESSAGE_ID", "ORDER_SET", "RESULT_SET", READ_ERROR) == [
        ("LAB1", "1", "1", None),
        ("LAB1", "1", "2", None),
        ("LAB1", "2", "1", None),
        ("LAB2", "1", "1", None),
        ("LAB2", "1", "2", None),
        ("LAB2", "2", "1", None),
    ]


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("Hb \\F\\ Hct", "Hb | Hct"),
        ("3\\S\\5", "3^5"),
        ("Ja \\T\\ Nej", "Ja & Nej"),
        ("A\\R\\B", "A~B"),
        ("C:\\E\\temp", "C:\\temp"),
        ("\\X41\\", "A"),
        ("ingen escape", "ingen escape"),
        ("rad ett\\.br\\rad två", "rad ett\nrad två"),
        ("\\H\\viktigt\\N\\ \\.sp2\\slut", "viktigt \n\nslut"),
        ("\\XC5\\\\X0D0A\\", "Å\r\n"),  # hex in the dataset's encoding; line breaks are text
    ],
)
def test_escape_sequences_are_decoded(tmp_path, written, value):
    text = oru("LAB1").replace("OBX|1|NM|NPU02319^Hb||135|", f"OBX|1|ST|NPU02319^Hb||{written}|")
    write(tmp_path, "lab.hl7", text)

    frame = read_all(tmp_path, oru_dataset())

    assert frame["VALUE"].iloc[0] == value


@pytest.mark.parametrize(
    "written",
    [
        "lokal \\Zabc\\ kod",  # a locally defined escape: meaning unknown here
        "\\M2842\\x",  # multi-byte character set switch
        "tom \\\\ sekvens",
        "\\.sp1000\\",  # absurd repetition
        "\\X4\\",  # odd number of hex digits
        "135 \\F",  # unterminated at the end of the field
    ],
)
def test_escape_sequences_that_cannot_be_decoded_make_the_message_unreadable(tmp_path, written):
    text = oru("LAB1").replace("OBX|1|NM|NPU02319^Hb||135|", f"OBX|1|ST|NPU02319^Hb||{written}|")
    write(tmp_path, "lab.hl7", text + oru("LAB2"))

    frame = read_all(tmp_path, oru_dataset())

    assert reasons(frame, "MESSAGE_ID", "VALUE", READ_ERROR) == [
        (None, None, "invalid_escape"),
        ("LAB2", "135", None),
        ("LAB2", "250", None),
        ("LAB2", "140", None),
    ]


def test_iso_8859_1_bytes_decode_to_swedish_letters_and_bad_bytes_make_the_message_unreadable(
    tmp_path,
):
    write(tmp_path, "adt.hl7", adt("1"), encoding="iso-8859-1")
    assert "Å".encode("iso-8859-1") in (tmp_path / "adt.hl7").read_bytes()

    latin = read_all(tmp_path, adt_dataset())
    as_utf8 = read_all(tmp_path, adt_dataset(encoding="utf-8"))

    assert rows(latin, "FAMILY_NAME", "GIVEN_NAME") == [("Åström", "Göran")]
    # Was: the names read as "\ufffdstr\ufffdm" / "G\ufffdran" (silent repair, issue 10).
    assert rows(as_utf8, "FAMILY_NAME", "GIVEN_NAME", READ_ERROR) == [
        (
            None,
            None,
            "undecodable_bytes (adt.hl7, line 1, record 1): undecodable bytes in PID.5.1 (line 3)",
        )
    ]


def test_a_bare_lf_in_a_cr_archive_ends_the_line_so_the_cut_message_is_unreadable(tmp_path):
    # Was: the LF was kept as text inside the field, which merged messages when the line
    # terminator changed mid-file (issue 10). Every CR, LF and CRLF now ends a line.
    text = oru("LAB1").replace("Analyserad på akutlab", "rad ett\nrad två") + oru("LAB2")
    write(tmp_path, "lab.hl7", text)
    dataset = oru_dataset(
        key=["MESSAGE_ID"],
        fields=[{"name": "MESSAGE_ID", "path": "MSH.10"}, {"name": "NOTE", "path": "NTE.3"}],
    )

    frame = read_all(tmp_path, dataset)

    assert rows(frame, "MESSAGE_ID", "NOTE", READ_ERROR)[0] == (
        None,
        None,
        "invalid_hl7_message (lab.hl7, line 1, record 1): line 7 is not a segment",
    )
    assert (
        rows(frame, "MESSAGE_ID", "NOTE", READ_ERROR)[1:]
        == [("LAB2", "Analyserad på akutlab", None)] * 3
    )


# --- bad messages -----------------------------------------------------------------------------


def test_unexpected_and_garbage_messages_become_read_error_rows_and_the_file_goes_on(tmp_path):
    garbage_frame = "\x0bDETTA ÄR INTE HL7\rMEN TEXT\x1c\r"
    no_type = message("MSH|^~\\&|LIS|SU|CORE|VGR|202403011200||", "PID|1||x")
    not_a_segment = oru("LAB4").replace("NTE|1||", "nte utan segment: ")
    write(
        tmp_path,
        "lab.hl7",
        oru("LAB1")
        + adt("A8", event="A08")
        + garbage_frame
        + no_type
        + not_a_segment
        + oru("LAB2"),
    )

    frame = read_all(tmp_path, oru_dataset())

    assert reasons(frame, "MESSAGE_ID", READ_ERROR) == [
        ("LAB1", None),
        ("LAB1", None),
        ("LAB1", None),
        (None, "unexpected_message_type"),
        (None, "invalid_hl7_message"),
        (None, "invalid_hl7_message"),
        (None, "invalid_hl7_message"),
        ("LAB2", None),
        ("LAB2", None),
        ("LAB2", None),
    ]
    errors = frame[frame[READ_ERROR].notna()]
    assert errors.drop(columns=READ_ERROR).isna().all().all(), "fields of a bad row stay empty"


def test_an_unexpected_type_is_named_only_when_it_looks_like_a_message_type(tmp_path):
    shifted = adt("2").replace("||ADT^A01|2|", "||Åström^Göran|2|")
    write(tmp_path, "adt.hl7", adt("1", event="A08") + shifted + adt("3"))

    frame = read_all(tmp_path, adt_dataset())

    assert rows(frame, "PATIENT_NUMBER", READ_ERROR) == [
        (
            None,
            "unexpected_message_type (adt.hl7, line 1, record 1): "
            "ADT^A08 is not a declared message type",
        ),
        (
            None,
            "unexpected_message_type (adt.hl7, line 5, record 2): "
            "MSH.9 is not a declared message type",
        ),
        ("P3", None),
    ]


def test_text_before_the_first_message_is_one_invalid_row(tmp_path):
    write(tmp_path, "adt.hl7", "skräp i början\rmer skräp\r" + adt("1"))

    frame = read_all(tmp_path, adt_dataset())

    assert reasons(frame, "PATIENT_NUMBER", READ_ERROR) == [
        (None, "invalid_hl7_message"),
        ("P1", None),
    ]


def test_a_message_without_its_row_segment_is_a_read_error_row_not_lost(tmp_path):
    without_obx = message(
        "MSH|^~\\&|LIS|SU|CORE|VGR|202403011200||ORU^R01|LAB9|P|2.5",
        f"PID|1||{PNR_1}",
        "OBR|1|ORD1|LIS1|BLOD^Blodstatus",
    )
    write(tmp_path, "lab.hl7", without_obx + oru("LAB1"))

    frame = read_all(tmp_path, oru_dataset())

    assert reasons(frame, "MESSAGE_ID", READ_ERROR)[:2] == [
        (None, "missing_row_segment"),
        ("LAB1", None),
    ]


def test_a_declared_type_without_trigger_event_matches_every_event(tmp_path):
    write(tmp_path, "adt.hl7", adt("1", event="A01") + adt("2", event="A08"))

    frame = read_all(tmp_path, adt_dataset(message_types=["ADT"]))

    assert rows(frame, "EVENT", READ_ERROR) == [("ADT^A01", None), ("ADT^A08", None)]


# --- chunking ---------------------------------------------------------------------------------


def test_chunks_of_two_hold_the_same_rows_as_one_chunk(tmp_path):
    write(tmp_path, "adt.hl7", "".join(adt(str(n)) for n in range(1, 6)))

    chunks = list(read_file_chunks(tmp_path, adt_dataset(), 2))
    whole = read_all(tmp_path, adt_dataset(), chunk_rows=100)

    assert [len(chunk) for chunk in chunks] == [2, 2, 1]
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole)


# --- schema drift -----------------------------------------------------------------------------


def test_a_matching_archive_passes_the_drift_check(tmp_path):
    write(tmp_path, "lab.hl7", adt("A8", event="A08") + oru("LAB1"))

    check_file_schema("lis", tmp_path, oru_dataset())


@pytest.mark.parametrize(
    ("archive", "overrides", "expected"),
    [
        pytest.param(
            adt("1", event="A08"),
            {},
            r"no message of type ORU\^R01 that parses among the first 1 .*ADT\^A08",
            id="no-message-of-a-declared-type",
        ),
        pytest.param(
            "",
            {},
            r"no message of type ORU\^R01 .*none that parse",
            id="empty-archive",
        ),
        pytest.param(
            oru("LAB1"),
            {
                "fields": [
                    {"name": "MESSAGE_ID", "path": "MSH.10"},
                    {"name": "WARD", "path": "PV1.3"},
                ]
            },
            r"- PV1 .*declared in the spec",
            id="declared-segment-missing",
        ),
        pytest.param(
            oru("LAB1"),
            {"row_segment": "ZRS"},
            r"- ZRS ",
            id="row-segment-missing",
        ),
    ],
)
def test_drift_names_the_file_and_what_is_missing(tmp_path, archive, overrides, expected):
    write(tmp_path, "lab.hl7", archive)
    dataset = oru_dataset(key=["MESSAGE_ID"], **overrides) if "fields" in overrides else None
    dataset = dataset or oru_dataset(**overrides)

    with pytest.raises(SchemaDriftError, match=expected) as error:
        check_file_schema("lis", tmp_path, dataset)

    assert f"lis file {tmp_path / 'lab.hl7'}" in str(error.value)


def test_a_malformed_field_path_is_a_mapping_error_naming_the_field(tmp_path):
    write(tmp_path, "lab.hl7", oru("LAB1"))
    dataset = oru_dataset(
        key=["MESSAGE_ID"],
        fields=[{"name": "MESSAGE_ID", "path": "MSH.10"}, {"name": "BAD", "path": "OBX-5"}],
    )

    with pytest.raises(MappingError, match=r"field 'BAD': path 'OBX-5'"):
        check_file_schema("lis", tmp_path, dataset)


def test_an_escape_that_cannot_be_decoded_makes_the_message_unreadable_without_its_value(
    tmp_path, caplog
):
    # Was: python-hl7 dropped the character-set escape \C2842\ and the text after it was read
    # as if decoded (issue 10: no silent repair); the library's warning is gone with it.
    secret = "Hemlig anteckning"
    text = oru("LAB1").replace("Analyserad på akutlab", f"{secret} \\C2842\\ slut")
    write(tmp_path, "lab.hl7", text)
    dataset = oru_dataset(
        key=["MESSAGE_ID"],
        fields=[{"name": "MESSAGE_ID", "path": "MSH.10"}, {"name": "NOTE", "path": "NTE.3"}],
    )

    with caplog.at_level("DEBUG"):
        frame = read_all(tmp_path, dataset)

    assert rows(frame, "MESSAGE_ID", "NOTE", READ_ERROR) == [
        (
            None,
            None,
            "invalid_escape (lab.hl7, line 1, record 1): "
            "character set or local escape sequence in NTE.3 (line 6)",
        )
    ]
    assert all(secret not in record.getMessage() for record in caplog.records)
