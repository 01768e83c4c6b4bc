"""StageWriter's encodings: the rows read back are the rows written; id columns keep statistics;
Snappy except for text it barely shortens."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.transform.stage import StageWriter, _is_incompressible, writer_options

pytestmark = pytest.mark.unit

SCHEMA = pa.schema(
    [
        ("encounter_id", pa.string()),
        ("status", pa.string()),
        ("note", pa.string()),
        ("_row_number", pa.int64()),
    ]
)


def _table(start: int, rows: int) -> pa.Table:
    numbers = range(start, start + rows)
    return pa.table(
        {
            "encounter_id": [f"{n:032x}" for n in numbers],
            "status": ["finished" if n % 3 else None for n in numbers],
            "note": [f"text {n}" if n % 5 else None for n in numbers],
            "_row_number": list(numbers),
        },
        schema=SCHEMA,
    )


def test_rows_read_back_as_written_and_id_columns_keep_statistics(tmp_path):
    path = tmp_path / "encounter.parquet"
    empty = tmp_path / "empty.parquet"
    writer = StageWriter({"rows": (path, SCHEMA), "none": (empty, SCHEMA)})
    chunks = [_table(1, 3000), _table(3001, 10), _table(3011, 0)]
    for chunk in chunks:
        writer.write("rows", chunk)
    writer.close()
    assert pq.read_table(path).equals(pa.concat_tables(chunks))
    assert pq.read_schema(path).equals(SCHEMA)
    assert pq.read_table(empty).equals(SCHEMA.empty_table())
    assert not list(tmp_path.glob("*.tmp"))
    group = pq.ParquetFile(path).metadata.row_group(0)
    columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    # Readers scan stage files with a filter on id columns (etl/validate/context.py).
    assert columns["encounter_id"].is_stats_set
    assert columns["encounter_id"].statistics.min == f"{1:032x}"
    assert not columns["note"].is_stats_set


def test_dictionary_only_for_text_of_few_distinct_values():
    options = writer_options(SCHEMA, _table(1, 3000))
    assert options["use_dictionary"] == ["status"]
    assert options["write_statistics"] == ["encounter_id"]
    assert writer_options(SCHEMA, None)["use_dictionary"] == []


def _digest(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()[:32]


def test_snappy_except_for_text_it_barely_shortens(tmp_path):
    """Random hex (ids, content hashes) is written plain: Snappy finds nothing to shorten in it.
    Text with repeats, dictionary columns and numbers stay Snappy-compressed."""
    schema = pa.schema([("diagnosis_id", pa.string()), ("content_hash", pa.large_string())])
    schema = schema.append(pa.field("patient_id", pa.string())).append(pa.field("n", pa.int64()))
    schema = schema.append(pa.field("status", pa.string()))
    rows = 5000
    table = pa.table(
        {
            "diagnosis_id": [_digest(n) for n in range(rows)],
            "content_hash": [_digest(-n) for n in range(rows)],
            "patient_id": [_digest(n // 4) for n in range(rows)],  # each four times in a row
            "n": list(range(rows)),
            "status": ["active" if n % 2 else "resolved" for n in range(rows)],
        },
        schema=schema,
    )
    options = writer_options(schema, table)
    assert options["compression"] == {
        "diagnosis_id": "none",
        "content_hash": "none",
        "patient_id": "snappy",
        "n": "snappy",
        "status": "snappy",
    }
    assert options["use_dictionary"] == ["status"]
    path = tmp_path / "diagnosis.parquet"
    writer = StageWriter({"rows": (path, schema)})
    writer.write("rows", table)
    writer.close()
    assert pq.read_table(path).equals(table)
    group = pq.ParquetFile(path).metadata.row_group(0)
    written = {group.column(i).path_in_schema: group.column(i).compression for i in range(5)}
    assert written == {
        "diagnosis_id": "UNCOMPRESSED",
        "content_hash": "UNCOMPRESSED",
        "patient_id": "SNAPPY",
        "n": "SNAPPY",
        "status": "SNAPPY",
    }


def test_the_sample_tells_from_a_slice_its_own_bytes():
    """A slice of values is judged by its own bytes, not by the buffer it shares."""
    repetitive = ["same text over and over"] * 4000
    random_hex = [_digest(n) for n in range(4000)]
    values = pa.array(random_hex + repetitive)
    assert _is_incompressible(values.slice(0, 3000))
    assert not _is_incompressible(values.slice(4000, 3000))
    assert not _is_incompressible(values.slice(3000, 2000))  # half and half
    assert not _is_incompressible(pa.array(["", None, ""]))  # no bytes at all
    mixed = pa.table(
        {"note": pa.array([f"{h} {r}" for h, r in zip(random_hex, repetitive, strict=True)])}
    )
    assert writer_options(mixed.schema, mixed.slice(100, 2000))["compression"] == {"note": "snappy"}


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.text(max_size=40)), min_size=1, max_size=300),
    large=st.booleans(),
    cut=st.integers(min_value=0, max_value=300),
)
def test_any_text_reads_back_as_written_whatever_its_compression(
    tmp_path_factory, values, large, cut
):
    schema = pa.schema([("note_id", pa.large_string() if large else pa.string())])
    table = pa.table({"note_id": pa.array(values, schema.field(0).type)})
    path = tmp_path_factory.mktemp("stage") / "note.parquet"
    writer = StageWriter({"rows": (path, schema)})
    chunks = [table.slice(0, cut), table.slice(cut)]
    for chunk in chunks:
        writer.write("rows", chunk)
    writer.close()
    assert pq.read_table(path).equals(table)
