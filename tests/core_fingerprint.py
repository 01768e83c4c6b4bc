"""The state of the core tables, per table, for tests that compare it before and after an action
(a rollback restores it, a refused promotion leaves it, a killed one changes nothing).

``core_fingerprint`` has the shape of ``etl.load.promote.core_checksums`` (per entity
``"<rows>:<sha256>"`` over every column of every row, in key order, optionally of some source
systems' rows only) but digests each row's values as Python gives them (``repr`` of the row
tuples) instead of through pandas' string conversion and row hashing: the same coverage, at half
the CPU or less (a test calls it dozens of times; pandas' formatting of datetime columns was most
of the cost). ``repr`` tells types apart (``1``, ``1.0``, ``'1'``, ``None``), so two states
that ``core_checksums`` tells apart, this tells apart too. Its digests are not
``core_checksums``'s: compare a fingerprint with a fingerprint only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import sqlalchemy as sa

from etl.core.model import ENTITIES
from etl.core.tables import ENTITY_TABLES

CHUNK = 20_000  # rows held at once


def core_fingerprint(
    connection: sa.Connection, systems: Iterable[str] | None = None
) -> dict[str, str]:
    """Per core table: row count and SHA-256 over every column of every row, in key order
    (only the rows of ``systems``, if given)."""
    chosen = None if systems is None else list(systems)
    sums = {}
    for entity in ENTITIES:
        table = ENTITY_TABLES[entity]
        query = sa.select(*table.columns).order_by(table.c[ENTITIES[entity].id_field()])
        if chosen is not None:
            query = query.where(table.c.source_system.in_(chosen))
        digest, rows = hashlib.sha256(), 0
        result = connection.execute(query.execution_options(yield_per=CHUNK))
        for partition in result.partitions():
            values = list(map(tuple, partition))
            digest.update(repr(values).encode())
            rows += len(values)
        sums[entity] = f"{rows}:{digest.hexdigest()}"
    return sums


def core_rows(connection: sa.Connection) -> dict[str, list[tuple]]:
    """Per core table: every row's key, content hash and batch, in key order (for tests that
    compare two cores' rows one by one)."""
    rows = {}
    for name, table in ENTITY_TABLES.items():
        key = table.primary_key.columns.values()[0]
        rows[name] = connection.execute(
            sa.select(key, table.c.content_hash, table.c.batch_id).order_by(key)
        ).all()
    return rows
