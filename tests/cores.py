"""The two core databases a test runs on: SQLite (the embedded default) and a schema of the real
PostgreSQL server (production's, marked ``postgres``)."""

import pytest

BOTH_CORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
