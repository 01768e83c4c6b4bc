"""A dataset of at most one chunk is classified for duplicates from the lineage columns landing
kept while writing it (``_write_parquet``'s ``kept``) instead of reading them back: the same
outcome and the same duplicates file, byte for byte; past a chunk nothing is kept."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from etl.extract.landing import DUPLICATE_COLUMNS, _classify_duplicates, _write_parquet

pytestmark = pytest.mark.unit

NAMES = ["K", "V"]


def _chunks(parts: list[range]):
    """Keys repeat (every 10th row): keys 0-4 on exact copies, keys 5-9 on conflicting rows."""
    for part in parts:
        yield pd.DataFrame(
            {
                "K": pd.array([f"k{row % 10}" for row in part], "string"),
                "V": pd.array(["same" if row % 10 < 5 else f"v{row}" for row in part], "string"),
            }
        )


@pytest.mark.parametrize("parts", [[range(40)], [range(10), range(10, 25), range(25, 40)]])
def test_kept_lineage_classifies_as_the_landed_file(parts, tmp_path):
    landed = tmp_path / "landed.parquet"
    kept: list[pa.Table] = []
    rows = _write_parquet(_chunks(parts), NAMES, ["K"], landed, kept, keep_rows=40)
    assert rows == 40 and kept
    lineage = pa.concat_tables(kept)
    assert lineage.column_names == list(DUPLICATE_COLUMNS)

    from_file = _classify_duplicates(landed, tmp_path / "file.parquet", 40)
    from_kept = _classify_duplicates(landed, tmp_path / "kept.parquet", 40, lineage)

    assert from_kept == from_file and from_file[0] > 0 and from_file[1] > 0
    assert (tmp_path / "kept.parquet").read_bytes() == (tmp_path / "file.parquet").read_bytes()


def test_nothing_is_kept_past_a_chunk(tmp_path):
    kept: list[pa.Table] = []
    _write_parquet(
        _chunks([range(30), range(30, 60)]), NAMES, ["K"], tmp_path / "l.parquet", kept, 40
    )
    assert kept == []
