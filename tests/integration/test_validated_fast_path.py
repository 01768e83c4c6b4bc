"""The validate stage writes a chunk's validated rows from the transformed file's own batch when
converting its frame back is proven exact by type (``etl.validate.stage.converts_back_exactly``).
That shortcut is only right while validation never changes a column it was given (context
enrichment adds columns, checks read them). This differential test guards that rule: the same
systems validated with the shortcut and with every chunk converted back from its frame, as
before the shortcut, must give the same validated files, row for row and value for value."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from etl import pipeline
from etl.validate import stage as validate_stage

pytestmark = pytest.mark.integration

AS_OF = dt.date(2026, 7, 1)
# One system per kind of source: database (ELVIS), delimited and fixed-width files (Melior,
# Obstetrix), HL7 v2 (a lab), XML (Orbit).
SYSTEMS = ("elvis", "melior", "obstetrix", "lab_su", "orbit")


def _validated(folder: Path, estate: Path, settings_for) -> dict[str, pq.ParquetFile]:
    settings = settings_for(estate, f"sqlite:///{folder / 'core.sqlite'}", home=folder / "home")
    files = {}
    for system in SYSTEMS:
        batch_id = pipeline.batch_id_for(system, "fast_path")
        pipeline.extract(system, batch_id, AS_OF, settings)
        pipeline.transform_and_validate(system, batch_id, settings)
        root = settings.resolved_landing_dir / batch_id
        for path in sorted(root.rglob("validated/*.parquet")):
            files[path.relative_to(root).as_posix()] = path
    return files


def test_validated_files_are_those_of_converting_every_chunk_back(
    estate_of, settings_for, tmp_path, monkeypatch
):
    estate = estate_of(120, 3)
    shortcut = _validated(tmp_path / "shortcut", estate, settings_for)
    calls = []

    def never_exact(read, schema):
        calls.append(read.num_rows)
        return False

    monkeypatch.setattr(validate_stage, "converts_back_exactly", never_exact)
    converted = _validated(tmp_path / "converted", estate, settings_for)

    assert calls, "the validate stage no longer asks converts_back_exactly: update this test"
    assert shortcut.keys() == converted.keys()
    assert len(shortcut) >= 10
    for name, path in shortcut.items():
        ours, theirs = pq.read_table(path), pq.read_table(converted[name])
        assert ours.schema.equals(theirs.schema), name
        assert ours.equals(theirs), f"{name}: the validated rows differ from the converted ones"
