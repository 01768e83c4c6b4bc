"""Text column operations pandas 3 does value by value in Python, done as Arrow calls instead.

Each function gives exactly the answer of the pandas expression it names (tests/unit/core/
test_text_columns.py compares them on generated input); a value the Arrow path could read
differently from pandas is left to pandas.
"""

from __future__ import annotations

import re
from collections.abc import Hashable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# Classes Python's ``re`` reads with Unicode (``\s`` takes a no-break space, ``\d`` an
# Arabic-Indic digit) and RE2 as ASCII only: a pattern with one stays with pandas.
_UNICODE_CLASSES = re.compile(r"\\[sSwWdDbB]")
_CAPTURED = "captured"


def arrow_text(values: pd.Series) -> pa.Array | None:
    """The column as one Arrow text array, or None when it is not Arrow-backed ``string``."""
    dtype = values.dtype
    if not (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"):
        return None
    array = pa.array(values.array)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array


def _as_text_series(array: pa.Array, like: pd.Series, name: Hashable) -> pd.Series:
    if array.type != pa.large_string():
        array = array.cast(pa.large_string())
    return pd.Series(
        pd.arrays.ArrowStringArray(array), index=like.index, name=name, dtype=like.dtype
    )


def _named_group(pattern: str) -> str | None:
    """``pattern`` with its one capturing group named, or None if it cannot be told apart."""
    escaped = in_class = False
    for position, character in enumerate(pattern):
        if escaped:
            escaped = False
        elif character == "\\":
            escaped = True
        elif in_class:
            in_class = character != "]"
        elif character == "[":
            in_class = True
        elif character == "(":
            if pattern.startswith("(?P<", position):
                return pattern
            if not pattern.startswith("(?", position):
                return f"{pattern[:position]}(?P<{_CAPTURED}>{pattern[position + 1 :]}"
    return None


def _extracted_name(compiled: re.Pattern[str], values: pd.Series) -> Hashable:
    """The name pandas gives an extracted group: the group's name, else the column's."""
    return next(iter(compiled.groupindex), values.name)


def extract_group(values: pd.Series, pattern: str) -> pd.Series:
    """``values.str.extract(pattern, expand=False)`` for a pattern with one group.

    pandas runs Python's ``re`` on every value of an Arrow text column; Arrow's RE2 answers the
    same for a pattern without Unicode classes (``\\s``, ``\\d``, ...) over text without a line
    break (Python's ``$`` also matches before a final one).
    """
    compiled = re.compile(pattern)
    array = arrow_text(values)
    named = _named_group(pattern) if compiled.groups == 1 else None
    if array is None or named is None or _UNICODE_CLASSES.search(pattern):
        return values.str.extract(pattern, expand=False)
    if pc.any(pc.match_substring(array, "\n")).as_py():
        return values.str.extract(pattern, expand=False)
    try:
        found = pc.extract_regex(array, named)
    except pa.ArrowInvalid:  # a construct RE2 does not have (a look-around, a back-reference)
        return values.str.extract(pattern, expand=False)
    group = pc.struct_field(found, [0])
    return _as_text_series(group, values, _extracted_name(compiled, values))


_PLAIN_DECIMAL = r"[+-]?[0-9]+(\.[0-9]+)?"
# At most 15 significant digits: every such decimal is one double, however it is read.
_EXACT_DIGITS = 15


def plain_decimals(values: pd.Series) -> pd.Series:
    """``pd.to_numeric(values.where(values.str.fullmatch(PLAIN)), errors="coerce")`` as
    ``Float64``, PLAIN being an optional sign, digits and an optional ``.`` fraction.

    pandas parses each value in Python; Arrow casts the column. Values with more digits than a
    double holds exactly are still parsed by pandas.
    """
    matches = values.str.fullmatch(_PLAIN_DECIMAL)
    array = arrow_text(values)
    if array is None:
        return pd.to_numeric(values.where(matches), errors="coerce").astype("Float64")
    is_plain = matches.fillna(False).to_numpy(dtype=bool)
    digits = pc.utf8_length(pc.replace_substring_regex(array, r"[+\-.]", ""))
    is_long = np.asarray(pc.fill_null(pc.greater(digits, _EXACT_DIGITS), False), dtype=bool)
    if (is_plain & is_long).any():
        return pd.to_numeric(values.where(matches), errors="coerce").astype("Float64")
    numbers = pc.cast(pc.if_else(is_plain, array, pa.scalar(None, array.type)), pa.float64())
    floats = np.asarray(pc.fill_null(numbers, 0.0), dtype=np.float64)
    if np.signbit(floats[floats == 0]).any():  # pandas reads "-0" as the integer 0, "-0.0" as -0.0
        return pd.to_numeric(values.where(matches), errors="coerce").astype("Float64")
    return pd.Series(
        pd.arrays.FloatingArray(floats, ~is_plain), index=values.index, name=values.name
    )


def missing_text(index: pd.Index) -> pd.Series:
    """``pd.Series(pd.NA, index=index, dtype="string")``, as one Arrow array of nulls (pandas
    repeats a boxed NA by ``take``)."""
    return pd.Series(
        pd.arrays.ArrowStringArray(pa.nulls(len(index), pa.large_string())),
        index=index,
        dtype="string",
    )


def text_where(condition: np.ndarray, text: str, index: pd.Index) -> pd.Series:
    """A ``string`` Series: ``text`` where ``condition`` (a bool array) holds, else NA."""
    value = pa.scalar(text, pa.large_string())
    chosen = pc.if_else(pa.array(condition, pa.bool_()), value, pa.scalar(None, value.type))
    return pd.Series(pd.arrays.ArrowStringArray(chosen), index=index, dtype="string")


def stripped_or_missing(values: pd.Series) -> pd.Series:
    """``values.astype("string").str.strip()`` with a blank result as NA, in two Arrow calls
    (``Series.mask`` on Arrow text replaces value by value)."""
    text = values.astype("string")
    array = arrow_text(text)
    if array is None:
        stripped = text.str.strip()
        return stripped.mask(stripped == "")
    trimmed = pc.utf8_trim_whitespace(array)
    blank = pc.equal(trimmed, pa.scalar("", trimmed.type))
    cleaned = pc.if_else(blank, pa.scalar(None, trimmed.type), trimmed)
    return _as_text_series(cleaned, text, text.name)


def text_masked(column: pd.Series, condition: np.ndarray, value: object) -> pd.Series:
    """``column.mask(condition, value)`` for an Arrow ``string`` column, as one Arrow call, when
    ``value`` is text, None, or a ``string`` Series on the same index; otherwise by pandas."""
    array = arrow_text(column)
    replacement: pa.Scalar | pa.Array | None = None
    if value is None or isinstance(value, str):
        replacement = pa.scalar(value, pa.large_string())
    elif (
        isinstance(value, pd.Series)
        and value.dtype == column.dtype
        and value.index.equals(column.index)
    ):
        replacement = arrow_text(value)
    if array is None or replacement is None or column.dtype != "string":
        return column.mask(pd.Series(condition, index=column.index), value)
    if replacement.type != array.type:
        replacement = replacement.cast(array.type)
    chosen = pc.if_else(pa.array(condition, pa.bool_()), replacement, array)
    return _as_text_series(chosen, column, column.name)


def may_contain(values: pd.Series, text: str) -> bool:
    """False only when ``values`` is Arrow text and no value contains ``text`` (one Arrow
    scan), so that a caller can skip ``values.str.contains(text, regex=False)``."""
    array = arrow_text(values)
    if array is None:
        return True
    if len(text) == 1:
        # One character is whole UTF-8 bytes within one value: searching the values' bytes as
        # one buffer (memchr-fast) finds it iff some value holds it; no per-value matching.
        offsets_type = np.int64 if pa.types.is_large_string(array.type) else np.int32
        offsets_buffer, data = array.buffers()[1:3]
        if data is None or not len(array):
            return False
        offsets = np.frombuffer(offsets_buffer, dtype=offsets_type)
        start, end = int(offsets[array.offset]), int(offsets[array.offset + len(array)])
        return bytes(memoryview(data)[start:end]).find(text.encode("utf-8")) >= 0
    return bool(pc.any(pc.match_substring(array, text)).as_py())


def _rows_with_any(array: pa.Array, characters: str) -> np.ndarray:
    holding = pc.match_substring_regex(array, f"[{re.escape(characters)}]")
    return np.asarray(pc.fill_null(holding, False), dtype=bool)


def replace_where_possible(
    values: pd.Series, pattern: str, replacement: str, needed: str
) -> pd.Series:
    """``values.str.replace(pattern, replacement, regex=True)``, run by pandas only on the values
    holding one of the characters ``needed``: ``pattern`` matches nothing in any other value (a
    pattern with ``\\s`` is run by Python's ``re``, value by value)."""
    array = arrow_text(values)
    if array is None:
        return values.str.replace(pattern, replacement, regex=True)
    possible = _rows_with_any(array, needed)
    if possible.all():
        return values.str.replace(pattern, replacement, regex=True)
    result = values.copy()
    if possible.any():
        result[possible] = values[possible].str.replace(pattern, replacement, regex=True)
    return result


def extract_where_possible(values: pd.Series, pattern: str, needed: str) -> pd.Series:
    """``values.str.extract(pattern, expand=False)`` for a pattern with one group, run by pandas
    only on the values holding one of the characters ``needed`` (``pattern`` matches nothing in
    any other value); NA elsewhere."""
    array = arrow_text(values)
    compiled = re.compile(pattern)
    if array is None or compiled.groups != 1:
        return values.str.extract(pattern, expand=False)
    possible = _rows_with_any(array, needed)
    if possible.all():
        return values.str.extract(pattern, expand=False)
    name = _extracted_name(compiled, values)
    result = _as_text_series(pa.nulls(len(values), pa.large_string()), values, name)
    if possible.any():
        result[possible] = values[possible].str.extract(pattern, expand=False)
    return result
