"""A wave's slice of a system split by care unit: load only its rows, account for the rest.

A plan by unit (etl/cutover/plan.py) gives each row of a split system exactly one wave
(etl/cutover/scope.py). When a wave loads such a system, the batch runs through extract,
transform and validation as a whole (reference and plausibility checks see every row);
:func:`assign_batch` then writes each row's wave beside the validated files, so that the
data-quality gate judges the wave's rows, not the whole system's (etl/validate/gate.py: another
unit's bad rows neither block nor mask the wave); after the gate :func:`slice_batch` cuts the
validated batch down to the wave's rows before staging (:class:`WaveSlicer` does both steps):

- the wave's rows stay in the validated files and are loaded, quarantined or flagged as usual;
- a row of another wave leaves the batch as outcome ``wave_scope`` ("belongs to wave X"): it is
  accounted (``batch_accounting.wave_scope``), never lost, and loaded by its own wave. A
  quarantine or flag of such a row is its own wave's to raise;
- a row of a wave already **cut over** whose content differs from the core (a change the legacy
  system made after go-live) is not applied either: it becomes a ``cutover_conflict`` for the
  stewards and outcome ``slice_conflict`` in the accounting. The legacy slice is closed;
- the same legacy content seen again (by another wave's delta) is raised once; a *new* change
  to a row whose conflict is still open is raised as a conflict of its own (the conflict id is
  the change's content, not the batch), so the stewards see every change, the earlier kept;
- a delta's deletions are applied only to rows the wave itself loaded; a deletion of a cut-over
  wave's row is a conflict too; one of a row another wave loaded is ``wave_scope`` (its own
  delta deletes it); one of a row no wave loaded is ``absent`` (nothing in the core to delete).
  Every deleted key ends in exactly one of these, or the slice stops (``deletions`` in the
  report, ``deletion_outcomes.parquet`` beside the validated files).

Fail closed: a row the plan puts in no wave or in two stops the slice (``SliceError``), as does
a unit wave whose patients wave has not loaded (its rows would point at patients not in the
core). Patient-level rows go with the plan's patients wave; later waves find them in the core.

The slice in the core (the same assignment over the core's own rows, and the checksums a
rollback of the wave must keep) is etl/cutover/slice_core.py. Everything is vectorised (``isin``,
``map``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from etl.batch import BatchPaths, utc_now
from etl.catalog import Catalog, SystemMappings
from etl.core.audit import SCOPE_BATCH, record_access
from etl.core.database import core_engine
from etl.core.model import ENTITIES
from etl.core.tables import ENTITY_TABLES, cutover_conflict, promotion
from etl.cutover import ledger
from etl.cutover.plan import WavePlan
from etl.cutover.scope import assign, is_patient_level, read_transformed
from etl.cutover.slice_core import _core_tables
from etl.extract.landing import ROW_NUMBER, SOURCE_KEY, read_manifest
from etl.load.loader import SLICE_CONFLICT, WAVE_SCOPE
from etl.settings import Settings
from etl.transform.engine import EXCLUDED, FLAGGED, MERGED, QUARANTINED
from etl.transform.stage import outcomes_table, transform_entity
from etl.validate.gate import GATE_EVIDENCE, WAVE_SLICE, wave_rows_file

STAGE_ROW_NUMBER = "_row_number"
MARKER = WAVE_SLICE  # in validated/: the slice is cut once; a retry reads it back
OWNERS = "_wave_owners.parquet"  # in validated/: the assignment, computed once per batch
DELETION_OUTCOMES = "deletion_outcomes.parquet"  # in validated/: each deleted key's outcome
CORE_SLICE = 5_000
OPEN, RESOLVED = "open", "resolved"
CHANGED, NEW, DELETED = "changed", "new", "deleted"
# A deleted key's outcome in a wave's slice (besides WAVE_SCOPE and SLICE_CONFLICT).
APPLIED, ABSENT = "applied", "absent"


class SliceError(ledger.LedgerError):
    """A batch that cannot be cut to its wave's slice as it is (fail closed)."""


@dataclass
class EntitySlice:
    entity: str
    kept: int = 0
    wave_scope: int = 0
    conflicted: int = 0
    other_waves: dict[str, int] = field(default_factory=dict)
    # Outcomes ``wave_scope`` per owning wave, as the accounting counts them (the validation
    # report shows them beside loaded, quarantined and flagged).
    wave_scope_by_wave: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "kept": self.kept,
            "wave_scope": self.wave_scope,
            "conflicted": self.conflicted,
            "other_waves": self.other_waves,
            "wave_scope_by_wave": self.wave_scope_by_wave,
        }


def _entities(system: SystemMappings, paths: BatchPaths) -> list[str]:
    names = [*system.entities]
    if "patient" in names:
        names.append("patient_identifier")
    return [e for e in names if paths.stage_file("validated", e).exists()]


def _assignment_tables(
    catalog: Catalog, system: SystemMappings, batch_id: str, settings: Settings
) -> dict[str, pd.DataFrame]:
    """The columns the assignment reads, for every row of the system. A full batch has them in
    its transformed files; a delta maps only its changed rows, so its landed snapshot (every
    row) is transformed again into a scratch folder, removed at the end."""
    paths = BatchPaths.of(settings, batch_id, system.name)
    manifest = read_manifest(settings, batch_id, system.name)
    if manifest.kind != "delta":
        return read_transformed(system, paths)
    scratch = settings.scratch_dir / f"wave-slice-{uuid.uuid4().hex[:12]}"
    # A new object, not model_copy: that would keep the cached resolved_landing_dir.
    local = Settings(**{**settings.model_dump(), "landing_dir": scratch})
    target = BatchPaths.of(local, batch_id, system.name)
    try:
        shutil.copytree(
            paths.landed, target.landed, ignore=shutil.ignore_patterns("*.delta.parquet")
        )
        whole = manifest.model_copy(update={"kind": "full", "base_batch_id": None})
        target.manifest_file.write_text(json.dumps(whole.model_dump(), default=str), "utf-8")
        record_access(
            settings,
            "transform_wave_slice",
            system.name,
            batch_id,
            manifest.total_rows,
            subject_scope=SCOPE_BATCH,
            subject_count=manifest.total_rows,
        )
        for entity in system.entities:
            transform_entity(catalog, system.name, entity, batch_id, local)
        return read_transformed(system, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def wave_of_rows(
    plan: WavePlan, system: SystemMappings, tables: dict[str, pd.DataFrame]
) -> dict[str, tuple[pd.Series, pd.Series]]:
    """Per entity: the wave of each row by core id, and by source key (only keys of one wave)."""
    found = {}
    for entity, rows in assign(plan, system, tables).items():
        table = tables[entity]
        ids = table[ENTITIES[entity].id_field()].astype("string").to_numpy()
        by_id = pd.Series(rows["wave"].to_numpy(), index=ids, dtype="string")
        by_id = by_id[~by_id.index.duplicated()]
        keyed = pd.DataFrame({"key": rows["source_key"].to_numpy(), "wave": rows["wave"]})
        keyed = keyed.dropna(subset=["key"]).drop_duplicates()
        single = keyed[~keyed["key"].duplicated(keep=False)]
        by_key = pd.Series(
            single["wave"].to_numpy(), index=single["key"].to_numpy(), dtype="string"
        )
        found[entity] = (by_id, by_key)
    return found


def _owners(
    plan: WavePlan,
    catalog: Catalog,
    system: SystemMappings,
    batch_id: str,
    settings: Settings,
    fresh: bool = False,
) -> dict[str, tuple[pd.Series, pd.Series]]:
    """:func:`wave_of_rows` for the batch, computed once (a delta transforms its whole snapshot
    again for it) by :func:`assign_batch` (``fresh``: a re-run never reads an older batch's) and
    kept beside the validated files for the slice after the gate."""
    path = BatchPaths.of(settings, batch_id, system.name).validated / OWNERS
    if path.exists() and not fresh:
        stored = pq.read_table(path).to_pandas()
        found = {}
        for entity, rows in stored.groupby("entity"):
            parts = []
            for kind in ("id", "key"):
                part = rows[rows["by"] == kind]
                parts.append(
                    pd.Series(
                        part["wave"].to_numpy(), index=part["value"].to_numpy(), dtype="string"
                    )
                )
            found[str(entity)] = (parts[0], parts[1])
        return found
    owners = wave_of_rows(plan, system, _assignment_tables(catalog, system, batch_id, settings))
    frames = [pd.DataFrame({"entity": [], "by": [], "value": [], "wave": []}, dtype="string")]
    for entity, (by_id, by_key) in owners.items():
        for kind, series in (("id", by_id), ("key", by_key)):
            frames.append(
                pd.DataFrame(
                    {
                        "entity": entity,
                        "by": kind,
                        "value": series.index.astype("string"),
                        "wave": series.to_numpy(),
                    }
                ).astype("string")
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace(path, pa.Table.from_pandas(pd.concat(frames, ignore_index=True), preserve_index=False))
    return owners


def _empty_wave_rows() -> pd.DataFrame:
    """The wave rows' columns with no row, so that a batch with no entity still has them."""
    return pd.DataFrame(
        {
            "entity": pd.Series(dtype="string"),
            ROW_NUMBER: pd.Series(dtype="int64"),
            "wave": pd.Series(dtype="string"),
            "is_certain": pd.Series(dtype="bool"),
            "transformed_rows": pd.Series(dtype="int64"),
        }
    )


def _transformed_waves(transformed: Path, entity: str, by_id: pd.Series) -> pd.DataFrame:
    """An entity's transformed rows (row number and core id), each with its wave by core id."""
    key = ENTITIES[entity].id_field()
    rows: pd.DataFrame = pq.read_table(transformed, columns=[ROW_NUMBER, key]).to_pandas()
    rows["wave"] = rows[key].astype("string").map(by_id).astype("string")
    return rows


def _untransformed_waves(
    plan: WavePlan,
    system: SystemMappings,
    entity: str,
    paths: BatchPaths,
    rows: pd.DataFrame,
    by_key: pd.Series,
) -> pd.DataFrame:
    """The outcomes of rows with no transformed row, each with its source key's wave or the
    fallback wave; ``known``: its wave was found by its source key."""
    outcomes_path = paths.stage_file("transformed", entity, "outcomes")
    outcomes = (
        pq.read_table(outcomes_path, columns=[ROW_NUMBER, SOURCE_KEY]).to_pandas()
        if outcomes_path.exists()
        else pd.DataFrame({ROW_NUMBER: [], SOURCE_KEY: []})
    )
    outcomes = outcomes[~outcomes[ROW_NUMBER].isin(rows[ROW_NUMBER])]
    owner = outcomes[SOURCE_KEY].astype("string").map(by_key).astype("string")
    known = owner.notna().to_numpy(bool)
    fallback = _fallback(plan, system, entity)
    if fallback is not None:
        owner = owner.fillna(fallback)
    return pd.DataFrame(
        {
            ROW_NUMBER: outcomes[ROW_NUMBER],
            "wave": owner.to_numpy(),
            "known": known,
            "transformed": 0,
        }
    )


def _per_row_waves(rows: pd.DataFrame, untransformed: pd.DataFrame) -> pd.DataFrame:
    """Per landed row (by row number): its first wave, how many waves its rows have, whether
    every one is known, and how many transformed rows it has."""
    every = pd.concat(
        [
            pd.DataFrame(
                {
                    ROW_NUMBER: rows[ROW_NUMBER],
                    "wave": rows["wave"],
                    "known": rows["wave"].notna().to_numpy(bool),
                    "transformed": 1,
                }
            ),
            untransformed,
        ],
        ignore_index=True,
    )
    every["wave"] = every["wave"].astype("string")
    grouped = every.groupby(ROW_NUMBER, sort=True)
    return pd.DataFrame(
        {
            "wave": grouped["wave"].first(),
            "waves": grouped["wave"].nunique(),
            "known": grouped["known"].all(),
            "transformed_rows": grouped["transformed"].sum(),
        }
    )


def _wave_rows_of(entity: str, per_row: pd.DataFrame, single: pd.Series) -> pd.DataFrame:
    """An entity's wave rows: a row of several waves has none and, like one of a wave not known
    for certain, is written ``is_certain`` false."""
    return pd.DataFrame(
        {
            "entity": entity,
            ROW_NUMBER: per_row.index.to_numpy("int64"),
            "wave": per_row["wave"].where(single).astype("string").to_numpy(),
            "is_certain": (single & per_row["known"]).to_numpy(bool),
            "transformed_rows": per_row["transformed_rows"].to_numpy("int64"),
        }
    )


def assign_batch(
    plan: WavePlan,
    wave: str,
    catalog: Catalog,
    system_name: str,
    batch_id: str,
    settings: Settings,
) -> dict[str, Any]:
    """Each landed row of the validated batch with its wave (``wave_rows.parquet``), for the
    gate to judge ``wave``'s rows (etl/validate/gate.py); per entity, rows per wave.

    A row is its transformed rows' wave (by core id), or, with no transformed row (quarantined,
    excluded or merged while mapping), its source key's or the fallback wave, as the slice
    decides them. A row whose wave is not known for certain (the fallback's, none, or several)
    is written ``is_certain`` false: a check that fails such a row is judged on the stricter of
    the slice and the whole batch (fail closed: a fault no unit can be read for is the whole
    system's)."""
    system = catalog.system(system_name)
    paths = BatchPaths.of(settings, batch_id, system_name)
    owners = _owners(plan, catalog, system, batch_id, settings, fresh=True)
    empty = pd.Series(dtype="string")
    frames = [_empty_wave_rows()]
    counts: dict[str, dict[str, int]] = {}
    for entity in system.entities:
        transformed = paths.stage_file("transformed", entity)
        if not transformed.exists():
            continue
        by_id, by_key = owners.get(entity, (empty, empty))
        rows = _transformed_waves(transformed, entity, by_id)
        untransformed = _untransformed_waves(plan, system, entity, paths, rows, by_key)
        per_row = _per_row_waves(rows, untransformed)
        single = per_row["waves"] == 1
        frames.append(_wave_rows_of(entity, per_row, single))
        tally = per_row["wave"].where(single).fillna("(several)").value_counts()
        counts[entity] = {str(k): int(v) for k, v in tally.items()}
    table = pa.Table.from_pandas(pd.concat(frames, ignore_index=True), preserve_index=False)
    _replace(wave_rows_file(paths), table)
    return {"wave": wave, "system": system_name, "batch_id": batch_id, "rows": counts}


@dataclass(frozen=True)
class WaveSlicer:
    """A wave's slice of a split system for the pipeline (etl.pipeline.run_system): ``assign``
    before the gate, the call (the cut) after it."""

    plan: WavePlan
    wave: str
    catalog: Catalog

    def assign(self, system_name: str, batch_id: str, settings: Settings) -> dict[str, Any]:
        return assign_batch(self.plan, self.wave, self.catalog, system_name, batch_id, settings)

    def __call__(self, system_name: str, batch_id: str, settings: Settings) -> dict[str, Any]:
        return slice_batch(self.plan, self.wave, self.catalog, system_name, batch_id, settings)


def _core_rows(
    connection: sa.Connection, entity: str, ids: list[str], columns: tuple[str, ...]
) -> pd.DataFrame:
    """The core's ``columns`` of the rows with these ids, asked in slices of keys."""
    table = ENTITY_TABLES[entity]
    key = table.c[ENTITIES[entity].id_field()]
    frames = [pd.DataFrame(columns=["row_id", *columns])]
    for start in range(0, len(ids), CORE_SLICE):
        part = ids[start : start + CORE_SLICE]
        rows = connection.execute(
            sa.select(key.label("row_id"), *(table.c[c] for c in columns)).where(key.in_(part))
        ).all()
        if rows:
            frames.append(pd.DataFrame(list(map(tuple, rows)), columns=["row_id", *columns]))
    return pd.concat(frames, ignore_index=True).astype("string")


def _replace(path: Path, table: pa.Table) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    pq.write_table(table, temporary)
    temporary.replace(path)


def _outcome_rows(rows: pd.DataFrame, outcome: str, reasons: pd.Series) -> pd.DataFrame:
    return pd.DataFrame(
        {
            ROW_NUMBER: rows[STAGE_ROW_NUMBER].astype("int64").to_numpy(),
            SOURCE_KEY: rows["source_key"].astype("string").to_numpy(),
            "outcome": outcome,
            "check_name": outcome,
            "severity": "info",
            "field": pd.NA,
            "reason": reasons.to_numpy(),
            "detail": pd.NA,
        }
    )


def slice_batch(
    plan: WavePlan,
    wave: str,
    catalog: Catalog,
    system_name: str,
    batch_id: str,
    settings: Settings,
    record: bool = True,
) -> dict[str, Any]:
    """Cut the validated batch to ``wave``'s rows (module docstring); counts per entity.
    ``record=False``: a measuring batch (reconciliation), whose conflicts are not recorded."""
    system = catalog.system(system_name)
    paths = BatchPaths.of(settings, batch_id, system_name)
    marker = paths.validated / MARKER
    if marker.exists():  # a retried task: the batch is cut already, its conflicts recorded
        done: dict[str, Any] = json.loads(marker.read_text("utf-8"))
        if done.get("wave") != wave:
            raise SliceError(
                f"{system_name} batch {batch_id} was cut to wave {done.get('wave')}, not {wave}"
            )
        return done
    engine = core_engine(settings.resolved_core_url)
    with engine.connect() as connection:
        states = {w.wave: ledger.wave_state(connection, w.wave) for w in plan.waves}
    closed = {name for name, state in states.items() if state == ledger.CUT_OVER and name != wave}
    owners = _owners(plan, catalog, system, batch_id, settings)
    now = utc_now()
    conflicts: list[dict[str, Any]] = []
    slices: list[EntitySlice] = []
    with engine.connect() as connection:
        for entity in _entities(system, paths):
            by_id, by_key = owners.get(entity, (pd.Series(dtype="string"),) * 2)
            found = _slice_entity(
                connection,
                plan,
                wave,
                closed,
                system_name,
                batch_id,
                entity,
                paths,
                by_id,
                by_key,
                system,
            )
            slices.append(found[0])
            conflicts += [{**c, "detected_at": now} for c in found[1]]
        deletions = _slice_deletions(connection, plan, system, wave, closed, batch_id, paths)
    conflicts += [{**c, "detected_at": now} for c in deletions.pop("conflicts")]
    if record:
        with engine.begin() as connection:
            connection.execute(
                cutover_conflict.delete().where(cutover_conflict.c.batch_id == batch_id)
            )
            conflicts = _not_raised_yet(connection, conflicts)
            if conflicts:
                connection.execute(cutover_conflict.insert(), conflicts)
    report = {
        "wave": wave,
        "system": system_name,
        "batch_id": batch_id,
        "entities": [s.as_dict() for s in slices],
        "deletions": deletions,
        "conflicts": len(conflicts),
    }
    if record:
        marker.write_text(json.dumps(report, sort_keys=True), "utf-8")
    return report


def _slice_entity(
    connection: sa.Connection,
    plan: WavePlan,
    wave: str,
    closed: set[str],
    system: str,
    batch_id: str,
    entity: str,
    paths: BatchPaths,
    by_id: pd.Series,
    by_key: pd.Series,
    catalog_system: SystemMappings,
) -> tuple[EntitySlice, list[dict[str, Any]]]:
    result = EntitySlice(entity)
    path = paths.stage_file("validated", entity)
    table = pq.read_table(path)
    key = ENTITIES[entity].id_field()
    ids = table.column(key).to_pandas().astype("string")
    owner = ids.map(by_id).astype("string")
    unknown = owner.isna()
    if unknown.any():
        raise SliceError(
            f"{system} batch {batch_id}: {int(unknown.sum())} {entity} rows are in no wave or in "
            f"several of the plan (first: {sorted(ids[unknown].head(5).tolist())}); nothing is "
            "loaded. `vardflytt cutover plan --check` shows where the plan leaves them"
        )
    mine = (owner == wave).to_numpy(bool)
    result.kept = int(mine.sum())
    conflicts: list[dict[str, Any]] = []
    others = table.filter(pa.array(~mine)).to_pandas()
    others_owner = owner[~mine].reset_index(drop=True)
    in_closed = others_owner.isin(closed).to_numpy(bool)
    is_change = np.zeros(len(others), dtype=bool)
    change_kind = pd.Series(CHANGED, index=others.index, dtype="string")
    if in_closed.any():
        asked = others.loc[in_closed, key].astype("string")
        core = _core_rows(connection, entity, asked.tolist(), ("content_hash",))
        hashes = pd.Series(core["content_hash"].to_numpy(), index=core["row_id"].to_numpy())
        theirs = others[key].astype("string").map(hashes)
        differs = (theirs.isna() | (theirs != others["content_hash"].astype("string"))).fillna(True)
        is_change = in_closed & differs.to_numpy(bool)
        change_kind = change_kind.mask(theirs.isna().to_numpy(bool), NEW)
    result.conflicted = int(is_change.sum())
    result.wave_scope = len(others) - result.conflicted
    result.other_waves = {str(k): int(v) for k, v in others_owner.value_counts().items()}
    if not mine.all():
        _replace(path, table.filter(pa.array(mine)))
    if paths.stage_file("validated", entity, "outcomes").exists():
        reasons = "belongs to wave " + others_owner
        conflict_reasons = "wave " + others_owner + " is cut over: legacy change held for stewards"
        new_rows = pd.concat(
            [
                _outcome_rows(others[~is_change], WAVE_SCOPE, reasons[~is_change]),
                _outcome_rows(others[is_change], SLICE_CONFLICT, conflict_reasons[is_change]),
            ],
            ignore_index=True,
        )
        moved = _rewrite_outcomes(
            paths, entity, wave, by_key, _fallback(plan, catalog_system, entity), new_rows
        )
        scoped = pd.concat([others_owner[~is_change], moved], ignore_index=True)
        result.wave_scope_by_wave = {str(k): int(v) for k, v in scoped.value_counts().items()}
    changed = others[is_change]
    for row_id, source_key, owner_wave, kind, content in zip(
        changed[key].astype(str),
        changed["source_key"].astype(str),
        others_owner[is_change].astype(str),
        change_kind[is_change].astype(str),
        changed["content_hash"].astype(str),
        strict=True,
    ):  # one dict per conflict row for the insert: conflicts are few, never a hot path
        conflicts.append(
            _conflict(owner_wave, wave, batch_id, system, entity, row_id, source_key, kind, content)
        )
    return result, conflicts


def _fallback(plan: WavePlan, system: SystemMappings, entity: str) -> str | None:
    """The wave of a row with an outcome but no transformed row (quarantined, excluded or
    merged while transforming: no unit can be read from it): the patients wave for patient-level
    rows, else the system's unscoped wave, the one that takes rows of no unit."""
    waves = {w.wave for w in plan.waves}
    if entity in system.entities and is_patient_level(system, entity) and plan.patients in waves:
        return plan.patients
    return plan.unscoped_wave(system.name)


def _rewrite_outcomes(
    paths: BatchPaths,
    entity: str,
    wave: str,
    by_key: pd.Series,
    fallback: str | None,
    new_rows: pd.DataFrame,
) -> pd.Series:
    """The validated outcomes: another wave's quarantined, excluded and merged rows become
    ``wave_scope`` (their own wave accounts for them), its flags are dropped (their wave flags
    them), new rows appended. A row with no transformed row goes to ``fallback``'s wave.
    Returns the owning wave of each outcome made ``wave_scope`` here."""
    path = paths.stage_file("validated", entity, "outcomes")
    outcomes = pq.read_table(path).to_pandas()
    owner = outcomes[SOURCE_KEY].astype("string").map(by_key).astype("string")
    if fallback is not None:
        owner = owner.fillna(fallback)
    other = (owner.notna() & (owner != wave)).to_numpy(bool)
    flagged = other & (outcomes["outcome"] == FLAGGED).to_numpy(bool)
    accounted = outcomes["outcome"].isin([QUARANTINED, EXCLUDED, MERGED]).to_numpy(bool)
    moved = other & accounted
    outcomes.loc[moved, "reason"] = ("belongs to wave " + owner[moved]).to_numpy()
    outcomes.loc[moved, ["outcome", "check_name"]] = WAVE_SCOPE
    outcomes.loc[moved, "severity"] = "info"
    keep = ~flagged
    frame = pd.concat([outcomes[keep], new_rows], ignore_index=True)
    _replace(path, outcomes_table(frame))
    return pd.Series(owner[moved].to_numpy(), dtype="string")


def _not_raised_yet(
    connection: sa.Connection, conflicts: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Conflicts not raised before: every wave's batch of a split system sees a legacy change
    (the patients wave's delta and the next unit wave's), and the stewards get it once. The id
    is the change's content (:func:`_conflict`), so a later, different change to the same row
    is a conflict of its own beside the earlier one, never folded into it or lost. Each batch
    still accounts the row as conflicted (not applied)."""
    unique = list({c["conflict_id"]: c for c in conflicts}.values())
    ids = [c["conflict_id"] for c in unique]
    raised: set[str] = set()
    for start in range(0, len(ids), CORE_SLICE):
        raised.update(
            str(i)
            for i in connection.execute(
                sa.select(cutover_conflict.c.conflict_id).where(
                    cutover_conflict.c.conflict_id.in_(ids[start : start + CORE_SLICE])
                )
            ).scalars()
        )
    return [c for c in unique if c["conflict_id"] not in raised]


def _conflict(
    owner: str,
    wave: str,
    batch_id: str,
    system: str,
    entity: str,
    row_id: str,
    source_key: str | None,
    change: str,
    content: str,
) -> dict[str, Any]:
    """A conflict named by what changed: the row and its legacy content (its row hash, or the
    deletion), so the same change seen by several batches is one conflict and another change to
    the row another. ``batch_id`` is the batch that first carried it."""
    change_of = f"{system}/{entity}/{row_id}/{change}/{content}"
    digest = hashlib.sha256(change_of.encode()).hexdigest()[:32]
    return {
        "conflict_id": digest,
        "wave": owner,
        "detected_in_wave": wave,
        "batch_id": batch_id,
        "source_system": system,
        "entity": entity,
        "row_id": row_id,
        "source_key": source_key,
        "change": change,
        "state": OPEN,
    }


@dataclass(frozen=True)
class _DeletionOutcomes:
    """Each deleted key's outcome, as text and as one mask per outcome."""

    outcome: pd.Series
    mine: np.ndarray
    conflicted: np.ndarray
    other: np.ndarray
    absent: np.ndarray


def _slice_deletions(
    connection: sa.Connection,
    plan: WavePlan,
    system: SystemMappings,
    wave: str,
    closed: set[str],
    batch_id: str,
    paths: BatchPaths,
) -> dict[str, Any]:
    """A delta's deletions of core rows, each to exactly one outcome (``deletion_outcomes``):

    - ``applied``: a row this wave loaded (its promoted batch is the wave's): deleted;
    - ``slice_conflict``: a row of a cut-over wave: a conflict for the stewards, not applied;
    - ``wave_scope``: a row another wave loaded: that wave's own delta (its base holds the row)
      deletes it;
    - ``absent``: no core row (no wave loaded it, or it waits in quarantine): nothing to delete,
      and the owning wave's next load reads a source without it.

    A core row no promotion holds takes the plan's wave over the core's rows; one the plan puts
    in no wave stops the slice (fail closed), as does a key left without an outcome."""
    path = paths.validated / "deletions.parquet"
    counts: dict[str, Any] = {
        "listed": 0,
        "kept": 0,
        "other_waves": 0,
        "conflicted": 0,
        "absent": 0,
        "by_wave": {},
        "conflicts": [],
    }
    if not path.exists():
        return counts
    deletions = pq.read_table(path)
    if not deletions.num_rows:
        return counts
    frame = deletions.to_pandas()
    owner, in_core = _deletion_holders(connection, frame)
    _fill_unheld_owners(connection, plan, system, batch_id, frame, owner, in_core)
    found = _deletion_outcomes(frame, owner, in_core, wave, closed, system.name, batch_id)
    counts["listed"] = len(frame)
    counts["kept"] = int(found.mine.sum())
    counts["conflicted"] = int(found.conflicted.sum())
    counts["other_waves"] = int(found.other.sum())
    counts["absent"] = int(found.absent.sum())
    counts["by_wave"] = {str(k): int(v) for k, v in owner[found.other].value_counts().items()}
    counts["conflicts"].extend(_deletion_conflicts(frame, owner, found.conflicted, wave, batch_id))
    _write_deletion_outcomes(paths, frame, owner, found)
    _replace(path, deletions.filter(pa.array(found.mine)))
    return counts


def _deletion_holders(
    connection: sa.Connection, frame: pd.DataFrame
) -> tuple[pd.Series, pd.Series]:
    """Per deleted key: the wave of the promotion of the batch that wrote its core row (NA:
    none), and whether the core has the row."""
    owner = pd.Series(pd.NA, index=frame.index, dtype="string")
    in_core = pd.Series(False, index=frame.index)
    for entity, rows in frame.groupby("entity"):
        core = _core_rows(
            connection, str(entity), rows["row_id"].astype(str).tolist(), ("batch_id",)
        )
        batches = core["batch_id"].dropna().unique().tolist()
        waves = dict(
            connection.execute(
                sa.select(promotion.c.batch_id, promotion.c.wave).where(
                    promotion.c.batch_id.in_(batches or [""])
                )
            ).all()
        )
        by_row = pd.Series(core["batch_id"].map(waves).to_numpy(), index=core["row_id"].to_numpy())
        row_ids = rows["row_id"].astype("string")
        owner.loc[rows.index] = row_ids.map(by_row).astype("string")
        in_core.loc[rows.index] = row_ids.isin(core["row_id"]).to_numpy(bool)
    return owner, in_core


def _fill_unheld_owners(
    connection: sa.Connection,
    plan: WavePlan,
    system: SystemMappings,
    batch_id: str,
    frame: pd.DataFrame,
    owner: pd.Series,
    in_core: pd.Series,
) -> None:
    """The plan's wave of the deleted core rows no promotion holds, set in ``owner``; a row
    the plan puts in no wave either stops the slice (fail closed)."""
    unheld = (in_core & owner.isna()).to_numpy(bool)
    if unheld.any():
        owner.loc[unheld] = _planned_owner(connection, plan, system, frame[unheld])
        still = (in_core & owner.isna()).to_numpy(bool)
        if still.any():
            raise SliceError(
                f"{system.name} batch {batch_id}: {int(still.sum())} deleted rows "
                f"({', '.join(sorted(frame.loc[still, 'entity'].unique()))}) are in the core, "
                "held by no wave's promotion and in no wave of the plan; nothing is loaded. "
                "`vardflytt cutover plan --check` shows where the plan leaves them"
            )


def _deletion_outcomes(
    frame: pd.DataFrame,
    owner: pd.Series,
    in_core: pd.Series,
    wave: str,
    closed: set[str],
    system_name: str,
    batch_id: str,
) -> _DeletionOutcomes:
    """Each deleted key's outcome (:func:`_slice_deletions`); a key left without exactly one
    stops the slice."""
    mine = (in_core & (owner == wave).fillna(False)).to_numpy(bool)
    conflicted = (in_core & owner.isin(closed)).to_numpy(bool) & ~mine
    other = in_core.to_numpy(bool) & ~mine & ~conflicted
    absent = ~in_core.to_numpy(bool)
    outcome = pd.Series(pd.NA, index=frame.index, dtype="string")
    outcome[mine] = APPLIED
    outcome[conflicted] = SLICE_CONFLICT
    outcome[other] = WAVE_SCOPE
    outcome[absent] = ABSENT
    if outcome.isna().any() or int(
        mine.sum() + conflicted.sum() + other.sum() + absent.sum()
    ) != len(frame):
        raise SliceError(
            f"{system_name} batch {batch_id}: the deletions are not all accounted "
            f"({int(outcome.isna().sum())} of {len(frame)} without an outcome); nothing is loaded"
        )
    return _DeletionOutcomes(outcome, mine, conflicted, other, absent)


def _deletion_conflicts(
    frame: pd.DataFrame, owner: pd.Series, conflicted: np.ndarray, wave: str, batch_id: str
) -> list[dict[str, Any]]:
    """A conflict for each deletion of a cut-over wave's row (its change and content:
    ``deleted``)."""
    return [
        _conflict(
            str(row.owner),
            wave,
            batch_id,
            str(row.source_system),
            str(row.entity),
            str(row.row_id),
            None,
            DELETED,
            DELETED,
        )
        for row in frame[conflicted].assign(owner=owner[conflicted]).itertuples(index=False)
    ]


def _write_deletion_outcomes(
    paths: BatchPaths, frame: pd.DataFrame, owner: pd.Series, found: _DeletionOutcomes
) -> None:
    """Each deleted key's outcome and owning wave (none when absent) beside the validated
    files (``deletion_outcomes.parquet``)."""
    accounted = pd.DataFrame(
        {
            "entity": frame["entity"].astype("string"),
            "row_id": frame["row_id"].astype("string"),
            "outcome": found.outcome,
            "wave": owner.where(~pd.Series(found.absent, index=frame.index)),
        }
    )
    _replace(
        paths.validated / DELETION_OUTCOMES,
        pa.Table.from_pandas(accounted, preserve_index=False),
    )


def _planned_owner(
    connection: sa.Connection, plan: WavePlan, system: SystemMappings, rows: pd.DataFrame
) -> pd.Series:
    """The plan's wave of core rows no promotion holds, by the assignment over the core's rows."""
    owners = wave_of_rows(plan, system, _core_tables(connection, system))
    found = pd.Series(pd.NA, index=rows.index, dtype="string")
    for entity, part in rows.groupby("entity"):
        by_id = owners.get(str(entity), (pd.Series(dtype="string"),))[0]
        found.loc[part.index] = part["row_id"].astype("string").map(by_id).astype("string")
    return found


# --- the gate's evidence in the ledger ---------------------------------------------------------


def gate_summary(settings: Settings, system: str, batch_id: str) -> dict[str, Any] | None:
    """What the slice-aware gate judged for a batch (``gate.json``, etl/validate/gate.py), for
    the wave's ledger evidence: per entity and check the wave's figures, the whole batch's and
    the basis (``slice``, ``stricter``, ``whole``). Counts only; None when the batch's gate
    judged no slice (a system moved whole)."""
    path = BatchPaths.of(settings, batch_id, system).validated / GATE_EVIDENCE
    if not path.exists():
        return None
    evidence = json.loads(path.read_text("utf-8"))

    def figures(found: dict[str, Any] | None) -> dict[str, int] | None:
        if found is None:
            return None
        return {f: int(found[f]) for f in ("rows_evaluated", "rows_failed", "rows_waived")}

    return {
        "thresholds_digest": evidence.get("thresholds_digest"),
        "checks": [
            {
                "entity": str(check["entity"]),
                "check": str(check["check"]),
                "basis": str(check["basis"]),
                "wave": figures(check["judged"]),
                "wave_is_breached": bool(check["slice_is_breached"]),
                "batch": figures(check.get("batch")),
                "batch_is_breached": check.get("batch_is_breached"),
            }
            for check in evidence.get("checks", [])
        ],
    }


# --- conflicts for the stewards ---------------------------------------------------------------


def list_conflicts(
    settings: Settings, wave: str | None = None, state: str | None = OPEN
) -> list[dict[str, Any]]:
    """Conflicts raised for cut-over waves (ids, keys and counts only), oldest first; each with
    ``changes``: how many open conflicts its row has (a row changed again after go-live has one
    per change, :func:`_not_raised_yet`)."""
    with core_engine(settings.resolved_core_url).connect() as connection:
        return conflicts_of(connection, wave, state)


def _same_row(other: sa.FromClause) -> sa.ColumnElement[bool]:
    return (
        (other.c.source_system == cutover_conflict.c.source_system)
        & (other.c.entity == cutover_conflict.c.entity)
        & (other.c.row_id == cutover_conflict.c.row_id)
    )


def conflicts_of(
    connection: sa.Connection, wave: str | None = None, state: str | None = OPEN
) -> list[dict[str, Any]]:
    """:func:`list_conflicts` on a connection. ``changes`` is counted in SQL (a correlated count
    of the open conflicts of the same system, entity and row), never per row in Python."""
    other = cutover_conflict.alias("same_row")
    changes = (
        sa.select(sa.func.count())
        .select_from(other)
        .where(_same_row(other) & (other.c.state == OPEN))
        .scalar_subquery()
        .label("changes")
    )
    query = sa.select(cutover_conflict, changes).order_by(
        cutover_conflict.c.detected_at, cutover_conflict.c.conflict_id
    )
    if wave:
        query = query.where(cutover_conflict.c.wave == wave)
    if state:
        query = query.where(cutover_conflict.c.state == state)
    return [dict(row._mapping) for row in connection.execute(query)]


def conflicts_per_wave(connection: sa.Connection) -> dict[str, int]:
    """Open conflicts per cut-over wave (the dashboard's waves table)."""
    if not sa.inspect(connection).has_table(cutover_conflict.name):
        return {}
    rows = connection.execute(
        sa.select(cutover_conflict.c.wave, sa.func.count())
        .where(cutover_conflict.c.state == OPEN)
        .group_by(cutover_conflict.c.wave)
    ).all()
    return {str(w): int(n) for w, n in rows}


def resolve_conflict(settings: Settings, conflict_id: str, actor: str, note: str) -> dict[str, Any]:
    """A steward closes a conflict (fixed in the core, or the legacy change was wrong).
    ``others_open``: the open conflicts of the same row left (its other changes after go-live),
    which the steward still has to look at."""
    if not note.strip():
        raise SliceError("resolving a conflict needs a note: say what was done")
    with core_engine(settings.resolved_core_url).begin() as connection:
        return close_conflict(connection, conflict_id, actor, note)


def close_conflict(
    connection: sa.Connection, conflict_id: str, actor: str, note: str
) -> dict[str, Any]:
    """:func:`resolve_conflict` on a connection (in its transaction)."""
    updated = connection.execute(
        cutover_conflict.update()
        .where((cutover_conflict.c.conflict_id == conflict_id) & (cutover_conflict.c.state == OPEN))
        .values(state=RESOLVED, resolved_by=actor, resolved_at=utc_now(), note=note)
    ).rowcount
    if not updated:
        raise SliceError(f"no open conflict {conflict_id}")
    other = cutover_conflict.alias("same_row")
    others_open = connection.execute(
        sa.select(sa.func.count())
        .select_from(other.join(cutover_conflict, _same_row(other)))
        .where((cutover_conflict.c.conflict_id == conflict_id) & (other.c.state == OPEN))
    ).scalar_one()
    return {
        "conflict_id": conflict_id,
        "state": RESOLVED,
        "resolved_by": actor,
        "others_open": int(others_open),
    }
