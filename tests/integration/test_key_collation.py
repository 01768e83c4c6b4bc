"""Migration 0012 (issue 15): on PostgreSQL the key columns (each entity's id, source system,
source key and batch id, in the core, staged and history tables) sort bytes ("C" collation), so
the indexes a bulk load rebuilds are built without the database's linguistic collation; a core
migrated before keeps its rows and its keys' meaning."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from etl.core.database import HEAD_REVISION, new_engine, upgrade_core
from etl.core.model import ENTITIES
from etl.core.tables import ENTITY_TABLES, HISTORY_TABLES, KEY_LINEAGE, STAGED_TABLES

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

# Every column of the three tables of every entity, with its collation ('' for a non-text one).
_COLLATIONS = """
SELECT c.relname, a.attname, coalesce(co.collname, '')
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
LEFT JOIN pg_collation co ON co.oid = a.attcollation
WHERE c.relnamespace = to_regnamespace(current_schema()) AND c.relkind = 'r'
  AND a.attnum > 0 AND NOT a.attisdropped
"""


def _collations(engine: sa.Engine) -> dict[tuple[str, str], str]:
    with engine.connect() as connection:
        return {(t, c): k for t, c, k in connection.exec_driver_sql(_COLLATIONS)}


def _expected_keys() -> set[tuple[str, str]]:
    """Derived from the models here, not from the migration's own list."""
    keys = set()
    for entity, model in ENTITIES.items():
        names = {model.id_field(), *KEY_LINEAGE}
        for table in (ENTITY_TABLES[entity], STAGED_TABLES[entity]):
            keys |= {(table.name, name) for name in names}
        keys |= {(HISTORY_TABLES[entity].name, name) for name in names | {"history_batch_id"}}
    return keys


def _check_collations(engine: sa.Engine) -> None:
    collations = _collations(engine)
    keys = _expected_keys()
    assert keys <= collations.keys()
    wrong = {key: collations[key] for key in keys if collations[key] != "C"}
    assert not wrong, f"key columns without the C collation: {sorted(wrong)[:5]}"
    # Every other text column keeps the database's collation (names, free text sort as before).
    others = {k: v for k, v in collations.items() if k not in keys and v not in ("", "default")}
    assert not others, f"columns that should keep the database's collation: {sorted(others)[:5]}"


def test_a_new_core_has_its_key_columns_in_byte_order(postgres_empty_url):
    engine = new_engine(postgres_empty_url)
    try:
        upgrade_core(engine)
        _check_collations(engine)
    finally:
        engine.dispose()


def test_a_core_at_0011_gets_byte_order_keys_keeps_its_rows_and_its_primary_keys(
    postgres_empty_url,
):
    engine = new_engine(postgres_empty_url)
    upgrade_core(engine)
    with engine.begin() as connection:  # back to what 0011 left: the database's collation
        for table, column in sorted(_expected_keys()):
            connection.exec_driver_sql(
                f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE text COLLATE "default"'
            )
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0011'")
        connection.exec_driver_sql(
            "INSERT INTO patient (patient_id, source_system, source_key, batch_id, content_hash) "
            "VALUES ('p1', 'melior', 'Åsa-1', 'b1', 'h1'), ('p2', 'melior', 'asa-1', 'b1', 'h2')"
        )
    assert all(v == "default" for k, v in _collations(engine).items() if k in _expected_keys())
    engine.dispose()

    engine = new_engine(postgres_empty_url)
    try:
        assert upgrade_core(engine) == "0011"
        _check_collations(engine)
        with engine.begin() as connection:
            assert (
                connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
                == HEAD_REVISION
            )
            rows = connection.exec_driver_sql(
                "SELECT patient_id, source_key FROM patient ORDER BY source_key"
            ).all()
            # byte order: 'a' (0x61) before 'Å' (0xC3 0x85), whatever the database's locale says
            assert [tuple(r) for r in rows] == [("p2", "asa-1"), ("p1", "Åsa-1")]
            # a key still matches the same text, compared with a value of the default collation
            found = connection.execute(
                sa.text("SELECT patient_id FROM patient WHERE source_key = :k"), {"k": "Åsa-1"}
            ).scalar()
            assert found == "p1"
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO patient (patient_id, source_system, source_key, batch_id, "
                "content_hash) VALUES ('p1', 'melior', 'k9', 'b2', 'h9')"
            )
    finally:
        engine.dispose()


def test_a_view_of_the_operators_own_stops_the_upgrade_saying_what_to_do(postgres_empty_url):
    engine = new_engine(postgres_empty_url)
    upgrade_core(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            'ALTER TABLE patient ALTER COLUMN source_key TYPE text COLLATE "default"'
        )
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0011'")
        connection.exec_driver_sql("CREATE VIEW report_keys AS SELECT source_key FROM patient")
    engine.dispose()

    engine = new_engine(postgres_empty_url)
    try:
        with pytest.raises(RuntimeError) as refused:
            upgrade_core(engine)
        message = str(refused.value)
        assert "patient.source_key" in message and "report_keys" in message
        assert "vardflytt core upgrade" in message and "Nothing was changed" in message
        with engine.connect() as connection:  # the whole upgrade was rolled back
            assert (
                connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
                == "0011"
            )
        assert _collations(engine)[("patient", "source_key")] == "default"
        # What the message says to do: without the view the upgrade goes through.
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP VIEW report_keys")
        assert upgrade_core(engine) == "0011"
        _check_collations(engine)
    finally:
        engine.dispose()
