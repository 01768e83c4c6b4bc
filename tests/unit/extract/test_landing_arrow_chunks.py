"""Landing takes a reader's Arrow chunks as they are (``text_records.read_tables``,
``readers.read_table_arrays``) instead of the pandas frames made of them: the landed files and
manifests are exactly those the frames gave, byte for byte, in chunks of any size."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from etl.catalog import load_catalog
from etl.extract import landing, readers
from etl.extract.landing import _landing_schema, _with_lineage

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
AS_OF = dt.date(2026, 7, 1)


def _frames_only(monkeypatch) -> None:
    """Landing as before: every chunk a pandas frame."""
    monkeypatch.setattr(readers, "read_file_chunks_for_landing", readers.read_file_frames)
    arrays = readers.read_table_arrays  # read_table's frames are made of its chunks
    monkeypatch.setattr(
        readers, "read_table_arrays", lambda *args: map(readers._table_frame, arrays(*args))
    )


def _landed(settings, system: str) -> dict[str, bytes]:
    catalog = load_catalog(ROOT / "mappings")
    manifest = landing.extract_system(catalog, system, "b1", AS_OF, settings)
    found = {}
    for name, dataset in manifest.datasets.items():
        found[name] = (settings.resolved_landing_dir / dataset.path).read_bytes()
        found[f"{name} sources"] = repr([s.model_dump() for s in dataset.sources]).encode()
        found[f"{name} counts"] = repr(
            (dataset.rows, dataset.exact_duplicates, dataset.conflicting_duplicate_rows)
        ).encode()
    return found


@pytest.mark.parametrize("system", ["melior", "elvis"])
@pytest.mark.parametrize("chunk_rows", [7, 100_000])
def test_arrow_chunks_land_the_files_the_frames_landed(
    system, chunk_rows, tiny_estate, settings_for, tmp_path, monkeypatch
):
    arrow = _landed(
        settings_for(tiny_estate, landing_dir=tmp_path / "arrow", chunk_rows=chunk_rows), system
    )
    with monkeypatch.context() as patch:
        _frames_only(patch)
        frames = _landed(
            settings_for(tiny_estate, landing_dir=tmp_path / "frames", chunk_rows=chunk_rows),
            system,
        )
    assert arrow.keys() == frames.keys()
    for name in arrow:
        assert arrow[name] == frames[name], name


def test_a_table_a_dict_and_a_frame_give_one_landed_table():
    pieces = [
        pa.array(["a", " b", None], pa.large_string()),
        pa.array(["", "c"], pa.large_string()),
    ]
    columns = {
        "A": pa.chunked_array(pieces),
        "B": pa.chunked_array([pa.array(["x", "y", "x", None, "x"], pa.large_string())]),
        "_read_error": pa.chunked_array(
            [pa.array([None, None, "bad", None, None], pa.large_string())]
        ),
    }
    table = pa.table(columns)
    schema = _landing_schema(["A", "B"])
    as_table = _with_lineage(table, schema, ["A", "B"], 3)
    as_dict = _with_lineage(
        {n: c.combine_chunks() for n, c in columns.items()}, schema, ["A", "B"], 3
    )
    as_frame = _with_lineage(readers.text_records.text_frame(table), schema, ["A", "B"], 3)
    assert as_table[0].equals(as_frame[0]) and as_dict[0].equals(as_frame[0])
    assert as_table[1] == as_dict[1] == as_frame[1]
