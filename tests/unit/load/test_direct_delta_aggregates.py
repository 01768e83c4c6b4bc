"""A delta's promotion does not sum its file's hash aggregates (etl/load/direct.py, promote.py):
they are its base's plus its changes (etl/load/hash_aggregates.py), and what it records still
equals the core's rows of the system counted from scratch."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from etl.core.database import core_engine
from etl.load import direct, hash_aggregates
from etl.load.promote import promote, record_staged
from tests.unit.load.test_direct import ENTITY, _rows

pytestmark = pytest.mark.unit


def _stage(engine, tmp_path, batch_id: str, kind: str, table):
    path = tmp_path / f"{batch_id}.parquet"
    pq.write_table(table, path)
    sources = {ENTITY: path}
    with engine.begin() as connection:
        record_staged(
            connection, batch_id, "melior", kind, None, None,
            staged_files=direct.staged_files_record(sources),
        )  # fmt: skip
    return sources


def test_a_delta_records_base_plus_changes_without_summing_its_file(
    core_url, tmp_path, monkeypatch
):
    engine = core_engine(core_url)
    full = _stage(engine, tmp_path, "b1", "full", _rows("b1", range(120)))
    with engine.begin() as connection:
        promote(connection, "b1", [ENTITY], full, chunk_rows=50)
    # 20 rows changed (another code: another content hash), 30 new
    changed = _rows("b2", list(range(100, 150)), code="J45.0")
    delta = _stage(engine, tmp_path, "b2", "delta", changed)

    def summed(*_args, **_kwargs):
        raise AssertionError("a delta's file was summed for hash aggregates")

    monkeypatch.setattr(direct, "add_rows", summed)
    with engine.begin() as connection:
        report = promote(connection, "b2", [ENTITY], delta, chunk_rows=50)
    assert report.entities[ENTITY].file_aggregates is None
    with engine.connect() as connection:
        buckets, sums = hash_aggregates.recorded(connection, "b2")[ENTITY]
        core_buckets, core_sums = hash_aggregates.core_aggregates(connection, ENTITY, "melior")
    assert len(buckets) > 0
    assert hash_aggregates.differing_buckets(buckets, core_buckets) == []
    assert hash_aggregates.differing_columns(sums, core_sums) == []
    assert int(buckets["row_count"].sum()) == 150
