"""The hostile XML corpus (tests/corpus/xml.py): every case's rows and unreadable records."""

from __future__ import annotations

import pytest

from etl.catalog import FileDataset
from etl.extract.records import ReadStats, reason_of
from etl.extract.xml_records import read_records
from tests.corpus import Unreadable
from tests.corpus.xml import CASES

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_case(tmp_path, case):
    path = tmp_path / case.filename
    path.write_bytes(case.content)
    dataset = FileDataset.model_validate(case.dataset)
    stats = ReadStats(path)

    records = list(read_records(path, dataset, stats))

    readable = [record for record in records if record.read_error is None]
    unreadable = [record for record in records if record.read_error is not None]
    assert [dict(zip(dataset.column_names, r.values, strict=True)) for r in readable] == case.rows
    assert [Unreadable(reason_of(r.read_error), r.record, r.line) for r in unreadable] == (
        case.unreadable
    )
    assert stats.records == case.physical
    assert stats.records == sum(record.record is not None for record in records)
    assert stats.unreadable == sum(r.record is not None for r in unreadable)
    assert stats.stray == sum(r.record is None for r in unreadable)
    assert dict(stats.unknown_fields) == case.unknown_fields
    for record in unreadable:  # one row, no values, the position in its text
        assert record.values == (None,) * len(dataset.fields)
        assert f"({case.filename}, line {record.line}" in record.read_error
    assert [r.record for r in records if r.record is not None] == list(range(1, case.physical + 1))
