"""Masking rules shared by every report: value shapes, identity-number detection, small counts.

* A *shape* replaces every digit with ``9`` and every letter with ``A`` (``19121212-1212`` ->
  ``99999999-9999``): it shows the format of a column without its values.
* Counts below :data:`MIN_COUNT` are never shown, for values or shapes: a rare value can point
  at one person.
* A value *looks like an identity number* when it has the shape of a personnummer or
  samordningsnummer (10 or 12 digits, optional ``-``/``+``, a plausible month and day, day + 60
  allowed) or of a VGR reservnummer (``yyyymmddGggC``, G in K/M/X). Twelve plain digits also
  fit a ``YYYYMMDDHHmm`` timestamp, so those count only when the check digit is right.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from etl.identifiers import is_luhn_valid, is_plausible_identity_date

MIN_COUNT = 5
SHAPE_LENGTH = 40

_IDENTITY_PATTERN = r"^(?P<century>\d{2})?(?P<date>\d{6})(?P<separator>[-+]?)(?P<serial>\d{4})$"
_RESERVNUMMER_PATTERN = r"^\d{8}[KMX]\d{3}$"
# Candidates inside longer text (checked with the same rules as a whole value).
_EMBEDDED = re.compile(r"(?<![0-9])(?:\d{8}[KMX]\d{3}|(?:\d{2})?\d{6}[-+]?\d{4})(?![0-9])")


def shapes(values: pa.Array) -> pa.Array:
    """Digits to ``9``, letters to ``A``; other characters kept; long shapes cut with ``…``."""
    masked = pc.replace_substring_regex(values, pattern=r"[0-9]", replacement="9")
    masked = pc.replace_substring_regex(masked, pattern=r"\pL", replacement="A")
    cut = pc.utf8_slice_codeunits(masked, 0, SHAPE_LENGTH)
    is_long = pc.greater(pc.utf8_length(masked), SHAPE_LENGTH)
    return pc.if_else(is_long, pc.binary_join_element_wise(cut, "…", ""), cut)


def shape_of(value: str) -> str:
    return shapes(pa.array([value], pa.string()))[0].as_py()


def _digits(strings: pa.Array, width: int) -> np.ndarray:
    """``(rows, width)`` int array of the digits of equal-length digit strings."""
    columns = [
        pc.cast(pc.utf8_slice_codeunits(strings, i, i + 1), pa.int8()).to_numpy()
        for i in range(width)
    ]
    return np.stack(columns, axis=1).astype(np.int64) if columns else np.empty((0, width))


def identity_like(values: pa.Array) -> np.ndarray:
    """Per value (trimmed, no nulls): does it look like an identity number? Vectorised."""
    values = values.cast(pa.string())
    result = np.zeros(len(values), dtype=bool)
    if len(values) == 0:
        return result
    result |= pc.fill_null(pc.match_substring_regex(values, _RESERVNUMMER_PATTERN), False).to_numpy(
        zero_copy_only=False
    )
    parts = pc.extract_regex(values, _IDENTITY_PATTERN)
    matched = pc.fill_null(pc.is_valid(parts), False).to_numpy(zero_copy_only=False)
    if not matched.any():
        return result
    where = np.flatnonzero(matched)
    picked = pc.take(parts, pa.array(where))
    ten = pc.binary_join_element_wise(picked.field("date"), picked.field("serial"), "")
    digits = _digits(ten, 10)
    plausible = is_plausible_identity_date(
        digits[:, 2] * 10 + digits[:, 3], digits[:, 4] * 10 + digits[:, 5]
    )
    is_luhn = is_luhn_valid(digits)
    has_century = pc.not_equal(picked.field("century"), "").to_numpy(zero_copy_only=False)
    has_separator = pc.not_equal(picked.field("separator"), "").to_numpy(zero_copy_only=False)
    result[where] |= plausible & (is_luhn | has_separator | ~has_century)
    return result


def contains_identity_number(text: str) -> bool:
    """Whether a value is, or contains, something that looks like an identity number."""
    candidates = [match.group(0) for match in _EMBEDDED.finditer(text)]
    return bool(candidates) and bool(identity_like(pa.array(candidates, pa.string())).any())


def is_safe_to_show(value: str, rows: int) -> bool:
    """The last gate before a value reaches a report: frequent enough, no identity number in it."""
    return rows >= MIN_COUNT and not contains_identity_number(value)
