"""Recall of planted defects and the false-positive rate, over a hand-made core and estate."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.batch import BatchPaths
from etl.core.database import core_engine
from etl.core.tables import batch_accounting, load_batch, quarantine
from etl.report.recall import NoBatchesError, recall_report, recall_table, summary_line
from etl.settings import Settings

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
DEFECTS = [
    # system, dataset, row_number, defect_class, expected_outcome
    ("elvis", "patient", 2, "invalid_identity_number", "quarantine:invalid_identity_number"),
    ("elvis", "patient", 5, "invalid_identity_number", "quarantine:invalid_identity_number"),
    ("elvis", "patient", 7, "test_patient", "excluded:test_patient"),
    ("elvis", "vardkontakt", 3, "contact_outside_lifetime", "quarantine:outside_lifetime"),
    ("elvis", "vardkontakt", 9, "contact_outside_lifetime", "quarantine:outside_lifetime"),
    ("elvis", "vardkontakt", 11, "duplicate_row", "merged"),
    ("melior", "patient", 1, "invalid_identity_number", "quarantine:invalid_identity_number"),
]
QUARANTINED = [
    # batch, system, dataset, entity, row_number, reason
    ("elvis-1", "elvis", "patient", "patient", 2, "invalid_identity_number"),
    ("elvis-1", "elvis", "patient", "patient", 5, "invalid_identity_number"),
    ("elvis-1", "elvis", "vardkontakt", "encounter", 3, "outside_lifetime"),
    ("elvis-1", "elvis", "vardkontakt", "encounter", 9, "unparseable_date"),  # wrong reason
    ("elvis-1", "elvis", "vardkontakt", "encounter", 20, "outside_lifetime"),  # not planted
    ("elvis-0", "elvis", "vardkontakt", "encounter", 30, "outside_lifetime"),  # older batch
]
ACCOUNTING = [
    # batch, system, entity, dataset, extracted, quarantined, excluded, merged
    ("elvis-0", "elvis", "encounter", "vardkontakt", 100, 1, 0, 0),
    ("elvis-1", "elvis", "patient", "patient", 40, 2, 1, 0),
    ("elvis-1", "elvis", "encounter", "vardkontakt", 100, 3, 0, 1),
]


@pytest.fixture
def settings(sqlite_core, tmp_path, monkeypatch) -> Settings:
    monkeypatch.setenv("VARDFLYTT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VARDFLYTT_CORE_URL", sqlite_core(tmp_path))
    monkeypatch.setenv("VARDFLYTT_ESTATE_DIR", str(tmp_path / "estate"))
    settings = Settings()
    (tmp_path / "estate").mkdir()
    pd.DataFrame(
        DEFECTS, columns=["system", "dataset", "row_number", "defect_class", "expected_outcome"]
    ).assign(source_key="k", field="f").to_csv(tmp_path / "estate" / "defects.csv", index=False)
    engine = core_engine(settings.resolved_core_url)
    with engine.begin() as connection:
        for number, batch in enumerate(["elvis-0", "elvis-1"]):
            connection.execute(
                load_batch.insert().values(
                    batch_id=batch,
                    source_system="elvis",
                    status="loaded",
                    is_dry_run=False,
                    started_at=NOW + dt.timedelta(hours=number),
                )
            )
        connection.execute(
            load_batch.insert().values(
                batch_id="elvis-dry",
                source_system="elvis",
                status="loaded",
                is_dry_run=True,
                started_at=NOW + dt.timedelta(hours=5),
            )
        )
        for number, (batch, system, dataset, entity, row, reason) in enumerate(QUARANTINED):
            connection.execute(
                quarantine.insert().values(
                    quarantine_id=str(number),
                    batch_id=batch,
                    source_system=system,
                    dataset=dataset,
                    entity=entity,
                    row_number=row,
                    check_name=f"x.{reason}",
                    severity="error",
                    reason=reason,
                    quarantined_at=NOW,
                )
            )
        for batch, system, entity, dataset, extracted, quarantined, excluded, merged in ACCOUNTING:
            connection.execute(
                batch_accounting.insert().values(
                    batch_id=batch,
                    source_system=system,
                    entity=entity,
                    dataset=dataset,
                    extracted=extracted,
                    loaded=extracted - quarantined - excluded - merged,
                    quarantined=quarantined,
                    excluded=excluded,
                    merged=merged,
                    residue=0,
                    is_verified=True,
                    recorded_at=NOW,
                )
            )
    _outcomes(settings, "patient", [(7, "excluded", "test_patient")])
    _outcomes(settings, "encounter", [(11, "merged", "duplicate_row")])
    return settings


def _outcomes(settings: Settings, entity: str, rows: list[tuple[int, str, str]]) -> None:
    path = BatchPaths.of(settings, "elvis-1", "elvis").stage_file("validated", entity, "outcomes")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "_row_number": [r[0] for r in rows],
                "outcome": [r[1] for r in rows],
                "reason": [r[2] for r in rows],
            }
        ),
        path,
    )


def test_recall_per_class_and_false_positive_rate_of_the_latest_batch(settings):
    report = recall_report(settings)

    assert report.batches == ["elvis-1"]  # the latest real batch; not the dry run
    assert report.systems == ["elvis"]  # melior was not migrated: its defect does not count
    by_class = report.by_class()
    assert set(by_class) == {
        "invalid_identity_number",
        "test_patient",
        "contact_outside_lifetime",
        "duplicate_row",
    }
    assert (
        by_class["invalid_identity_number"].planted,
        by_class["invalid_identity_number"].caught,
    ) == (2, 2)
    lifetime = by_class["contact_outside_lifetime"]
    assert (lifetime.planted, lifetime.caught, lifetime.recall) == (2, 1, 0.5)
    assert lifetime.missed_as == {"quarantine:unparseable_date": 1}
    assert by_class["test_patient"].caught == 1
    assert by_class["duplicate_row"].caught == 1
    assert (report.planted, report.caught) == (6, 5)
    # 140 extracted rows, 6 planted: one unplanted quarantined row among 134 clean ones.
    assert (report.rows_extracted, report.clean_rows, report.false_positives) == (140, 134, 1)
    assert report.false_positive_reasons == {"quarantine:outside_lifetime": 1}
    assert report.false_positive_rate == pytest.approx(1 / 134)


def test_named_batches_and_counts_when_outcome_files_are_gone(settings):
    for entity in ("patient", "encounter"):
        BatchPaths.of(settings, "elvis-1", "elvis").stage_file(
            "validated", entity, "outcomes"
        ).unlink()
    report = recall_report(settings, batch_ids=["elvis-1"])
    assert report.by_class()["test_patient"].caught == 1  # from batch_accounting's count
    assert report.by_class()["duplicate_row"].caught == 1


def test_nothing_to_measure_is_an_error(settings):
    with pytest.raises(NoBatchesError, match="run nope"):
        recall_report(settings, run_id="nope")


def test_the_printed_report_holds_counts_only(settings):
    from rich.console import Console

    report = recall_report(settings)
    console = Console(record=True, width=200)
    console.print(recall_table(report))
    console.print(summary_line(report))
    text = console.export_text()
    assert "contact_outside_lifetime" in text and "50.0%" in text
    assert "recall 83.3% (5 of 6); false positives 1 of 134 clean rows (0.746%)" in text
    assert " k " not in text  # no source keys


def test_the_cli_prints_the_report(settings):
    from typer.testing import CliRunner

    from etl.cli import app

    result = CliRunner().invoke(app, ["dq", "recall", "--batch", "elvis-1"])
    assert result.exit_code == 0, result.output
    assert "recall 83.3% (5 of 6)" in result.output
    result = CliRunner().invoke(app, ["dq", "recall", "--run", "nope"])
    assert result.exit_code == 1
