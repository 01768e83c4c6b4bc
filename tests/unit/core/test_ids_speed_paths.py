"""The faster paths of etl/core/ids.py give exactly the answers of the straightforward ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from etl.core import ids

pytestmark = pytest.mark.unit


def _hex_by_format(values: np.ndarray) -> list[str]:
    return [f"{int(value):016x}" for value in values]


def _core_ids_by_pandas(system: str, entity: str, keys: pd.Series) -> list[str]:
    """The id as first written: ``hash_pandas_object`` of the names, both keys, in hex."""
    names = (f"{system}/{entity}/" + keys.astype("string").fillna("")).astype(object)
    halves = [
        pd.util.hash_pandas_object(names, index=False, hash_key=key).to_numpy()
        for key in ids._ID_KEYS
    ]
    return [
        a + b for a, b in zip(_hex_by_format(halves[0]), _hex_by_format(halves[1]), strict=True)
    ]


def test_hex_digits_are_the_formatted_values():
    rng = np.random.default_rng(7)
    values = rng.integers(0, 2**64 - 1, size=1000, dtype=np.uint64, endpoint=True)
    values[:4] = [0, 1, 2**64 - 1, 0x0123456789ABCDEF]
    digits = ids._hex_ascii(values)
    assert digits.shape == (1000, 16)
    assert [row.tobytes().decode() for row in digits] == _hex_by_format(values)


@pytest.mark.parametrize("storage", ["pyarrow", "python"])
def test_core_ids_are_the_pandas_hashes_of_the_names(storage):
    keys = pd.Series(
        ["1", "", None, "åäö-ÅÄÖ", "K|2", "1", " x ", "\u00e9", "a" * 300, None],
        dtype=pd.StringDtype(storage),
        index=range(10, 20),
    )
    got = ids.core_ids("elvis", "patient", keys)
    assert got.index.equals(keys.index)
    assert str(got.dtype) == "string"
    assert got.tolist() == _core_ids_by_pandas("elvis", "patient", keys)


def test_core_ids_of_keys_not_text():
    keys = pd.Series([3, 1, 3, 20], dtype="Int64")
    assert ids.core_ids("melior", "encounter", keys).tolist() == _core_ids_by_pandas(
        "melior", "encounter", keys
    )


@pytest.mark.parametrize("rows", [0, 1, 5, 3000])
def test_content_hashes_are_the_pandas_row_hashes_whether_columns_repeat_or_not(rows):
    rng = np.random.default_rng(rows)
    distinct = pd.Series([f"v{i}" for i in range(rows)], dtype="string")
    repeated = pd.Series(rng.choice(["a", "b", None], size=rows), dtype="string")
    mostly_missing = pd.Series([None] * rows, dtype="string")
    if rows > 2:
        mostly_missing[2] = ""
        distinct[1] = None
    frame = pd.DataFrame({"d": distinct, "r": repeated, "m": mostly_missing})
    expected = pd.util.hash_pandas_object(
        frame.astype(object), index=False, hash_key=ids._CONTENT_KEY
    ).to_numpy()
    assert ids.content_hashes(frame).tolist() == _hex_by_format(expected)
