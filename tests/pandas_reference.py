"""The pandas readers the project used before issue 10, kept as an independent oracle: on a
valid delimited or fixed-width file the new reader (etl.extract.text_records) must give exactly
what pandas gives. Never used by the pipeline (pandas pads short rows and splits at bare CRs).

``read_sql_table`` is the SQL table read as it was before issue 15 (``pd.read_sql_query`` with
``dtype="string"``, each value then checked with Python's ``re``): readers.read_table, which
builds its chunks column-wise from the driver's rows, must give exactly these chunks.

``landed_table`` is a chunk with its lineage as landing built it with pandas before issue 15's
landing work (``etl.extract.landing._with_lineage``, which builds it in Arrow, must give exactly
this table: the source key and the row hash bit for bit)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from etl.catalog import FileDataset, FileFormat, SqlDataset


def read_text_table(path: Path, dataset: FileDataset, chunk_rows: int) -> Iterator[pd.DataFrame]:
    common = {
        "dtype": "string",
        "encoding": dataset.encoding,
        "encoding_errors": "replace",
        "keep_default_na": False,
        "chunksize": chunk_rows,
    }
    if dataset.format is FileFormat.FIXED_WIDTH:
        reader = pd.read_fwf(
            path,
            widths=[field.width for field in dataset.fields],
            names=dataset.column_names,
            header=None,
            # Only the line ending is padding; inner spaces stay for the transform to judge.
            delimiter="\r\n",
            **common,
        )
    else:
        reader = pd.read_csv(
            path, sep=dataset.delimiter, header=0, quotechar='"', engine="c", **common
        )
    with reader:
        yield from reader


_UNREADABLE = {  # in a key column, in any other column
    True: re.compile("[\x00-\x1f\ufffd]"),
    False: re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffd]"),
}
_WHAT = (
    ("\x00", "nul_in_field", "a NUL character"),
    ("\ufffd", "undecodable_bytes", "bytes the source's encoding cannot decode"),
    ("", "control_character", "a control character"),
)


def read_sql_table(
    connection: sa.Connection, dataset: SqlDataset, chunk_rows: int
) -> Iterator[tuple[pd.DataFrame, int]]:
    """Each chunk (unreadable rows' values NA, ``_read_error`` set), and its unreadable rows."""
    table = sa.table(dataset.table, *(sa.column(c) for c in dataset.columns))
    query = sa.select(*(sa.cast(table.c[c], sa.String).label(c) for c in dataset.columns))
    query = query.order_by(*(table.c[key] for key in dataset.key))
    streaming = connection.execution_options(stream_results=True, max_row_buffer=chunk_rows)
    record = 1
    for chunk in pd.read_sql_query(query, streaming, chunksize=chunk_rows, dtype="string"):
        errors: list[str | None] = []
        for position in range(len(chunk)):
            error = None
            for column in dataset.columns:
                value = chunk[column].iat[position]
                if pd.isna(value) or not _UNREADABLE[column in dataset.key].search(value):
                    continue
                reason, what = next((r, w) for c, r, w in _WHAT if c in value)
                error = (
                    f"{reason} ({dataset.table}, record {record + position}): "
                    f"column {column} holds {what}"
                )
                break
            errors.append(error)
        bad = [error is not None for error in errors]
        chunk.loc[bad, dataset.columns] = pd.NA
        chunk["_read_error"] = pd.array(errors, dtype="string")
        record += len(chunk)
        yield chunk, sum(bad)


def landed_table(
    chunk: pd.DataFrame, schema: pa.Schema, key: list[str], first_row: int
) -> pa.Table:
    """``chunk`` with ``_row_number``, ``_source_key``, ``_row_hash`` and ``_read_error``, as the
    landing zone held it (``schema``: the landed file's)."""
    chunk = chunk.reset_index(drop=True)
    if "_read_error" not in chunk.columns:
        chunk["_read_error"] = pd.Series(pd.NA, index=chunk.index, dtype="string")
    source_key = chunk[key[0]].astype("string").str.strip()
    for column in key[1:]:
        source_key = source_key + "|" + chunk[column].astype("string").str.strip()
    chunk["_row_number"] = pd.RangeIndex(first_row, first_row + len(chunk), dtype="int64")
    chunk["_source_key"] = source_key
    hashed = chunk.drop(columns=["_row_number", "_source_key", "_read_error"])
    chunk["_row_hash"] = pd.util.hash_pandas_object(
        hashed, index=False, hash_key="vardflytt-body01"
    ).to_numpy()
    return pa.Table.from_pandas(chunk, schema=schema, preserve_index=False)
