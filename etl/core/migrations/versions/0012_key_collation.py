"""PostgreSQL: the key columns of the entity, staged and history tables take the "C" collation
(``etl.core.tables.KEY_TEXT``): each entity's id, ``source_system``, ``source_key``,
``batch_id`` and the history's ``history_batch_id``.

Their primary keys and indexes then sort bytes with abbreviated keys instead of calling the
database's collation for every comparison: an initial load rebuilds them after its ``COPY``
(etl/load/direct.py), ~40% faster on ids. Equality is unchanged (every deterministic collation
compares the same bytes as equal); so is the order of ASCII keys under a ``C.UTF-8`` database.

A column that already has it (an empty database, where the baseline created the tables from
the metadata) is left alone. On a core that holds rows, PostgreSQL changes the column without
rewriting the table (text stays text) but rebuilds the indexes on it, once, inside this
revision's transaction. A view or rule of the operator's own that reads a key column stops the
upgrade with what to do (PostgreSQL cannot change a column a view reads); nothing is changed.
SQLite compares text byte for byte already: nothing to do.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from etl.core.model import ENTITIES
from etl.core.tables import (
    ENTITY_TABLES,
    HISTORY_BATCH,
    HISTORY_TABLES,
    STAGED_TABLES,
    is_key_column,
)

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def key_columns() -> list[tuple[str, str]]:
    """(table, column) of every key column that takes the "C" collation."""
    found = []
    for entity, model in ENTITIES.items():
        for table in (ENTITY_TABLES[entity], STAGED_TABLES[entity], HISTORY_TABLES[entity]):
            for column in table.columns:
                if is_key_column(model, column.name) or column.name == HISTORY_BATCH:
                    found.append((table.name, column.name))
    return found


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    quote = bind.dialect.identifier_preparer.quote
    columns = key_columns()
    # Every key column's collation in one query (None: a table or column that is not there).
    collations: dict[int, str] = dict(
        bind.execute(
            sa.text(
                "SELECT k.position, c.collname FROM unnest(CAST(:tables AS text[]), "
                "CAST(:columns AS text[])) WITH ORDINALITY AS k(name, col, position) "
                "JOIN pg_attribute a ON a.attrelid = to_regclass(k.name) "
                "AND a.attname = k.col AND NOT a.attisdropped "
                "JOIN pg_collation c ON c.oid = a.attcollation"
            ),
            {"tables": [quote(t) for t, _ in columns], "columns": [c for _, c in columns]},
        ).all()
    )
    for position, (table, column) in enumerate(columns, start=1):
        collation = collations.get(position)
        if collation is not None and collation != "C":
            try:
                op.execute(
                    f'ALTER TABLE {quote(table)} ALTER COLUMN {quote(column)} TYPE text COLLATE "C"'
                )
            except sa.exc.NotSupportedError as refused:
                raise RuntimeError(
                    f"core migration 0012 cannot give {table}.{column} the C collation: "
                    f"{str(refused.orig).strip()}. A view or rule made outside vardflytt reads "
                    "it: save its definition, drop it, run `vardflytt core upgrade` again and "
                    "create it again. Nothing was changed (the upgrade is one transaction)."
                ) from refused


def downgrade() -> None:
    raise NotImplementedError("the core holds journal data: its columns are never changed back")
