"""Load a validated batch into the core database and prove every source row is accounted for.

Stage -> accounting -> promote, in that order. Staging records the batch by reference to its
validated files (per entity, rows and SHA-256: etl.load.direct), with its quarantine, flags and
provisional accounting; the accounting (extracted = staged + quarantined + excluded + merged)
must leave residue 0, or the batch is marked ``unaccounted`` and never promoted. Promotion
(etl.load.promote) is one transaction that writes rows new to the core straight into it
(``COPY`` on PostgreSQL), the others through the set-based upsert, and verifies every loaded row
(set-based aggregates of ids and content hashes, or a join by content hash): if that accounting
fails, the transaction is rolled back, so a batch whose accounting fails is never visible in the
core. Re-running the same batch changes nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa
from pydantic import BaseModel

from etl.batch import BatchPaths, safe_batch_id, utc_now
from etl.catalog import Catalog, EntityMapping
from etl.core.batch_states import PROMOTED, ROLLED_BACK, STAGED, SUPERSEDED, UNACCOUNTED
from etl.core.database import core_engine
from etl.core.ids import core_ids
from etl.core.model import ENTITIES
from etl.core.tables import (
    ENTITY_TABLES,
    batch_accounting,
    dq_flag,
    load_batch,
    promotion,
    quarantine,
    source_watermark,
)
from etl.extract.landing import ROW_NUMBER, SOURCE_KEY, LandingManifest, read_manifest
from etl.load.bulk import bulk_insert
from etl.load.direct import staged_files_record
from etl.load.promote import (
    check_promotable,
    clear_staged,
    promote,
    promotion_row,
    record_staged,
    set_unpromotable,
)
from etl.settings import Settings
from etl.transform.engine import EXCLUDED, FLAGGED, MERGED, QUARANTINED

# Row outcomes of a wave's slice of a system split by care unit (etl/cutover/slices.py): the row
# belongs to another wave (deferred to it), or it changed in the legacy system after its wave was
# cut over (a conflict for the stewards, never applied). Both close the accounting.
WAVE_SCOPE = "wave_scope"
SLICE_CONFLICT = "slice_conflict"


class AccountingError(RuntimeError):
    """Some source rows are not accounted for: the batch is not (and never will be) promoted."""


class EntityLoad(BaseModel):
    entity: str
    staged: int
    inserted: int
    updated: int
    unchanged: int
    verified: int


class AccountingRow(BaseModel):
    """extracted = loaded + quarantined + excluded + merged (+ wave_scope + conflicted, for a
    wave's slice), or the residue says by how much not."""

    source_system: str
    entity: str
    dataset: str
    extracted: int
    loaded: int
    quarantined: int
    excluded: int
    merged: int
    residue: int
    is_verified: bool
    wave_scope: int = 0
    conflicted: int = 0
    quarantine_reasons: dict[str, int] = {}


class LoadReport(BaseModel):
    system: str
    batch_id: str
    is_dry_run: bool
    entities: list[EntityLoad]
    accounting: list[AccountingRow]

    @property
    def is_reconciled(self) -> bool:
        return all(row.is_verified for row in self.accounting)

    def open_rows(self, staged: bool = False) -> list[AccountingRow]:
        """Rows not accounted for: a residue (staged), or not verified in the core (promoted)."""
        if staged:
            return [row for row in self.accounting if row.residue != 0]
        return [row for row in self.accounting if not row.is_verified]

    def residue_note(self, staged: bool = False) -> str:
        return "; ".join(
            f"{row.entity} ({row.dataset}): residue {row.residue}"
            + ("" if staged or row.residue else ", loaded rows not verified in the core")
            for row in self.open_rows(staged)
        )

    def refusal(self, staged: bool = False) -> AccountingError:
        return AccountingError(
            f"{self.system} batch {self.batch_id}: not every source row is accounted for: "
            f"{self.residue_note(staged)}. Nothing of it was promoted into the core; see "
            f"`vardflytt status --batch {self.batch_id}`."
        )


def _load_order(catalog: Catalog, system: str) -> list[str]:
    mapped = list(catalog.system(system).entities)
    ordered = [entity for entity in ENTITIES if entity in mapped]
    if "patient" in mapped:
        ordered.insert(ordered.index("patient") + 1, "patient_identifier")
    return ordered


def _sources(paths: BatchPaths, order: list[str]) -> dict[str, Path]:
    """The batch's validated file per entity: what staging records and promotion reads."""
    return {entity: paths.stage_file("validated", entity) for entity in order}


@dataclass(frozen=True)
class OutcomeCounts:
    by_outcome: dict[str, int]
    # Most frequent first, ties in order of first occurrence (as pandas' value_counts).
    quarantine_reasons: dict[str, int]


def _outcome_counts(paths: BatchPaths, entity: str) -> OutcomeCounts:
    """Rows per outcome, and quarantined rows per reason, of the entity's outcomes file.

    Only its ``outcome`` and ``reason`` columns are read, and counted in Arrow (reading the
    whole file into a pandas frame, twice per batch, was most of the accounting's time)."""
    return count_outcomes(
        pq.read_table(
            paths.stage_file("validated", entity, "outcomes"), columns=["outcome", "reason"]
        )
    )


def count_outcomes(outcomes: pa.Table) -> OutcomeCounts:
    """Rows per outcome, and quarantined rows per reason (columns ``outcome``, ``reason``)."""
    outcome = outcomes.column("outcome").cast(pa.string())
    reasons = outcomes.column("reason").cast(pa.string()).filter(pc.equal(outcome, QUARANTINED))
    return OutcomeCounts(_value_counts(outcome), _value_counts(reasons))


def _value_counts(values: pa.ChunkedArray) -> dict[str, int]:
    """Non-null values and their counts, most frequent first, ties in order of first
    occurrence (what pandas' ``value_counts`` gives, which accounting reported before)."""
    counted = pc.value_counts(values.drop_null())
    pairs = zip(
        counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True
    )
    return {str(v): int(n) for v, n in sorted(pairs, key=lambda pair: -pair[1])}


def _quarantine_rows(
    system: str,
    entity: str,
    dataset: str,
    batch_id: str,
    run_id: str | None,
    outcomes: pa.Table,
    outcome: str = QUARANTINED,
) -> pa.Table:
    """Quarantined rows for ``quarantine``; with ``outcome=FLAGGED``, loaded-and-flagged rows.

    Built in Arrow from the outcomes file as read (no pandas frame of every outcome row)."""
    rows = outcomes.filter(pc.equal(outcomes.column("outcome"), outcome))
    count = rows.num_rows
    row_number = rows.column(ROW_NUMBER).cast(pa.int64())
    if row_number.null_count:
        raise ValueError(f"{system} {entity}: an outcome row without its row number")
    check_name = rows.column("check_name").cast(pa.string())
    keys = pc.binary_join_element_wise(
        f"{batch_id}/{entity}/", row_number.cast(pa.string()), "/", check_name, ""
    ).combine_chunks()
    flagged = outcome == FLAGGED
    id_column, time_column = (
        ("flag_id", "flagged_at") if flagged else ("quarantine_id", "quarantined_at")
    )
    ids = core_ids(
        system,
        "flag" if flagged else "quarantine",
        pd.Series(pd.arrays.ArrowStringArray(keys.cast(pa.large_string())), dtype="string"),
    )
    now = np.datetime64(utc_now().replace(tzinfo=None), "us")  # utc_now is UTC
    # In id order: the primary key's B-tree takes the rows in ascending order (mostly appended
    # to its rightmost page) instead of one random descent each.
    return pa.table(
        {
            id_column: pa.array(ids.array),
            "batch_id": pa.repeat(pa.scalar(batch_id, pa.string()), count),
            "run_id": pa.repeat(pa.scalar(run_id, pa.string()), count),
            "source_system": pa.repeat(pa.scalar(system, pa.string()), count),
            "dataset": pa.repeat(pa.scalar(dataset, pa.string()), count),
            "entity": pa.repeat(pa.scalar(entity, pa.string()), count),
            "source_key": rows.column(SOURCE_KEY).cast(pa.string()),
            "row_number": row_number,
            "check_name": check_name,
            "severity": rows.column("severity").cast(pa.string()),
            "field": rows.column("field").cast(pa.string()),
            "reason": rows.column("reason").cast(pa.string()),
            time_column: pa.array(np.full(count, now), pa.timestamp("us", tz="UTC")),
        }
    ).sort_by(id_column)


def load_system(
    catalog: Catalog,
    system: str,
    batch_id: str,
    settings: Settings,
    run_id: str | None = None,
    dry_run: bool = False,
    scope: str = "all",
    promote_now: bool = True,
    wave: str | None = None,
    kind: str | None = None,
) -> LoadReport:
    """Stage the batch (one transaction), then promote it into the core (another), then account.

    Staging records quarantine, flags and provisional accounting; promotion applies the batch
    with its history kept (etl.load.promote) and verifies every loaded row by content hash.
    With ``promote_now=False`` the batch waits in staging for an explicit promotion. ``kind``
    (full or delta) is what the batch was extracted as; a different one is refused.
    """
    manifest = read_manifest(settings, batch_id, system)
    if kind is not None and kind != manifest.kind:
        raise ValueError(
            f"{system}: batch {batch_id} was extracted as {manifest.kind}, not {kind}; "
            f"extract it again as {kind} or load it as {manifest.kind}"
        )
    kind = manifest.kind
    paths = BatchPaths.of(settings, batch_id, system)
    mappings = catalog.system(system).entities
    order = _load_order(catalog, system)
    engine = core_engine(settings.resolved_core_url)
    if dry_run:
        loads = [_staged_only(entity, paths) for entity in order]
        return _report(
            system, batch_id, manifest, mappings, paths, loads, dry_run=True, catalog=catalog
        )
    with engine.begin() as connection:
        existing = promotion_row(connection, batch_id)
        already = existing is not None and existing["state"] == PROMOTED
        if not already:
            _record_batch(connection, system, batch_id, run_id, "staging", scope=scope)
            clear_staged(connection, batch_id)
            sources = _sources(paths, order)
            staged_files = staged_files_record(sources)
            staged = {e: pq.ParquetFile(p).metadata.num_rows for e, p in sources.items()}
            _stage_deletions(connection, paths, system, batch_id)
            _record_outcomes(connection, system, batch_id, run_id, paths, mappings, order)
            extracted_at = dt.datetime.fromisoformat(manifest.extracted_at)
            record_staged(
                connection, batch_id, system, kind, wave, run_id, extracted_at, staged_files
            )
            loads = [
                EntityLoad(entity=e, staged=n, inserted=0, updated=0, unchanged=0, verified=0)
                for e, n in staged.items()
            ]
            report = _report(
                system,
                batch_id,
                manifest,
                mappings,
                paths,
                loads,
                staged_only=True,
                catalog=catalog,
            )
            _record_accounting(connection, batch_id, report.accounting)
            _record_batch(connection, system, batch_id, run_id, "staged", finished=True)
            if report.open_rows(staged=True):
                # Committed with the batch so its state says why; nothing reached the core.
                set_unpromotable(
                    connection, batch_id, UNACCOUNTED, report.residue_note(staged=True)
                )
    if not already and report.open_rows(staged=True):
        raise report.refusal(staged=True)
    if not promote_now and not already:
        return report
    return promote_system(catalog, system, batch_id, settings, run_id)


def _staged_only(entity: str, paths: BatchPaths) -> EntityLoad:
    """The entity's validated rows as a dry run counts them: staged, nothing written."""
    rows = pq.ParquetFile(paths.stage_file("validated", entity)).metadata.num_rows
    return EntityLoad(entity=entity, staged=rows, inserted=0, updated=0, unchanged=0, verified=0)


def _record_outcomes(
    connection: sa.Connection,
    system: str,
    batch_id: str,
    run_id: str | None,
    paths: BatchPaths,
    mappings: dict[str, EntityMapping],
    order: list[str],
) -> None:
    """The batch's quarantined and flagged rows (its validated outcomes) in ``quarantine`` and
    ``dq_flag``, replacing what an earlier staging of it recorded."""
    for table in (quarantine, dq_flag):
        connection.execute(
            table.delete().where((table.c.batch_id == batch_id) & (table.c.source_system == system))
        )
    for entity in order:
        if entity not in mappings:
            continue
        outcomes = pq.read_table(paths.stage_file("validated", entity, "outcomes"))
        dataset = mappings[entity].dataset
        bulk_insert(
            connection,
            "quarantine",
            _quarantine_rows(system, entity, dataset, batch_id, run_id, outcomes),
        )
        bulk_insert(
            connection,
            "dq_flag",
            _quarantine_rows(system, entity, dataset, batch_id, run_id, outcomes, FLAGGED),
        )


def promote_system(
    catalog: Catalog,
    system: str,
    batch_id: str,
    settings: Settings,
    run_id: str | None = None,
) -> LoadReport:
    """Promote a staged batch in one transaction and record its verified accounting."""
    engine = core_engine(settings.resolved_core_url)
    with engine.connect() as connection:
        check_promotable(connection, batch_id)
    manifest = read_manifest(settings, batch_id, system)
    paths = BatchPaths.of(settings, batch_id, system)
    mappings = catalog.system(system).entities
    order = _load_order(catalog, system)
    try:
        return _promote_accounted(
            engine,
            catalog,
            system,
            batch_id,
            manifest,
            mappings,
            paths,
            order,
            run_id,
            settings.chunk_rows,
        )
    except _Unaccounted as failed:
        with engine.begin() as connection:  # the promotion was rolled back; say why
            _record_accounting(connection, batch_id, failed.report.accounting)
            set_unpromotable(connection, batch_id, UNACCOUNTED, failed.report.residue_note())
        raise failed.report.refusal() from None


class _Unaccounted(Exception):
    """Raised inside the promotion transaction so that it rolls back."""

    def __init__(self, report: LoadReport):
        super().__init__(report.batch_id)
        self.report = report


def _promote_accounted(
    engine: sa.Engine,
    catalog: Catalog,
    system: str,
    batch_id: str,
    manifest: LandingManifest,
    mappings: dict[str, EntityMapping],
    paths: BatchPaths,
    order: list[str],
    run_id: str | None,
    chunk_rows: int,
) -> LoadReport:
    with engine.begin() as connection:
        promoted = promote(connection, batch_id, order, _sources(paths, order), chunk_rows)
        if promoted.already_done:
            loads = _loads_from_ledger(connection, system, batch_id, order)
        else:
            loads = [
                EntityLoad(
                    entity=e,
                    staged=r.staged,
                    inserted=r.inserted,
                    updated=r.updated,
                    unchanged=r.unchanged,
                    verified=r.verified,
                )
                for e, r in promoted.entities.items()
            ]
        report = _report(system, batch_id, manifest, mappings, paths, loads, catalog=catalog)
        if not promoted.already_done:
            if not report.is_reconciled:
                raise _Unaccounted(report)
            _record_accounting(connection, batch_id, report.accounting)
            _set_watermarks(connection, system, manifest)
            _record_batch(connection, system, batch_id, run_id, "loaded", finished=True)
    return report


def _loads_from_ledger(
    connection: sa.Connection, system: str, batch_id: str, order: list[str]
) -> list[EntityLoad]:
    """An already promoted batch: its loaded counts as recorded, for an idempotent re-run."""
    recorded = {
        row.entity: row.loaded
        for row in connection.execute(
            sa.select(batch_accounting.c.entity, batch_accounting.c.loaded).where(
                (batch_accounting.c.batch_id == batch_id)
                & (batch_accounting.c.source_system == system)
            )
        )
    }
    loads = []
    for entity in order:
        loaded = recorded.get(entity, 0)
        if entity == "patient_identifier":
            loaded = int(
                connection.execute(
                    sa.select(sa.func.count()).where(ENTITY_TABLES[entity].c.batch_id == batch_id)
                ).scalar_one()
            )
        loads.append(
            EntityLoad(
                entity=entity,
                staged=loaded,
                inserted=0,
                updated=0,
                unchanged=loaded,
                verified=loaded,
            )
        )
    return loads


def _stage_deletions(
    connection: sa.Connection, paths: BatchPaths, system: str, batch_id: str
) -> None:
    """A delta batch lists the core rows whose legacy rows were deleted (etl.extract.delta)."""
    path = paths.validated / "deletions.parquet"
    if path.exists():
        bulk_insert(connection, "staged_deletion", pq.read_table(path))


def _report(
    system: str,
    batch_id: str,
    manifest: LandingManifest,
    mappings: dict[str, EntityMapping],
    paths: BatchPaths,
    loads: list[EntityLoad],
    dry_run: bool = False,
    staged_only: bool = False,
    catalog: Catalog | None = None,
) -> LoadReport:
    accounting: list[AccountingRow] = []
    by_entity = {load.entity: load for load in loads}
    for entity, load in by_entity.items():
        if entity not in mappings:
            continue
        mapping = mappings[entity]
        accounting.append(
            _account(
                system,
                entity,
                mapping.dataset,
                manifest.datasets[mapping.dataset].extracted,
                load,
                _outcome_counts(paths, entity),
                dry_run or staged_only,
            )
        )
    mapped_datasets = {m.dataset for m in mappings.values()}
    if catalog is not None:
        lookup_rows = lookup_accounting(catalog, system, manifest, dry_run or staged_only)
        accounting += lookup_rows
        mapped_datasets |= {row.dataset for row in lookup_rows}
    for dataset, landed in manifest.datasets.items():
        if dataset not in mapped_datasets and landed.extracted:
            accounting.append(
                AccountingRow(
                    source_system=system,
                    entity=f"(no mapping for {dataset})",
                    dataset=dataset,
                    extracted=landed.extracted,
                    loaded=0,
                    quarantined=0,
                    excluded=0,
                    merged=0,
                    residue=landed.extracted,
                    is_verified=False,
                )
            )
    return LoadReport(
        system=system, batch_id=batch_id, is_dry_run=dry_run, entities=loads, accounting=accounting
    )


def lookup_accounting(
    catalog: Catalog, system: str, manifest: LandingManifest, dry_run: bool = False
) -> list[AccountingRow]:
    """Rows of side tables declared ``role: lookup`` in system.yaml (a country code table, say).

    Lookups read them; no core entity is made of them. Each such dataset gets one accounting
    row, entity ``(lookup <dataset>)``, with all its rows counted as excluded by that declared
    role, so extracted = loaded + quarantined + excluded + merged holds with residue 0.
    """
    rows = []
    for dataset in catalog.system(system).spec.lookup_datasets:
        landed = manifest.datasets.get(dataset)
        extracted = landed.extracted if landed is not None else 0
        rows.append(
            AccountingRow(
                source_system=system,
                entity=f"(lookup {dataset})",
                dataset=dataset,
                extracted=extracted,
                loaded=0,
                quarantined=0,
                excluded=extracted,
                merged=0,
                residue=0,
                is_verified=not dry_run,
            )
        )
    return rows


def _account(
    system: str,
    entity: str,
    dataset: str,
    extracted: int,
    load: EntityLoad,
    outcomes: OutcomeCounts,
    dry_run: bool,
) -> AccountingRow:
    by_outcome = outcomes.by_outcome
    quarantined = by_outcome.get(QUARANTINED, 0)
    excluded = by_outcome.get(EXCLUDED, 0)
    merged = by_outcome.get(MERGED, 0)
    wave_scope = by_outcome.get(WAVE_SCOPE, 0)
    conflicted = by_outcome.get(SLICE_CONFLICT, 0)
    loaded = load.staged if dry_run else load.verified
    residue = extracted - loaded - quarantined - excluded - merged - wave_scope - conflicted
    return AccountingRow(
        source_system=system,
        entity=entity,
        dataset=dataset,
        extracted=extracted,
        loaded=loaded,
        quarantined=quarantined,
        excluded=excluded,
        merged=merged,
        wave_scope=wave_scope,
        conflicted=conflicted,
        residue=residue,
        is_verified=residue == 0 and not dry_run and load.verified == load.staged,
        quarantine_reasons=dict(outcomes.quarantine_reasons),
    )


def airflow_dag_id(run_id: str | None) -> str | None:
    """The DAG running this batch, when it runs as an Airflow task of run ``run_id``.

    Airflow's task runner exports its context (``AIRFLOW_CTX_DAG_ID``, ``AIRFLOW_CTX_DAG_RUN_ID``)
    to the task's environment; the run id must match, so a leftover environment never labels a
    command-line batch."""
    if run_id and os.environ.get("AIRFLOW_CTX_DAG_RUN_ID") == run_id:
        return os.environ.get("AIRFLOW_CTX_DAG_ID") or None
    return None


def _record_batch(
    connection: sa.Connection,
    system: str,
    batch_id: str,
    run_id: str | None,
    status: str,
    finished: bool = False,
    scope: str | None = None,
) -> None:
    now = utc_now()
    existing = connection.execute(
        sa.select(load_batch.c.batch_id).where(load_batch.c.batch_id == batch_id)
    ).first()
    values: dict[str, object] = {"source_system": system, "run_id": run_id, "status": status}
    dag_id = airflow_dag_id(run_id)
    if dag_id is not None:
        values["dag_id"] = dag_id
    if scope is not None:
        values["scope"] = scope
    if finished:
        values["finished_at"] = now
    if existing:
        connection.execute(
            load_batch.update().where(load_batch.c.batch_id == batch_id).values(**values)
        )
    else:
        connection.execute(
            load_batch.insert().values(
                batch_id=batch_id, started_at=now, is_dry_run=False, **values
            )
        )


def _record_accounting(connection: sa.Connection, batch_id: str, rows: list[AccountingRow]) -> None:
    if not rows:
        return
    system = rows[0].source_system
    connection.execute(
        batch_accounting.delete().where(
            (batch_accounting.c.batch_id == batch_id) & (batch_accounting.c.source_system == system)
        )
    )
    now = utc_now()
    connection.execute(
        batch_accounting.insert(),
        [
            {
                "batch_id": batch_id,
                "recorded_at": now,
                **row.model_dump(exclude={"quarantine_reasons", "is_verified"}),
                "is_verified": row.is_verified,
            }
            for row in rows
        ],
    )


def _set_watermarks(
    connection: sa.Connection, system: str, manifest: LandingManifest | None
) -> None:
    """Each dataset's watermark: the promoted batch the source is loaded up to, and its rows."""
    connection.execute(source_watermark.delete().where(source_watermark.c.source_system == system))
    if manifest is None or not manifest.datasets:
        return
    extracted_at = dt.datetime.fromisoformat(manifest.extracted_at)
    connection.execute(
        source_watermark.insert(),
        [
            {
                "source_system": system,
                "dataset": name,
                "batch_id": manifest.batch_id,
                "extracted_at": extracted_at,
                "as_of_date": manifest.as_of_date,
                "rows": landed.rows,
            }
            for name, landed in manifest.datasets.items()
        ],
    )


def rewind_watermarks(connection: sa.Connection, system: str, settings: Settings) -> str | None:
    """After a rollback: watermarks back to the latest batch of ``system`` still promoted.

    Deltas find their base in the promotion ledger either way; this keeps the watermark table,
    which people read, telling the truth. Returns that batch (None when nothing is promoted).
    Call it in the rollback's transaction.
    """
    latest: str | None = connection.execute(
        sa.select(promotion.c.batch_id)
        .where((promotion.c.source_system == system) & (promotion.c.state == PROMOTED))
        .order_by(promotion.c.seq.desc())
        .limit(1)
    ).scalar()
    manifest = None
    # If its landing files are gone, no watermark is known, so none is claimed.
    with contextlib.suppress(FileNotFoundError):
        if latest is not None:
            manifest = read_manifest(settings, latest, system)
    _set_watermarks(connection, system, manifest)
    return latest


class AbandonedBatch(BaseModel):
    """A batch of a system that a run left behind, superseded and cleaned."""

    batch_id: str
    source_system: str
    was: str  # staged | unaccounted | landed (extracted, never staged)
    removed_landing: bool


def supersede_abandoned(
    settings: Settings, system: str, by_batch_id: str | None = None
) -> list[AbandonedBatch]:
    """Supersede and clean what earlier runs of ``system`` left behind: staged or unaccounted
    batches (never promoted) lose their staged rows and landing files and become ``superseded``
    (by ``by_batch_id``, the run starting now, or by a clean); landing folders of batches that
    never reached staging are removed and recorded the same way.

    The caller holds the system's lease, so no other run of the system is in flight. Promoted and
    rolled-back batches keep their landing files (deltas and watermark rewinds read them).
    """
    engine = core_engine(settings.resolved_core_url)
    keep = safe_batch_id(by_batch_id) if by_batch_id else None
    note = f"superseded by batch {by_batch_id}" if by_batch_id else "abandoned; cleaned"
    cleaned: list[AbandonedBatch] = []
    with engine.begin() as connection:
        ledger = {
            row.batch_id: row.state
            for row in connection.execute(
                sa.select(promotion.c.batch_id, promotion.c.state).where(
                    promotion.c.source_system == system
                )
            )
        }
        known = {safe_batch_id(batch_id): batch_id for batch_id in ledger}
        known.update(
            {
                safe_batch_id(row.batch_id): row.batch_id
                for row in connection.execute(
                    sa.select(load_batch.c.batch_id).where(load_batch.c.source_system == system)
                )
            }
        )
        for batch_id, state in sorted(ledger.items()):
            if state not in {STAGED, UNACCOUNTED} or safe_batch_id(batch_id) == keep:
                continue
            set_unpromotable(connection, batch_id, SUPERSEDED, note, superseded_by=by_batch_id)
            cleaned.append(
                AbandonedBatch(
                    batch_id=batch_id,
                    source_system=system,
                    was=state,
                    removed_landing=_remove_landing(settings, batch_id, system),
                )
            )
        root = settings.resolved_landing_dir
        folders = sorted(root.glob(f"*/{system}")) if root.exists() else []
        for folder in folders:
            name = folder.parent.name
            batch_id = known.get(name)
            if name == keep or (batch_id and ledger.get(batch_id) in {PROMOTED, ROLLED_BACK}):
                continue
            if batch_id and ledger.get(batch_id) == SUPERSEDED:
                _remove_landing(settings, batch_id, system)  # superseded earlier, files left
                continue
            if batch_id is None:  # extracted, never staged: no ledger row yet, record one
                batch_id = name
                _record_superseded_landing(connection, system, batch_id, note)
            elif batch_id not in ledger:  # in load_batch only (dry run or failed before stage)
                connection.execute(
                    load_batch.update()
                    .where(load_batch.c.batch_id == batch_id)
                    .values(status=SUPERSEDED, finished_at=utc_now())
                )
            cleaned.append(
                AbandonedBatch(
                    batch_id=batch_id,
                    source_system=system,
                    was="landed",
                    removed_landing=_remove_landing(settings, batch_id, system),
                )
            )
    return cleaned


def _remove_landing(settings: Settings, batch_id: str, system: str) -> bool:
    folder = BatchPaths.of(settings, batch_id, system).root
    if not folder.exists():
        return False
    shutil.rmtree(folder)
    with contextlib.suppress(OSError):
        folder.parent.rmdir()  # the batch folder, once no system of it is left
    return True


def _record_superseded_landing(
    connection: sa.Connection, system: str, batch_id: str, note: str
) -> None:
    now = utc_now()
    connection.execute(
        load_batch.insert().values(
            batch_id=batch_id,
            source_system=system,
            run_id=None,
            scope=note,
            status=SUPERSEDED,
            is_dry_run=False,
            started_at=now,
            finished_at=now,
        )
    )


def batch_states(settings: Settings, system: str | None = None) -> list[dict[str, Any]]:
    """Every batch in the ledger with its state and why (counts and ids only), newest first."""
    engine = core_engine(settings.resolved_core_url)
    query = (
        sa.select(
            load_batch.c.batch_id,
            load_batch.c.source_system,
            load_batch.c.status,
            load_batch.c.scope,
            load_batch.c.started_at,
            promotion.c.state,
            promotion.c.extracted_at,
            promotion.c.superseded_by,
            promotion.c.note,
        )
        .select_from(load_batch.outerjoin(promotion, promotion.c.batch_id == load_batch.c.batch_id))
        .order_by(load_batch.c.started_at.desc())
    )
    if system:
        query = query.where(load_batch.c.source_system == system)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]
