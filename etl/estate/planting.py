"""Planting known defects in the systems beyond ELVIS and Melior (the rules of ``defects.py``).

Every helper picks rows that carry no defect yet (so a row has at most one), changes one field,
and marks the row with the defect class and the field, which becomes a ``defects.csv`` record.
Unreadable records (a garbage HL7 message, a broken JSON line) are inserted as extra rows.
"""

from __future__ import annotations

import numpy as np

from etl.estate.base import Dataset
from etl.estate.defects import bump_check_digit, choose, defect_count, scaled_defect_count

# The column of a Dataset holding the raw text of an unreadable record (never a source field).
RAW_RECORD = "_raw_record"
# What defects.csv names as the field of an unreadable record: the reader's error column.
READ_ERROR_FIELD = "_read_error"

UNPARSEABLE_ISO_TIMESTAMPS = [
    "2023-02-30 10:15",
    "2022-13-01 08:00",
    "2021-04-31 25:61",
    "0000-00-00 00:00",
    "2019-11-31 12:00",
]
UNPARSEABLE_COMPACT_DATES = ["20230230", "20221301", "20210431", "00000000", "2019113", "????????"]
UNPARSEABLE_COMPACT_TIMESTAMPS = ["202302301015", "202213010800", "20210431", "000000000000"]
UNPARSEABLE_HL7_TIMESTAMPS = ["20230230101500", "2022130108", "20210431250000", "00000000000000"]
UNPARSEABLE_SHORT_DATES = ["230230", "221301", "210431", "000000", "19113"]
UNPARSEABLE_ISO_DATES = ["2023-02-30", "2022-13-01", "2021-04-31", "0000-00-00", "31/12/2020"]


def rows_for(
    rng: np.random.Generator,
    ds: Dataset,
    eligible: np.ndarray | None = None,
    n: int | None = None,
) -> np.ndarray:
    """Rows to damage: ``scaled_defect_count`` of the dataset's size unless ``n`` says otherwise."""
    return choose(rng, ds, scaled_defect_count(len(ds)) if n is None else n, eligible)


def present(ds: Dataset, column: str) -> np.ndarray:
    values = ds.columns[column]
    return np.array([v is not None and str(v).strip() != "" for v in values], dtype=bool)


def set_values(
    rng: np.random.Generator,
    ds: Dataset,
    column: str,
    options,
    defect_class: str,
    eligible: np.ndarray | None = None,
    n: int | None = None,
) -> np.ndarray:
    """Replace ``column`` with one of ``options`` (or ``None``) in fresh rows; mark them."""
    rows = rows_for(rng, ds, eligible, n)
    if options is None:
        values = np.full(len(rows), None, dtype=object)
    else:
        values = np.array(options, dtype=object)[rng.integers(0, len(options), len(rows))]
    column_values = ds.columns[column].astype(object)
    column_values[rows] = values
    ds.columns[column] = column_values
    ds.mark(rows, defect_class, column)
    return rows


def invalid_identity(
    rng: np.random.Generator, ds: Dataset, column: str, eligible: np.ndarray | None = None
) -> np.ndarray:
    """A personnummer with a wrong check digit (reservnummer rows are left alone)."""
    values = ds.columns[column]
    is_personal = np.array(
        [v is not None and not any(ch.isalpha() for ch in str(v)) for v in values], dtype=bool
    )
    if eligible is not None:
        is_personal &= eligible
    rows = rows_for(rng, ds, is_personal & present(ds, column))
    ds.columns[column][rows] = bump_check_digit(rng, values[rows].astype(object))
    ds.mark(rows, "invalid_identity_number", column)
    return rows


def raw_bytes(
    rng: np.random.Generator,
    ds: Dataset,
    column: str,
    byte_options: tuple[int, ...],
    keep_length: bool = False,
    eligible: np.ndarray | None = None,
) -> np.ndarray:
    """A byte the file's encoding cannot decode, planted in a text value.

    Values hold it surrogate-escaped; writers encode with ``surrogateescape``. In fixed-width
    files the byte replaces a character so that the record keeps its width.
    """
    rows = rows_for(rng, ds, present(ds, column) if eligible is None else eligible)
    values = ds.columns[column]
    for row in rows.tolist():
        value = str(values[row])
        byte = byte_options[int(rng.integers(0, len(byte_options)))]
        position = int(rng.integers(1, max(len(value), 2)))
        position = min(position, max(len(value) - 1, 0)) if keep_length else position
        tail = value[position + 1 :] if keep_length else value[position:]
        values[row] = value[:position] + chr(0xDC00 + byte) + tail
    ds.mark(rows, "undecodable_bytes", column)
    return rows


def missing_reference(
    rng: np.random.Generator, ds: Dataset, column: str, parent_keys: np.ndarray
) -> np.ndarray:
    """A child row pointing at a parent key that does not exist."""
    rows = rows_for(rng, ds, present(ds, column))
    top = int(np.max(parent_keys)) if len(parent_keys) else 0
    fresh = top + 1 + rng.choice(900_000, size=len(rows), replace=False)
    values = ds.columns[column]
    if values.dtype == object:
        values[rows] = [str(v) for v in fresh]
    else:
        values[rows] = fresh
    ds.mark(rows, "unresolved_reference", column)
    return rows


def insert_unreadable(
    rng: np.random.Generator,
    ds: Dataset,
    raw_texts: list[str],
    group_column: str | None = None,
    n: int | None = None,
) -> np.ndarray:
    """Insert unreadable records (raw text in ``RAW_RECORD``) between readable ones.

    With ``group_column`` (rows of one message), only between groups, never inside one.
    """
    count = scaled_defect_count(len(ds)) if n is None else n
    m = len(ds)
    if RAW_RECORD not in ds.columns:
        ds.columns[RAW_RECORD] = np.full(m, None, dtype=object)
    candidates = np.arange(1, m + 1)
    if group_column is not None and m:
        groups = ds.columns[group_column]
        boundary = np.r_[groups[1:] != groups[:-1], True]
        candidates = candidates[boundary]
    positions = np.sort(rng.choice(candidates, size=min(count, len(candidates)), replace=False))
    order = np.insert(np.arange(m), positions, 0)
    is_new = np.insert(np.zeros(m, dtype=bool), positions, True)
    ds.take(order)
    new_rows = np.flatnonzero(is_new)
    for name, values in ds.columns.items():
        if values.dtype == object:
            values[new_rows] = None
        else:
            ds.columns[name] = values.astype(object)
            ds.columns[name][new_rows] = None
    texts = np.array(raw_texts, dtype=object)[rng.integers(0, len(raw_texts), len(new_rows))]
    ds.columns[RAW_RECORD][new_rows] = texts
    ds.defect_class[new_rows] = None
    ds.mark(new_rows, "unreadable_record", READ_ERROR_FIELD)
    return new_rows


def child_as_mother(
    rng: np.random.Generator,
    ds: Dataset,
    mother_column: str,
    child_column: str,
    clean_patients: np.ndarray,
) -> np.ndarray:
    """A delivery whose mother field holds the newborn's own patient number (a mix-up).

    Only where the newborn's patient row is clean, so the mother's age can be computed.
    """
    # Only Obstetrix has deliveries: at least MIN_ROWS, so the class shows in any estate.
    eligible = np.isin(ds.columns[child_column], clean_patients)
    rows = rows_for(rng, ds, eligible, n=defect_count(len(ds)))
    ds.columns[mother_column][rows] = ds.columns[child_column][rows]
    ds.mark(rows, "implausible_maternal_age", mother_column)
    return rows
