"""What a delta carries over from its base batch: checked whole, and the base put in doubt."""

from __future__ import annotations

import json

from etl.batch import BatchPaths


def doubt_the_base(settings, batch_id: str, system: str, altered: str, other_reader: str) -> None:
    """Edit the base's landing manifest: ``altered``'s snapshot no longer matches the checksum it
    records, and ``other_reader`` is recorded as read by another reader."""
    manifest_file = BatchPaths.of(settings, batch_id, system).manifest_file
    manifest = json.loads(manifest_file.read_text("utf-8"))
    manifest["datasets"][altered]["sha256"] = "0" * 64
    manifest["datasets"][other_reader]["reader"] = "0" * 64
    manifest_file.write_text(json.dumps(manifest), "utf-8")


def assert_all_carried_over(delta, base) -> None:
    """Every dataset of the ``delta``'s landing manifest is the ``base``'s snapshot, its sources
    as the base recorded them, and nothing in it new, changed or deleted."""
    assert all(d.carried_over for d in delta.datasets.values())
    for name, dataset in delta.datasets.items():
        assert dataset.sha256 == base.datasets[name].sha256
        assert dataset.rows == base.datasets[name].rows
        assert dataset.sources == base.datasets[name].sources
        assert dataset.delta is not None and dataset.delta.rows == dataset.delta.deleted == 0
