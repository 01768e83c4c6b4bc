"""Safety-critical fields fail closed end to end, in every source format.

A small source per format (delimited, fixed width, HL7 v2, XML, JSON lines, SQL on SQLite) plants
a missing, empty, whitespace, unparsable and unexpected protection level, spärr and death date.
The real reader (``read_file_chunks`` / ``read_sql_chunks``) and the real engine
(``transform_chunk``) map it: each planted row is quarantined or loaded with the most protective
value and flagged, as declared; never "not protected", "not blocked" or "alive".
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import sqlalchemy as sa

from etl.catalog import EntityMapping, FileDataset, SqlDataset
from etl.core.safety import SAFETY_TARGETS
from etl.extract.landing import ROW_NUMBER, SOURCE_KEY
from etl.extract.readers import read_file_chunks, read_sql_chunks
from etl.transform.engine import FLAGGED, QUARANTINED, transform_chunk

pytestmark = pytest.mark.unit

REFERENCE_DATE = dt.date(2026, 7, 1)
NO_DUPLICATES = pd.DataFrame(
    {ROW_NUMBER: pd.Series(dtype="int64"), "outcome": pd.Series(dtype="string")}
)
CATALOG = SimpleNamespace(crosswalks={})
COLUMNS = ["KEY", "PATIENT", "SKYDD", "SPARR", "AVLIDEN"]
CERTAIN_KEY = "1"
# Per source key: the planted values (None: the field is absent from the record).
PLANTED = {
    CERTAIN_KEY: {"SKYDD": "S", "SPARR": "N", "AVLIDEN": "20200131"},
    "2": None,  # missing: no such field, key, element, segment or a NULL
    "3": {"SKYDD": "", "SPARR": "", "AVLIDEN": ""},
    "4": {"SKYDD": "  ", "SPARR": "  ", "AVLIDEN": "        "},
    "5": {"SKYDD": "J?", "SPARR": "J?", "AVLIDEN": "2020013?"},
    "6": {"SKYDD": "X", "SPARR": "X", "AVLIDEN": "20201345"},
}
UNCERTAIN_KEYS = [key for key in PLANTED if key != CERTAIN_KEY]
# Target, the source column, its transform, and the value the certain row must load.
TARGETS = {
    "protected_identity": (
        "patient",
        "SKYDD",
        {
            "transform": "map_values",
            "args": {
                "values": {"N": "none", "S": "sekretessmarkering", "F": "skyddad_folkbokforing"}
            },
        },
        "sekretessmarkering",
    ),
    "is_blocked": ("encounter", "SPARR", {"transform": "yes_no"}, False),
    "deceased_date": (
        "patient",
        "AVLIDEN",
        {"transform": "parse_legacy_date", "args": {"formats": ["%Y%m%d"]}},
        dt.date(2020, 1, 31),
    ),
}
NOT_PROTECTED = {"protected_identity": "none", "is_blocked": False, "deceased_date": None}


# --- one small source per format, written from PLANTED -------------------------------------------


def _delimited(folder: Path) -> FileDataset:
    lines = [";".join(COLUMNS)]
    for key, values in PLANTED.items():
        if values is None:
            lines.append(f"{key};P1")  # the record ends early: its last fields are missing
        else:
            lines.append(";".join([key, "P1", values["SKYDD"], values["SPARR"], values["AVLIDEN"]]))
    (folder / "rows.txt").write_text("\n".join(lines) + "\n", encoding="cp1252")
    return FileDataset(
        file="rows.txt", format="delimited", encoding="cp1252", key=["KEY"], columns=COLUMNS
    )


WIDTHS = {"KEY": 2, "PATIENT": 2, "SKYDD": 2, "SPARR": 2, "AVLIDEN": 8}


def _fixed_width(folder: Path) -> FileDataset:
    lines = []
    for key, values in PLANTED.items():
        if values is None:
            lines.append(f"{key:<2}P1")  # one short line: the safety fields are not there
        else:
            row = {"KEY": key, "PATIENT": "P1", **values}
            lines.append("".join(f"{row[name]:<{width}}" for name, width in WIDTHS.items()))
    (folder / "rows.dat").write_text("\r\n".join(lines) + "\r\n", encoding="cp1252")
    return FileDataset(
        file="rows.dat",
        format="fixed_width",
        encoding="cp1252",
        key=["KEY"],
        fields=[{"name": name, "width": width} for name, width in WIDTHS.items()],
    )


def _hl7v2(folder: Path) -> FileDataset:
    messages = []
    for key, values in PLANTED.items():
        segments = [
            f"MSH|^~\\&|PAS|SU|CORE|VGR|202403011200||ADT^A08|{key}|P|2.5",
            f"PID|1|{key}|P1",
        ]
        if values is not None:  # missing: the message has no ZPI segment at all
            segments.append(f"ZPI|{values['SKYDD']}|{values['SPARR']}|{values['AVLIDEN']}")
        messages.append("\r".join(segments) + "\r")
    (folder / "adt.hl7").write_text("".join(messages), encoding="iso-8859-1")
    return FileDataset(
        file="adt.hl7",
        format="hl7v2",
        encoding="iso-8859-1",
        key=["KEY"],
        message_types=["ADT^A08"],
        fields=[
            {"name": "KEY", "path": "PID.2"},
            {"name": "PATIENT", "path": "PID.3"},
            {"name": "SKYDD", "path": "ZPI.1"},
            {"name": "SPARR", "path": "ZPI.2"},
            {"name": "AVLIDEN", "path": "ZPI.3"},
        ],
    )


def _xml(folder: Path) -> FileDataset:
    records = []
    for key, values in PLANTED.items():
        inner = "<Pat>P1</Pat>"
        if values is not None:  # missing: the elements are absent
            inner += "".join(
                f"<{element}>{values[name]}</{element}>"
                for element, name in (
                    ("Skydd", "SKYDD"),
                    ("Sparr", "SPARR"),
                    ("Avliden", "AVLIDEN"),
                )
            )
        records.append(f'  <Patient id="{key}">{inner}</Patient>\n')
    text = f'<?xml version="1.0" encoding="UTF-8"?>\n<Export>\n{"".join(records)}</Export>\n'
    (folder / "rows.xml").write_text(text, encoding="utf-8")
    return FileDataset(
        file="rows.xml",
        format="xml",
        encoding="utf-8",
        key=["KEY"],
        record_path="Export/Patient",
        fields=[
            {"name": "KEY", "path": "@id"},
            {"name": "PATIENT", "path": "Pat"},
            {"name": "SKYDD", "path": "Skydd"},
            {"name": "SPARR", "path": "Sparr"},
            {"name": "AVLIDEN", "path": "Avliden"},
        ],
    )


def _jsonl(folder: Path) -> FileDataset:
    lines = []
    for key, values in PLANTED.items():
        record = {"id": key, "patient": "P1"}
        if values is not None:  # missing: the keys are absent
            record.update(skydd=values["SKYDD"], sparr=values["SPARR"], avliden=values["AVLIDEN"])
        lines.append(json.dumps(record))
    (folder / "rows.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return FileDataset(
        file="rows.jsonl",
        format="jsonl",
        encoding="utf-8",
        key=["KEY"],
        fields=[
            {"name": "KEY", "path": "id"},
            {"name": "PATIENT", "path": "patient"},
            {"name": "SKYDD", "path": "skydd"},
            {"name": "SPARR", "path": "sparr"},
            {"name": "AVLIDEN", "path": "avliden"},
        ],
    )


def _read_files(folder: Path, dataset: FileDataset) -> pd.DataFrame:
    return pd.concat(list(read_file_chunks(folder, dataset, chunk_rows=3)), ignore_index=True)


def _read_sqlite(folder: Path) -> pd.DataFrame:
    engine = sa.create_engine(f"sqlite:///{folder / 'source.sqlite'}")
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "CREATE TABLE patient (KEY TEXT PRIMARY KEY, PATIENT TEXT, SKYDD TEXT, "
                "SPARR TEXT, AVLIDEN TEXT)"
            )
        )
        for key, values in PLANTED.items():
            values = values or {"SKYDD": None, "SPARR": None, "AVLIDEN": None}  # NULL
            connection.execute(
                sa.text("INSERT INTO patient VALUES (:key, 'P1', :SKYDD, :SPARR, :AVLIDEN)"),
                {"key": key, **values},
            )
    dataset = SqlDataset(table="patient", key=["KEY"], columns=COLUMNS)
    try:
        return pd.concat(list(read_sql_chunks(engine, dataset, chunk_rows=3)), ignore_index=True)
    finally:
        engine.dispose()


READERS = {
    "delimited": lambda folder: _read_files(folder, _delimited(folder)),
    "fixed_width": lambda folder: _read_files(folder, _fixed_width(folder)),
    "hl7v2": lambda folder: _read_files(folder, _hl7v2(folder)),
    "xml": lambda folder: _read_files(folder, _xml(folder)),
    "jsonl": lambda folder: _read_files(folder, _jsonl(folder)),
    "sql": _read_sqlite,
}


def landed(frame: pd.DataFrame) -> pd.DataFrame:
    """The reader's rows with the lineage columns landing adds."""
    frame = frame.reset_index(drop=True)
    frame[ROW_NUMBER] = pd.RangeIndex(1, len(frame) + 1, dtype="int64")
    frame[SOURCE_KEY] = frame["KEY"].astype("string").str.strip()
    # A record the reader cannot read whole (a short line) has no values, its key included; the
    # planted keys are 1..6 in file order, so its position names it.
    unreadable = frame[SOURCE_KEY].isna() & frame["_read_error"].notna()
    frame.loc[unreadable, SOURCE_KEY] = frame.loc[unreadable, ROW_NUMBER].astype("string")
    return frame


def mapping_for(target: str, policy: str) -> EntityMapping:
    entity, source, column, _ = TARGETS[target]
    columns = [
        {"target": target, "source": source, **column, "safety": {"on_uncertain": policy}},
        {"target": "patient_id", "source": "PATIENT"} if entity != "patient" else None,
    ]
    return EntityMapping.model_validate(
        {
            "system": "demo",
            "entity": entity,
            "dataset": "rows",
            "columns": [c for c in columns if c],
        }
    )


def cases():
    return [
        pytest.param(source_format, target, policy, id=f"{source_format}-{target}-{policy}")
        for source_format in READERS
        for target in TARGETS
        for policy in ("quarantine", "most_protective")
        if policy == "quarantine" or SAFETY_TARGETS[target].most_protective is not None
    ]


@pytest.mark.parametrize(("source_format", "target", "policy"), cases())
def test_planted_uncertain_safety_values_never_load_as_not_protected(
    tmp_path, source_format, target, policy
):
    chunk = landed(READERS[source_format](tmp_path))
    assert sorted(chunk[SOURCE_KEY]) == sorted(PLANTED), "the reader lost or merged a record"
    result = transform_chunk(
        chunk, mapping_for(target, policy), CATALOG, "b1", REFERENCE_DATE, {}, NO_DUPLICATES
    )
    loaded = result.rows.set_index("source_key")[target]
    outcomes = result.outcomes.set_index(SOURCE_KEY)

    # The certain row loads its own value, unflagged: the reader and mapping do work.
    assert loaded[CERTAIN_KEY] == TARGETS[target][3]
    assert CERTAIN_KEY not in outcomes.index
    for key in UNCERTAIN_KEYS:
        outcome = outcomes.loc[key]
        if policy == "quarantine" or outcome["outcome"] == QUARANTINED:
            assert key not in loaded.index, f"row {key} loaded"
            assert outcome["outcome"] == QUARANTINED
            # A record the reader could not read whole is quarantined as unreadable instead.
            assert outcome["reason"] in {f"safety_field_uncertain:{target}", "unreadable_record"}
        else:
            assert loaded[key] == SAFETY_TARGETS[target].most_protective, f"row {key}"
            assert loaded[key] != NOT_PROTECTED[target]
            assert (outcome["outcome"], outcome["check_name"]) == (
                FLAGGED,
                f"safety_field_uncertain:{target}",
            )
