"""Read the accounting and quarantine counts back from the core database (counts only)."""

from __future__ import annotations

import sqlalchemy as sa

from etl.core.database import core_engine
from etl.core.tables import batch_accounting, load_batch, promotion, quarantine
from etl.settings import Settings


def latest_batches(connection: sa.Connection) -> list[str]:
    """Each system's most recently started non-dry-run batch (for display only)."""
    ranked = sa.select(
        load_batch.c.batch_id,
        sa.func.row_number()
        .over(partition_by=load_batch.c.source_system, order_by=load_batch.c.started_at.desc())
        .label("rank"),
    ).subquery()
    return list(
        connection.execute(sa.select(ranked.c.batch_id).where(ranked.c.rank == 1)).scalars()
    )


def accounting_rows(settings: Settings, batch_id: str | None = None) -> list[dict]:
    engine = core_engine(settings.resolved_core_url)
    with engine.connect() as connection:
        batches = [batch_id] if batch_id else latest_batches(connection)
        query = (
            sa.select(batch_accounting)
            .where(batch_accounting.c.batch_id.in_(batches))
            .order_by(batch_accounting.c.source_system, batch_accounting.c.entity)
        )
        return [dict(row._mapping) for row in connection.execute(query)]


def quarantine_reasons(settings: Settings, batch_ids: list[str]) -> list[dict]:
    engine = core_engine(settings.resolved_core_url)
    query = (
        sa.select(
            quarantine.c.source_system,
            quarantine.c.entity,
            quarantine.c.reason,
            sa.func.count().label("rows"),
        )
        .where(quarantine.c.batch_id.in_(batch_ids))
        .group_by(quarantine.c.source_system, quarantine.c.entity, quarantine.c.reason)
        .order_by(quarantine.c.source_system, quarantine.c.entity, quarantine.c.reason)
    )
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def delta_batches(settings: Settings, batch_ids: list[str]) -> list[str]:
    """The delta batches among ``batch_ids`` (by the promotion ledger): their quarantine holds only
    the rows they processed, not the problems of earlier batches still open."""
    query = sa.select(promotion.c.batch_id).where(
        promotion.c.batch_id.in_(batch_ids or [""]) & (promotion.c.kind == "delta")
    )
    with core_engine(settings.resolved_core_url).connect() as connection:
        return sorted(connection.execute(query).scalars())


def source_counts(settings: Settings, batches: set[tuple[str, str]]) -> list[dict]:
    """Per source file or table of each (batch, system): the independent physical count beside
    what the reader read, from the landing manifest (counts and file names only)."""
    from pathlib import Path

    from etl.extract.landing import read_manifest

    found = []
    for batch_id, system in sorted(batches):
        try:
            manifest = read_manifest(settings, batch_id, system)
        except FileNotFoundError:  # cleaned after promotion or superseded: nothing to show
            continue
        for name, dataset in manifest.datasets.items():
            for source in dataset.sources:
                found.append(
                    {
                        "system": system,
                        "dataset": name,
                        "source": Path(source.path).name,
                        "physical": source.physical_records,
                        "read": source.records,
                        "unreadable": source.unreadable,
                        "stray": source.stray,
                        "undeclared_fields": len(source.unknown_fields),
                    }
                )
    return found
