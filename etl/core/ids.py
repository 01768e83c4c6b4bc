"""Deterministic row ids and content hashes, vectorised.

Ids are 128-bit, built from two keyed SipHash-2-4 digests (pandas' ``hash_pandas_object``) of
``system/entity/source_key``, so the same legacy row gets the same core id on every run without a
Python loop per row. Golden values in the tests pin them: a library upgrade that changed them
would fail the suite before it could re-key the core.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.core.text_columns import arrow_text

# Fixed 16-byte SipHash keys; changing either re-keys every core row.
_ID_KEYS = ("vardflytt-id-k01", "vardflytt-id-k02")
_CONTENT_KEY = "vardflytt-body01"
# What pandas gives a missing value in ``hash_pandas_object`` (and a row hash starts and ends
# with: CPython's tuple hash, as ``pandas.core.util.hashing.combine_hash_arrays`` computes it).
_MISSING_HASH = np.uint64(np.iinfo(np.uint64).max)
# The two hex digits of each byte value, as ASCII codes: hex text is built as one buffer.
_HEX_ASCII = np.frombuffer(
    "".join(f"{value:02x}" for value in range(256)).encode("ascii"), dtype=np.uint8
).reshape(256, 2)


# The same digits, each byte value's pair as one 2-byte item: a flat take of one item per byte
# (about 7 times faster than taking rows of the 2-column table).
_HEX_PAIRS = _HEX_ASCII.view(np.uint16).ravel()
# A column whose first values are more distinct than this share is hashed value by value
# (``text_value_hashes(is_mostly_distinct=True)``); the hashes are the same either way.
_DISTINCT_SAMPLE_ROWS = 1024
_MOSTLY_DISTINCT_SHARE = 0.5


def _hex_ascii(values: np.ndarray) -> np.ndarray:
    """16 hex digits per uint64 as a ``(rows, 16)`` array of ASCII codes."""
    big_endian = np.ascontiguousarray(values, dtype=">u8").reshape(-1)
    return _HEX_PAIRS[big_endian.view(np.uint8)].view(np.uint8).reshape(-1, 16)


def _fixed_width_text(characters: np.ndarray, index: pd.Index) -> pd.Series:
    """A ``string`` Series of one ASCII text per row of ``characters`` (rows x width codes),
    built as one Arrow buffer instead of one Python str per row."""
    rows, width = characters.shape
    offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int64)
    text = pa.LargeStringArray.from_buffers(
        rows, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(characters))
    )
    return pd.Series(pd.arrays.ArrowStringArray(text), index=index, dtype="string")


def core_ids(system: str, entity: str, source_keys: pd.Series) -> pd.Series:
    """The stable core id of each ``source_key`` of ``entity`` from ``system``.

    Each distinct key is hashed once, for both halves (a reference column repeats its keys), and
    its digits are taken per row: the digests pandas' ``hash_pandas_object`` gives for the
    ``string`` column of names (it hashes a text column's distinct values the same way).
    """
    text = source_keys.astype("string")
    keys = arrow_text(text)
    if keys is None:  # ``string`` kept in Python objects
        keys = pa.array(text.astype(object).where(text.notna(), None), type=pa.large_string())
    if keys.null_count:  # as ``keys.fillna("")`` in pandas
        keys = pc.fill_null(keys, pa.scalar("", keys.type))
    # Hashed are the names ``system/entity/key``: a key's name is a constant prefix and the
    # key, so the distinct keys give the distinct names. The prefix is joined to the distinct
    # keys only, or to every key when most are distinct (an entity's own keys), where a
    # dictionary would cost more than the hashing it saves.
    is_mostly_distinct = _looks_distinct(keys)
    encoded = None if is_mostly_distinct else pc.dictionary_encode(keys)
    hashed = keys if encoded is None else encoded.dictionary
    names_array = pc.binary_join_element_wise(
        pa.scalar(f"{system}/{entity}/", keys.type), hashed, pa.scalar("", keys.type)
    )
    # As UTF-8 bytes: pandas hashes a str as its UTF-8 encoding (see text_value_hashes).
    binary = pa.large_binary() if pa.types.is_large_string(names_array.type) else pa.binary()
    distinct = names_array.cast(binary).to_numpy(zero_copy_only=False)
    halves = [
        _hex_ascii(pd.util.hash_array(distinct, hash_key=key, categorize=False)) for key in _ID_KEYS
    ]
    digits = np.concatenate(halves, axis=1)
    if encoded is not None:
        digits = digits[encoded.indices.to_numpy(zero_copy_only=False)]
    return _fixed_width_text(digits.reshape(len(keys), 32), source_keys.index)


def content_hashes(frame: pd.DataFrame) -> pd.Series:
    """A hash of each row's business content, used to see whether a reload changes anything.

    A frame of Arrow text columns (the transform hashes its rows' text) is hashed column by
    column with :func:`text_value_hashes` and combined as pandas combines them; the digest is
    ``hash_pandas_object``'s."""
    texts = [arrow_text(column) for _, column in frame.items()]
    if len(texts) and all(text is not None for text in texts):
        column_hashes = [
            text_value_hashes(text, is_mostly_distinct=_looks_distinct(text))[0]
            for text in texts
            if text is not None
        ]
        digest = combined_row_hashes(column_hashes, len(frame))
    else:
        digest = pd.util.hash_pandas_object(frame, index=False, hash_key=_CONTENT_KEY).to_numpy()
    return _fixed_width_text(_hex_ascii(digest), frame.index)


def _looks_distinct(values: pa.Array) -> bool:
    """Whether a sample of the column's first values is mostly distinct (a guess, for speed)."""
    sample = values.slice(0, _DISTINCT_SAMPLE_ROWS)
    distinct = pc.count_distinct(sample, mode="all").as_py()
    return bool(distinct > _MOSTLY_DISTINCT_SHARE * len(sample))


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """Raw uint64 hashes of whole source rows, to tell exact duplicates from conflicting ones."""
    return pd.util.hash_pandas_object(frame, index=False, hash_key=_CONTENT_KEY).to_numpy()


def text_value_hashes(
    values: pa.Array | pa.ChunkedArray, *, is_mostly_distinct: bool = False
) -> tuple[np.ndarray, int | None]:
    """Each value's hash as ``row_hashes`` hashes a text column, and how many distinct values
    (nulls aside) the column holds (None with ``is_mostly_distinct``: not counted).

    The steps of pandas' own hashing of an Arrow-backed text column (dictionary-encode, hash the
    distinct values with SipHash, take), but the values are handed to ``pd.util.hash_array`` as
    their UTF-8 bytes rather than as Python strings it encodes one by one: pandas hashes a
    ``bytes`` value as exactly those bytes, and a ``str`` as its UTF-8 encoding, so the hash is
    the same (tests/unit/core/test_ids.py compares them), for about half the work. A column of
    mostly distinct values (``is_mostly_distinct``, the caller's guess) is hashed value by value:
    the dictionary would save little hashing and cost more than it saves. Either way gives the
    same hashes; only the time differs."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        raise TypeError(f"text_value_hashes hashes text, not {values.type}")
    binary = pa.large_binary() if pa.types.is_large_string(values.type) else pa.binary()
    if is_mostly_distinct:
        # A missing value becomes None in numpy, which pandas would hash as the text "None".
        filled = pc.fill_null(values, pa.scalar("", values.type)) if values.null_count else values
        every = filled.cast(binary).to_numpy(zero_copy_only=False)
        result = pd.util.hash_array(every, hash_key=_CONTENT_KEY, categorize=False)
        if values.null_count:
            result[values.is_null().to_numpy(zero_copy_only=False)] = _MISSING_HASH
        return result, None
    encoded = pc.dictionary_encode(values)
    distinct = encoded.dictionary.cast(binary).to_numpy(zero_copy_only=False)
    hashed = pd.util.hash_array(distinct, hash_key=_CONTENT_KEY, categorize=False)
    indices = encoded.indices
    if not len(hashed):  # every value missing (or none at all)
        return np.full(len(indices), _MISSING_HASH, dtype=np.uint64), 0
    result = hashed.take(indices.fill_null(0).to_numpy())
    if indices.null_count:
        result[indices.is_null().to_numpy(zero_copy_only=False)] = _MISSING_HASH
    return result, len(hashed)


def combined_row_hashes(column_hashes: Sequence[np.ndarray], rows: int) -> np.ndarray:
    """Rows' hashes from their columns' value hashes, in column order, as ``row_hashes``
    combines them (pandas' ``combine_hash_arrays``: CPython's tuple hash)."""
    result = np.full(rows, 0x345678, dtype=np.uint64)
    multiplier = np.uint64(1000003)
    for position, hashes in enumerate(column_hashes):
        remaining = len(column_hashes) - position
        result ^= hashes
        result *= multiplier
        multiplier += np.uint64(82520 + remaining + remaining)
    result += np.uint64(97531)
    return result
