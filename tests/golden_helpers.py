"""Shared helpers of the golden mapping tests: land hand-written legacy rows and transform them.

The rows are landed as the readers deliver them (every field a string, lineage columns added,
the source key the dataset's key columns joined by ``|``) and run through
:func:`etl.transform.engine.transform_chunk` with a frozen reference date.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from etl.extract.landing import ROW_NUMBER, SOURCE_KEY
from etl.transform.engine import ChunkResult, transform_chunk

ROOT = Path(__file__).resolve().parents[1]
MAPPINGS = ROOT / "mappings"
REFERENCE_DATE = dt.date(2026, 7, 1)
NO_DUPLICATES = pd.DataFrame(
    {ROW_NUMBER: pd.Series(dtype="int64"), "outcome": pd.Series(dtype="string")}
)


def landed(rows: list[dict], key: str | list[str]) -> pd.DataFrame:
    """Rows as landed: string columns, row numbers from 1, the source key from ``key``."""
    frame = pd.DataFrame(rows).astype("string")
    frame[ROW_NUMBER] = pd.RangeIndex(1, len(frame) + 1, dtype="int64")
    columns = [key] if isinstance(key, str) else list(key)
    source_key = frame[columns[0]].str.strip()
    for column in columns[1:]:
        source_key = source_key + "|" + frame[column].str.strip()
    frame[SOURCE_KEY] = source_key
    return frame


def run(
    catalog,
    system: str,
    entity: str,
    rows: list[dict],
    key: str | list[str],
    references: dict[str, list[str]] | None = None,
) -> ChunkResult:
    mapping = catalog.system(system).entities[entity]
    keys = {name: pd.Index(values) for name, values in (references or {}).items()}
    return transform_chunk(
        landed(rows, key), mapping, catalog, "batch-1", REFERENCE_DATE, keys, NO_DUPLICATES
    )
