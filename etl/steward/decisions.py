"""Steward decisions as the pipeline reads them: which failing rows a steward has waived.

Also the decisions' closed vocabulary, importable without a database or pandas (the command
line builds its options from it).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from etl.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

WAIVED, FIXED_AT_SOURCE, REINJECT = "waived", "fixed_at_source", "reinject"
DECISIONS = (FIXED_AT_SOURCE, WAIVED, REINJECT)


class ReviewStatus(StrEnum):
    """A problem row's review state: no current decision (open), its current decision, or any."""

    OPEN = "open"
    FIXED_AT_SOURCE = FIXED_AT_SOURCE
    WAIVED = WAIVED
    REINJECT = REINJECT
    ALL = "all"


def waived_keys(settings: Settings, system: str, dataset: str) -> pd.DataFrame:
    """Current waivers of one source dataset: columns ``source_key`` and ``check_name``."""
    import pandas as pd
    import sqlalchemy as sa

    from etl.core.database import core_engine
    from etl.core.tables import quarantine_decision

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
