"""Duplicate keys are classified by hash buckets when a dataset is larger than one chunk (bounded
memory); the answer is the one the whole-file classification gives, kept here as the reference."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.extract.landing import ROW_HASH, ROW_NUMBER, SOURCE_KEY, _classify_duplicates

pytestmark = pytest.mark.unit


def _reference(landed: Path) -> pa.Table:
    """The old way: the whole file's keys grouped at once."""
    table = pq.read_table(landed, columns=[ROW_NUMBER, SOURCE_KEY, ROW_HASH])
    table = table.filter(pc.is_valid(table[SOURCE_KEY]))
    keys = table.group_by(SOURCE_KEY).aggregate(
        [(ROW_HASH, "count_distinct"), (ROW_NUMBER, "min"), (ROW_NUMBER, "count")]
    )
    repeated = keys.filter(pc.greater(keys[f"{ROW_NUMBER}_count"], 1))
    joined = table.join(repeated, SOURCE_KEY, join_type="inner")
    is_conflict = pc.greater(joined[f"{ROW_HASH}_count_distinct"], 1)
    is_copy = pc.and_(
        pc.invert(is_conflict), pc.greater(joined[ROW_NUMBER], joined[f"{ROW_NUMBER}_min"])
    )
    outcome = pc.if_else(is_conflict, "duplicate_source_key", pc.if_else(is_copy, "merged", None))
    result = pa.table({ROW_NUMBER: joined[ROW_NUMBER], "outcome": outcome}).filter(
        pc.is_valid(outcome)
    )
    return result.sort_by(ROW_NUMBER)


ROWS = st.lists(
    st.tuples(
        st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3", "ö4", "k5", ""])), st.integers(0, 2)
    ),
    max_size=60,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=ROWS, chunk_rows=st.integers(1, 25))
def test_buckets_classify_as_the_whole_file(tmp_path, rows, chunk_rows):
    landed, target = tmp_path / "landed.parquet", tmp_path / "duplicates.parquet"
    pq.write_table(
        pa.table(
            {
                "A": pa.array(["x"] * len(rows), type=pa.string()),
                ROW_NUMBER: pa.array(range(1, len(rows) + 1), type=pa.int64()),
                SOURCE_KEY: pa.array([key for key, _ in rows], type=pa.string()),
                ROW_HASH: pa.array([content for _, content in rows], type=pa.uint64()),
            }
        ),
        landed,
        row_group_size=7,
    )
    expected = _reference(landed)
    merged, conflicting = _classify_duplicates(landed, target, chunk_rows)
    written = pq.read_table(target)
    assert written.equals(expected)
    assert written.schema.equals(expected.schema, check_metadata=True)
    outcomes = expected.column("outcome").to_pylist()
    assert (merged, conflicting) == (
        outcomes.count("merged"),
        outcomes.count("duplicate_source_key"),
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "duplicates.parquet",
        "landed.parquet",
    ]


# Mostly keys on one row, as in a real dataset: the keys counted once must be left out, and
# a dataset without a repeated key gives an empty answer of the same schema.
MOSTLY_UNIQUE = st.lists(
    st.tuples(st.one_of(st.none(), st.integers(0, 80).map(str)), st.integers(0, 2)),
    max_size=60,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=MOSTLY_UNIQUE, chunk_rows=st.integers(1, 80))
def test_keys_on_one_row_classify_as_the_whole_file(tmp_path, rows, chunk_rows):
    test_buckets_classify_as_the_whole_file.hypothesis.inner_test(tmp_path, rows, chunk_rows)
