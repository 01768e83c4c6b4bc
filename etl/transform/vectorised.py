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
