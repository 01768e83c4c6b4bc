"""Extraction: schema drift stops a source before anything is read; bad bytes survive as rows."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from etl.catalog import load_catalog
from etl.extract.landing import READ_ERROR, ROW_NUMBER, SOURCE_KEY, extract_system
from etl.extract.readers import REPLACEMENT_CHARACTER, SchemaDriftError, read_only_engine
from etl.extract.records import reason_of

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
AS_OF = dt.date(2026, 7, 1)


@pytest.fixture
def estate_copy(tiny_estate, tmp_path) -> Path:
    target = tmp_path / "estate"
    shutil.copytree(tiny_estate, target)
    return target


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(ROOT / "mappings")


def test_melior_lands_every_row_with_lineage_and_a_manifest(catalog, tiny_estate, settings_for):
    settings = settings_for(tiny_estate)
    manifest = extract_system(catalog, "melior", "b1", AS_OF, settings)

    for name, dataset in manifest.datasets.items():
        assert not Path(dataset.path).is_absolute()  # a key in the landing zone, not a path
        table = pq.read_table(settings.resolved_landing_dir / dataset.path)
        assert table.num_rows == dataset.rows > 0, name
        assert table.column(ROW_NUMBER).to_pylist() == list(range(1, dataset.rows + 1))
        # Only an unreadable record (all values unread, its key too) lands without a key.
        keyless = table.column(SOURCE_KEY).is_null().to_numpy(zero_copy_only=False)
        unreadable = table.column(READ_ERROR).is_valid().to_numpy(zero_copy_only=False)
        assert not (keyless & ~unreadable).any(), name
        assert len(dataset.sha256) == 64
    assert manifest.datasets["labsvar"].exact_duplicates > 0
    assert manifest.datasets["diagnos"].conflicting_duplicate_rows > 0


def test_undecodable_bytes_make_their_record_unreadable_not_a_failed_file(
    catalog, tiny_estate, settings_for
):
    settings = settings_for(tiny_estate)
    manifest = extract_system(catalog, "melior", "b1", AS_OF, settings)

    landed = settings.resolved_landing_dir / manifest.datasets["anteckning"].path
    notes = pq.read_table(landed).to_pandas()
    errors = notes[READ_ERROR].dropna()
    undecodable = errors[errors.map(reason_of) == "undecodable_bytes"]
    assert len(undecodable) >= 3
    assert undecodable.str.contains("column TEXT").all()  # where, never the value
    assert not notes["TEXT"].str.contains(REPLACEMENT_CHARACTER, regex=False).any()
    assert "ö" in "".join(notes["TEXT"].dropna()), "cp1252 text decodes to Swedish letters"


def test_renamed_column_in_a_delimited_export_stops_the_source_with_a_diff(
    catalog, estate_copy, settings_for
):
    path = estate_copy / "melior" / "DIAGNOS.TXT"
    data = path.read_bytes()
    path.write_bytes(data.replace(b"DIAGNOSKOD", b"DIAGNOS_KOD", 1))
    settings = settings_for(estate_copy)

    with pytest.raises(SchemaDriftError) as error:
        extract_system(catalog, "melior", "b1", AS_OF, settings)

    message = str(error.value)
    assert "melior" in message and "DIAGNOS.TXT" in message
    assert "- DIAGNOSKOD" in message and "+ DIAGNOS_KOD" in message
    assert not (
        settings.resolved_landing_dir / "b1" / "melior" / "landed" / "_manifest.json"
    ).exists()


def test_fixed_width_record_of_the_wrong_length_is_schema_drift(catalog, estate_copy, settings_for):
    path = estate_copy / "melior" / "PATREG.DAT"
    lines = path.read_bytes().split(b"\r\n")
    path.write_bytes(b"\r\n".join(line + b"X" if line else line for line in lines))

    with pytest.raises(SchemaDriftError, match=r"PATREG\.DAT: record 1 is 90 characters.*89"):
        extract_system(catalog, "melior", "b1", AS_OF, settings_for(estate_copy))


def test_missing_column_in_a_source_table_is_schema_drift(catalog, estate_copy, settings_for):
    engine = sa.create_engine(f"sqlite:///{estate_copy / 'elvis' / 'elvis.sqlite'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE remiss DROP COLUMN prioritet")
    engine.dispose()

    with pytest.raises(SchemaDriftError, match=r"elvis table remiss(.|\n)*- prioritet"):
        extract_system(catalog, "elvis", "b1", AS_OF, settings_for(estate_copy))


def test_the_legacy_database_is_opened_read_only(tiny_estate):
    engine = read_only_engine(f"sqlite:///{tiny_estate / 'elvis' / 'elvis.sqlite'}")
    with engine.connect() as connection, pytest.raises(sa.exc.OperationalError, match="readonly"):
        connection.exec_driver_sql("DELETE FROM patient")
    engine.dispose()
