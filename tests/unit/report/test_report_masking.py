"""Masking rules (``etl.report.masking``) and bounded summaries (``etl.report.sketches``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from etl.report.masking import contains_identity_number, identity_like, is_safe_to_show, shape_of
from etl.report.sketches import DistinctCounter, FrequencySketch

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("189001019802", True, id="12-digits-valid-check-digit"),
        pytest.param("19121212-1212", True, id="12-digits-with-dash"),
        pytest.param("121212-1212", True, id="10-digits-with-dash"),
        pytest.param("121212+1212", True, id="10-digits-over-100"),
        pytest.param("1212121212", True, id="10-digits-plain"),
        pytest.param("121212-1213", True, id="wrong-check-digit-still-a-person"),
        pytest.param("701063-2391", True, id="samordningsnummer"),
        pytest.param("19810829M071", True, id="vgr-reservnummer"),
        pytest.param("202301151230", False, id="timestamp-yyyymmddhhmm"),
        pytest.param("2321000131", False, id="organisationsnummer"),
        pytest.param("SE2321000131-E000000065433", False, id="hsa-id"),
        pytest.param("19930421000046", False, id="npl-id-14-digits"),
        pytest.param("20000001", False, id="8-digit-key"),
        pytest.param("I21.9", False, id="icd10"),
    ],
)
def test_identity_like(value, expected):
    assert bool(identity_like(pa.array([value]))[0]) is expected


def test_identity_like_is_vectorised_and_keeps_order():
    values = ["I21.9", "19121212-1212", "A", "19810829M071", "202301151230"]
    assert identity_like(pa.array(values)).tolist() == [False, True, False, True, False]
    assert identity_like(pa.array([], pa.string())).tolist() == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("ring 19121212-1212 i morgon", True, id="embedded-personnummer"),
        pytest.param("pnr:121212-1212.", True, id="embedded-with-punctuation"),
        pytest.param("reserv 19810829M071", True, id="embedded-reservnummer"),
        pytest.param("SE2321000131-E000000065433", False, id="hsa-id"),
        pytest.param("Alvedon 500 mg tablett", False, id="product"),
        pytest.param("1912121212123", False, id="13-digit-run"),
    ],
)
def test_contains_identity_number(text, expected):
    assert contains_identity_number(text) is expected


@pytest.mark.parametrize(
    ("value", "shape"),
    [
        ("19121212-1212", "99999999-9999"),
        ("Åsa-Britt Öberg", "AAA-AAAAA AAAAA"),
        ("I21.9", "A99.9"),
        ("x" * 60, "A" * 40 + "…"),
    ],
)
def test_shape(value, shape):
    assert shape_of(value) == shape


def test_the_last_gate_needs_five_rows_and_no_identity_number():
    assert is_safe_to_show("K", 5)
    assert not is_safe_to_show("K", 4)
    assert not is_safe_to_show("19121212-1212", 500)


def test_distinct_counter_is_exact_when_small_and_close_when_large():
    counter = DistinctCounter(exact_limit=1_000)
    counter.update(np.array(["a", "b", "a"], dtype=object))
    assert (counter.count, counter.is_estimate) == (2, False)
    for start in range(0, 200_000, 20_000):
        counter.update(np.array([str(i) for i in range(start, start + 20_000)], dtype=object))
    assert counter.is_estimate
    assert abs(counter.count - 200_002) / 200_002 < 0.03


def test_frequency_sketch_counts_are_lower_bounds_once_pruned():
    rng = np.random.default_rng(3)
    data = rng.zipf(1.6, 20_000).astype(str)
    truth = pd.Series(data).value_counts()
    sketch = FrequencySketch(capacity=50)
    for chunk in np.array_split(data, 40):
        sketch.update(pd.Series(chunk).value_counts())
    assert sketch.is_pruned
    kept = sketch.most_common()
    assert len(kept) <= 50
    for value, rows in kept:
        assert rows <= truth[value]
    assert kept[0][0] == truth.index[0]  # the heavy hitter survives


def test_frequency_sketch_orders_ties_by_value():
    sketch = FrequencySketch()
    sketch.update(pd.Series({"b": 2, "a": 2, "c": 5}))
    assert sketch.most_common() == [("c", 5), ("a", 2), ("b", 2)]
    assert not sketch.is_pruned
