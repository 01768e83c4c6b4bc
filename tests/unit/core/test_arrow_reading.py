"""Chunked Parquet reading keeps memory bounded by the chunk, not by the file."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.core.arrow import iter_frames, open_parquet

pytestmark = pytest.mark.unit

ROW_GROUP_ROWS = 8_000
ROW_GROUPS = 24


def _many_row_groups(path) -> int:
    """A file of many row groups of random text, like a stage file; its size in memory."""
    rng = np.random.default_rng(7)
    writer = None
    for _ in range(ROW_GROUPS):
        text = rng.integers(0, 2**62, size=ROW_GROUP_ROWS).astype(str)
        table = pa.table({"id": pa.array(text), "other": pa.array(np.char.add(text, "x"))})
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    return table.nbytes * ROW_GROUPS


def _peak_arrow_bytes(chunks) -> tuple[int, int]:
    baseline = pa.total_allocated_bytes()
    peak = rows = 0
    for chunk in chunks:
        rows += len(chunk)
        peak = max(peak, pa.total_allocated_bytes() - baseline)
    return peak, rows


def test_reading_a_file_in_chunks_holds_about_one_chunk_not_the_file(tmp_path):
    path = tmp_path / "rows.parquet"
    file_bytes = _many_row_groups(path)
    assert pq.ParquetFile(path).metadata.num_row_groups == ROW_GROUPS

    peak, rows = _peak_arrow_bytes(open_parquet(path).iter_batches(batch_size=ROW_GROUP_ROWS))
    assert rows == ROW_GROUPS * ROW_GROUP_ROWS  # every row read
    # A few chunks' worth at most (decoding buffers), never a growing share of the file;
    # pyarrow's pre-buffering default holds every column chunk read so far (about the file).
    assert peak < file_bytes / 4, (peak, file_bytes)

    peak, rows = _peak_arrow_bytes(iter_frames(path, ROW_GROUP_ROWS))
    assert rows == ROW_GROUPS * ROW_GROUP_ROWS
    assert peak < file_bytes / 4, (peak, file_bytes)


def test_the_default_reader_would_hold_the_file(tmp_path):
    """The control: the same measure sees pyarrow's default pre-buffering grow with the file,
    so the test above can fail."""
    path = tmp_path / "rows.parquet"
    file_bytes = _many_row_groups(path)
    peak, _ = _peak_arrow_bytes(pq.ParquetFile(path).iter_batches(batch_size=ROW_GROUP_ROWS))
    assert peak >= file_bytes / 4, (peak, file_bytes)


def test_text_is_read_as_nullable_strings_the_same_as_converted_afterwards(tmp_path):
    """Text comes straight from Arrow as pandas' nullable string dtype: the very frame of
    reading it as objects and converting (``astype("string")``), nulls and empty text kept,
    other columns untouched."""
    import datetime as dt

    import pandas as pd

    path = tmp_path / "mixed.parquet"
    table = pa.table(
        {
            "text": pa.array(["a", None, "", "ö"], type=pa.string()),
            "all_null": pa.array([None] * 4, type=pa.string()),
            "number": pa.array([1, None, 3, 4], type=pa.int64()),
            "day": pa.array([dt.date(2026, 7, 1), None, None, dt.date(1900, 1, 1)]),
            "flag": pa.array([True, False, None, True]),
            "large": pa.array(["x", None, "y", "z"], type=pa.large_string()),
        }
    )
    pq.write_table(table, path, row_group_size=3)
    expected = []
    for batch in open_parquet(path).iter_batches(batch_size=3):
        frame = batch.to_pandas()
        frame[["text", "all_null"]] = frame[["text", "all_null"]].astype("string")
        expected.append(frame)
    actual = list(iter_frames(path, 3))
    assert len(actual) == len(expected) == 2
    for got, want in zip(actual, expected, strict=True):
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        assert list(got.dtypes) == list(want.dtypes)


def test_a_filtered_scan_gives_the_rows_the_default_scan_gives_in_the_same_order(tmp_path):
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from etl.core.arrow import scan_filtered

    path = tmp_path / "many.parquet"
    _many_row_groups(path)
    ids = pq.read_table(path, columns=["id"]).column(0).to_pylist()
    wanted = pa.array([*ids[5::3000], *ids[7::5000], "not there"])  # from most row groups
    row_filter = pc.is_in(pc.field("id"), value_set=wanted)
    dataset = ds.dataset(path)

    scanned = scan_filtered(dataset, ["other", "id"], row_filter)

    assert scanned.equals(dataset.to_table(columns=["other", "id"], filter=row_filter))
    assert scanned.num_rows == len(set(ids[5::3000]) | set(ids[7::5000])) > ROW_GROUPS
