"""The states of a load batch (``load_batch.state``), shared by every stage that reads them.

Extraction keeps landing files by state, loading stages and accounts, promotion moves a batch
between them; so they live in the core, not with promotion (``etl/load/promote.py``)."""

from __future__ import annotations

import sqlalchemy as sa

STAGED, PROMOTED, ROLLED_BACK = "staged", "promoted", "rolled_back"
# Never promoted, and never will be: a later run of the system replaced it (``superseded_by``),
# or its accounting did not hold (``note`` says by how much). Their staged rows are gone.
SUPERSEDED, UNACCOUNTED = "superseded", "unaccounted"


def has_promoted(connection: sa.Connection, system: str) -> bool:
    """Whether a batch of ``system`` is promoted (not rolled back, superseded or unaccounted).

    Only a promotion writes a system's rows into the core tables, so without one the core holds
    no row with the system's core ids (built from its name, etl/core/ids.py). Read from the
    ``promotion`` table alone: a core table that another system's first promotion holds
    exclusively until it commits (etl/load/direct.py) is not waited for."""
    from etl.core.tables import promotion

    query = sa.select(sa.literal(1)).where(
        (promotion.c.source_system == system) & (promotion.c.state == PROMOTED)
    )
    return connection.execute(query.limit(1)).first() is not None
