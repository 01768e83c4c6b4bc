"""Bounded-memory summaries of a column read chunk by chunk.

* :class:`DistinctCounter` counts distinct values exactly up to a limit, then estimates them
  with a HyperLogLog sketch (about 1% standard error), so a column of any size fits in memory.
* :class:`FrequencySketch` keeps value counts in at most ``capacity`` entries (Misra-Gries):
  once pruned, every kept count is a *lower bound* of the true count. That is the safe side for
  small-count suppression: a value whose true count is below the threshold never appears above it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EXACT_DISTINCT_LIMIT = 100_000
_PRECISION = 14  # 2**14 HyperLogLog registers: 16 KiB per column


def _hashes(values: np.ndarray) -> np.ndarray:
    return pd.util.hash_array(np.asarray(values, dtype=object)).astype(np.uint64)


def _leading_zeros(words: np.ndarray) -> np.ndarray:
    """Leading zero bits of non-zero uint64 words, vectorised (binary search on shifts)."""
    words = words.copy()
    count = np.zeros(len(words), dtype=np.int64)
    for shift in (32, 16, 8, 4, 2, 1):
        is_small = words < np.uint64(1 << (64 - shift))
        count[is_small] += shift
        words[is_small] <<= np.uint64(shift)
    return count


class DistinctCounter:
    """Exact distinct count while small, HyperLogLog estimate beyond ``exact_limit``."""

    def __init__(self, exact_limit: int = EXACT_DISTINCT_LIMIT) -> None:
        self.exact_limit = exact_limit
        self._exact: np.ndarray | None = np.empty(0, dtype=np.uint64)
        self._registers = np.zeros(1 << _PRECISION, dtype=np.int64)

    @property
    def is_estimate(self) -> bool:
        return self._exact is None

    def update(self, values: np.ndarray) -> None:
        if len(values) == 0:
            return
        hashes = _hashes(values)
        index = (hashes >> np.uint64(64 - _PRECISION)).astype(np.int64)
        # The guard bit keeps the remaining word non-zero, capping the rank at 64 - precision + 1.
        rest = (hashes << np.uint64(_PRECISION)) | np.uint64(1 << (_PRECISION - 1))
        np.maximum.at(self._registers, index, _leading_zeros(rest) + 1)
        if self._exact is not None:
            self._exact = np.union1d(self._exact, hashes)
            if len(self._exact) > self.exact_limit:
                self._exact = None

    @property
    def count(self) -> int:
        if self._exact is not None:
            return len(self._exact)
        registers = len(self._registers)
        alpha = 0.7213 / (1 + 1.079 / registers)
        estimate = alpha * registers**2 / np.sum(np.power(2.0, -self._registers))
        empty = int(np.count_nonzero(self._registers == 0))
        if estimate <= 2.5 * registers and empty:
            estimate = registers * np.log(registers / empty)  # linear counting for small sets
        return round(float(estimate))


class FrequencySketch:
    """Value counts in bounded memory; counts are exact until the sketch has had to prune."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self.counts = pd.Series(dtype="int64")
        self.is_pruned = False

    def update(self, counts: pd.Series) -> None:
        """Add one chunk's ``value -> rows`` counts."""
        if counts.empty:
            return
        merged = self.counts.add(counts.astype("int64"), fill_value=0).astype("int64")
        if len(merged) > self.capacity:
            cut = int(merged.nlargest(self.capacity + 1).iloc[-1])
            merged = merged[merged > cut] - cut
            self.is_pruned = True
        self.counts = merged

    def most_common(self, limit: int | None = None) -> list[tuple[str, int]]:
        """``(value, rows)`` by falling count, ties by value (the same input, the same report)."""
        pairs = sorted(self.counts.items(), key=lambda item: (-int(item[1]), str(item[0])))
        return [(str(value), int(rows)) for value, rows in pairs[:limit]]
