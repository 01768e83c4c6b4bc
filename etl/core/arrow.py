"""Arrow schemas of the core entities (for Parquet stage files), derived from the models."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

from etl.core.model import ENTITIES
from etl.core.tables import _python_type

if TYPE_CHECKING:
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

_ARROW_TYPES = {
    str: pa.string(),
    bool: pa.bool_(),
    int: pa.int64(),
    float: pa.float64(),
    dt.date: pa.date32(),
    dt.datetime: pa.timestamp("us", tz="UTC"),
}


def one_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``values`` as one contiguous array (``pa.array`` and pandas' Arrow-backed columns give a
    chunked array, e.g. when a column's text passes 2 GiB of 32-bit offsets)."""
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


@cache
def entity_schema(entity: str) -> pa.Schema:
    model = ENTITIES[entity]
    ordered = [model.id_field(), *model.business_fields(), *model.lineage_fields]
    return pa.schema(
        [
            (name, _ARROW_TYPES[_python_type(model.model_fields[name].annotation)])
            for name in ordered
        ]
    )


STAGE_ROW_NUMBER = "_row_number"


@cache
def stage_schema(entity: str) -> pa.Schema:
    """Stage files carry the source row number beside the core columns, for lineage."""
    return entity_schema(entity).append(pa.field(STAGE_ROW_NUMBER, pa.int64()))


def to_arrow(frame: pd.DataFrame, entity: str) -> pa.Table:
    schema = stage_schema(entity)
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


def open_parquet(path: str | os.PathLike[str]) -> pq.ParquetFile:
    """A Parquet file to read chunk by chunk, with memory bounded by the chunk.

    pyarrow's ``ParquetFile`` pre-buffers by default: while ``iter_batches`` walks the file it
    keeps every column chunk it has read, so a reader's memory grows with the file (measured:
    106 MiB of Arrow memory for 763,205 encounter rows read 50,000 at a time, 35 MiB without,
    and no slower on a local disk). Every chunked reader of the pipeline opens files here."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path, pre_buffer=False)


def iter_frames(path: str | os.PathLike[str], chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Read a Parquet file in chunks as pandas frames with nullable string columns."""
    for _batch, frame in iter_batches_and_frames(path, chunk_rows):
        yield frame


def iter_batches_and_frames(
    path: str | os.PathLike[str], chunk_rows: int
) -> Iterator[tuple[pa.RecordBatch, pd.DataFrame]]:
    """``iter_frames``, each frame with the Arrow batch it was converted from."""
    source = open_parquet(path)
    for batch in source.iter_batches(batch_size=chunk_rows):
        # Text straight from Arrow into pandas' nullable string dtype: the same frame as
        # converting afterwards (``astype("string")``) without a Python object per value first,
        # which was most of the cost of reading a small file.
        yield batch, batch.to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get)


def scan_filtered(dataset: ds.Dataset, columns: list[str], row_filter: ds.Expression) -> pa.Table:
    """``dataset.to_table(columns=columns, filter=row_filter)``: the same rows in the same order,
    read with one batch in flight instead of Arrow's default read-ahead (16 batches of a file,
    4 files) and without pre-buffering (see ``open_parquet``). A chunk that looks up its keys in
    a whole stage file (the batch's patients, a reference's targets) then holds about a batch of
    that file besides the rows it keeps, not the whole column: the default's memory grew with
    the file, so a run's peak grew with the people migrated."""
    import pyarrow.dataset as ds

    scanner = ds.Scanner.from_dataset(
        dataset,
        columns=columns,
        filter=row_filter,
        batch_readahead=1,
        fragment_readahead=1,
        fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False),
    )
    return scanner.to_table()
