"""The hostile file corpus, case by case through its format's reader: the exact rows, the
unreadable records with reason and position, and what the reader counted.

Per-format properties beyond these (block boundaries, frames, error texts) are in
``test_corpus_text.py`` and ``test_corpus_hl7v2.py``; the SQL cases in ``test_corpus_sql.py``.
"""

from __future__ import annotations

import pytest

from etl.extract import hl7v2, jsonl, text_records, xml_records
from etl.extract.records import reason_of
from tests.corpus import Unreadable, reading

pytestmark = pytest.mark.unit

# Each format's reader, by corpus module: the module's name is its cases' dataset format.
READERS = {
    "delimited": text_records.read_records,
    "fixed_width": text_records.read_records,
    "hl7v2": hl7v2.read_records,
    "xml": xml_records.read_records,
    "jsonl": jsonl.read_records,
}
# An unreadable delimited or fixed-width record keeps its key when its fields split cleanly and
# only another column is bad (test_corpus_text.py asserts which); the other readers keep nothing.
KEEPS_KEY = {"delimited", "fixed_width"}


@pytest.mark.parametrize("case", reading.params(*READERS))
def test_corpus_case(tmp_path, case):
    format_name = case.dataset["format"]
    dataset, stats, records = reading.read(tmp_path, case, READERS[format_name])

    readable = [record for record in records if record.read_error is None]
    unreadable = [record for record in records if record.read_error is not None]
    assert [dict(zip(dataset.column_names, r.values, strict=True)) for r in readable] == case.rows
    assert [Unreadable(reason_of(r.read_error), r.record, r.line) for r in unreadable] == (
        case.unreadable
    )
    assert stats.records == case.physical
    assert stats.unreadable == sum(u.record is not None for u in case.unreadable)
    assert stats.stray == sum(u.record is None for u in case.unreadable)
    assert dict(stats.unknown_fields) == case.unknown_fields
    for record in unreadable:  # one row, no values (but a text key), its position in the text
        if format_name not in KEEPS_KEY:
            assert record.values == (None,) * len(dataset.column_names)
        assert f"({case.filename}, line {record.line}" in record.read_error
    # Every physical record in order; one row each, but an HL7 v2 message's rows (one per
    # row_segment, OBX) share its ordinal; text outside any record is one row without one.
    ordinals = [r.record for r in records if r.record is not None]
    if dataset.row_segment is None:
        assert ordinals == list(range(1, case.physical + 1))
        assert len(records) == case.physical + stats.stray
    else:
        assert ordinals == sorted(ordinals)
        assert set(ordinals) == set(range(1, case.physical + 1))
