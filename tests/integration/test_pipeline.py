"""End to end without Airflow: small estate -> every stage -> core, on SQLite and PostgreSQL.

The estate's ground-truth manifest (defects.csv) says which rows carry which injected defect;
the pipeline must quarantine exactly those, with the right reason, and account for every row.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from etl import pipeline
from etl.core.database import core_engine
from tests.core_fingerprint import core_rows

pytestmark = pytest.mark.integration

AS_OF = dt.date(2026, 7, 1)
SYSTEMS = ("elvis", "melior")


def _quarantine(settings) -> pd.DataFrame:
    with core_engine(settings.resolved_core_url).connect() as connection:
        return pd.read_sql(
            "SELECT source_system, dataset, row_number, reason, field FROM quarantine", connection
        )


def _core_checksums(settings) -> dict[str, tuple[int, str]]:
    """Row count and an order-independent digest of every core table."""
    with core_engine(settings.resolved_core_url).connect() as connection:
        found = core_rows(connection)
    return {name: (len(rows), str(hash(tuple(rows)))) for name, rows in found.items()}


def test_every_row_is_accounted_for_and_every_injected_defect_is_quarantined(
    small_estate, settings_for, core_url
):
    settings = settings_for(small_estate, core_url)
    reports = {s: pipeline.run_system(s, f"{s}-test", AS_OF, settings=settings) for s in SYSTEMS}

    for report in reports.values():
        assert report.is_reconciled
        for row in report.accounting:
            assert row.extracted == row.loaded + row.quarantined + row.excluded + row.merged
            assert row.extracted > 0

    defects = pd.read_csv(small_estate / "defects.csv", dtype=str)
    # The estate holds every system of the region; this test migrates ELVIS and Melior only
    # (tests/integration/test_all_systems.py migrates them all).
    defects = defects[defects["system"].isin(SYSTEMS)]
    expected = defects[defects["expected_outcome"].str.startswith("quarantine:")].copy()
    expected["reason"] = expected["expected_outcome"].str.removeprefix("quarantine:")
    expected_rows = set(
        zip(
            expected["system"],
            expected["dataset"],
            expected["row_number"].astype(int),
            expected["reason"],
            strict=True,
        )
    )

    quarantined = _quarantine(settings)
    actual_rows = set(
        zip(
            quarantined["source_system"],
            quarantined["dataset"],
            quarantined["row_number"].astype(int),
            quarantined["reason"],
            strict=True,
        )
    )
    assert actual_rows == expected_rows, (
        f"missed: {sorted(expected_rows - actual_rows)[:10]} "
        f"unexpected: {sorted(actual_rows - expected_rows)[:10]}"
    )
    assert quarantined["field"].notna().all(), "every quarantined row names the field at fault"

    merged = defects[defects["expected_outcome"] == "merged"]
    excluded = defects[defects["expected_outcome"].str.startswith("excluded:")]
    assert sum(r.merged for rep in reports.values() for r in rep.accounting) == len(merged)
    assert sum(r.excluded for rep in reports.values() for r in rep.accounting) == len(excluded)


def test_rerunning_the_same_batch_changes_nothing(small_estate, settings_for, core_url):
    settings = settings_for(small_estate, core_url)
    pipeline.run_system("melior", "melior-rerun", AS_OF, settings=settings)
    before, quarantine_before = _core_checksums(settings), len(_quarantine(settings))

    report = pipeline.run_system("melior", "melior-rerun", AS_OF, settings=settings)

    assert _core_checksums(settings) == before
    assert len(_quarantine(settings)) == quarantine_before
    assert all(load.inserted == 0 and load.updated == 0 for load in report.entities)
    assert report.is_reconciled


def test_dry_run_writes_nothing_to_the_core(small_estate, settings_for, tmp_path):
    settings = settings_for(small_estate, f"sqlite:///{tmp_path / 'dry.sqlite'}")
    report = pipeline.run_system("elvis", "elvis-dry", AS_OF, dry_run=True, settings=settings)

    assert report.is_dry_run
    assert all(row.residue == 0 for row in report.accounting)
    assert all(count == 0 for count, _ in _core_checksums(settings).values())


def test_a_second_batch_with_the_same_content_keeps_ids_and_rows(
    small_estate, settings_for, tmp_path
):
    settings = settings_for(small_estate, f"sqlite:///{tmp_path / 'twice.sqlite'}")
    pipeline.run_system("elvis", "elvis-first", AS_OF, settings=settings)
    first = _core_checksums(settings)
    report = pipeline.run_system("elvis", "elvis-second", AS_OF, settings=settings)

    assert _core_checksums(settings) == first  # same ids, same content, original batch kept
    assert sum(load.unchanged for load in report.entities) == sum(
        load.staged for load in report.entities
    )


def test_every_stage_is_access_logged_without_patient_values(small_estate, settings_for, tmp_path):
    """Patientdatalagen: the pipeline's reads and writes of patient data are logged accesses."""
    settings = settings_for(small_estate, f"sqlite:///{tmp_path / 'audit.sqlite'}")
    pipeline.run_system("melior", "melior-audit", AS_OF, settings=settings)

    with core_engine(settings.resolved_core_url).connect() as connection:
        log = pd.read_sql(
            "SELECT * FROM access_log WHERE batch_id = 'melior-audit' ORDER BY sequence",
            connection,
        )
    entities = len(pipeline.catalog(settings).system("melior").entities)
    assert log["action"].iloc[0] == "extract_started"  # logged before the source is read
    assert sorted(log["action"].unique()) == [
        "extract_started",
        "read_source",
        "transform",
        "validate",
        "validation_report",  # the batch's report pseudonymises its quarantined rows' keys
        "write_core",
    ]
    assert (log["action"] == "transform").sum() == entities == (log["action"] == "validate").sum()
    assert log["user_name"].str.len().gt(0).all()
    assert log.loc[log["action"] == "read_source", "rows"].iloc[0] > 0


def test_blocking_travels_with_the_data_it_covers(
    sqlite_core, small_estate, settings_for, tmp_path
):
    """Spärr on a Melior care contact blocks its diagnoses, procedures and notes in the core."""
    settings = settings_for(small_estate, sqlite_core(tmp_path))
    pipeline.run_system("melior", "melior-blocking", AS_OF, settings=settings)
    with core_engine(settings.resolved_core_url).connect() as connection:
        blocked = dict(
            connection.execute(sa.text("SELECT encounter_id, is_blocked FROM encounter")).all()
        )
        assert any(blocked.values()), "the estate must have blocked contacts to test with"
        for entity in ("diagnosis", "procedure", "clinical_note"):
            rows = connection.execute(
                sa.text(
                    f"SELECT encounter_id, is_blocked FROM {entity} WHERE encounter_id IS NOT NULL"
                )
            ).all()
            inherited = [(bool(flag), bool(blocked[e])) for e, flag in rows if e in blocked]
            assert len(inherited) > 0.9 * len(rows), entity
            assert all(own == contact for own, contact in inherited), entity
            assert sum(own for own, _ in inherited) > 0, f"no blocked {entity} rows at all"


def test_a_landed_file_changed_after_extract_is_never_transformed(
    small_estate, settings_for, tmp_path
):
    """The freeze window's verification trusts the chain from landed files to the core, so a
    landed file edited after extract stops the transform (fail closed), naming system and file."""
    import pyarrow.parquet as pq

    from etl.batch import BatchPaths
    from etl.transform.stage import LandedFileChangedError

    settings = settings_for(small_estate, f"sqlite:///{tmp_path / 'tampered.sqlite'}")
    pipeline.extract("elvis", "elvis-tampered", AS_OF, settings=settings)
    landed = BatchPaths.of(settings, "elvis-tampered", "elvis").landed_file("patient")
    table = pq.read_table(landed)
    pq.write_table(table.slice(1), landed)  # one row gone, behind the pipeline's back

    with pytest.raises(
        LandedFileChangedError, match=r"system elvis, batch elvis-tampered.*patient"
    ):
        pipeline.transform("elvis", "patient", "elvis-tampered", settings=settings)
    paths = BatchPaths.of(settings, "elvis-tampered", "elvis")
    assert not paths.stage_file("transformed", "patient").exists()


def test_a_duplicates_file_changed_after_extract_is_never_transformed(
    small_estate, settings_for, tmp_path
):
    """The landed rows' duplicates decide which rows are merged (not loaded): a duplicates file
    edited after extract stops the transform as an edited landed file does."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from etl.batch import BatchPaths
    from etl.transform.stage import LandedFileChangedError

    settings = settings_for(small_estate, f"sqlite:///{tmp_path / 'tampered.sqlite'}")
    pipeline.extract("elvis", "elvis-merged", AS_OF, settings=settings)
    paths = BatchPaths.of(settings, "elvis-merged", "elvis")
    duplicates = paths.duplicates_file("patient")
    table = pq.read_table(duplicates)
    forged = pa.table({"_row_number": [1], "outcome": ["merged"]}).cast(table.schema)
    pq.write_table(pa.concat_tables([table, forged]), duplicates)  # row 1 "merged": never loaded

    with pytest.raises(
        LandedFileChangedError, match=r"system elvis, batch elvis-merged.*patient.duplicates"
    ):
        pipeline.transform("elvis", "patient", "elvis-merged", settings=settings)
    assert not paths.stage_file("transformed", "patient").exists()
