"""The SQL corpus: values nobody can trust make their row unreadable, never loaded as they are."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from etl.catalog import load_catalog
from etl.extract import physical, readers
from etl.extract.landing import READ_ERROR, SOURCE_KEY, extract_system
from etl.extract.records import ReadStats, reason_of
from tests.corpus import CorpusCase, Unreadable, reading
from tests.corpus.sql import CASES

pytestmark = pytest.mark.unit


def _read(case: CorpusCase, tmp_path: Path) -> tuple[pd.DataFrame, ReadStats, int]:
    with reading.sql_connection(tmp_path, case) as (connection, dataset):
        stats = ReadStats(Path(dataset.table))
        counted = physical.count_table(connection, dataset.table)
        chunks = list(readers.read_table(connection, dataset, 2, stats))
    frame = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()
    return frame, stats, counted


def _value(value) -> str | None:
    return None if pd.isna(value) else value


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_case_reads_exactly_as_declared(case: CorpusCase, tmp_path):
    frame, stats, counted = _read(case, tmp_path)
    columns = case.dataset["columns"]

    assert counted == case.physical == stats.records == len(frame)
    assert stats.unreadable == len(case.unreadable)
    if not len(frame):
        return
    readable = frame[frame[READ_ERROR].isna()]
    assert [{c: _value(row[c]) for c in columns} for _, row in readable.iterrows()] == case.rows
    unreadable = frame[frame[READ_ERROR].notna()]
    found = [
        Unreadable(reason_of(text), int(re.search(r"record (\d+)", text).group(1)))
        for text in unreadable[READ_ERROR]
    ]
    assert found == case.unreadable
    # Nothing of an unreadable row is passed on, its key included.
    assert unreadable[columns].isna().all().all()


def test_the_read_error_names_table_row_and_column_but_never_the_value(tmp_path):
    case = next(c for c in CASES if c.name == "a NUL byte in a key")
    frame, _, _ = _read(case, tmp_path)

    error = frame[READ_ERROR].dropna().item()
    assert error == "nul_in_field (patient, record 2): column PATIENT_ID holds a NUL character"


SYSTEM_YAML = """
system: kassa
title: A SQL source with one table
format: sql
connection:
  default_url: "sqlite:///{estate_dir}/kassa.sqlite"
datasets:
  patient:
    table: patient
    key: [PATIENT_ID]
    columns: [PATIENT_ID, FAMILY_NAME, NOTE]
"""

PATIENT_YAML = """
dataset: patient
columns:
  - {target: family_name, source: FAMILY_NAME}
"""


def test_landing_records_count_star_beside_the_rows_read_and_quarantines_bad_keys(
    tmp_path, settings_for
):
    mappings = tmp_path / "mappings"
    (mappings / "kassa").mkdir(parents=True)
    (mappings / "kassa" / "system.yaml").write_text(SYSTEM_YAML, encoding="utf-8")
    (mappings / "kassa" / "patient.yaml").write_text(textwrap.dedent(PATIENT_YAML))
    estate = tmp_path / "estate"
    estate.mkdir()
    case = next(c for c in CASES if c.name == "a NUL byte in a key")
    (estate / "kassa.sqlite").write_bytes(case.content)

    settings = settings_for(estate)
    manifest = extract_system(load_catalog(mappings), "kassa", "b1", dt.date(2026, 7, 1), settings)

    landed = manifest.datasets["patient"]
    assert [s.model_dump() for s in landed.sources] == [
        {
            "path": "patient",
            # The database file as the table was read: a later delta compares it.
            "bytes": len(case.content),
            "sha256": hashlib.sha256(case.content).hexdigest(),
            "physical_records": 3,
            "records": 3,
            "unreadable": 1,
            "stray": 0,
            "rows": 3,
            "unknown_fields": {},
        }
    ]
    table = pq.read_table(settings.resolved_landing_dir / landed.path).to_pandas()
    assert [_value(v) for v in table[SOURCE_KEY]] == ["P1", None, "P3"]
