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
