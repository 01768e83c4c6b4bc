"""Which Airflow DAG ran a batch: ``load_batch.dag_id`` (NULL for the command line and for
batches recorded before this revision). The dashboard labels a run by it, so a
``vardflytt_migrate`` run of one system no longer reads as that system's own DAG.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from etl.core.tables import load_batch

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Idempotent: on an empty database the baseline (0001) already created it from the metadata.
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table(load_batch.name):
        return  # a partial core (the tests' older snapshots): the baseline makes it whole
    present = {column["name"] for column in inspector.get_columns(load_batch.name)}
    if "dag_id" not in present:
        op.add_column(load_batch.name, sa.Column("dag_id", sa.Text, nullable=True))


def downgrade() -> None:
    raise NotImplementedError("the core's ledger is never dropped by a migration")
