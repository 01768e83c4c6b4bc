"""Steward decisions as the pipeline reads them: which failing rows a steward has waived."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from etl.core.database import core_engine
from etl.core.tables import quarantine_decision
from etl.settings import Settings

WAIVED, FIXED_AT_SOURCE, REINJECT = "waived", "fixed_at_source", "reinject"


def waived_keys(settings: Settings, system: str, dataset: str) -> pd.DataFrame:
    """Current waivers of one source dataset: columns ``source_key`` and ``check_name``."""
    table = quarantine_decision
    query = sa.select(table.c.source_key, table.c.check_name).where(
        (table.c.source_system == system)
        & (table.c.dataset == dataset)
        & (table.c.decision == WAIVED)
        & table.c.is_current
    )
    with core_engine(settings.resolved_core_url).connect() as connection:
        rows = connection.execute(query).all()
    return pd.DataFrame(rows, columns=["source_key", "check_name"], dtype="string")
