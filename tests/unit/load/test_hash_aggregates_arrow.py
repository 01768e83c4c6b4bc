"""``buckets_of`` (Arrow + NumPy bincounts) against a straightforward pure-Python reference: the
same buckets, in the same order, with the same counts and sums, bit for bit, over random chunks
with rows without an id, empty and one-row chunks, short and non-ASCII ids, upper- and lower-case
hashes, chunked and large-string input."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from etl.load import hash_aggregates as ha

pytestmark = pytest.mark.unit

ID_CHARACTERS = ["0", "9", "a", "f", "A", "é", "€", "😀", "ß", " ", "z"]
HASH_CHARACTERS = "0123456789abcdefABCDEF"


def reference(row_ids: list[str | None], hashes: list[str]) -> pd.DataFrame:
    """Per bucket (the id's first two characters; a row without an id in none), in code point
    order: row count and the sums of the hashes' high and low 32 bits, in Python integers."""
    figures: dict[str, list[int]] = {}
    for row_id, content_hash in zip(row_ids, hashes, strict=True):
        if row_id is None:
            continue
        entry = figures.setdefault(row_id[:2], [0, 0, 0])
        entry[0] += 1
        entry[1] += int(content_hash[:8], 16)
        entry[2] += int(content_hash[8:], 16)
    labels = sorted(figures)
    if not labels:
        return pd.DataFrame({m: pd.Series(dtype="int64") for m in ha.MEASURES}).set_axis(
            pd.Index([], dtype=object, name="bucket")
        )
    return pd.DataFrame(
        {m: np.array([figures[b][i] for b in labels], np.int64) for i, m in enumerate(ha.MEASURES)},
        index=pd.Index(labels, name="bucket"),
    )


def _row_id(rng: random.Random) -> str | None:
    if rng.random() < 0.1:
        return None
    return "".join(rng.choice(ID_CHARACTERS) for _ in range(rng.choice([0, 1, 2, 3, 16])))


def _hash(rng: random.Random) -> str:
    if rng.random() < 0.05:
        return rng.choice(["ffffffffffffffff", "0000000000000000", "FFFFFFFF00000000"])
    return "".join(rng.choice(HASH_CHARACTERS) for _ in range(16))


def _as_arrow(values: list[str | None], rng: random.Random) -> pa.Array | pa.ChunkedArray:
    array = pa.array(values, rng.choice([pa.string(), pa.large_string()]))
    if rng.random() < 0.5:
        cut = rng.randint(0, len(values))
        return pa.chunked_array([array[:cut], array[cut:]], array.type)
    return array


def _assert_same(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(actual, expected, check_exact=True)
    assert actual.index.dtype == expected.index.dtype
    assert actual.index.name == "bucket"
    assert list(actual.columns) == list(ha.MEASURES)
    assert all(dtype == np.int64 for dtype in actual.dtypes)


@pytest.mark.parametrize("seed", range(4))
def test_buckets_match_a_pure_python_reference_on_random_chunks(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(150):
        size = rng.choice([1, 1, 2, 3, 7, 40, 300])
        row_ids = [_row_id(rng) for _ in range(size)]
        hashes = [_hash(rng) for _ in range(size)]
        actual = ha.buckets_of(_as_arrow(row_ids, rng), _as_arrow(hashes, rng))  # type: ignore[arg-type]
        _assert_same(actual, reference(row_ids, hashes))


def test_a_sliced_array_counts_only_its_own_rows() -> None:
    rng = random.Random(7)
    row_ids = [f"{rng.getrandbits(64):016x}" for _ in range(500)]
    hashes = [f"{rng.getrandbits(64):016x}" for _ in range(500)]
    actual = ha.buckets_of(pa.array(row_ids)[123:321], pa.array(hashes)[123:321])
    _assert_same(actual, reference(row_ids[123:321], hashes[123:321]))


def test_a_one_row_chunk_and_rows_that_all_lack_an_id() -> None:
    _assert_same(
        ha.buckets_of(pa.array(["é€x"]), pa.array(["89abcdef01234567"])),
        reference(["é€x"], ["89abcdef01234567"]),
    )
    _assert_same(
        ha.buckets_of(pa.array([None, None], pa.string()), pa.array(["0" * 16, "f" * 16])),
        reference([None, None], ["0" * 16, "f" * 16]),
    )


def test_an_empty_chunk_has_no_buckets() -> None:
    empty = ha.buckets_of(pa.array([], pa.string()), pa.array([], pa.string()))
    pd.testing.assert_frame_equal(empty, ha.empty_buckets())


def test_sums_stay_exact_past_float_precision() -> None:
    # 2**21 + 3 hashes of all ones: their sum, (2**32 - 1) times the rows, is past 2**53, where
    # a float64 sum of whole 32-bit halves would round
    size = 2**21 + 3
    actual = ha.buckets_of(pa.array(["ab"] * size), pa.array(["ffffffffffffffff"] * size))
    expected = size * (2**32 - 1)
    assert expected > 2**53
    assert actual.loc["ab"].tolist() == [size, expected, expected]


def test_realistic_chunk_of_hex_ids() -> None:
    rng = random.Random(11)
    row_ids = [f"{rng.getrandbits(128):032x}" for _ in range(20_000)]
    hashes = [f"{rng.getrandbits(64):016X}" for _ in range(20_000)]
    actual = ha.buckets_of(pa.array(row_ids), pa.array(hashes))
    assert len(actual) == 256
    _assert_same(actual, reference(row_ids, hashes))
