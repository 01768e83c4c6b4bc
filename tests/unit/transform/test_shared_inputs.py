"""The landed key and lookup columns a run's transform stage reads once for every entity."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.extract.landing import SOURCE_KEY
from etl.transform import engine

pytestmark = pytest.mark.unit


class _Paths:
    def __init__(self, root: Path):
        self.root = root

    def landed_file(self, dataset: str) -> Path:
        return self.root / f"{dataset}.parquet"


def _land(path: Path, keys: list[str | None], sparr: list[str]) -> None:
    pq.write_table(pa.table({SOURCE_KEY: keys, "SPARR": sparr}), path)


def _mapping() -> SimpleNamespace:
    return SimpleNamespace(
        references=[SimpleNamespace(dataset="kontakt")],
        lookups=[SimpleNamespace(dataset="kontakt", take="SPARR", as_="KONTAKT_SPARR")],
    )


def test_read_once_within_the_block_and_again_for_a_changed_file(tmp_path, monkeypatch):
    paths = _Paths(tmp_path)
    _land(paths.landed_file("kontakt"), ["k1", "k2", None, "k2"], ["J", "N", "J", "J"])
    reads: list[Path] = []
    real = pq.read_table

    def counted(path, *args, **kwargs):
        reads.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(engine.pq, "read_table", counted)
    alone_keys = engine.load_reference_keys(paths, _mapping())
    alone_lookups = engine.load_lookups(paths, _mapping())
    assert len(reads) == 2
    with engine.shared_landed_inputs():
        first = (
            engine.load_reference_keys(paths, _mapping()),
            engine.load_lookups(paths, _mapping()),
        )
        second = (
            engine.load_reference_keys(paths, _mapping()),
            engine.load_lookups(paths, _mapping()),
        )
        assert len(reads) == 4  # the second entity reads nothing
        assert second[0]["kontakt"] is first[0]["kontakt"]
        assert first[0]["kontakt"].equals(alone_keys["kontakt"])
        assert first[1]["KONTAKT_SPARR"].equals(alone_lookups["KONTAKT_SPARR"])
        # The file landed again (another size, another mtime): read again, its new content.
        _land(paths.landed_file("kontakt"), ["k1", "k3"], ["N", "N"])
        stat = paths.landed_file("kontakt").stat()
        os.utime(paths.landed_file("kontakt"), ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        third = engine.load_reference_keys(paths, _mapping())
        assert list(third["kontakt"]) == ["k1", "k3"]
        assert len(reads) == 5
    # Outside the block nothing is kept.
    engine.load_reference_keys(paths, _mapping())
    assert len(reads) == 6
