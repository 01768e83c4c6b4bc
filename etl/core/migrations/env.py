"""Alembic environment: always run on the connection ``upgrade_core`` passes in (it holds the
migration lock), never from a URL in a file (credentials come from the environment)."""

from __future__ import annotations

from alembic import context

from etl.core.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `vardflytt core upgrade` (etl.core.database)")
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
