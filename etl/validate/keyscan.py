"""The rows of a stage file whose key is one of a chunk's keys, read a batch at a time.

``scan_filtered`` (etl/core/arrow.py) gives the same rows in the same order through a dataset
and a scanner with an ``is_in`` filter; built for every validated chunk (its context patients,
each reference's targets) that machinery cost more than reading the few columns it needs. Here
the file is read batch by batch, only the columns asked for, each batch filtered with one hash
lookup: memory stays bounded by a batch and the rows kept, as before.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from etl.core.arrow import open_parquet

BATCH_ROWS = 65_536
_TEXT = (pa.string(), pa.large_string())


def rows_with_keys(source: Path, key: str, columns: list[str], wanted: pa.Array) -> pa.Table | None:
    """``columns`` of the rows of ``source`` whose text ``key`` is in ``wanted`` (text without
    nulls), in file order; None when ``key`` is not a text column of the file (the caller then
    scans as before)."""
    file = open_parquet(source)
    schema = file.schema_arrow
    if key not in schema.names or schema.field(key).type not in _TEXT:
        return None
    names = list(dict.fromkeys(columns))
    if any(name not in schema.names for name in names):
        return None
    value_set = wanted.cast(schema.field(key).type)
    read = list(dict.fromkeys([key, *names]))
    parts = []
    for batch in file.iter_batches(batch_size=BATCH_ROWS, columns=read):
        keep = pc.is_in(batch.column(key), value_set=value_set)
        parts.append(batch.filter(keep).select(names))
    target = pa.schema([schema.field(name) for name in names], metadata=schema.metadata)
    return pa.Table.from_batches(parts, schema=target)
