"""Column operations pandas 3 still does value by value, done as one Arrow call instead.

Each function gives exactly the answer of the pandas expression it replaces (the unit tests
compare them on generated inputs); only the work is moved out of Python loops.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_TEXT_TYPES = (pa.string(), pa.large_string(), pa.null())


def _is_arrow_text(values: pd.Series | pd.Index) -> bool:
    dtype = values.dtype
    return isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"


def text_array(candidates: Iterable) -> pa.Array | None:
    """``candidates`` as one Arrow text array (missing values as nulls); None when some
    candidate is neither text nor missing (the caller then keeps the pandas path)."""
    if isinstance(candidates, pd.Series | pd.Index):
        if _is_arrow_text(candidates):
            return pa.array(candidates)
        if candidates.dtype != object:
            return None
        candidates = candidates.tolist()
    elif isinstance(candidates, pa.Array | pa.ChunkedArray):
        return candidates if candidates.type in _TEXT_TYPES else None
    items = list(candidates)
    if not all(isinstance(item, str) for item in items):
        return None
    return pa.array(items, type=pa.large_string())


def is_in(values: pd.Series, candidates: Iterable) -> pd.Series:
    """``values.isin(candidates)`` for a text column, as one Arrow hash lookup.

    pandas' ``ArrowStringArray.isin`` builds a pyarrow scalar of every candidate in Python (most
    of the time of a membership test against a dataset's keys). Same answer: a missing value is
    in ``candidates`` only when they hold a missing value too.
    """
    if not _is_arrow_text(values):
        return values.isin(candidates)
    value_set = text_array(candidates)
    if value_set is None:
        return values.isin(candidates)
    if len(value_set) == 0:
        return pd.Series(False, index=values.index)
    array = pa.array(values)
    if value_set.type != array.type:
        value_set = value_set.cast(array.type)
    found = pc.is_in(array, value_set=value_set, skip_nulls=False)
    return pd.Series(np.asarray(found, dtype=bool), index=values.index)


_NANOSECONDS = 1_000_000_000


def _is_utc_nanoseconds(dtype) -> bool:
    return isinstance(dtype, pd.DatetimeTZDtype) and dtype.unit == "ns" and str(dtype.tz) == "UTC"


def utc_timestamps_as_text(values: pd.Series) -> pd.Series:
    """``values.astype("string")`` of a ``datetime64[ns, UTC]`` column, formatted in Arrow.

    pandas formats an aware timestamp through a ``Timestamp`` object per value. Its text is
    ``YYYY-MM-DD HH:MM:SS``, then a fraction as fine as the column's finest value needs (none,
    3, 6 or 9 digits, the same for every row), then ``+00:00``; a missing value stays missing.
    """
    nanoseconds = values.array.asi8
    missing = values.isna().to_numpy()
    seconds = np.floor_divide(nanoseconds, _NANOSECONDS)
    fraction = np.mod(nanoseconds, _NANOSECONDS)
    present = fraction[~missing]
    digits = 9 if (present % 1000).any() else 6 if (present % 10**6).any() else 3 * present.any()
    # Arrow's cast of a timestamp to text is ISO 8601 with a space: YYYY-MM-DD HH:MM:SS.
    text = pa.array(seconds, type=pa.timestamp("s"), mask=missing).cast(pa.large_string())
    if digits:
        shown = pc.utf8_lpad(
            pa.array(fraction // 10 ** (9 - digits)).cast(pa.large_string()), digits, "0"
        )
        text = pc.binary_join_element_wise(text, shown, pa.scalar(".", pa.large_string()))
    text = pc.binary_join_element_wise(
        text,
        pa.scalar("+00:00", pa.large_string()),
        pa.scalar("", pa.large_string()),
    )
    return pd.Series(pd.arrays.ArrowStringArray(text), index=values.index, name=values.name)


def _text_series(text: pa.Array, like: pd.Series) -> pd.Series:
    return pd.Series(
        pd.arrays.ArrowStringArray(text.cast(pa.large_string())), index=like.index, name=like.name
    )


# Python's repr writes a float positionally from 1e-4 up to 1e16, and exponentially outside.
_POSITIONAL = (1e-4, 1e16)
_POINT_ZERO, _NOTHING = pa.scalar(".0", pa.large_string()), pa.scalar("", pa.large_string())
_MISSING_TEXT = pa.scalar(None, pa.large_string())


def _arrow_float_text(data: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Each (present) number's text as Arrow writes it, ``.0`` after a whole one, and whether
    that is pandas' text (else pandas writes it)."""
    text = pa.array(data).cast(pa.large_string())
    magnitude = np.abs(data)
    by_arrow = (data == 0) | ((magnitude >= _POSITIONAL[0]) & (magnitude < _POSITIONAL[1]))
    # finite, by the magnitudes; written with an exponent all the same (1e+14) by Arrow
    by_arrow &= ~np.asarray(pc.match_substring(text, "e"))
    whole = ~np.asarray(pc.match_substring(text, "."))
    text = pc.if_else(
        pa.array(by_arrow & whole),
        pc.binary_join_element_wise(text, _POINT_ZERO, _NOTHING),
        text,
    )
    return text, by_arrow


def floats_as_text(values: pd.Series) -> pd.Series:
    """``values.astype("string")`` of a ``Float64`` column, formatted in Arrow.

    pandas writes each value with Python's ``repr``: the shortest digits that read back as the
    same double, ``.0`` after a whole number. Arrow writes the same shortest digits, without the
    ``.0``; a value either writes with an exponent, not finite, or out of the positional range
    is written by pandas. Each distinct number (by its bits: 0.0 and -0.0 are two) is written
    once and its text taken per row: a column of measurements repeats its values.
    """
    data = values.array.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = values.isna().to_numpy()
    encoded = pc.dictionary_encode(pa.array(data, mask=missing))
    distinct_text, distinct_by_arrow = _arrow_float_text(
        encoded.dictionary.to_numpy(zero_copy_only=False)
    )
    indices = encoded.indices
    text = distinct_text.take(indices)  # missing where the index is
    by_arrow = np.zeros(len(data), dtype=bool)
    if len(distinct_by_arrow):  # else every value is missing
        by_arrow = distinct_by_arrow[indices.fill_null(0).to_numpy(zero_copy_only=False)]
        by_arrow &= ~missing
    result = _text_series(text, values)
    rest = ~missing & ~by_arrow
    if rest.any():
        result[rest] = values[rest].astype("string")
    return result


def _dates_as_text(values: pd.Series, objects: np.ndarray, present: np.ndarray) -> pd.Series:
    """``values.astype("string")`` of an object column of ``datetime.date`` values (not
    datetimes, which write their time) or missing ones, formatted in Arrow."""
    dates = pa.array(objects, type=pa.date32(), mask=~present)
    return _text_series(dates.cast(pa.large_string()), values)


def _flags_as_text(values: pd.Series, objects: np.ndarray, present: np.ndarray) -> pd.Series:
    """``values.astype("string")`` of an object column of booleans (``True``, ``False``) or
    missing values."""
    is_true = np.zeros(len(objects), dtype=bool)
    is_true[present] = objects[present].astype(bool)
    text = pc.if_else(
        pa.array(is_true),
        pa.scalar("True", pa.large_string()),
        pa.scalar("False", pa.large_string()),
    )
    return _text_series(pc.if_else(pa.array(present), text, _MISSING_TEXT), values)


def column_as_text(column: pd.Series) -> pd.Series:
    """``column.astype("string")``, formatted in Arrow for UTC timestamps, ``Float64`` numbers,
    and object columns of text, dates or flags (or only missing values); every other column
    by pandas."""
    if _is_utc_nanoseconds(column.dtype):
        return utc_timestamps_as_text(column)
    if isinstance(column.dtype, pd.Float64Dtype):
        return floats_as_text(column)
    if column.dtype == object:
        # Which values are missing, and the types of the others, found once for both formats.
        present = column.notna().to_numpy()
        objects = column.to_numpy()
        if not present.any():
            return _text_series(pa.nulls(len(column), pa.large_string()), column)
        types = set(map(type, objects[present]))
        if types == {str}:
            return _text_series(pa.array(objects, type=pa.large_string(), mask=~present), column)
        if types == {dt.date}:
            return _dates_as_text(column, objects, present)
        if types <= {bool, np.bool_}:
            return _flags_as_text(column, objects, present)
    return column.astype("string")


def frame_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame.astype("string")``, column by column with :func:`column_as_text`."""
    return pd.DataFrame(
        {name: column_as_text(column) for name, column in frame.items()}, index=frame.index
    )
