"""Batches staged by reference: ``promotion.staged_files`` records, per entity, the validated
file's row count and SHA-256 (NULL for batches whose rows were copied into ``staged_<entity>``,
as every batch before this revision). Promotion reads those files and writes rows new to the
core straight into it (etl.load.direct).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from etl.core.tables import promotion

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Idempotent: on an empty database the baseline (0001) already created it from the metadata.
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table(promotion.name):
        return  # a partial core (the tests' older snapshots): the baseline makes it whole
    present = {column["name"] for column in inspector.get_columns(promotion.name)}
    if "staged_files" not in present:
        op.add_column(promotion.name, sa.Column("staged_files", sa.Text, nullable=True))


def downgrade() -> None:
    raise NotImplementedError("the core's ledger is never dropped by a migration")
