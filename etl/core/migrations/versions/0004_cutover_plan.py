"""The reviewed plan of each cutover wave: the ``cutover_plan`` table (plan fingerprints taken at
rehearsal and at each recorded plan change; verify and commit compare the working copy with it).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from etl.core.tables import cutover_plan

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Idempotent: on an empty database the baseline (0001) already created it from the metadata.
    if not sa.inspect(op.get_bind()).has_table(cutover_plan.name):
        cutover_plan.create(op.get_bind())


def downgrade() -> None:
    raise NotImplementedError("the core's ledger is never dropped by a migration")
