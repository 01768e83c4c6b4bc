"""Baseline: the core schema as ``etl/core/tables.py`` declared it before migrations existed.

It creates every table of the core metadata that is missing (``checkfirst``), so a database made
by the old ``metadata.create_all`` on first use is adopted as it is, and an empty one gets the
whole schema. Later revisions must therefore be idempotent (add a column or table only if it is
missing), because on an empty database this revision already created them from the metadata.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

import etl.core.identity_tables  # noqa: F401  (registers the identity tables on the core metadata)
from etl.core.tables import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata.create_all(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    raise NotImplementedError("the core holds journal data: it is never dropped by a migration")
