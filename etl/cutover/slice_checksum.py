"""Checksums of core rows, streamed in chunks: the proof a rollback restores what it should.

A table is read in key order, ``chunk`` rows at a time (a server-side cursor on PostgreSQL), so
memory is bounded by the chunk whatever the table's size. Each row's hash depends on that row
only: every value is turned into text by itself (``str``), never by the column type pandas
infers for a chunk. Inference made the old checksum depend on where a chunk ended (a nullable
integer column became floats, ``3.0``, in a chunk with a null; a datetime column lost its time
in a chunk of midnights), so the same rows could sum differently with another chunk size.

A checksum is ``"<rows>:<sha256>"``: SHA-256 over the rows' 64-bit hashes in key order. It does
not depend on the chunk size, nor on the order the database returns rows in. Evidence recorded
before :data:`CHECKSUM_VERSION` 2 (the ``checksum_version`` key is missing) is compared with
checksums computed the old way (``legacy=True``), never with the new ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Sequence

import numpy as np
import pandas as pd
import sqlalchemy as sa

from etl.core.model import ENTITIES
from etl.core.tables import ENTITY_TABLES

CHECKSUM_VERSION = 2
CHUNK = 20_000

# Per chunk of rows (every column as text): one boolean mask per checksum it feeds.
Selector = Callable[[pd.DataFrame], Sequence[np.ndarray]]


def row_frame(
    rows: Sequence[Sequence[object]], columns: list[str], legacy: bool = False
) -> pd.DataFrame:
    """The rows as a frame of text, each value by itself (``legacy``: as the column type pandas
    infers for these rows, the definition before version 2). Rows become tuples first, as
    pandas would make them anyway: handed SQLAlchemy rows, it first asks each for a ``dtype``
    attribute, and every failed lookup raises and catches two exceptions."""
    tuples = list(map(tuple, rows))
    if legacy:
        return pd.DataFrame(tuples, columns=columns).astype("string")
    return pd.DataFrame(tuples, columns=columns, dtype=object).astype("string")


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """One 64-bit hash per row, over every column."""
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


class Digest:
    """Row count and SHA-256 of the selected rows' hashes, fed chunk after chunk in key order."""

    def __init__(self) -> None:
        self.rows = 0
        self._sha = hashlib.sha256()

    def add(self, hashes: np.ndarray, selected: np.ndarray | None = None) -> None:
        chosen = hashes if selected is None else hashes[selected]
        self._sha.update(np.ascontiguousarray(chosen).tobytes())
        self.rows += len(chosen)

    @property
    def value(self) -> str:
        return f"{self.rows}:{self._sha.hexdigest()}"


def table_checksums(
    connection: sa.Connection,
    entity: str,
    selector: Selector,
    count: int,
    chunk: int = CHUNK,
    legacy: bool = False,
) -> list[str]:
    """``count`` checksums of one core table, the i-th over the rows ``selector``'s i-th mask
    picks in each chunk, streamed in key order."""
    table = ENTITY_TABLES[entity]
    key = table.c[ENTITIES[entity].id_field()]
    digests = [Digest() for _ in range(count)]
    # yield_per on the statement: the connection (maybe a rollback's) keeps its own options.
    result = connection.execute(
        sa.select(*table.columns).order_by(key).execution_options(yield_per=chunk)
    )
    columns = list(result.keys())
    for partition in result.partitions():
        frame = row_frame(partition, columns, legacy)
        hashes = row_hashes(frame)
        for digest, selected in zip(digests, selector(frame), strict=True):
            digest.add(hashes, selected)
    return [d.value for d in digests]


def id_index(ids: Collection[str]) -> pd.Index:
    return pd.Index(sorted(ids), dtype="string")


def outside_checksums(
    connection: sa.Connection,
    excluded: dict[str, set[str]],
    chunk: int = CHUNK,
) -> dict[str, str]:
    """Per core table, the checksum of every row whose id is not in ``excluded``: a set fixed
    before a rollback, so the same rows are compared after it."""
    sums = {}
    for entity in ENTITY_TABLES:
        if entity not in ENTITIES:
            continue
        key = ENTITIES[entity].id_field()
        others = id_index(excluded.get(entity, set()))

        def outside(
            frame: pd.DataFrame, others: pd.Index = others, key: str = key
        ) -> list[np.ndarray]:
            return [~frame[key].isin(others).fillna(False).to_numpy(bool)]

        sums[entity] = table_checksums(connection, entity, outside, 1, chunk)[0]
    return sums
