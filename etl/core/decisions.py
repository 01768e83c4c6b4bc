"""Steward decisions as the pipeline reads them: which failing rows a steward has waived.

Also the decisions' closed vocabulary, importable without a database or pandas (the command
line builds its options from it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
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


# --- entity deferrals -------------------------------------------------------------------------
# A steward may promote a system's batch without one entity whose checks exceed their thresholds.
# The decision is a row of ``quarantine_decision`` like any other (who, when, why, superseded and
# never deleted), scoped to the whole entity of one batch: ``source_key`` is ALL_ROWS and the
# check is ``<entity>.entity_deferred``. Undoing it records ENTITY_DEFERRAL_UNDONE on the same key.

ENTITY_DEFERRED, ENTITY_DEFERRAL_UNDONE = "entity_deferred", "entity_deferral_undone"
ALL_ROWS = "*"


@dataclass(frozen=True)
class EntityDeferral:
    decision_id: str
    system: str
    entity: str
    batch_id: str
    justification: str | None
    decided_by: str
    decided_at: dt.datetime


def deferred_entities(settings: Settings, system: str, batch_id: str) -> dict[str, EntityDeferral]:
    """The entities of one system's batch a steward currently defers, by entity."""
    import sqlalchemy as sa

    from etl.core.database import core_engine
    from etl.core.tables import quarantine_decision

    table = quarantine_decision
    query = (
        sa.select(table)
        .where(
            (table.c.source_system == system)
            & (table.c.batch_id == batch_id)
            & (table.c.source_key == ALL_ROWS)
            & (table.c.decision == ENTITY_DEFERRED)
            & table.c.is_current
        )
        .order_by(table.c.decided_at)
    )
    with core_engine(settings.resolved_core_url).connect() as connection:
        rows = connection.execute(query).mappings().all()
    return {
        row["entity"]: EntityDeferral(
            decision_id=row["decision_id"],
            system=row["source_system"],
            entity=row["entity"],
            batch_id=row["batch_id"],
            justification=row["justification"],
            decided_by=row["decided_by"],
            decided_at=row["decided_at"],
        )
        for row in rows
    }
