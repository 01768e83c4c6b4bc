"""Mapping coverage (``etl.report.coverage``): the column and unmapped-code arithmetic."""

from __future__ import annotations

import datetime as dt
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from rich.console import Console

from etl.batch import BatchPaths, write_json
from etl.catalog import load_catalog
from etl.core.database import core_engine
from etl.core.tables import batch_accounting, quarantine
from etl.extract.landing import LandedDataset, LandingManifest
from etl.report.coverage import coverage_report, coverage_tables, share, write_coverage
from etl.settings import Settings
from etl.transform.stage import OUTCOME_SCHEMA

pytestmark = pytest.mark.unit

BATCH = "cov-batch"
SYSTEM_YAML = """
system: cov
title: Coverage fixture
format: files
connection: {path_env: VARDFLYTT_SOURCE_COV_PATH}
datasets:
  patient:
    file: PAT.TXT
    format: delimited
    encoding: utf-8
    key: [PATNR]
    columns: [PATNR, PNR, NAMN, KON, EXTRA1, EXTRA2]
  lab:
    file: LAB.TXT
    format: delimited
    encoding: utf-8
    key: [SVARSNR]
    columns: [SVARSNR, PATNR, KOD, VARDE, TESTFLAGGA]
  orphan:
    file: ORPHAN.TXT
    format: delimited
    encoding: utf-8
    key: [ID]
    columns: [ID, X]
"""
PATIENT_YAML = """
dataset: patient
identifiers: [{source: PNR}]
columns:
  - {target: family_name, source: NAMN}
  - {target: sex, source: KON, transform: map_values, args: {values: {M: male, K: female}}}
"""
OBSERVATION_YAML = """
dataset: lab
exclude:
  - {rule: test_row, column: TESTFLAGGA, equals: ["J"], note: Test rows.}
columns:
  - {target: patient_id, source: PATNR, transform: reference_id, args: {entity: patient}}
  - {target: npu_code, source: KOD, transform: map_code, args: {crosswalk: cov_lab},
     source_system: "local:analysis-code"}
  - {target: value_numeric, source: VARDE, transform: decimal_comma}
"""


def _catalog(tmp_path):
    mappings = tmp_path / "mappings"
    (mappings / "cov").mkdir(parents=True)
    (mappings / "crosswalks").mkdir()
    (mappings / "crosswalks" / "cov_lab.csv").write_text(
        "source_code,target_code,note\nL-CRP,NPU19748,CRP\n", "utf-8"
    )
    (mappings / "cov" / "system.yaml").write_text(SYSTEM_YAML, "utf-8")
    (mappings / "cov" / "patient.yaml").write_text(PATIENT_YAML, "utf-8")
    (mappings / "cov" / "observation.yaml").write_text(OBSERVATION_YAML, "utf-8")
    return load_catalog(mappings)


def _outcomes(path, rows: list[tuple[str, str, str]]) -> None:
    """``(outcome, reason, field)`` per row, in the stage's own schema."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "_row_number": pa.array(range(1, len(rows) + 1), pa.int64()),
            "_source_key": [f"k{i}" for i in range(len(rows))],
            "outcome": [row[0] for row in rows],
            "check_name": ["check"] * len(rows),
            "severity": ["error"] * len(rows),
            "field": [row[2] for row in rows],
            "reason": [row[1] for row in rows],
            "detail": [None] * len(rows),
        },
        schema=OUTCOME_SCHEMA,
    )
    pq.write_table(table, path)


def _manifest(paths: BatchPaths, rows: dict[str, int]) -> None:
    datasets = {
        name: LandedDataset(
            dataset=name,
            source=f"{name}.txt",
            rows=count,
            sha256="0" * 64,
            path=str(paths.landed_file(name)),
            exact_duplicates=0,
            conflicting_duplicate_rows=0,
        )
        for name, count in rows.items()
    }
    manifest = LandingManifest(
        system="cov",
        batch_id=BATCH,
        as_of_date=dt.date(2026, 7, 1),
        extracted_at="2026-07-01T00:00:00+00:00",
        datasets=datasets,
    )
    write_json(paths.manifest_file, manifest.model_dump())


@pytest.fixture
def landed(sqlite_core, tmp_path):
    catalog = _catalog(tmp_path)
    settings = Settings(
        home=tmp_path / "home",
        mappings_dir=tmp_path / "mappings",
        core_url=sqlite_core(tmp_path),
        chunk_rows=2,
    )
    paths = BatchPaths.of(settings, BATCH, "cov")
    _manifest(paths, {"patient": 10, "lab": 40, "orphan": 3})
    _outcomes(
        paths.stage_file("validated", "observation", "outcomes"),
        [
            ("quarantined", "unmapped_code", "KOD"),
            ("quarantined", "unmapped_code", "KOD"),
            ("quarantined", "unmapped_code", "KOD"),
            ("quarantined", "invalid_number", "VARDE"),
            ("quarantined", "invalid_number", "VARDE"),
            ("excluded", "test_row", "TESTFLAGGA"),
        ],
    )
    now = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
    with core_engine(settings.resolved_core_url).begin() as connection:
        # Accounting for the patient entity only: observation falls back to the manifest.
        connection.execute(
            sa.insert(batch_accounting).values(
                batch_id=BATCH,
                source_system="cov",
                entity="patient",
                dataset="patient",
                extracted=12,
                loaded=11,
                quarantined=1,
                excluded=0,
                merged=0,
                residue=0,
                is_verified=True,
                recorded_at=now,
            )
        )
        connection.execute(
            sa.insert(quarantine),
            [
                dict(
                    quarantine_id=f"q{i}",
                    batch_id=BATCH,
                    run_id=None,
                    source_system="cov",
                    dataset="patient",
                    entity="patient",
                    source_key=f"{i}",
                    row_number=i,
                    check_name="transform",
                    severity="error",
                    field=field,
                    reason=reason,
                    quarantined_at=now,
                )
                for i, (field, reason) in enumerate(
                    [("KON", "unmapped_code"), ("PNR", "invalid_identity_number")]
                )
            ],
        )
    return settings, catalog


def test_share_is_none_without_a_whole():
    assert share(3, 40) == 0.075
    assert share(0, 0) is None
    assert share(None, 10) is None


def test_column_coverage_per_dataset_and_system(landed):
    settings, catalog = landed
    system = coverage_report(settings, catalog, [BATCH]).systems[0]
    by_dataset = {d.dataset: (d.declared, d.mapped, d.share, d.unmapped) for d in system.datasets}
    assert by_dataset == {
        "patient": (6, 4, pytest.approx(4 / 6, abs=1e-6), ["EXTRA1", "EXTRA2"]),
        "lab": (5, 5, 1.0, []),
        "orphan": (2, 0, 0.0, ["ID", "X"]),  # no mapping reads it: not even its key counts
    }
    assert (system.declared_columns, system.mapped_columns) == (13, 9)
    assert system.column_share == pytest.approx(9 / 13, abs=1e-6)


def test_unmapped_code_rows_per_entity_and_system(landed):
    settings, catalog = landed
    (batch,) = coverage_report(settings, catalog, [BATCH]).systems[0].batches
    entities = {e.entity: e for e in batch.entities}
    observation = entities["observation"]
    assert (observation.extracted_rows, observation.extracted_from) == (40, "manifest")
    assert (observation.unmapped_code_rows, observation.unmapped_code_from) == (
        3,
        "validated_outcomes",
    )
    assert observation.share == 0.075
    assert observation.by_field == {"KOD": 3}
    patient = entities["patient"]
    assert (patient.extracted_rows, patient.extracted_from) == (12, "batch_accounting")
    assert (patient.unmapped_code_rows, patient.unmapped_code_from) == (1, "quarantine")
    assert patient.by_field == {"KON": 1}
    assert (batch.extracted_rows, batch.unmapped_code_rows) == (52, 4)
    assert batch.share == pytest.approx(4 / 52, abs=1e-6)


def test_a_batch_without_the_system_is_noted_not_invented(landed):
    settings, catalog = landed
    report = coverage_report(settings, catalog, ["some-other-batch"])
    assert report.systems[0].batches == []
    assert any("some-other-batch" in note for note in report.notes)


def test_without_batches_or_database_only_columns_are_covered(tmp_path):
    catalog = _catalog(tmp_path)
    database = tmp_path / "absent" / "core.sqlite"
    settings = Settings(
        home=tmp_path / "home", mappings_dir=tmp_path / "mappings", core_url=f"sqlite:///{database}"
    )
    report = coverage_report(settings, catalog)
    assert report.batch_ids == []
    assert report.systems[0].batches == []
    assert report.systems[0].mapped_columns == 9
    assert not database.exists()  # a report never creates a database as a side effect
    assert len(report.notes) == 2


def test_latest_loaded_batches_are_the_default(landed):
    settings, catalog = landed
    from etl.core.tables import load_batch

    with core_engine(settings.resolved_core_url).begin() as connection:
        connection.execute(
            sa.insert(load_batch).values(
                batch_id=BATCH,
                source_system="cov",
                status="loaded",
                is_dry_run=False,
                started_at=dt.datetime(2026, 7, 1, tzinfo=dt.UTC),
            )
        )
    report = coverage_report(settings, catalog)
    assert report.batch_ids == [BATCH]
    assert report.systems[0].batches[0].unmapped_code_rows == 4


def test_terminal_tables_and_json(landed, tmp_path):
    settings, catalog = landed
    report = coverage_report(settings, catalog, [BATCH])
    path = write_coverage(report, tmp_path / "coverage.json")
    assert (
        json.loads(path.read_text("utf-8"))["systems"][0]["batches"][0]["unmapped_code_rows"] == 4
    )
    buffer = io.StringIO()
    console = Console(file=buffer, width=250, color_system=None)
    for table in coverage_tables(report):
        console.print(table)
    text = buffer.getvalue()
    assert "EXTRA1, EXTRA2" in text
    assert "69.2%" in text  # 9 of 13 columns
    assert "7.5%" in text  # 3 of 40 observation rows
    assert "KOD 3" in text
