"""Reconciliation evidence keeps real-number sums to EVIDENCE_DECIMALS, without the last bits'
noise that the order of addition leaves (and that a leak scan reads as an identity number), for
both methods: the full re-read's per-column aggregates and the hash aggregates' column sums."""

from __future__ import annotations

import json
import re

import pytest

from etl.cutover.reconcile import _rounded

pytestmark = pytest.mark.unit

# The pattern the wave tests scan evidence packs with (tests/integration/test_waves.py).
IDENTITY_NUMBER = re.compile(r"(?<![0-9A-Za-z])(?:19|20)?\d{6}[-+]?\d{4}(?![0-9A-Za-z])")


def test_sums_with_float_noise_are_written_without_it_at_any_depth():
    noisy = sum([0.1] * 10) + 1233.0000000001  # 1234.0000000001 and noise
    aggregates = {  # the hash aggregates' shape (column -> source/core column sums)
        "reference_high": {
            "source": {"count": 2454, "sum": 223938.99999999997},
            "core": {"count": 2454, "sum": 223939.0000000001},
        },
        "value": {"source": {"count": 3, "sum": noisy}, "core": None},
        "listed": [noisy, "ps_abc"],
    }
    assert IDENTITY_NUMBER.search(json.dumps(aggregates))
    rounded = _rounded(aggregates)
    assert not IDENTITY_NUMBER.search(json.dumps(rounded))
    assert rounded["reference_high"]["source"]["sum"] == rounded["reference_high"]["core"]["sum"]
    assert rounded["reference_high"]["core"] == {"count": 2454, "sum": 223939.0}
    assert rounded["value"] == {"source": {"count": 3, "sum": 1234.0}, "core": None}
    assert rounded["listed"] == [1234.0, "ps_abc"]


def test_other_values_are_kept_as_they_are():
    assert _rounded(2454) == 2454
    assert _rounded("ps_abc") == "ps_abc"
    assert _rounded(None) is None
    assert _rounded(133538.94999999998) == 133538.95
