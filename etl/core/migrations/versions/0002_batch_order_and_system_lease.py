"""Batch order and the per-system lease: ``promotion.extracted_at`` (promotion order is by
extraction time, never by id text), ``promotion.superseded_by`` and ``promotion.note`` (why a
batch was superseded or refused), and the ``system_lease`` table (one run per system).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from etl.core.tables import promotion, system_lease

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_NEW_PROMOTION_COLUMNS = ("extracted_at", "superseded_by", "note")


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if not inspector.has_table(system_lease.name):
        system_lease.create(bind)
    present = {column["name"] for column in inspector.get_columns(promotion.name)}
    for name in _NEW_PROMOTION_COLUMNS:
        if name not in present:
            column = promotion.c[name]
            op.add_column(promotion.name, sa.Column(name, column.type, nullable=True))


def downgrade() -> None:
    raise NotImplementedError("the core's ledger is never dropped by a migration")
