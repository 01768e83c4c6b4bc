"""Hash aggregates (etl/load/hash_aggregates.py): order-independent, they add and subtract like
the row sets they stand for, and the database computes the same figures as Arrow."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.core.tables import ENTITY_TABLES, metadata
from etl.load import hash_aggregates as ha

pytestmark = pytest.mark.unit

HEX = "0123456789abcdef"
hex_strings = st.text(alphabet=HEX, min_size=16, max_size=16)
rows = st.dictionaries(st.text(alphabet=HEX, min_size=32, max_size=32), hex_strings, max_size=60)


def _buckets(mapping: dict[str, str]) -> pd.DataFrame:
    return ha.buckets_of(pa.array(list(mapping), pa.string()), pa.array(list(mapping.values())))


def _equal(left: pd.DataFrame, right: pd.DataFrame) -> bool:
    return ha.differing_buckets(left, right) == []


@settings(max_examples=60, deadline=None)
@given(before=rows, removed=st.sets(st.integers(0, 59)), changed=rows)
def test_an_incremental_update_equals_a_full_recount(before, removed, changed):
    """base - previous versions of the rows a delta overwrote or deleted + the rows it wrote ==
    the aggregates of the resulting row set counted from scratch."""
    keys = list(before)
    deleted = {keys[i] for i in removed if i < len(keys)} - set(changed)
    after = {k: v for k, v in before.items() if k not in deleted} | changed
    overwritten = {k: before[k] for k in before if k in deleted or k in changed}
    incremental = ha.add(ha.add(_buckets(before), _buckets(overwritten), -1), _buckets(changed))
    assert _equal(incremental, _buckets(after))


@settings(max_examples=40, deadline=None)
@given(mapping=rows, data=st.data())
def test_one_differing_row_moves_its_bucket_and_only_its_bucket(mapping, data):
    if not mapping:
        return
    key = data.draw(st.sampled_from(sorted(mapping)))
    other = data.draw(hex_strings.filter(lambda h: h != mapping[key]))
    corrupted = {**mapping, key: other}
    assert ha.differing_buckets(_buckets(mapping), _buckets(corrupted)) == [key[:2]]
    missing = {k: v for k, v in mapping.items() if k != key}
    assert ha.differing_buckets(_buckets(mapping), _buckets(missing)) == [key[:2]]


def test_the_order_of_rows_does_not_matter():
    mapping = {f"{i:02x}" + "0" * 30: f"{i * 7919:016x}" for i in range(200)}
    reordered = dict(reversed(list(mapping.items())))
    assert _equal(_buckets(mapping), _buckets(reordered))


def test_a_content_hash_that_is_not_16_hex_digits_is_refused():
    with pytest.raises(ha.HashAggregateError):
        ha.buckets_of(pa.array(["ab" * 16]), pa.array(["xyz"]))
    with pytest.raises(ha.HashAggregateError):
        ha.buckets_of(pa.array(["ab" * 16]), pa.array(["g" * 16]))


@settings(max_examples=15, deadline=None)
@given(mapping=rows, values=st.lists(st.one_of(st.none(), st.integers(0, 10**6)), max_size=60))
def test_the_database_computes_the_same_aggregates_as_arrow(mapping, values):
    """SQLite's grouped query (the core side of a verification) equals Arrow's (the file side)."""
    engine = sa.create_engine("sqlite://")
    table = ENTITY_TABLES["appointment"]
    metadata.create_all(engine, tables=[table])
    values = (values + [None] * len(mapping))[: len(mapping)]
    records = [
        {
            "appointment_id": key,
            "patient_id": "p",
            "source_system": "elvis",
            "source_key": key,
            "batch_id": "b1",
            "content_hash": content,
            "duration_minutes": value,
        }
        for (key, content), value in zip(mapping.items(), values, strict=True)
    ]
    with engine.begin() as connection:
        if records:
            connection.execute(table.insert(), records)
        buckets, sums = ha.core_aggregates(connection, "appointment", "elvis")
    assert _equal(buckets, _buckets(mapping))
    arrow = pa.table({"duration_minutes": pa.array(values, pa.int64())})
    expected = ha.column_sums_of(arrow, ["duration_minutes"])
    assert ha.differing_columns(expected, {"duration_minutes": sums["duration_minutes"]}) == []
