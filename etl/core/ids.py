"""Deterministic row ids and content hashes, vectorised.

Ids are 128-bit, built from two keyed SipHash-2-4 digests (pandas' ``hash_pandas_object``) of
``system/entity/source_key``, so the same legacy row gets the same core id on every run without a
Python loop per row. Golden values in the tests pin them: a library upgrade that changed them
would fail the suite before it could re-key the core.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Fixed 16-byte SipHash keys; changing either re-keys every core row.
_ID_KEYS = ("vardflytt-id-k01", "vardflytt-id-k02")
_CONTENT_KEY = "vardflytt-body01"
_HEX_PAIRS = np.array([f"{value:02x}" for value in range(256)], dtype="<U2")


def _uint64_to_hex(values: np.ndarray) -> np.ndarray:
    """16 hex characters per uint64, via a byte lookup table (no per-row formatting)."""
    as_bytes = values.astype(">u8").view(np.uint8).reshape(-1, 8)
    return np.ascontiguousarray(_HEX_PAIRS[as_bytes]).view("<U16").ravel()


def _hash(values: pd.Series, key: str) -> np.ndarray:
    return pd.util.hash_pandas_object(values, index=False, hash_key=key).to_numpy()


def core_ids(system: str, entity: str, source_keys: pd.Series) -> pd.Series:
    """The stable core id of each ``source_key`` of ``entity`` from ``system``."""
    names = f"{system}/{entity}/" + source_keys.astype("string").fillna("")
    high = _uint64_to_hex(_hash(names, _ID_KEYS[0]))
    low = _uint64_to_hex(_hash(names, _ID_KEYS[1]))
    return pd.Series(np.char.add(high, low), index=source_keys.index, dtype="string")


def content_hashes(frame: pd.DataFrame) -> pd.Series:
    """A hash of each row's business content, used to see whether a reload changes anything."""
    digest = pd.util.hash_pandas_object(frame, index=False, hash_key=_CONTENT_KEY).to_numpy()
    return pd.Series(_uint64_to_hex(digest), index=frame.index, dtype="string")


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """Raw uint64 hashes of whole source rows, to tell exact duplicates from conflicting ones."""
    return pd.util.hash_pandas_object(frame, index=False, hash_key=_CONTENT_KEY).to_numpy()
