"""The validated rows file is written from the transformed file's own batch when converting the
chunk's frame back (``to_arrow``) is proven to give that batch again (``converts_back_exactly``):
the proof must never say yes where the conversion changes a value."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from etl.core.arrow import iter_batches_and_frames, stage_schema, to_arrow
from etl.core.model import ENTITIES
from etl.validate.stage import converts_back_exactly

pytestmark = pytest.mark.unit


def _column(kind: pa.DataType, rows: int, rng: np.random.Generator, nulls: bool) -> pa.Array:
    missing = rng.random(rows) < 0.3 if nulls else np.zeros(rows, bool)
    if kind == pa.string():
        values = [f" v{n}\u00e5 " if n % 7 else "" for n in rng.integers(0, 50, rows)]
    elif kind == pa.bool_():
        values = list(rng.random(rows) < 0.5)
    elif kind == pa.int64():
        values = [int(v) for v in rng.integers(-(2**40), 2**40, rows)]
    elif kind == pa.float64():
        values = [float(v) for v in rng.normal(0, 1e6, rows)]
        values[0] = -0.0
    elif kind == pa.date32():
        values = [
            dt.date(1900, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 50_000, rows)
        ]
    else:
        start = dt.datetime(1950, 1, 1, tzinfo=dt.UTC)
        values = [start + dt.timedelta(microseconds=int(u)) for u in rng.integers(0, 2**41, rows)]
    return pa.array([None if m else v for v, m in zip(values, missing, strict=True)], type=kind)


def _batch(entity: str, rows: int, seed: int, nulls: bool) -> pa.RecordBatch:
    schema = stage_schema(entity)
    rng = np.random.default_rng(seed)
    return pa.RecordBatch.from_arrays(
        [_column(field.type, rows, rng, nulls) for field in schema], schema=schema
    )


def _round_trip(batch: pa.RecordBatch, entity: str, tmp_path) -> tuple[pa.RecordBatch, pa.Table]:
    """The batch as the validate stage reads it back from a file, and ``to_arrow`` of its frame."""
    import pyarrow.parquet as pq

    path = tmp_path / f"{entity}.parquet"
    pq.write_table(pa.Table.from_batches([batch]), path)
    [(read, frame)] = list(iter_batches_and_frames(path, 10_000))
    return read, to_arrow(frame, entity)


@pytest.mark.parametrize("nulls", [False, True])
@pytest.mark.parametrize("entity", sorted(ENTITIES))
def test_every_stage_schema_converts_back_exactly(entity, nulls, tmp_path):
    read, converted = _round_trip(_batch(entity, 300, len(entity), nulls), entity, tmp_path)
    assert converts_back_exactly(read, stage_schema(entity))
    assert converted.equals(pa.Table.from_batches([read]))


def _one_column(kind: pa.DataType, values: list) -> tuple[pa.RecordBatch, pa.Schema]:
    schema = pa.schema([("value", kind)])
    return pa.RecordBatch.from_arrays([pa.array(values, type=kind)], schema=schema), schema


@pytest.mark.parametrize(
    ("kind", "values"),
    [
        (pa.float64(), [1.5, float("nan"), None]),  # NaN becomes a null
        (pa.int64(), [2**53 + 1, None]),  # a missing value makes it float64: rounded
        (pa.int64(), [-(2**53) - 1, None]),
        (pa.time64("us"), [dt.time(1, 2), None]),  # a type the proof does not know
    ],
)
def test_lossy_conversions_are_not_proven_exact(kind, values):
    batch, schema = _one_column(kind, values)
    assert not converts_back_exactly(batch, schema)


@pytest.mark.parametrize(
    ("kind", "values"),
    [
        (pa.float64(), [1.5, -0.0, None]),
        (pa.int64(), [2**53, -(2**53), None]),
        (pa.int64(), [2**62, -(2**62)]),  # nothing missing: stays int64
        (pa.int64(), [None, None]),
    ],
)
def test_exact_edges_are_proven_exact(kind, values):
    batch, schema = _one_column(kind, values)
    assert converts_back_exactly(batch, schema)
    frame = batch.to_pandas()
    converted = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    assert converted.equals(pa.Table.from_batches([batch]))


def test_lossy_edges_do_change_in_conversion():
    """Why the proof refuses them: converting back does change these values."""
    for kind, values in [(pa.float64(), [float("nan"), 1.0]), (pa.int64(), [2**53 + 1, None])]:
        batch, schema = _one_column(kind, values)
        frame = batch.to_pandas()
        converted = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
        assert not converted.equals(pa.Table.from_batches([batch]))


def test_another_schema_is_not_proven_exact():
    batch, _ = _one_column(pa.string(), ["a"])
    assert not converts_back_exactly(batch, pa.schema([("value", pa.large_string())]))
    assert not converts_back_exactly(batch, pa.schema([("other", pa.string())]))
