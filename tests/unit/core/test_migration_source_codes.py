"""Migration 0009 (issue 17): a core at 0008 gets the kept source code columns on every entity
table and the tables mirroring them (staged rows, previous versions), in place, rows kept."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from etl.core.database import HEAD_REVISION, new_engine, upgrade_core
from etl.core.model import ENTITIES

pytestmark = pytest.mark.unit

TABLES = ("diagnosis", "staged_diagnosis", "diagnosis_history", "alert", "staged_alert")


def test_a_core_at_0008_gets_the_source_code_columns_and_keeps_its_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'core.sqlite'}"
    engine = new_engine(url)
    upgrade_core(engine)
    with engine.begin() as connection:  # back to what 0008 made
        for table in TABLES:
            entity = table.removeprefix("staged_").removesuffix("_history")
            for column in ENTITIES[entity].derived_code_fields():
                connection.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN {column}")
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0008'")
        connection.exec_driver_sql(
            "INSERT INTO diagnosis (diagnosis_id, patient_id, icd10_code, is_blocked, "
            "source_system, source_key, batch_id, content_hash) "
            "VALUES ('d1', 'p1', 'I21.9', 0, 'melior', 'k1', 'b1', 'h1')"
        )
    engine.dispose()

    engine = new_engine(url)
    assert upgrade_core(engine) == "0008"
    inspector = sa.inspect(engine)
    for table in TABLES:
        entity = table.removeprefix("staged_").removesuffix("_history")
        present = {column["name"] for column in inspector.get_columns(table)}
        assert set(ENTITIES[entity].derived_code_fields()) <= present, table
    with engine.connect() as connection:
        row = connection.exec_driver_sql(
            "SELECT icd10_code, icd10_code_source_code, icd10_code_source_system, version_num "
            "FROM diagnosis, alembic_version"
        ).one()
    assert tuple(row) == ("I21.9", None, None, HEAD_REVISION)
