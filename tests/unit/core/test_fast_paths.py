"""Core ids, content hashes and fixed-format date-times, built from bytes, give exactly the
answer of the pandas code they replaced (kept here as the reference), on generated input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.core.ids import content_hashes, core_ids
from etl.core.vocabulary import read_with_format

pytestmark = pytest.mark.unit

SETTINGS = settings(max_examples=300, deadline=None)
_ID_KEYS = ("vardflytt-id-k01", "vardflytt-id-k02")
_HEX_PAIRS = np.array([f"{value:02x}" for value in range(256)], dtype="<U2")


def _reference_hex(values: np.ndarray) -> np.ndarray:
    as_bytes = values.astype(">u8").view(np.uint8).reshape(-1, 8)
    return np.ascontiguousarray(_HEX_PAIRS[as_bytes]).view("<U16").ravel()


def _reference_core_ids(system: str, entity: str, source_keys: pd.Series) -> pd.Series:
    """The old way: both halves hashed over every row with ``hash_pandas_object``."""
    names = f"{system}/{entity}/" + source_keys.astype("string").fillna("")
    high, low = (
        _reference_hex(pd.util.hash_pandas_object(names, index=False, hash_key=key).to_numpy())
        for key in _ID_KEYS
    )
    return pd.Series(np.char.add(high, low), index=source_keys.index, dtype="string")


def _reference_content_hashes(frame: pd.DataFrame) -> pd.Series:
    digest = pd.util.hash_pandas_object(frame, index=False, hash_key="vardflytt-body01")
    return pd.Series(_reference_hex(digest.to_numpy()), index=frame.index, dtype="string")


KEY = st.one_of(st.none(), st.text(alphabet="ab1|# åÄ٣\u0301\ufffd", max_size=6))


@SETTINGS
@given(
    keys=st.lists(KEY, max_size=40),
    dtype=st.sampled_from(["string", "str", "object"]),
    entity=st.sampled_from(["patient", "encounter", "pätient/x"]),
    start=st.integers(0, 5),
)
def test_core_ids_are_the_old_ids(keys, dtype, entity, start):
    series = pd.Series(keys, dtype=dtype, index=pd.RangeIndex(start, start + len(keys)))
    expected = _reference_core_ids("elvis", entity, series)
    found = core_ids("elvis", entity, series)
    assert found.dtype == expected.dtype
    assert found.index.equals(expected.index)
    assert found.tolist() == expected.tolist()


@SETTINGS
@given(
    rows=st.lists(st.tuples(KEY, KEY, KEY), max_size=30),
    width=st.integers(1, 3),
    dtype=st.sampled_from(["string", "str", "object"]),
    start=st.integers(0, 5),
)
def test_content_hashes_are_the_old_hashes(rows, width, dtype, start):
    frame = pd.DataFrame(
        [row[:width] for row in rows],
        columns=["a", "b", "c"][:width],
        dtype=dtype,
        index=pd.RangeIndex(start, start + len(rows)),
    )
    expected = _reference_content_hashes(frame)
    found = content_hashes(frame)
    assert found.dtype == expected.dtype
    assert found.index.equals(expected.index)
    assert found.tolist() == expected.tolist()


def _reference_read(body: pd.Series, date_format: str) -> pd.Series:
    """The old way: pandas reads every value."""
    return pd.to_datetime(body, format=date_format, errors="coerce").astype("datetime64[ns]")


FORMATS = [
    "%Y%m%d%H%M",
    "%Y%m%d",
    "%Y-%m-%d",
    "%d.%m.%Y",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%y%m%d",
    "%H%M",
]
FIELDS = {
    "%Y": ["0000", "1677", "1678", "1900", "2000", "2023", "2024", "2261", "2262", "9999"],
    "%y": ["00", "69", "99"],
    "%m": ["00", "01", "02", "09", "10", "12", "13", "1 ", " 1"],
    "%d": ["00", "01", "28", "29", "30", "31", "32", " 1"],
    "%H": ["00", "09", "23", "24", "2 "],
    "%M": ["00", "30", "59", "60"],
    "%S": ["00", "59", "60", "61"],
}


@st.composite
def written_times(draw, date_format: str) -> str:
    """A value shaped by the format, its fields at and around their limits, sometimes spoilt."""
    text, index = "", 0
    while index < len(date_format):
        piece = date_format[index : index + 2]
        if piece in FIELDS:
            text += draw(
                st.sampled_from(FIELDS[piece])
                | st.text("0123456789", min_size=2, max_size=2 if piece != "%Y" else 4)
            )
            index += 2
        else:
            text += date_format[index]
            index += 1
    if draw(st.booleans()) and text:
        position = draw(st.integers(0, len(text) - 1))
        # ":" and "/" sit just after "9" and before "0": a digit test must not be off by one.
        spoil = draw(st.sampled_from(["", "x", " ", "٣", "1", "12", "\t", "-", ":", "/"]))
        text = text[:position] + spoil + text[position + 1 :]
    return text


@SETTINGS
@given(data=st.data(), date_format=st.sampled_from(FORMATS), start=st.integers(0, 5))
def test_read_with_format_is_pandas_to_datetime(data, date_format, start):
    values = data.draw(
        st.lists(st.one_of(st.none(), st.just(""), written_times(date_format)), max_size=25)
    )
    body = pd.Series(values, dtype="string", index=pd.RangeIndex(start, start + len(values)))
    try:
        expected = _reference_read(body, date_format)
    except (ValueError, OverflowError) as failure:  # out of datetime64[ns]: both refuse
        with pytest.raises(type(failure)):
            read_with_format(body, date_format)
        return
    found = read_with_format(body, date_format)
    assert found.dtype == expected.dtype
    assert found.index.equals(expected.index)
    assert found.isna().tolist() == expected.isna().tolist()
    assert found.dropna().tolist() == expected.dropna().tolist()


CALENDAR_EDGES = [
    "199801101535",
    "202402291230",
    "202302291230",
    "190002290000",
    "200002290000",
    "202404310000",
    "202412312359",
    "202401010000",
    "202400010000",
    None,
]


def test_read_with_format_reads_the_calendar():
    body = pd.Series(CALENDAR_EDGES, dtype="string")
    found = read_with_format(body, "%Y%m%d%H%M")
    assert found.tolist()[:2] == [
        pd.Timestamp("1998-01-10 15:35"),
        pd.Timestamp("2024-02-29 12:30"),
    ]
    assert found.isna().tolist() == _reference_read(body, "%Y%m%d%H%M").isna().tolist()
    assert found.dropna().tolist() == _reference_read(body, "%Y%m%d%H%M").dropna().tolist()


@pytest.mark.parametrize("date_format", FORMATS)
def test_read_with_format_refuses_the_bytes_beside_the_digits(date_format):
    """Every position of a valid value replaced by the bytes just outside "0"-"9" (``/`` and
    ``:``): what pandas refuses is refused, what it reads is read alike."""
    valid = {"%Y": "2024", "%y": "24", "%m": "01", "%d": "01", "%H": "00", "%M": "00"}
    valid["%S"] = "00"
    text = date_format
    for directive, digits in valid.items():
        text = text.replace(directive, digits)
    values = [text]
    for position in range(len(text)):
        for byte in "/:":
            values.append(text[:position] + byte + text[position + 1 :])
    body = pd.Series(values, dtype="string")
    expected = _reference_read(body, date_format)
    found = read_with_format(body, date_format)
    assert found.isna().tolist() == expected.isna().tolist()
    assert found.dropna().tolist() == expected.dropna().tolist()
