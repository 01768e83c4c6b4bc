"""StageWriter's encodings: the rows read back are the rows written; id columns keep statistics."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.transform.stage import StageWriter, writer_options

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
