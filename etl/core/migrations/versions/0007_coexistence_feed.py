"""The coexistence feed (etl/coexistence): ``coexistence_system`` (when the feed started and
stopped per legacy system), ``coexistence_subject`` (content hashes per target) and
``coexistence_message`` (the outbound queue with acknowledgements).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from etl.core.tables import coexistence_message, coexistence_subject, coexistence_system

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Idempotent: on an empty database the baseline (0001) already created them from the metadata.
    for table in (coexistence_system, coexistence_subject, coexistence_message):
        if not sa.inspect(op.get_bind()).has_table(table.name):
            table.create(op.get_bind())


def downgrade() -> None:
    raise NotImplementedError("the core's ledger is never dropped by a migration")
