"""The HL7 v2 hostile-input corpus: every case's rows, unreadable records and counts, exactly."""

from __future__ import annotations

import pytest

from etl.catalog import FileDataset
from etl.extract import hl7v2
from etl.extract.records import ReadStats, reason_of
from tests.corpus import CorpusCase, Unreadable
from tests.corpus.hl7v2 import CASES

pytestmark = pytest.mark.unit


def read_case(tmp_path, case: CorpusCase):
    path = tmp_path / case.filename
    path.write_bytes(case.content)
    dataset = FileDataset.model_validate(case.dataset)
    stats = ReadStats(path)
    records = list(hl7v2.read_records(path, dataset, stats))
    return dataset, stats, records


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_corpus_case_reads_exactly(tmp_path, case):
    dataset, stats, records = read_case(tmp_path, case)

    readable = [r for r in records if r.read_error is None]
    unreadable = [r for r in records if r.read_error is not None]
    assert [dict(zip(dataset.column_names, r.values, strict=True)) for r in readable] == case.rows
    assert [Unreadable(reason_of(r.read_error), r.record, r.line) for r in unreadable] == (
        case.unreadable
    )
    assert all(r.values == (None,) * len(dataset.column_names) for r in unreadable)
    assert stats.records == case.physical
    assert stats.unreadable == sum(u.record is not None for u in case.unreadable)
    assert stats.stray == sum(u.record is None for u in case.unreadable)
    assert dict(stats.unknown_fields) == case.unknown_fields


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_corpus_positions_are_consistent_and_errors_carry_no_values(tmp_path, case):
    _, stats, records = read_case(tmp_path, case)

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
