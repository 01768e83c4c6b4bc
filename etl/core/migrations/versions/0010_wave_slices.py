"""Waves by care unit load a slice of a system: ``batch_accounting.wave_scope`` (rows that
belong to another wave) and ``batch_accounting.conflicted`` (changes to rows of a cut-over
wave, raised for the stewards) keep the accounting closed, and ``cutover_conflict`` lists those
conflicts (etl/cutover/slices.py).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from etl.core.tables import batch_accounting, cutover_conflict

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Idempotent: on an empty database the baseline (0001) already created them from the metadata.
    inspector = sa.inspect(op.get_bind())
    if inspector.has_table(batch_accounting.name):
        present = {column["name"] for column in inspector.get_columns(batch_accounting.name)}
        for name in ("wave_scope", "conflicted"):
            if name not in present:
                op.add_column(
                    batch_accounting.name,
                    sa.Column(name, sa.BigInteger, nullable=False, server_default="0"),
                )
    if not inspector.has_table(cutover_conflict.name):
        cutover_conflict.create(op.get_bind())


def downgrade() -> None:
    raise NotImplementedError("the core's ledger is never dropped by a migration")
