"""JSON lines: dotted paths, values as the source wrote them, bad lines as rows, drift."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from etl.catalog import FileDataset
from etl.extract.readers import SchemaDriftError, check_file_schema, read_file_chunks
from etl.extract.records import READ_ERROR, reason_of

pytestmark = pytest.mark.unit


def vaccination(vaccination_id: str, **extra) -> str:
    record = {
        "id": vaccination_id,
        "patient": {"id": "P1", "pnr": "199001012385"},
        "vaccine": {"atc": "J07BB02", "name": "Influensavaccin"},
        "dose": 1,
        "given_at": "2024-10-01T09:30",
        **extra,
    }
    return json.dumps(record, ensure_ascii=False)


def jsonl_dataset(**overrides) -> FileDataset:
    spec = {
        "file": "vaccination.jsonl",
        "format": "jsonl",
        "encoding": "utf-8",
        "key": ["VACCINATION_ID"],
        "fields": [
            {"name": "VACCINATION_ID", "path": "id"},
            {"name": "PATIENT_ID", "path": "patient.id"},
            {"name": "PERSONNUMMER", "path": "patient.pnr"},
            {"name": "ATC", "path": "vaccine.atc"},
            {"name": "VACCINE_NAME", "path": "vaccine.name"},
            {"name": "DOSE", "path": "dose"},
            {"name": "GIVEN_AT", "path": "given_at"},
        ],
    }
    return FileDataset.model_validate({**spec, **overrides})


def write(folder: Path, lines: list[str], encoding: str = "utf-8") -> Path:
    path = folder / "vaccination.jsonl"
    path.write_bytes("".join(line + "\n" for line in lines).encode(encoding))
    return path


def read_all(folder: Path, dataset: FileDataset, chunk_rows: int = 1000) -> pd.DataFrame:
    return pd.concat(list(read_file_chunks(folder, dataset, chunk_rows)), ignore_index=True)


def rows(frame: pd.DataFrame, *columns: str) -> list[tuple]:
    return [
        tuple(None if pd.isna(value) else value for value in row)
        for row in frame[list(columns)].itertuples(index=False)
    ]


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ('"J07BB02"', "J07BB02"),
        ("1.50", "1.50"),  # the number's own text, not a float's
        ("12345678901234567890", "12345678901234567890"),
        ("1e3", "1e3"),
        ("-0", "-0"),
        ("true", "true"),
        ("false", "false"),
        ("null", None),
        ('""', ""),
        ('{"b": 1.0, "c": [true, null, "å"]}', '{"b":1.0,"c":[true,null,"å"]}'),
        ("[]", "[]"),
        ('"rad ett\\nrad två"', "rad ett\nrad två"),
    ],
)
def test_values_become_text_as_the_source_wrote_them(tmp_path, written, value):
    write(tmp_path, ['{"id": "V1", "a": ' + written + "}"])
    dataset = jsonl_dataset(
        fields=[{"name": "VACCINATION_ID", "path": "id"}, {"name": "A", "path": "a"}]
    )

    frame = read_all(tmp_path, dataset)

    result = frame["A"].iloc[0]
    assert (None if pd.isna(result) else result) == value


def test_nested_keys_missing_keys_and_a_non_object_parent(tmp_path):
    write(
        tmp_path,
        [
            vaccination("V1"),
            vaccination("V2", patient={"id": "P2"}),  # no pnr
            vaccination("V3", vaccine="J07BB02"),  # a string where an object was
        ],
    )

    frame = read_all(tmp_path, jsonl_dataset())

    assert rows(frame, "VACCINATION_ID", "PERSONNUMMER", "ATC", "DOSE") == [
        ("V1", "199001012385", "J07BB02", "1"),
        ("V2", None, "J07BB02", "1"),
        (None, None, None, None),  # not "no ATC": the object it was read from is gone
    ]
    assert frame[READ_ERROR].iloc[2] == (
        "unexpected_field (vaccination.jsonl, line 3, record 3): vaccine not declared, "
        "declared vaccine.atc, vaccine.name absent"
    )
    assert list(frame.columns) == [*jsonl_dataset().column_names, READ_ERROR]


def test_bad_lines_become_rows_blank_lines_are_skipped(tmp_path):
    write(
        tmp_path,
        [
            vaccination("V1"),
            "",
            '{"id": "V2", "patient": ',  # cut off
            "   ",
            "[1, 2]",  # JSON, but not an object
            "NaN",  # Python reads it, JSON has no NaN
            vaccination("V3"),
        ],
    )

    frame = read_all(tmp_path, jsonl_dataset())

    assert frame["VACCINATION_ID"].tolist()[0] == "V1"
    assert frame["VACCINATION_ID"].tolist()[-1] == "V3"
    assert [reason_of(error) for error in frame[READ_ERROR].fillna("").tolist()] == [
        "",
        "invalid_json",
        "invalid_json",
        "invalid_json",
        "",
    ]
    assert frame.iloc[1:4].drop(columns=READ_ERROR).isna().all().all()


def test_bad_bytes_make_their_record_unreadable_naming_the_key(tmp_path):
    path = write(tmp_path, [vaccination("V1", vaccine={"atc": "J07BB02", "name": "Vaccin X"})])
    path.write_bytes(path.read_bytes().replace(b"Vaccin X", b"Vaccin \xff"))

    frame = read_all(tmp_path, jsonl_dataset())

    assert frame[READ_ERROR].tolist() == [
        "undecodable_bytes (vaccination.jsonl, line 1, record 1): "
        "bytes not valid utf-8 in vaccine.name"
    ]
    assert frame.drop(columns=READ_ERROR).isna().all().all()


def test_chunks_of_two_hold_the_same_rows_as_one_chunk(tmp_path):
    write(tmp_path, [vaccination(f"V{n}") for n in range(1, 6)])

    chunks = list(read_file_chunks(tmp_path, jsonl_dataset(), 2))

    assert [len(chunk) for chunk in chunks] == [2, 2, 1]
    pd.testing.assert_frame_equal(
        pd.concat(chunks, ignore_index=True), read_all(tmp_path, jsonl_dataset())
    )


# --- schema drift -----------------------------------------------------------------------------


def test_a_key_absent_from_some_objects_is_not_drift(tmp_path):
    write(tmp_path, [vaccination("V1", patient={"id": "P1"}), vaccination("V2")])

    check_file_schema("vaccin", tmp_path, jsonl_dataset())


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param(
            [vaccination("V1").replace('"atc"', '"atc_code"')],
            ["- vaccine.atc   (declared", "+ vaccine.atc_code   (in the source"],
            id="renamed-nested-key",
        ),
        pytest.param(
            [vaccination("V1", batch={"number": "AB12"})],
            ["+ batch.number   (in the source"],
            id="unexpected-nested-key",
        ),
        pytest.param(
            [vaccination("V1").replace('"dose": 1, ', "")],
            ["- dose   (declared"],
            id="missing-key",
        ),
        pytest.param(
            ["not json", "{broken"],
            ["no JSON object among the first 2 line(s)"],
            id="no-object-at-all",
        ),
    ],
)
def test_drift_names_the_file_and_the_paths(tmp_path, lines, expected):
    path = write(tmp_path, lines)

    with pytest.raises(SchemaDriftError) as error:
        check_file_schema("vaccin", tmp_path, jsonl_dataset())

    message = str(error.value)
    assert f"vaccin file {path}" in message
    for part in expected:
        assert part in message
