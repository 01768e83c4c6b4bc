"""Hash aggregates kept at promotion, per batch, entity and bucket of core row ids
(``reconciliation_bucket``): a wave's verification compares them with the core instead of
reading every source row again (etl/load/hash_aggregates.py, etl/cutover/reconcile.py).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from etl.core.tables import reconciliation_bucket

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Idempotent: on an empty database the baseline (0001) already created it from the metadata.
    if not sa.inspect(op.get_bind()).has_table(reconciliation_bucket.name):
        reconciliation_bucket.create(op.get_bind())


def downgrade() -> None:
    raise NotImplementedError("the core's ledger is never dropped by a migration")
