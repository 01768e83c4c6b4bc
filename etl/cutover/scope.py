"""Which wave each row of a system belongs to, and the proof that the plan partitions the rows.

A wave plan (etl/cutover/plan.py) moves systems whole or splits them by care unit; each entity
mapping declares how its rows belong to a unit (``care_unit:``, etl/catalog.py). Here, for one
system's transformed entity tables:

- :func:`row_units` gives every row its unit (an HSA-id, or none) and how it was found;
- :func:`memberships` asks every wave, independently, whether it takes each row: a boolean
  column per wave. Nothing in it picks "the first match", so a plan with two waves taking one
  row (or none taking it) shows up as a row with two (or no) ``True``;
- :func:`assign` is the row's wave and the reason, where exactly one wave takes it;
- :func:`check_partition` runs the whole estate through extract and transform in a scratch
  folder (never the landing zone of real batches, never the core) and counts, per wave,
  system and entity, the rows each wave takes and the rows in two waves or in none: the
  ``vardflytt cutover plan --check`` report. It shows counts, HSA-ids of units and row keys
  (which the catalog keeps free of identity numbers), never a row's values.

Everything is vectorised (Arrow's ``is_in`` and ``index_in``, numpy masks, ``groupby``): no
Python loop per row, and no pandas call per wave and row set that would cost more than the
rows themselves when a table is assigned in small chunks (etl/cutover/slice_core.py).
"""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from etl.batch import BatchPaths
from etl.catalog import Catalog, SystemMappings, UnitFollows
from etl.core.audit import SCOPE_BATCH, record_access
from etl.core.model import ENTITIES
from etl.cutover.plan import FIRST_WAVE, WavePlan
from etl.extract.landing import extract_system
from etl.settings import Settings
from etl.transform.stage import transform_entity

# Why a row is in its wave.
WHOLE_SYSTEM = "whole_system"  # the wave moves the system whole
OWN_UNIT = "own_unit"  # the row's own unit column (an HSA-id or a care unit reference)
FIXED_UNIT = "fixed_unit"  # every row of the entity is one unit's (care_unit.fixed)
VIA = "via_"  # + entity: the unit of the row it points at (its encounter, ...)
PATIENT_WAVE = "patient_wave"  # patient-level, in the plan's patients wave
PATIENT_FOLLOWS = "patient_follows"  # patient-level, with the first wave of the patient's rows
UNSCOPED_NO_UNIT = "unscoped_no_unit"  # no unit: the system's unscoped wave
UNSCOPED_OTHER_UNIT = "unscoped_unit_in_no_wave"  # a unit no wave splitting the system names
NO_UNIT_DECLARED = "no_unit_declared"  # never a reason a row is in a wave: only whole systems
IN_NO_WAVE = "in_no_wave"
IN_SEVERAL_WAVES = "in_several_waves"

PATIENT_ENTITIES = ("patient", "patient_identifier")
KEYS_SHOWN = 20  # offending row keys listed per system and entity


def is_patient_level(system: SystemMappings, entity: str) -> bool:
    """The patient register and identifiers, and entities placed by their patient (declared
    ``follows: patient`` or ``follows: patient_care``)."""
    if entity in PATIENT_ENTITIES:
        return True
    unit = system.entities[entity].care_unit
    return unit is not None and unit.is_patient_level


def needed_columns(system: SystemMappings, entity: str) -> list[str]:
    """The columns of an entity's transformed table that the assignment reads."""
    columns = ["source_key", ENTITIES[entity].id_field()]
    if entity != "patient" and "patient_id" in ENTITIES[entity].model_fields:
        columns.append("patient_id")
    mapping = system.entities.get(entity)
    unit = mapping.care_unit if mapping else None
    if unit is not None:
        columns += [name for name in (unit.column, unit.via) if name]
    if entity == "care_unit":
        columns.append("hsa_id")
    return list(dict.fromkeys(columns))


def _text(values: pd.Series | pd.Index) -> pa.Array:
    """A column as Arrow text, read as ``astype("string")`` reads it (null: missing)."""
    if values.dtype != "string":
        values = values.astype("string")
    return pa.array(values.array, type=pa.large_string())


def _strings(text: pa.Array, index: pd.Index, name: str | None = None) -> pd.Series:
    return pd.Series(pd.array(text, dtype="string"), index=index, name=name)


def _is_in(text: pa.Array, values: pa.Array) -> np.ndarray:
    """Whether each value is one of ``values`` (never for a missing one), as a numpy mask."""
    return np.asarray(pc.is_in(text, value_set=values).to_numpy(zero_copy_only=False), bool)


def _value_set(units: Iterable[str]) -> pa.Array:
    return pa.array(sorted(units), type=pa.large_string())


@dataclass(frozen=True)
class _Units:
    """One entity's rows: each row's HSA-id (null: none), and how all of them were found."""

    index: pd.Index
    text: pa.Array
    reason: str
    column: str | None  # the column they were read from (own unit or via), if any


def row_units(
    system: SystemMappings,
    tables: dict[str, pd.DataFrame],
    known: dict[str, pd.Series] | None = None,
    entities: Collection[str] | None = None,
) -> dict[str, tuple[pd.Series, pd.Series]]:
    """Per entity with a unit of its own (column, via or fixed): each row's HSA-id (NA: none)
    and how it was found (``own_unit``, ``fixed_unit``, ``via_<entity>``). ``known``: the
    units of entities a row may point at (``via``), by id, found before (a table read in
    chunks, etl/cutover/slice_core.py): used instead of their tables. ``entities``: only these."""
    return {
        entity: (
            _strings(units.text, units.index, units.column),
            pd.Series(units.reason, index=units.index, dtype="string"),
        )
        for entity, units in _units_of_rows(system, tables, known, entities).items()
    }


def _units_of_rows(
    system: SystemMappings,
    tables: dict[str, pd.DataFrame],
    known: dict[str, pd.Series] | None,
    entities: Collection[str] | None,
) -> dict[str, _Units]:
    """:func:`row_units` as Arrow text: the entities asked for (default: every one with a unit
    of its own), in the system's order, and none of those their rows point at."""
    found: dict[str, _Units] = {}

    def unit_of(entity: str) -> pa.Array:
        if entity in found:
            return found[entity].text
        table = tables.get(entity)
        declared = system.entities[entity].care_unit
        if table is None:
            table = pd.DataFrame(columns=needed_columns(system, entity))
        assert declared is None or not declared.is_patient_level, entity
        if declared is None:  # only a system moved whole may leave it undeclared (plan.py)
            units, reason = pa.nulls(len(table), pa.large_string()), NO_UNIT_DECLARED
        elif declared.fixed:
            units = pa.repeat(pa.scalar(declared.fixed, pa.large_string()), len(table))
            reason = FIXED_UNIT
        elif declared.column and declared.is_reference:
            register = tables.get("care_unit", pd.DataFrame(columns=["care_unit_id", "hsa_id"]))
            units = _looked_up(
                _text(table[declared.column]),
                _text(register["care_unit_id"]),
                _text(register["hsa_id"]),
            )
            reason = OWN_UNIT
        elif declared.column:
            units, reason = _text(table[declared.column]), OWN_UNIT
        else:
            target = declared.via_entity
            assert target is not None
            reason = VIA + target
            if known is not None and target in known:
                ids, target_units = _text(known[target].index), _text(known[target])
            else:
                target_units = unit_of(target)
                target_table = tables.get(target)
                ids = (
                    _text(target_table[ENTITIES[target].id_field()])
                    if target_table is not None
                    else pa.array([], pa.large_string())
                )
            units = _looked_up(_text(table[declared.via]), ids, target_units)
        trimmed = pc.utf8_trim_whitespace(units)
        column = None if declared is None or declared.fixed else declared.column or declared.via
        text = pc.if_else(pc.equal(trimmed, ""), None, trimmed)
        found[entity] = _Units(table.index, text, reason, column)
        return text

    for entity in system.entities:
        if not is_patient_level(system, entity) and (entities is None or entity in entities):
            unit_of(entity)
    return {e: units for e, units in found.items() if entities is None or e in entities}


def _looked_up(keys: pa.Array, index: pa.Array, values: pa.Array) -> pa.Array:
    """``values`` at the first ``index == key`` for each key (null where none; a missing key
    finds a missing index, as pandas' ``map`` does): a vectorised join."""
    return pc.take(values, pc.index_in(keys, value_set=index))


def memberships(
    plan: WavePlan,
    system: SystemMappings,
    tables: dict[str, pd.DataFrame],
    known: dict[str, pd.Series] | None = None,
    first_waves: pd.Series | None = None,
    entities: Collection[str] | None = None,
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Per entity: which waves take each row (a boolean column per wave, in plan order), and
    the reason each wave would give. Each wave decides on its own (module docstring).

    ``known`` (units by id of the entities rows point at) and ``first_waves`` (per patient,
    the position of the first wave taking one of its rows, :func:`first_waves_of`) stand in
    for the tables they come from, so that a table can be assigned a chunk at a time;
    ``entities``: only these (a chunk's)."""
    name = system.name
    order = [wave.wave for wave in plan.waves]
    split_units: set[str] = set()
    for wave in plan.waves:
        if name in wave.by_unit:
            split_units |= wave.units
    in_split_units = _value_set(split_units)
    wave_units = {w.wave: _value_set(w.units) for w in plan.waves if name in w.by_unit}
    result: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    for entity, units in _units_of_rows(system, tables, known, entities).items():
        none = np.asarray(units.text.is_null().to_numpy(zero_copy_only=False), bool)
        other = ~none & ~_is_in(units.text, in_split_units)  # a unit no wave splitting it names
        taken = _Taken(len(units.index), len(order))
        for position, wave in enumerate(plan.waves):
            if name in wave.systems:
                taken.add(position, np.ones(len(none), bool), WHOLE_SYSTEM)
            if name in wave.by_unit:
                taken.add(position, _is_in(units.text, wave_units[wave.wave]), units.reason)
            if name in wave.unscoped:
                taken.add(position, none, UNSCOPED_NO_UNIT)
                taken.add(position, other, UNSCOPED_OTHER_UNIT)
        result[entity] = taken.frames(units.index, order)
    _patient_memberships(plan, system, tables, result, first_waves, entities)
    return result


class _Taken:
    """Which waves take each row of an entity and why, built wave by wave: a row a wave takes
    keeps the first reason it was given (numpy arrays, made into frames once)."""

    def __init__(self, rows: int, waves: int) -> None:
        self.members = np.zeros((rows, waves), dtype=bool)
        self.reasons = np.full((rows, waves), None, dtype=object)

    def add(self, position: int, rows: np.ndarray, reason: str) -> None:
        new = rows & ~self.members[:, position]
        self.reasons[new, position] = reason
        self.members[:, position] |= rows

    def frames(self, index: pd.Index, order: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
        reasons = {
            wave: pd.array(self.reasons[:, position], dtype="string")
            for position, wave in enumerate(order)
        }
        return (
            pd.DataFrame(self.members, index=index, columns=order),
            pd.DataFrame(reasons, index=index, columns=order),
        )


def _patient_memberships(
    plan: WavePlan,
    system: SystemMappings,
    tables: dict[str, pd.DataFrame],
    result: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
    first_waves: pd.Series | None = None,
    only: Collection[str] | None = None,
) -> None:
    """Patient-level rows: with the whole system, in the plan's patients wave, or (first_wave,
    and ``follows: patient_care`` always) with the first wave that takes one of the patient's
    rows with a unit in this system; a patient without any: the system's unscoped wave."""
    name = system.name
    order = [wave.wave for wave in plan.waves]
    split = name in plan.split_systems
    entities = [
        e
        for e in [*system.entities, "patient_identifier"]
        if e not in result
        and e in tables
        and (only is None or e in only)
        and (e in PATIENT_ENTITIES or is_patient_level(system, e))
    ]
    if first_waves is not None:
        first: pd.Series | None = first_waves
    else:
        first = _first_waves(tables, result, len(order)) if split else None
    unscoped = plan.unscoped_wave(name)
    for entity in entities:
        table = tables[entity]
        declared = system.entities[entity].care_unit if entity in system.entities else None
        follows_care = declared is not None and declared.follows is UnitFollows.PATIENT_CARE
        by_first_wave = split and (follows_care or plan.patients == FIRST_WAVE)
        patient = table[ENTITIES[entity].id_field() if entity == "patient" else "patient_id"]
        position: np.ndarray | None = None
        if by_first_wave and first is not None:
            position = patient.astype("string").map(first).fillna(len(order)).to_numpy(np.int64)
        taken = _Taken(len(table), len(order))
        for index, wave in enumerate(plan.waves):
            if name in wave.systems:
                taken.add(index, np.ones(len(table), bool), WHOLE_SYSTEM)
            if split and not by_first_wave and plan.patients == wave.wave:
                taken.add(index, np.ones(len(table), bool), PATIENT_WAVE)
            if position is not None:
                mine = position == index
                if wave.wave == unscoped:
                    mine |= position == len(order)  # a patient no wave takes a row of
                taken.add(index, mine, PATIENT_FOLLOWS)
        result[entity] = taken.frames(table.index, order)


def _first_waves(
    tables: dict[str, pd.DataFrame],
    result: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
    no_wave: int,
) -> pd.Series:
    """Per patient id, the position (plan order) of the first wave taking one of its rows."""
    patients = [pa.array([], pa.large_string())]
    positions = [np.array([], dtype=np.float64)]
    for entity, (members, _) in result.items():
        table = tables.get(entity)
        if table is None or "patient_id" not in table.columns or members.empty:
            continue
        taken = members.to_numpy()
        positions.append(np.where(taken.any(axis=1), taken.argmax(axis=1), no_wave))
        patients.append(_text(table["patient_id"]))
    patient = pa.concat_arrays(patients)
    known = ~np.asarray(patient.is_null().to_numpy(zero_copy_only=False), bool)
    at = pd.Series(
        np.concatenate(positions).astype(np.float64)[known],
        index=pd.Index(pd.array(patient.filter(known), dtype="string"), name="patient_id"),
        name="at",
    )
    return at.groupby(level=0).min()


def first_waves_of(
    plan: WavePlan,
    system: SystemMappings,
    tables: dict[str, pd.DataFrame],
    members: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
) -> pd.Series:
    """Per patient id, the position of the first wave taking one of its rows in ``tables``
    (rows with a unit); the minimum over chunks is that over the whole tables."""
    unit_level = {e: m for e, m in members.items() if not is_patient_level(system, e)}
    return _first_waves(tables, unit_level, len(plan.waves))


def assign(
    plan: WavePlan,
    system: SystemMappings,
    tables: dict[str, pd.DataFrame],
    known: dict[str, pd.Series] | None = None,
    first_waves: pd.Series | None = None,
    found: dict[str, tuple[pd.DataFrame, pd.DataFrame]] | None = None,
    entities: Collection[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Per entity, each row's ``source_key``, ``wave`` and ``reason``, and ``waves``: how many
    waves take it. ``wave`` is set only where exactly one does; otherwise the reason is
    ``in_no_wave`` or ``in_several_waves``. ``found``: :func:`memberships` already computed;
    ``entities``: only these."""
    assigned = {}
    if found is None:
        found = memberships(plan, system, tables, known, first_waves, entities)
    for entity, (members, reasons) in found.items():
        taken = members.to_numpy()
        count = taken.sum(axis=1)
        exactly_one = count == 1
        position = taken.argmax(axis=1) if taken.shape[1] else np.zeros(len(count), dtype=int)
        waves = np.array(members.columns, dtype=object)
        wave = pd.Series(
            np.where(exactly_one, waves[position] if len(waves) else None, None),
            index=members.index,
            dtype="string",
        )
        reason_values = reasons.to_numpy(dtype=object)
        picked = (
            reason_values[np.arange(len(count)), position]
            if taken.shape[1]
            else np.full(len(count), None, dtype=object)
        )
        reason = np.where(exactly_one, picked, np.where(count == 0, IN_NO_WAVE, IN_SEVERAL_WAVES))
        table = tables.get(entity)
        keys = (
            table["source_key"].astype("string")
            if table is not None
            else pd.Series([], dtype="string")
        )
        assigned[entity] = pd.DataFrame(
            {
                "source_key": keys.to_numpy(),
                "wave": wave.to_numpy(),
                "reason": pd.Series(reason, dtype="string").to_numpy(),
                "waves": count,
            },
            index=members.index,
        )
    return assigned


# --- the check over an estate -----------------------------------------------------------------


class WaveCount(BaseModel):
    wave: str
    system: str
    entity: str
    reason: str
    rows: int


class Problem(BaseModel):
    """Rows of one system's entity in no wave, or in several: counts and row keys only."""

    system: str
    entity: str
    problem: str  # in_no_wave | in_several_waves
    rows: int
    waves: list[str] = Field(default_factory=list)  # the waves that all take them
    keys: list[str] = Field(default_factory=list)  # the first KEYS_SHOWN source keys


class PartitionReport(BaseModel):
    plan_file: str
    plan_digest: str
    waves: list[str]  # in plan order
    systems: list[str]
    counts: list[WaveCount]
    problems: list[Problem]

    @property
    def is_partition(self) -> bool:
        return not self.problems

    def rows_per_wave(self) -> dict[str, int]:
        """Rows each wave takes, every wave of the plan in plan order."""
        totals = dict.fromkeys(self.waves, 0)
        for count in self.counts:
            totals[count.wave] = totals.get(count.wave, 0) + count.rows
        return totals

    def rows_by(self) -> dict[tuple[str, str, str], int]:
        """Rows per (wave, system, entity), reasons summed."""
        totals: dict[tuple[str, str, str], int] = {}
        for count in self.counts:
            key = (count.wave, count.system, count.entity)
            totals[key] = totals.get(key, 0) + count.rows
        return totals


def system_report(
    plan: WavePlan, system: SystemMappings, tables: dict[str, pd.DataFrame]
) -> tuple[list[WaveCount], list[Problem]]:
    """Counts and problems of one system's tables (what :func:`check_partition` adds up)."""
    counts: list[WaveCount] = []
    problems: list[Problem] = []
    for entity, rows in assign(plan, system, tables).items():
        placed = rows[rows["waves"] == 1]
        grouped = placed.groupby(["wave", "reason"], observed=True).size().reset_index(name="rows")
        for wave, reason, number in grouped.itertuples(index=False):
            counts.append(
                WaveCount(
                    wave=wave, system=system.name, entity=entity, reason=reason, rows=int(number)
                )
            )
        orphans = rows[rows["waves"] == 0]
        if len(orphans):
            problems.append(
                Problem(
                    system=system.name,
                    entity=entity,
                    problem=IN_NO_WAVE,
                    rows=len(orphans),
                    keys=_first_keys(orphans),
                )
            )
        several = rows[rows["waves"] > 1]
        if len(several):
            members, _ = memberships(plan, system, tables)[entity]
            both = members.loc[several.index]
            problems.append(
                Problem(
                    system=system.name,
                    entity=entity,
                    problem=IN_SEVERAL_WAVES,
                    rows=len(several),
                    waves=[w for w in both.columns if both[w].any()],
                    keys=_first_keys(several),
                )
            )
    return counts, problems


def _first_keys(rows: pd.DataFrame) -> list[str]:
    return sorted(rows["source_key"].dropna().astype(str))[:KEYS_SHOWN]


def read_transformed(system: SystemMappings, paths: BatchPaths) -> dict[str, pd.DataFrame]:
    """The transformed tables of a batch, only the columns the assignment reads."""
    tables = {}
    for entity in [*system.entities, "patient_identifier"]:
        path = paths.stage_file("transformed", entity)
        if not path.exists():
            continue
        present = set(pq.read_schema(path).names)
        columns = [c for c in needed_columns(system, entity) if c in present]
        tables[entity] = pq.read_table(path, columns=columns).to_pandas()
    return tables


def scratch_tables(
    catalog: Catalog,
    settings: Settings,
    as_of_date: dt.date,
    systems: Iterable[str],
    on_system: Callable[[str], None] | None = None,
    purpose: str = "plan --check",
) -> Iterator[tuple[SystemMappings, dict[str, pd.DataFrame]]]:
    """Each system extracted and transformed into a scratch folder (removed at the end), and
    the columns of its transformed tables the assignment reads. The read is access-logged."""
    scratch = settings.scratch_dir / f"partition-check-{uuid.uuid4().hex[:12]}"
    local = settings.model_copy(update={"landing_dir": scratch})
    batch_id = f"partition_check__{as_of_date.isoformat()}"
    try:
        for name in systems:
            if on_system:
                on_system(name)
            system = catalog.system(name)
            record_access(
                settings,
                "extract_partition_check",
                name,
                batch_id,
                0,
                subject_scope=SCOPE_BATCH,
                detail={"purpose": purpose},
            )
            extract_system(catalog, name, batch_id, as_of_date, local)
            for entity in system.entities:
                transform_entity(catalog, name, entity, batch_id, local)
            yield system, read_transformed(system, BatchPaths.of(local, batch_id, name))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_partition(
    plan: WavePlan,
    catalog: Catalog,
    settings: Settings,
    as_of_date: dt.date,
    systems: Iterable[str] | None = None,
    on_system: Callable[[str], None] | None = None,
    plan_file: str = "",
) -> PartitionReport:
    """Extract and transform each system of the estate into a scratch folder, and count the
    rows each wave takes (module docstring). ``systems``: a subset (default: every system)."""
    chosen = list(systems) if systems is not None else list(catalog.systems)
    counts: list[WaveCount] = []
    problems: list[Problem] = []
    purpose = f"plan --check {plan_file} {plan.digest}".strip()
    for system, tables in scratch_tables(catalog, settings, as_of_date, chosen, on_system, purpose):
        found, wrong = system_report(plan, system, tables)
        counts += found
        problems += wrong
    return PartitionReport(
        plan_file=plan_file,
        plan_digest=plan.digest,
        waves=[wave.wave for wave in plan.waves],
        systems=chosen,
        counts=counts,
        problems=problems,
    )
