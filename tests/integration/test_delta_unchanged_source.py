"""A delta reuses the base's landed snapshot of a source file only when the file is the same to
the byte (etl.extract.landing._unchanged_since_base), and reads it in full at any doubt.

Melior (flat files) on SQLite, from a copy of the small estate: a full load, then deltas with
nothing changed, with one file changed in place keeping its size and modification time, with the
base's manifest no longer matching its snapshot, and with a different reader recorded."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from etl import pipeline
from etl.batch import BatchPaths
from etl.core.database import core_engine
from etl.core.tables import ENTITY_TABLES
from etl.extract.delta import CHANGE, CHANGED, delta_file
from etl.extract.landing import read_manifest
from tests.carry_over import assert_all_carried_over, doubt_the_base

pytestmark = pytest.mark.integration

SYSTEM = "melior"
AS_OF = dt.date(2026, 7, 1)


def _diagnosis_dates(settings) -> dict[str, object]:
    table = ENTITY_TABLES["diagnosis"]
    with core_engine(settings.resolved_core_url).connect() as connection:
        return dict(
            connection.execute(sa.select(table.c.diagnosis_id, table.c.diagnosis_date)).all()
        )


@pytest.fixture
def loaded(sqlite_core, small_estate, tmp_path, settings_for):
    estate = tmp_path / "estate"
    shutil.copytree(small_estate, estate)
    settings = settings_for(estate, sqlite_core(tmp_path))
    pipeline.run_system(SYSTEM, "full", AS_OF, settings=settings)
    return settings, estate


def _delta(settings, batch_id: str):
    report = pipeline.run_system(SYSTEM, batch_id, AS_OF, settings=settings, kind="delta")
    assert report.is_reconciled
    return read_manifest(settings, batch_id, SYSTEM)


def _changed_in_place(path) -> None:
    """One date of one row changed, same length, the file's size and mtime kept."""
    stat = path.stat()
    data = path.read_bytes()
    header_end = data.index(b"\n") + 1
    line_end = data.index(b"\n", header_end)
    line = data[header_end:line_end]
    fields = line.split(b";")
    date = fields[5]  # DIAGNOSDATUM, DD.MM.YYYY
    day = int(date[:2])
    fields[5] = b"%02d" % (day % 27 + 1) + date[2:]
    assert fields[5] != date
    changed = b";".join(fields)
    assert len(changed) == len(line)
    path.write_bytes(data[:header_end] + changed + data[line_end:])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)


def test_an_unchanged_source_is_carried_over_and_a_change_keeping_size_and_mtime_is_caught(
    loaded,
):
    settings, estate = loaded
    full = read_manifest(settings, "full", SYSTEM)
    assert all(d.reader and not d.carried_over for d in full.datasets.values())
    before = _diagnosis_dates(settings)

    same = _delta(settings, "delta-same")
    assert_all_carried_over(same, full)
    assert _diagnosis_dates(settings) == before

    _changed_in_place(estate / SYSTEM / "DIAGNOS.TXT")
    changed = _delta(settings, "delta-changed")
    assert not changed.datasets["diagnos"].carried_over
    assert changed.datasets["diagnos"].delta.changed == 1
    assert all(d.carried_over for n, d in changed.datasets.items() if n != "diagnos")
    rows = pq.read_table(delta_file(BatchPaths.of(settings, "delta-changed", SYSTEM), "diagnos"))
    assert rows[CHANGE].to_pylist() == [CHANGED]
    after = _diagnosis_dates(settings)
    assert [key for key in after if after[key] != before[key]] != []
    assert set(after) == set(before)


def test_any_doubt_about_the_base_reads_the_source_in_full(loaded):
    settings, _ = loaded
    # The base's snapshot no longer what its manifest says; another reader recorded.
    doubt_the_base(settings, "full", SYSTEM, altered="diagnos", other_reader="kontakt")

    delta = _delta(settings, "delta-doubt")
    assert not delta.datasets["diagnos"].carried_over
    assert not delta.datasets["kontakt"].carried_over
    assert delta.datasets["patient"].carried_over
    # Read in full, they still differ from their base in nothing.
    for name in ("diagnos", "kontakt"):
        assert delta.datasets[name].delta.rows == delta.datasets[name].delta.deleted == 0


def _duplicates_bytes(settings, batch_id: str) -> dict[str, bytes]:
    paths = BatchPaths.of(settings, batch_id, SYSTEM)
    return {
        name: paths.duplicates_file(name).read_bytes()
        for name in read_manifest(settings, batch_id, SYSTEM).datasets
    }


def test_a_carried_over_snapshot_takes_the_bases_duplicates_and_classifies_again_at_any_doubt(
    loaded, monkeypatch
):
    from etl.extract import landing

    settings, _ = loaded
    full = read_manifest(settings, "full", SYSTEM)
    expected = _duplicates_bytes(settings, "full")
    # The small estate plants exact copies and conflicting keys: there is something to carry.
    assert sum(d.exact_duplicates + d.conflicting_duplicate_rows for d in full.datasets.values())
    assert all(d.duplicates_sha256 for d in full.datasets.values())

    classified: list[str] = []
    classify = landing._classify_duplicates

    def counting(landed, target, *args, **kwargs):
        classified.append(target.name)
        return classify(landed, target, *args, **kwargs)

    monkeypatch.setattr(landing, "_classify_duplicates", counting)
    same = _delta(settings, "delta-same")
    assert classified == []  # every snapshot carried over, its classification with it
    assert _duplicates_bytes(settings, "delta-same") == expected
    for name, dataset in same.datasets.items():
        base = full.datasets[name]
        assert dataset.duplicates_sha256 == base.duplicates_sha256
        assert (dataset.exact_duplicates, dataset.conflicting_duplicate_rows) == (
            base.exact_duplicates,
            base.conflicting_duplicate_rows,
        )

    # The base (now delta-same) doubted: its duplicates file altered for one dataset, no checksum
    # recorded for another. Both are classified again, to the same outcome.
    paths = BatchPaths.of(settings, "delta-same", SYSTEM)
    altered = next(n for n, d in full.datasets.items() if d.exact_duplicates)
    table = pq.read_table(paths.duplicates_file(altered))
    pq.write_table(table.slice(1), paths.duplicates_file(altered))
    manifest = json.loads(paths.manifest_file.read_text("utf-8"))
    unrecorded = next(n for n in full.datasets if n != altered)
    manifest["datasets"][unrecorded]["duplicates_sha256"] = None
    paths.manifest_file.write_text(json.dumps(manifest), "utf-8")

    classified.clear()
    again = _delta(settings, "delta-again")
    assert sorted(classified) == sorted(f"{n}.duplicates.parquet" for n in (altered, unrecorded))
    assert _duplicates_bytes(settings, "delta-again") == expected
    assert again.datasets[altered].exact_duplicates == full.datasets[altered].exact_duplicates
