"""The validate stage's shortcuts give what the code they replaced gave.

- ``ValidatedRows`` writes the validated rows file: chunks that lose no row are held back and a
  file whose chunks lost none is the transformed file copied. The reference is the old way: every
  chunk's loadable rows (``rows[~quarantined]``) converted and written, chunk by chunk.
- ``_join_entity`` takes temporal context columns in Arrow, one lookup for all of them; the
  reference is pandas' ``map`` per column, as before.
- ``_in_batch`` reads a target's keys once per file version; the reference is the filtered scan
  it did per chunk.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.batch import BatchPaths
from etl.core.arrow import iter_batches_and_frames, iter_frames, stage_schema, to_arrow
from etl.transform.stage import StageWriter
from etl.validate import context
from etl.validate.context import _as_timestamps, _dates_as_timestamps, _join_entity
from etl.validate.references import Reference, _in_batch
from etl.validate.stage import ValidatedRows

pytestmark = pytest.mark.unit

ENTITY = "encounter"
CHUNK = 4


def _encounters(count: int) -> pa.Table:
    started = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    columns: dict[str, list] = {}
    for field in stage_schema(ENTITY):
        if field.name == "_row_number":
            columns[field.name] = list(range(1, count + 1))
        elif pa.types.is_timestamp(field.type):
            columns[field.name] = [
                None if i % 5 == 3 else started + dt.timedelta(hours=i) for i in range(count)
            ]
        elif pa.types.is_boolean(field.type):
            columns[field.name] = [None if i % 7 == 2 else i % 2 == 0 for i in range(count)]
        else:
            columns[field.name] = [
                None if i % 6 == 4 else f"{field.name}-{i}-ö" for i in range(count)
            ]
    return pa.table(columns, schema=stage_schema(ENTITY))


def _transformed(folder: Path, count: int, write_rows: int) -> Path:
    """A transformed file as the transform stage writes it: one table per chunk it mapped."""
    path = folder / "transformed" / f"{ENTITY}.parquet"
    writer = StageWriter({"rows": (path, stage_schema(ENTITY))})
    table = _encounters(count)
    for start in range(0, count, write_rows):
        writer.write("rows", table.slice(start, write_rows))
    writer.close()
    return path


def _old_way(transformed: Path, path: Path, masks: list[list[bool]], entity: str = ENTITY) -> None:
    writer = StageWriter({"rows": (path, stage_schema(entity))})
    for rows, mask in zip(iter_frames(transformed, CHUNK), masks, strict=True):
        quarantined = pd.Series(mask, index=rows.index)
        writer.write("rows", to_arrow(rows[~quarantined], entity))
    writer.close()


def _new_way(transformed: Path, path: Path, masks: list[list[bool]], entity: str = ENTITY) -> None:
    validated = ValidatedRows(transformed, path, entity, CHUNK)
    chunks = iter_batches_and_frames(transformed, CHUNK)
    for (read, rows), mask in zip(chunks, masks, strict=True):
        rows["patient__birth_date"] = pd.NaT  # a context column: never written
        validated.write(rows, pd.Series(mask, index=rows.index), read)
    validated.close()


def _same_file(tmp_path: Path, count: int, write_rows: int, masks: list[list[bool]]) -> pa.Table:
    transformed = _transformed(tmp_path, count, write_rows)
    old, new = tmp_path / "old" / f"{ENTITY}.parquet", tmp_path / "new" / f"{ENTITY}.parquet"
    old.parent.mkdir(exist_ok=True)
    new.parent.mkdir(exist_ok=True)
    _old_way(transformed, old, masks)
    _new_way(transformed, new, masks)
    expected, actual = pq.read_table(old), pq.read_table(new)
    assert actual.equals(expected)
    assert actual.schema.equals(expected.schema, check_metadata=True)
    assert not list(new.parent.glob("*.tmp"))
    return actual


def _chunk_masks(count: int, quarantined: set[int]) -> list[list[bool]]:
    rows = list(range(count))
    return [[i in quarantined for i in rows[s : s + CHUNK]] for s in range(0, count, CHUNK)]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    count=st.integers(min_value=1, max_value=14),
    write_rows=st.integers(min_value=1, max_value=9),
    quarantined=st.sets(st.integers(min_value=0, max_value=13), max_size=5),
)
def test_validated_rows_are_the_rows_the_old_way_wrote(
    tmp_path_factory, count, write_rows, quarantined
):
    folder = tmp_path_factory.mktemp("validated")
    quarantined = {i for i in quarantined if i < count}
    actual = _same_file(folder, count, write_rows, _chunk_masks(count, quarantined))
    assert actual.num_rows == count - len(quarantined)


def test_nothing_quarantined_copies_the_transformed_file(tmp_path):
    _same_file(tmp_path, 10, 3, _chunk_masks(10, set()))
    transformed = tmp_path / "transformed" / f"{ENTITY}.parquet"
    new = tmp_path / "new" / f"{ENTITY}.parquet"
    assert new.read_bytes() == transformed.read_bytes()
    assert oct(new.stat().st_mode & 0o777) == oct(transformed.stat().st_mode & 0o777)


def test_held_chunks_are_written_before_the_first_chunk_that_loses_a_row(tmp_path):
    # Chunks 1 and 2 whole, chunk 3 loses its first row, chunk 4 whole.
    actual = _same_file(tmp_path, 16, 5, _chunk_masks(16, {8}))
    assert actual.column("_row_number").to_pylist() == [n for n in range(1, 17) if n != 9]


def test_an_empty_transformed_file_gives_an_empty_validated_file(tmp_path):
    _same_file(tmp_path, 0, 3, [])


def test_a_transformed_file_of_another_schema_is_written_not_copied(tmp_path):
    transformed = _transformed(tmp_path, 6, 6)
    table = pq.read_table(transformed)
    pq.write_table(table.replace_schema_metadata({b"written_by": b"someone else"}), transformed)
    new = tmp_path / f"{ENTITY}.parquet"
    _new_way(transformed, new, _chunk_masks(6, set()))
    assert new.read_bytes() != transformed.read_bytes()
    assert pq.read_table(new).equals(table)
    assert pq.read_schema(new).equals(stage_schema(ENTITY), check_metadata=True)


@pytest.mark.parametrize(
    ("entity", "column", "values"),
    [
        # pandas reads an int64 column with a null as float64: beyond 2**53 a value changes.
        ("appointment", "duration_minutes", [2**53 + 1, None, 5, 7, 9, 11]),
        # A NaN (not a null) comes back from pandas as a null.
        ("observation", "value_numeric", [float("nan"), 1.5, None, 2.5, 3.5, 4.5]),
    ],
)
def test_a_chunk_the_old_way_would_have_changed_is_written_as_it_did(
    tmp_path, entity, column, values
):
    schema = stage_schema(entity)
    table = pa.table(
        {
            field.name: pa.array(values, type=field.type)
            if field.name == column
            else pa.nulls(len(values), type=field.type)
            for field in schema
        },
        schema=schema,
    )
    transformed = tmp_path / f"{entity}.parquet"
    writer = StageWriter({"rows": (transformed, schema)})
    writer.write("rows", table)
    writer.close()
    masks = [[False] * len(chunk) for chunk in _slices(len(values))]
    old, new = tmp_path / "old.parquet", tmp_path / "new.parquet"
    _old_way(transformed, old, masks, entity)
    _new_way(transformed, new, masks, entity)
    assert not pq.read_table(old).equals(table)  # the old way changed it: so must this one
    assert pq.read_table(new).equals(pq.read_table(old))


def _slices(count: int) -> list[range]:
    return [range(s, min(s + CHUNK, count)) for s in range(0, count, CHUNK)]


# --- context: temporal entity columns ------------------------------------------------------------

KEYS = st.sampled_from(["p1", "p2", "p3", "p4", "ö5"])
DATES = st.one_of(st.none(), st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)))
TIMES = st.one_of(
    st.none(),
    st.datetimes(
        min_value=dt.datetime(1900, 1, 1),
        max_value=dt.datetime(2100, 1, 1),
        timezones=st.just(dt.UTC),
    ),
)


def _old_join(source: Path, rows: pd.DataFrame, columns: list[str]) -> None:
    """``_join_entity`` as it was: ``map`` per column."""
    key = "patient_id"
    wanted = rows[key].dropna().unique()
    table = ds.dataset(source).to_table(
        columns=[key, *columns],
        filter=pc.is_in(pc.field(key), value_set=context._string_array(wanted)),
    )
    temporal = {c for c in columns if pa.types.is_temporal(table.schema.field(c).type)}
    found = _dates_as_timestamps(table).to_pandas().drop_duplicates(key).set_index(key)
    for column in columns:
        values = rows[key].map(found[column])
        rows[f"patient__{column}"] = _as_timestamps(values) if column in temporal else values


class _Paths:
    def __init__(self, folder: Path):
        self.folder = folder

    def stage_file(self, kind: str, entity: str) -> Path:
        return self.folder / f"{entity}.parquet"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    patients=st.lists(
        st.tuples(st.one_of(st.none(), KEYS), DATES, TIMES, st.text(max_size=3)), max_size=6
    ),
    wanted=st.lists(st.one_of(st.none(), KEYS, st.just("nobody")), max_size=12),
    columns=st.permutations(["birth_date", "registered_at", "name"]).flatmap(
        lambda names: st.integers(min_value=1, max_value=3).map(lambda n: list(names[:n]))
    ),
)
def test_entity_columns_join_in_as_map_did(tmp_path_factory, patients, wanted, columns):
    folder = tmp_path_factory.mktemp("context")
    table = pa.table(
        {
            "patient_id": pa.array([p[0] for p in patients], type=pa.string()),
            "birth_date": pa.array([p[1] for p in patients], type=pa.date32()),
            "registered_at": pa.array([p[2] for p in patients], type=pa.timestamp("us", tz="UTC")),
            "name": pa.array([p[3] for p in patients], type=pa.string()),
        }
    )
    pq.write_table(table, folder / "patient.parquet")
    rows = pd.DataFrame({"patient_id": pd.Series(wanted, dtype="string")})
    rows.index = rows.index + 10  # a chunk's index need not start at 0
    expected, actual = rows.copy(), rows.copy()
    try:
        _old_join(folder / "patient.parquet", expected, columns)
    except TypeError:
        # No patient found: pandas cannot map through an empty aware timestamp column; the
        # same error as before (nothing new is taken in Arrow from an empty table).
        with pytest.raises(TypeError):
            _join_entity(_Paths(folder), actual, "patient", columns)  # type: ignore[arg-type]
        return
    _join_entity(_Paths(folder), actual, "patient", columns)  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(actual[expected.columns], expected)


# --- references: keys found in the batch's transformed target ---------------------------------


def _old_in_batch(source: Path, column: str, wanted: pa.Array) -> set[str]:
    table = ds.dataset(source).to_table(
        columns=[column], filter=pc.is_in(pc.field(column), value_set=wanted.cast(pa.string()))
    )
    return set(pc.drop_null(table.column(0)).to_pylist())


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    target=st.lists(st.one_of(st.none(), KEYS, st.just("")), max_size=8),
    wanted=st.lists(st.one_of(KEYS, st.just("nobody")), max_size=8, unique=True),
)
def test_keys_in_the_batch_are_those_the_filtered_scan_found(tmp_path_factory, target, wanted):
    folder = tmp_path_factory.mktemp("batch")
    paths = BatchPaths(folder / "landing" / "b1" / "elvis")
    source = paths.stage_file("transformed", "patient")
    source.parent.mkdir(parents=True)
    pq.write_table(pa.table({"patient_id": pa.array(target, type=pa.string())}), source)
    asked = pa.array(wanted, type=pa.large_string())
    found = _in_batch(paths, Reference("encounter", "patient_id", "patient", "patient_id"), asked)
    assert found.type == pa.large_string()
    assert set(found.to_pylist()) == _old_in_batch(source, "patient_id", asked)


def test_a_rewritten_target_file_is_read_again(tmp_path):
    paths = BatchPaths(tmp_path / "landing" / "b1" / "elvis")
    source = paths.stage_file("transformed", "patient")
    source.parent.mkdir(parents=True)
    reference = Reference("encounter", "patient_id", "patient", "patient_id")
    asked = pa.array(["p1", "p2"], type=pa.large_string())
    pq.write_table(pa.table({"patient_id": ["p1"]}), source)
    assert _in_batch(paths, reference, asked).to_pylist() == ["p1"]
    # Rewritten as the stages write (a new file renamed into place), size and time kept.
    stat = source.stat()
    replacement = source.with_suffix(".tmp")
    pq.write_table(pa.table({"patient_id": ["p2"]}), replacement)
    assert replacement.stat().st_size == stat.st_size
    replacement.replace(source)
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _in_batch(paths, reference, asked).to_pylist() == ["p2"]
    shutil.rmtree(source.parent)
    assert _in_batch(paths, reference, asked).to_pylist() == []
