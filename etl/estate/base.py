"""Shared machinery of the estate generator: random streams, date formatting, row containers.

Everything is vectorised over numpy arrays. Text columns are object arrays holding ``str`` or
``None`` (SQL NULL / empty field); integer key columns are int64 arrays.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

# The extract is taken as of this date: no activity after it.
EXTRACT_DATE = dt.date(2026, 6, 30)
# Legacy systems went live around here; no activity before it.
ACTIVITY_START = dt.date(1998, 1, 1)

EPOCH = np.datetime64("1970-01-01", "D")
MINUTES_PER_DAY = 24 * 60


def day_number(date: dt.date) -> int:
    """Days since 1970-01-01."""
    return int((np.datetime64(date, "D") - EPOCH).astype(np.int64))


EXTRACT_DAY = day_number(EXTRACT_DATE)
ACTIVITY_START_DAY = day_number(ACTIVITY_START)


def stream(seed: int, name: str) -> np.random.Generator:
    """An independent random stream per purpose, so one part changing leaves the others alone."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


# --- formatting -------------------------------------------------------------------------------

_PAD2 = np.array([f"{i:02d}" for i in range(100)], dtype=object)
_YEAR0 = 1800
_YEARS = np.array([f"{y:04d}" for y in range(_YEAR0, 2200)], dtype=object)


def _date_parts(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dates = np.asarray(days, dtype=np.int64).astype("datetime64[D]")
    years = dates.astype("datetime64[Y]")
    months = dates.astype("datetime64[M]")
    year = years.astype(np.int64) + 1970
    month = months.astype(np.int64) - (year - 1970) * 12 + 1
    day = (dates - months.astype("datetime64[D]")).astype(np.int64) + 1
    return year, month, day


def format_days(days: np.ndarray, fmt: str) -> np.ndarray:
    """Days since the epoch as text: ``YYYY-MM-DD``, ``YYYYMMDD``, ``YYMMDD`` or ``DD.MM.YYYY``."""
    days = np.asarray(days, dtype=np.int64)
    if len(days) == 0:
        return np.array([], dtype=object)
    year, month, day = _date_parts(days)
    y4 = _YEARS[year - _YEAR0]
    y2 = _PAD2[year % 100]
    mm = _PAD2[month]
    dd = _PAD2[day]
    if fmt == "YYYY-MM-DD":
        return y4 + "-" + mm + "-" + dd
    if fmt == "YYYYMMDD":
        return y4 + mm + dd
    if fmt == "YYMMDD":
        return y2 + mm + dd
    if fmt == "DD.MM.YYYY":
        return dd + "." + mm + "." + y4
    raise ValueError(f"unknown date format {fmt}")


def format_minutes(minutes: np.ndarray) -> np.ndarray:
    """Minutes since the epoch as ``YYYYMMDDHHmm``."""
    minutes = np.asarray(minutes, dtype=np.int64)
    days = minutes // MINUTES_PER_DAY
    in_day = minutes % MINUTES_PER_DAY
    return format_days(days, "YYYYMMDD") + _PAD2[in_day // 60] + _PAD2[in_day % 60]


def int_text(values: np.ndarray) -> np.ndarray:
    """Integers as an object array of decimal strings."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(map(str, np.asarray(values, dtype=np.int64).tolist()))
    return out


def pick(rng: np.random.Generator, options: list[str], size: int, p=None) -> np.ndarray:
    """``size`` draws from ``options`` as an object array of ``str``."""
    table = np.array(options, dtype=object)
    if p is not None:
        p = np.asarray(p, dtype=float)
        p = p / p.sum()
    return table[rng.choice(len(table), size=size, p=p)]


def where_none(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` with ``None`` wherever ``mask`` is true."""
    out = np.asarray(values, dtype=object).copy()
    out[np.asarray(mask, dtype=bool)] = None
    return out


def window_draw(
    rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, *, office_hours: float = 0.85
) -> np.ndarray:
    """One timestamp (minutes since epoch) per row, uniform over the days ``lo..hi`` inclusive.

    Mostly in office hours on a five-minute grid, sometimes at any hour of the day.
    """
    lo = np.asarray(lo, dtype=np.int64)
    span = np.maximum(np.asarray(hi, dtype=np.int64) - lo + 1, 1)
    day = lo + np.floor(rng.random(len(lo)) * span).astype(np.int64)
    office = rng.random(len(lo)) < office_hours
    hour = np.where(office, rng.integers(7, 17, len(lo)), rng.integers(0, 24, len(lo)))
    minute = rng.integers(0, 12, len(lo)) * 5
    return day * MINUTES_PER_DAY + hour * 60 + minute


def explode(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Owner index per child row, and the first child row of each owner."""
    counts = np.asarray(counts, dtype=np.int64)
    owner = np.repeat(np.arange(len(counts)), counts)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else counts
    return owner, first


def pick_child(
    rng: np.random.Generator, owner: np.ndarray, first: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """A random child row of each row's owner, or -1 when the owner has none."""
    n = counts[owner]
    chosen = first[owner] + np.floor(rng.random(len(owner)) * n).astype(np.int64)
    return np.where(n > 0, chosen, -1)


# --- rows with ground truth -------------------------------------------------------------------


@dataclass
class Dataset:
    """One source dataset as it will be written, with the defect planted in each row (if any).

    Row ``i`` of the arrays is data row ``i + 1`` of the export (file order / key order).
    """

    system: str
    name: str
    key: str
    columns: dict[str, np.ndarray]
    defect_class: np.ndarray = field(default=None)  # type: ignore[arg-type]
    defect_field: np.ndarray = field(default=None)  # type: ignore[arg-type]
    raw_bytes: bool = False  # some values hold surrogate-escaped raw bytes

    def __post_init__(self) -> None:
        n = len(self)
        if self.defect_class is None:
            self.defect_class = np.full(n, None, dtype=object)
        if self.defect_field is None:
            self.defect_field = np.full(n, None, dtype=object)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def take(self, order: np.ndarray) -> None:
        """Reorder (or repeat) rows in place."""
        self.columns = {name: values[order] for name, values in self.columns.items()}
        self.defect_class = self.defect_class[order]
        self.defect_field = self.defect_field[order]

    def free(self) -> np.ndarray:
        """Rows without a planted defect."""
        return np.equal(self.defect_class, None)

    def mark(self, rows: Iterable[int] | np.ndarray, defect_class: str, column: str) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        self.defect_class[rows] = defect_class
        self.defect_field[rows] = column

    def text(self, column: str) -> np.ndarray:
        """A column as text (``None`` stays ``None``)."""
        values = self.columns[column]
        if values.dtype == object:
            return values
        return int_text(values)
