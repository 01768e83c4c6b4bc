"""Alembic migrations of the core schema, run by ``etl.core.database.upgrade_core``."""
