"""Foreign identifiers keep their issuing country: ``issuer_country`` on ``patient_identifier``
and on every table of the metadata that mirrors its columns (staged rows, previous versions), so
a core made before issue 10 upgrades in place.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import etl.core.identity_tables  # noqa: F401  (registers the identity tables on the core metadata)
from etl.core.tables import metadata

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMN = "issuer_country"


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    for table in metadata.sorted_tables:
        if COLUMN not in table.c or not inspector.has_table(table.name):
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        if COLUMN not in present:
            op.add_column(table.name, sa.Column(COLUMN, table.c[COLUMN].type, nullable=True))


def downgrade() -> None:
    raise NotImplementedError("the core holds journal data: it is never dropped by a migration")
