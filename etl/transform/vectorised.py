"""Column operations pandas 3 still does value by value, done as one Arrow call instead.

Each function gives exactly the answer of the pandas expression it replaces (the unit tests
compare them on generated inputs); only the work is moved out of Python loops.
"""

from __future__ import annotations

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


def frame_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame.astype("string")``, with UTC timestamp columns formatted in Arrow."""
    if not any(_is_utc_nanoseconds(dtype) for dtype in frame.dtypes):
        return frame.astype("string")
    return pd.DataFrame(
        {
            name: utc_timestamps_as_text(column)
            if _is_utc_nanoseconds(column.dtype)
            else column.astype("string")
            for name, column in frame.items()
        },
        index=frame.index,
    )
