"""Source codes kept (issue 17): every coded column keeps the code as the legacy system wrote it
and that code's system beside the target code (``<column>_source_code``,
``<column>_source_system``), and an alert's code gets its system (``alert.code_system``). Added
to the entity tables and every table that mirrors their columns (staged rows, previous
versions), so a core made before this revision upgrades in place; existing rows keep NULL there
(they were loaded before the source code was kept).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from etl.core.model import ENTITIES
from etl.core.tables import metadata

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ENTITY_OF_TABLE = {
    table: entity
    for entity in ENTITIES
    for table in (entity, f"staged_{entity}", f"{entity}_history")
}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    for table in metadata.sorted_tables:
        entity = ENTITY_OF_TABLE.get(table.name)
        if entity is None or not inspector.has_table(table.name):
            continue  # an empty database: the baseline (0001) created them from the metadata
        present = {column["name"] for column in inspector.get_columns(table.name)}
        wanted = [c for c in ENTITIES[entity].derived_code_fields() if c in table.c]
        for name in wanted:
            if name not in present:
                op.add_column(table.name, sa.Column(name, table.c[name].type, nullable=True))


def downgrade() -> None:
    raise NotImplementedError("the core holds journal data: it is never dropped by a migration")
