"""The HL7 v2 hostile-input corpus: positions and error texts, and every reason code covered.

Each case's rows, unreadable records and counts: ``test_corpus_readers.py``.
"""

from __future__ import annotations

import pytest

from etl.extract import hl7v2
from tests.corpus import reading
from tests.corpus.hl7v2 import CASES

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_corpus_positions_are_consistent_and_errors_carry_no_values(tmp_path, case):
    _, stats, records = reading.read(tmp_path, case, hl7v2.read_records)

    ordinals = [r.record for r in records if r.record is not None]
    assert ordinals == sorted(ordinals)
    assert set(ordinals) == set(range(1, stats.records + 1)), "every message gives a row"
    for record in records:
        if record.read_error is None:
            continue
        assert f"({case.filename}, line {record.line}" in record.read_error
        assert ("record" in record.read_error) == (record.record is not None)
        # The error names paths and lines, never the values of the record.
        for value in ("Åberg", "Ber", "Sven", "P2", "P3", "199001", "skräp", "INTE HL7"):
            assert value not in record.read_error.split(": ", 1)[-1]


def test_the_corpus_covers_every_reason_code():
    reasons = {u.reason for case in CASES for u in case.unreadable}
    assert reasons == {
        hl7v2.INVALID_MESSAGE,
        hl7v2.UNEXPECTED_TYPE,
        hl7v2.MISSING_ROW_SEGMENT,
        hl7v2.MISSING_SEGMENT,
        hl7v2.INVALID_ESCAPE,
        hl7v2.UNDECODABLE_BYTES,
        hl7v2.CONTROL_CHARACTER,
    }
    assert len(CASES) >= 10
