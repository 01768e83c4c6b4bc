"""Reconciliation evidence keeps real-number sums to EVIDENCE_DECIMALS, without the last bits'
noise that the order of addition leaves (and that a leak scan reads as an identity number)."""

from __future__ import annotations

import json
import re

import pytest

from etl.cutover.reconcile import _plain

pytestmark = pytest.mark.unit

# The pattern the wave tests scan evidence packs with (tests/integration/test_waves.py).
IDENTITY_NUMBER = re.compile(r"(?<![0-9A-Za-z])(?:19|20)?\d{6}[-+]?\d{4}(?![0-9A-Za-z])")


def test_a_sum_with_float_noise_is_written_without_it():
    noisy = sum([0.1] * 10) + 1233.0000000001  # 1234.0000000001 and noise
    assert IDENTITY_NUMBER.search(json.dumps({"sum": noisy}))
    assert json.dumps({"sum": _plain(noisy)}) == '{"sum": 1234.0}'
    assert _plain(133538.94999999998) == 133538.95


def test_other_values_are_kept_as_they_are():
    assert _plain(2454) == 2454
    assert _plain("ps_abc") == "ps_abc"
    assert _plain(None) is None
