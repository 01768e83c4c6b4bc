"""Stage, promote, roll back: every change to the core tables is one batch, and reversible.

- **Stage**: the loader records a batch by reference to its validated files (rows and SHA-256
  per entity, etl.load.direct); rows can also be staged in ``staged_<entity>``, tagged with the
  batch id. The core tables are not touched.
- **Promote**: one transaction per batch. Chunks of rows new to the core are written straight
  into it (``COPY`` on PostgreSQL, etl.load.direct); the other rows go through
  ``staged_<entity>``: for each entity, the previous version of every core row the batch
  overwrites (and the whole row it deletes) is kept in ``<entity>_history``, then a set-based
  upsert applies the batch, changing only rows whose content hash differs. A row the batch
  inserts needs no history row: its ``batch_id`` is its undo information. The batch gets the
  next promotion sequence number.
- **Roll back**: one transaction per batch. The core rows carrying its batch id are deleted,
  overwritten and deleted rows restored from the history, so the core is identical to its state
  before the batch. A batch whose rows a later batch changed again is refused, naming the later
  batches to roll back first (or rolled back after them, in reverse order, with ``cascade``).

A process killed anywhere inside promotion or rollback leaves nothing half-applied: the
transaction never commits, and a retry converges to the same state (promotion of an already
promoted batch, and rollback of a rolled-back one, change nothing).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from etl.batch import utc_now
from etl.core.audit import SCOPE_BATCH, record_access_on
from etl.core.batch_states import PROMOTED, ROLLED_BACK, STAGED, SUPERSEDED, UNACCOUNTED
from etl.core.model import ENTITIES
from etl.core.tables import (
    ENTITY_TABLES,
    HISTORY_TABLES,
    STAGED_TABLES,
    load_batch,
    promotion,
    staged_deletion,
)
from etl.load.direct import StagedFileError, check_staged_files, verified_direct, write_direct
from etl.load.hash_aggregates import record_promotion

# Test hook: pause at a named point inside a transaction so a test can SIGKILL the process there.
FAULT_VARIABLE = "VARDFLYTT_FAULT_PAUSE_AT"


class PromotionError(RuntimeError):
    """A promotion or rollback that must not happen, with what to do instead."""


@dataclass
class EntityPromotion:
    entity: str
    staged: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    verified: int = 0
    # The hash aggregates of the entity's file, summed as promotion read it (etl.load.direct).
    file_aggregates: Any = field(default=None, repr=False, compare=False)


@dataclass
class PromotionReport:
    batch_id: str
    state: str
    seq: int | None
    entities: dict[str, EntityPromotion] = field(default_factory=dict)
    already_done: bool = False

    def totals(self) -> dict[str, int]:
        return {
            name: sum(getattr(e, name) for e in self.entities.values())
            for name in ("staged", "inserted", "updated", "unchanged", "deleted", "verified")
        }


def fault_point(name: str) -> None:
    """Pause here if a test asked to (``VARDFLYTT_FAULT_PAUSE_AT=name@ready_file``)."""
    wanted = os.environ.get(FAULT_VARIABLE)
    if not wanted:
        return
    point, _, ready = wanted.partition("@")
    if point != name:
        return
    if ready:
        Path(ready).write_text(str(os.getpid()), encoding="utf-8")
    time.sleep(600)


def _quote(connection: sa.Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(name)


def _count(connection: sa.Connection, sql: str, **params: object) -> int:
    return int(connection.execute(sa.text(sql), params).scalar_one())


def promotion_row(connection: sa.Connection, batch_id: str) -> dict[str, Any] | None:
    row = connection.execute(sa.select(promotion).where(promotion.c.batch_id == batch_id)).first()
    return dict(row._mapping) if row else None


def record_staged(
    connection: sa.Connection,
    batch_id: str,
    system: str,
    kind: str,
    wave: str | None,
    run_id: str | None,
    extracted_at: dt.datetime | None = None,
    staged_files: str | None = None,
) -> None:
    """``extracted_at`` (when the source was read) orders the system's batches for promotion;
    ``staged_files`` (etl.load.direct.staged_files_record) stages the batch by reference."""
    existing = promotion_row(connection, batch_id)
    values = {
        "source_system": system,
        "kind": kind,
        "wave": wave,
        "state": STAGED,
        "run_id": run_id,
        "staged_at": utc_now(),
        "rows_inserted": 0,
        "rows_updated": 0,
        "rows_deleted": 0,
        "extracted_at": extracted_at,
        "superseded_by": None,
        "note": None,
        "staged_files": staged_files,
    }
    if existing:
        connection.execute(
            promotion.update().where(promotion.c.batch_id == batch_id).values(**values)
        )
    else:
        connection.execute(promotion.insert().values(batch_id=batch_id, **values))


def clear_staged(connection: sa.Connection, batch_id: str) -> None:
    """Remove whatever an earlier attempt staged for this batch (staging is re-runnable)."""
    for table in STAGED_TABLES.values():
        connection.execute(table.delete().where(table.c.batch_id == batch_id))
    connection.execute(staged_deletion.delete().where(staged_deletion.c.batch_id == batch_id))
    connection.execute(
        promotion.update().where(promotion.c.batch_id == batch_id).values(staged_files=None)
    )


def set_unpromotable(
    connection: sa.Connection,
    batch_id: str,
    state: str,
    note: str,
    superseded_by: str | None = None,
) -> None:
    """The batch will never be promoted (superseded, or unaccounted): drop its staged rows and
    record why in the promotion ledger and ``load_batch`` (which ``vardflytt status`` shows)."""
    clear_staged(connection, batch_id)
    connection.execute(
        promotion.update()
        .where(promotion.c.batch_id == batch_id)
        .values(state=state, superseded_by=superseded_by, note=note)
    )
    connection.execute(
        load_batch.update()
        .where(load_batch.c.batch_id == batch_id)
        .values(status=state, finished_at=utc_now())
    )


def newer_batches(connection: sa.Connection, row: dict[str, Any]) -> list[dict[str, Any]]:
    """Batches of the same system extracted after this one that are staged or promoted."""
    if row.get("extracted_at") is None:
        return []
    return [
        dict(other._mapping)
        for other in connection.execute(
            sa.select(
                promotion.c.batch_id,
                promotion.c.state,
                promotion.c.extracted_at,
            )
            .where(
                (promotion.c.source_system == row["source_system"])
                & (promotion.c.batch_id != row["batch_id"])
                & promotion.c.state.in_([STAGED, PROMOTED])
                & (promotion.c.extracted_at > row["extracted_at"])
            )
            .order_by(promotion.c.extracted_at.desc())
        )
    ]


def _moment(value: dt.datetime) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S.%f} UTC"


def _refuse_unpromotable(connection: sa.Connection, row: dict[str, Any]) -> None:
    batch_id, system = row["batch_id"], row["source_system"]
    if row["state"] == SUPERSEDED:
        by = row["superseded_by"]
        raise PromotionError(
            f"{system}: batch {batch_id} was superseded"
            + (f" by batch {by}" if by else "")
            + f" ({row['note'] or 'abandoned'}); its staged rows are gone. Run the system again."
        )
    if row["state"] == UNACCOUNTED:
        raise PromotionError(
            f"{system}: batch {batch_id} failed its accounting ({row['note']}); it is never "
            "promoted. Fix the cause and run the system again."
        )
    if row["state"] != STAGED:
        raise PromotionError(
            f"batch {batch_id} is {row['state']}; load it again (a new stage) before promoting"
        )
    newer = newer_batches(connection, row)
    if newer:
        names = "; ".join(
            f"{other['batch_id']} ({other['state']}, extracted {_moment(other['extracted_at'])})"
            for other in newer
        )
        raise PromotionError(
            f"{system}: batch {batch_id} (extracted {_moment(row['extracted_at'])}) "
            f"is older than {names}: an older extraction is never promoted over a newer one. "
            "Promote the newer batch (or roll it back first), then run the system again."
        )


def check_promotable(connection: sa.Connection, batch_id: str) -> None:
    """Refuse early (before reading any file) a batch that is not staged or promoted, or older
    than a newer staged or promoted batch of its system; ``promote`` checks again under lock."""
    row = promotion_row(connection, batch_id)
    if row is None:
        raise PromotionError(f"batch {batch_id} was never staged; run its load first")
    if row["state"] != PROMOTED:
        _refuse_unpromotable(connection, row)


def _lock_promotions(connection: sa.Connection) -> None:
    """Promotions and rollbacks are serialised: sequence numbers and overlap checks stay true."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("LOCK TABLE promotion IN SHARE ROW EXCLUSIVE MODE")


@dataclass(frozen=True)
class _Tables:
    """An entity's core, staged and history tables, key and columns, quoted for SQL."""

    core: str
    staged: str
    history: str
    key: str
    columns: list[str]  # unquoted, in the core table's order
    column_list: str
    prefixed: str  # the columns of the core table aliased ``t``

    @classmethod
    def of(cls, connection: sa.Connection, entity: str) -> _Tables:
        def quote(name: str) -> str:
            return _quote(connection, name)

        columns = [c.name for c in ENTITY_TABLES[entity].columns]
        return cls(
            core=quote(entity),
            staged=quote(STAGED_TABLES[entity].name),
            history=quote(HISTORY_TABLES[entity].name),
            key=quote(ENTITIES[entity].id_field()),
            columns=columns,
            column_list=", ".join(quote(c) for c in columns),
            prefixed=", ".join(f"t.{quote(c)}" for c in columns),
        )


def _promote_entity(
    connection: sa.Connection,
    entity: str,
    batch_id: str,
    source: Path | None = None,
    chunk_rows: int = 50_000,
    aggregate_file: bool = True,
) -> EntityPromotion:
    """``aggregate_file``: sum the file's hash aggregates while writing it (a full batch's
    record_promotion reads them; a delta's are its base's plus its changes, so not for one)."""
    tables = _Tables.of(connection, entity)
    result = EntityPromotion(entity)
    if source is not None:
        # Rows new to the core straight in; chunks meeting existing rows into staged_<entity>.
        direct = write_direct(
            connection, entity, batch_id, source, chunk_rows, aggregate=aggregate_file
        )
        if direct.rows:
            fault_point(f"promote:{entity}:history")
        # Checked before the upsert below, whose rows carry the batch id too.
        result.verified = verified_direct(connection, entity, batch_id, direct, chunk_rows)
        result.staged = result.inserted = direct.rows
        result.file_aggregates = direct.aggregates
    result.staged += _count(
        connection, f"SELECT count(*) FROM {tables.staged} WHERE batch_id = :b", b=batch_id
    )
    if result.staged > result.inserted:
        _upsert_staged(connection, entity, batch_id, tables, result)
    result.deleted += _apply_deletions(connection, entity, batch_id, tables)
    return result


def _upsert_staged(
    connection: sa.Connection,
    entity: str,
    batch_id: str,
    tables: _Tables,
    result: EntityPromotion,
) -> None:
    """The batch's staged rows into the core: a changed row's old version into history first,
    then insert or update; counted and verified in ``result``, the staged rows removed."""
    core, staged, history, key = tables.core, tables.staged, tables.history, tables.key
    result.updated += connection.execute(
        sa.text(
            f"INSERT INTO {history} (history_batch_id, history_op, {tables.column_list}) "
            f"SELECT :b, 'update', {tables.prefixed} FROM {core} t JOIN {staged} s "
            f"ON t.{key} = s.{key} WHERE s.batch_id = :b AND t.content_hash <> s.content_hash"
        ),
        {"b": batch_id},
    ).rowcount
    fault_point(f"promote:{entity}:history")
    id_field = ENTITIES[entity].id_field()
    updates = ", ".join(
        f"{_quote(connection, c)} = excluded.{_quote(connection, c)}"
        for c in tables.columns
        if c != id_field
    )
    # The rows it inserts carry the batch id: that is their undo information (rollback deletes
    # the core rows of the batch), so they need no history row.
    written = connection.execute(
        sa.text(
            f"INSERT INTO {core} ({tables.column_list}) SELECT {tables.column_list} "
            f"FROM {staged} WHERE batch_id = :b ON CONFLICT ({key}) DO UPDATE SET {updates} "
            f"WHERE {core}.content_hash <> excluded.content_hash"
        ),
        {"b": batch_id},
    ).rowcount
    result.inserted += written - result.updated
    result.verified += _count(
        connection,
        f"SELECT count(*) FROM {core} t JOIN {staged} s ON t.{key} = s.{key} "
        "WHERE s.batch_id = :b AND t.content_hash = s.content_hash",
        b=batch_id,
    )
    result.unchanged = result.staged - result.updated - result.inserted
    connection.execute(sa.text(f"DELETE FROM {staged} WHERE batch_id = :b"), {"b": batch_id})


def _apply_deletions(connection: sa.Connection, entity: str, batch_id: str, tables: _Tables) -> int:
    """The core rows the batch's source deleted: each into history first (unless the batch
    wrote it itself), then deleted; returns how many were deleted."""
    deletions = _count(
        connection,
        "SELECT count(*) FROM staged_deletion WHERE batch_id = :b AND entity = :e",
        b=batch_id,
        e=entity,
    )
    if not deletions:
        return 0
    core, history, key = tables.core, tables.history, tables.key
    gone = "SELECT d.row_id FROM staged_deletion d WHERE d.batch_id = :b AND d.entity = :e"
    connection.execute(
        sa.text(
            f"INSERT INTO {history} (history_batch_id, history_op, {tables.column_list}) "
            f"SELECT :b, 'delete', {tables.prefixed} FROM {core} t WHERE t.{key} IN ({gone}) "
            # a row this batch wrote itself is undone by its batch id, or its 'update' row
            f"AND t.batch_id <> :b AND NOT EXISTS (SELECT 1 FROM {history} h "
            f"WHERE h.history_batch_id = :b AND h.{key} = t.{key})"
        ),
        {"b": batch_id, "e": entity},
    )
    deleted: int = connection.execute(
        sa.text(f"DELETE FROM {core} WHERE {key} IN ({gone})"), {"b": batch_id, "e": entity}
    ).rowcount
    connection.execute(
        staged_deletion.delete().where(
            (staged_deletion.c.batch_id == batch_id) & (staged_deletion.c.entity == entity)
        )
    )
    return deleted


def promote(
    connection: sa.Connection,
    batch_id: str,
    entities: Iterable[str],
    sources: dict[str, Path] | None = None,
    chunk_rows: int = 50_000,
) -> PromotionReport:
    """Apply one staged batch to the core tables, inside the caller's transaction.

    A batch staged by reference reads its rows from ``sources`` (entity -> validated file),
    each checked against the digest staging recorded."""
    _lock_promotions(connection)
    row = promotion_row(connection, batch_id)
    if row is None:
        raise PromotionError(f"batch {batch_id} was never staged; run its load first")
    if row["state"] == PROMOTED:
        return PromotionReport(batch_id, PROMOTED, row["seq"], already_done=True)
    _refuse_unpromotable(connection, row)
    report = PromotionReport(batch_id, PROMOTED, None)
    try:
        record = row["staged_files"]
        files = check_staged_files(batch_id, record, sources) if record else {}
        for entity in entities:
            source = sources[entity] if sources and entity in files else None
            report.entities[entity] = _promote_entity(
                connection,
                entity,
                batch_id,
                source,
                chunk_rows,
                row["kind"] != "delta",  # positional: tests wrap this function
            )
            fault_point(f"promote:{entity}:done")
    except StagedFileError as error:
        raise PromotionError(str(error)) from None
    # What the system's core rows must add up to from now on (etl/load/hash_aggregates.py).
    record_promotion(
        connection,
        batch_id,
        row["source_system"],
        row["kind"],
        list(report.entities),
        sources,
        chunk_rows,
        read={
            e: r.file_aggregates
            for e, r in report.entities.items()
            if r.file_aggregates is not None
        },
    )
    seq = _count(connection, "SELECT coalesce(max(seq), 0) + 1 FROM promotion")
    totals = report.totals()
    connection.execute(
        promotion.update()
        .where(promotion.c.batch_id == batch_id)
        .values(
            state=PROMOTED,
            seq=seq,
            promoted_at=utc_now(),
            rows_inserted=totals["inserted"],
            rows_updated=totals["updated"],
            rows_deleted=totals["deleted"],
        )
    )
    fault_point("promote:commit")
    report.seq = seq
    return report


def _touched_ids(entity: str, batch_id: str) -> sa.CompoundSelect[Any]:
    """Ids of the core rows a batch changed: those in its history (rows it overwrote or
    deleted; rows it inserted, for batches promoted before migration 0007), the core rows that
    carry its batch id (rows it inserted or overwrote), and rows it wrote that a later batch
    overwrote or deleted since (their previous version, in that batch's history, has its id)."""
    history, core = HISTORY_TABLES[entity], ENTITY_TABLES[entity]
    key = ENTITIES[entity].id_field()
    return sa.union(
        sa.select(history.c[key]).where(history.c.history_batch_id == batch_id),
        sa.select(core.c[key]).where(core.c.batch_id == batch_id),
        sa.select(history.c[key]).where(history.c.batch_id == batch_id),
    )


def later_conflicts(connection: sa.Connection, batch_id: str) -> list[dict[str, Any]]:
    """Promoted batches after this one that changed some of the same rows again."""
    row = promotion_row(connection, batch_id)
    assert row is not None  # rollback() calls this for a batch it found promoted
    later = connection.execute(
        sa.select(
            promotion.c.batch_id, promotion.c.source_system, promotion.c.wave, promotion.c.seq
        )
        .where((promotion.c.state == PROMOTED) & (promotion.c.seq > row["seq"]))
        .order_by(promotion.c.seq.desc())
    ).all()
    conflicts = []
    for other in later:
        shared = 0
        for entity in HISTORY_TABLES:
            theirs = _touched_ids(entity, other.batch_id).subquery()
            mine = _touched_ids(entity, batch_id)
            key = theirs.c[ENTITIES[entity].id_field()]
            shared += int(
                connection.execute(
                    sa.select(sa.func.count()).select_from(theirs).where(key.in_(mine))
                ).scalar_one()
            )
        if shared:
            conflicts.append({**other._mapping, "shared_rows": shared})
    return conflicts


def _identity_runs_after(connection: sa.Connection, promoted_at: dt.datetime) -> list[str]:
    from etl.core.identity_tables import identity_resolution_run as runs

    if not sa.inspect(connection).has_table(runs.name):
        return []
    return [
        r.run_id
        for r in connection.execute(
            sa.select(runs.c.run_id)
            .where((runs.c.started_at > promoted_at) & (runs.c.status != "undone"))
            .order_by(runs.c.sequence.desc())
        )
    ]


def rollback(
    connection: sa.Connection, batch_id: str, cascade: bool = False
) -> list[PromotionReport]:
    """Undo one promoted batch (and, with ``cascade``, the later ones it depends on, first)."""
    _lock_promotions(connection)
    row = promotion_row(connection, batch_id)
    if row is None:
        raise PromotionError(f"batch {batch_id} is not in the promotion ledger")
    if row["state"] == ROLLED_BACK:
        return [PromotionReport(batch_id, ROLLED_BACK, row["seq"], already_done=True)]
    if row["state"] != PROMOTED:
        # Staged but never promoted: nothing reached the core; drop the staged rows.
        clear_staged(connection, batch_id)
        connection.execute(
            promotion.update()
            .where(promotion.c.batch_id == batch_id)
            .values(state=ROLLED_BACK, rolled_back_at=utc_now())
        )
        return [PromotionReport(batch_id, ROLLED_BACK, None)]
    reports: list[PromotionReport] = []
    conflicts = later_conflicts(connection, batch_id)
    if conflicts:
        if not cascade:
            names = "; ".join(
                f"{c['batch_id']} ({c['source_system']}, wave {c['wave'] or '-'}, "
                f"{c['shared_rows']} shared rows)"
                for c in conflicts
            )
            raise PromotionError(
                f"cannot roll back {batch_id} alone: later promoted batches changed the same core "
                f"rows again: {names}. Roll those back first (newest first), or pass --cascade to "
                "roll them back in that order automatically."
            )
        for conflict in conflicts:  # newest first
            reports.extend(rollback(connection, conflict["batch_id"], cascade=True))
    identity_runs = _identity_runs_after(connection, row["promoted_at"])
    if identity_runs:
        raise PromotionError(
            f"cannot roll back {batch_id}: identity resolution ran after it was promoted "
            f"({', '.join(identity_runs)}); undo those runs first, newest first "
            "(vardflytt identity undo RUN_ID), so no person link points at rolled-back rows"
        )
    report = PromotionReport(batch_id, ROLLED_BACK, row["seq"])
    for entity in reversed(list(ENTITIES)):
        report.entities[entity] = _rollback_entity(connection, entity, batch_id)
        fault_point(f"rollback:{entity}:done")
    connection.execute(
        promotion.update()
        .where(promotion.c.batch_id == batch_id)
        .values(state=ROLLED_BACK, rolled_back_at=utc_now())
    )
    connection.execute(
        load_batch.update().where(load_batch.c.batch_id == batch_id).values(status=ROLLED_BACK)
    )
    totals = report.totals()
    record_access_on(  # committed with the rollback, in its transaction
        connection,
        "rollback",
        row["source_system"],
        batch_id,
        totals["inserted"] + totals["updated"] + totals["deleted"],
        subject_scope=SCOPE_BATCH,
        subject_count=totals["inserted"] + totals["updated"] + totals["deleted"],
    )
    fault_point("rollback:commit")
    reports.append(report)
    return reports


def _rollback_entity(connection: sa.Connection, entity: str, batch_id: str) -> EntityPromotion:
    model = ENTITIES[entity]

    def quote(name: str) -> str:
        return _quote(connection, name)

    core, history = quote(entity), quote(HISTORY_TABLES[entity].name)
    key = quote(model.id_field())
    column_list = ", ".join(quote(c.name) for c in ENTITY_TABLES[entity].columns)
    result = EntityPromotion(entity)
    # The rows the batch inserted or overwrote carry its batch id (no later batch changed them
    # again: rollback() checked). History rows of kind 'insert' come from batches promoted by
    # earlier versions, which kept one per inserted row instead.
    result.deleted = connection.execute(
        sa.text(f"DELETE FROM {core} WHERE batch_id = :b"), {"b": batch_id}
    ).rowcount
    result.deleted += connection.execute(
        sa.text(
            f"DELETE FROM {core} WHERE {key} IN "
            f"(SELECT {key} FROM {history} WHERE history_batch_id = :b)"
        ),
        {"b": batch_id},
    ).rowcount
    result.updated = connection.execute(
        sa.text(
            f"INSERT INTO {core} ({column_list}) SELECT {column_list} FROM {history} "
            "WHERE history_batch_id = :b AND history_op IN ('update', 'delete')"
        ),
        {"b": batch_id},
    ).rowcount
    connection.execute(
        sa.text(f"DELETE FROM {history} WHERE history_batch_id = :b"), {"b": batch_id}
    )
    return result


def core_checksums(
    connection: sa.Connection,
    entities: Iterable[str] | None = None,
    chunk: int = 20_000,
    systems: Iterable[str] | None = None,
) -> dict[str, str]:
    """Per core table: row count and SHA-256 over every column of every row, in key order
    (only the rows of ``systems``, if given)."""
    sums = {}
    for entity in entities or ENTITIES:
        table = ENTITY_TABLES[entity]
        key = table.c[ENTITIES[entity].id_field()]
        digest = hashlib.sha256()
        rows = 0
        query = sa.select(*table.columns).order_by(key)
        if systems is not None:
            query = query.where(table.c.source_system.in_(list(systems)))
        # Per statement: the caller's connection (maybe inside a rollback) keeps its options.
        result = connection.execute(query.execution_options(yield_per=chunk))
        columns = list(result.keys())
        for partition in result.partitions():
            # Rows as tuples: handed SQLAlchemy rows, pandas asks each for a ``dtype`` attribute
            # first (every failed lookup raises and catches two exceptions); the frame, its
            # inferred types and so the checksum are the same.
            tuples = list(map(tuple, partition))
            frame = pd.DataFrame(tuples, columns=columns).astype("string")
            digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
            rows += len(frame)
        sums[entity] = f"{rows}:{digest.hexdigest()}"
    return sums
