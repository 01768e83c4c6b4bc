"""A wave's slice in the core: which of the core's rows are the wave's, and their checksums.

Once a wave's batches are promoted, its slice of a split system is found again from the core's
own rows, by the same assignment that cut its batches (etl/cutover/scope.py; over whole tables,
``wave_of_rows`` in etl/cutover/slices.py): :func:`core_assignment` reads the core a chunk at a
time, in bounded memory, and :func:`slice_ids` gathers the wave's ids from it.

:func:`slice_checksums` are the checksums of a wave's slice in the core (and of everything
outside it): a rollback of the wave must restore the one and leave the other untouched
(etl/cutover/slice_checksum.py); :func:`wave_row_ids` are the rows that rollback may change.
:func:`patients_loaded` and :func:`later_slice_waves` say which waves' promoted slices depend on
which (a unit wave's rows point at the patients wave's). etl/cutover/slices.py re-exports these.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import sqlalchemy as sa

from etl.catalog import Catalog, SystemMappings
from etl.core.batch_states import PROMOTED
from etl.core.model import ENTITIES
from etl.core.tables import ENTITY_TABLES, promotion
from etl.cutover.plan import WavePlan
from etl.cutover.scope import (
    assign,
    first_waves_of,
    is_patient_level,
    memberships,
    needed_columns,
    row_units,
)
from etl.cutover.slice_checksum import row_frame

CORE_CHUNK = 20_000  # core rows read at a time for the assignment of the core's rows


def _core_tables(connection: sa.Connection, system: SystemMappings) -> dict[str, pd.DataFrame]:
    """The columns the assignment reads, from the core's rows of ``system``."""
    tables = {}
    for entity in [*system.entities, "patient_identifier"]:
        if entity not in ENTITY_TABLES:
            continue
        table = ENTITY_TABLES[entity]
        columns = [c for c in needed_columns(system, entity) if c in table.c]
        rows = connection.execute(
            sa.select(*(table.c[c] for c in columns)).where(table.c.source_system == system.name)
        ).all()
        tables[entity] = row_frame(rows, columns, legacy=True)
    return tables


def _core_chunks(
    connection: sa.Connection, system: SystemMappings, entity: str, chunk: int
) -> Iterator[pd.DataFrame]:
    """The columns the assignment reads of the core's rows of ``system``, ``chunk`` rows at a
    time in key order (a server-side cursor on PostgreSQL), each value as text by itself."""
    table = ENTITY_TABLES[entity]
    columns = [c for c in needed_columns(system, entity) if c in table.c]
    result = connection.execute(
        sa.select(*(table.c[c] for c in columns))
        .where(table.c.source_system == system.name)
        .order_by(table.c[ENTITIES[entity].id_field()])
        .execution_options(yield_per=chunk)
    )
    for partition in result.partitions():
        yield row_frame(partition, columns)


def _via_depth(system: SystemMappings, entity: str) -> int:
    """How many ``via`` steps an entity's unit is away from a unit of its own (targets first)."""
    depth, seen = 0, {entity}
    unit = system.entities[entity].care_unit
    while unit is not None and unit.via_entity and unit.via_entity in system.entities:
        if unit.via_entity in seen:  # a cycle is refused by the catalog; never loop here
            break
        seen.add(unit.via_entity)
        depth += 1
        unit = system.entities[unit.via_entity].care_unit
    return depth


def _fold(first: pd.Series, pending: list[pd.Series]) -> pd.Series:
    """The per-patient minimum of ``first`` and the chunks' minima (emptied)."""
    if not pending:
        return first
    folded: pd.Series = pd.concat([first, *pending]).groupby(level=0).min()
    pending.clear()
    return folded


def core_assignment(
    connection: sa.Connection, plan: WavePlan, system: SystemMappings, chunk: int = CORE_CHUNK
) -> Iterator[tuple[str, pd.Series]]:
    """The assignment (:func:`etl.cutover.scope.assign`) of the core's rows of ``system``, read
    a chunk at a time: per chunk, its entity and each row's wave by core id (NA: no wave or
    several). The same result as :func:`wave_of_rows` over the whole tables, in bounded memory:

    - rows with a unit of their own are assigned chunk by chunk; an entity other rows point at
      (``via``: an encounter, a referral) is read first and only its id -> unit map is kept;
    - patient-level rows need, per patient, the first wave taking one of the patient's rows:
      a minimum per patient, folded chunk by chunk, then those rows are read in chunks too.

    What is held besides a chunk: the care-unit register, the via targets' id -> unit maps and
    the per-patient minimum; never every table's columns at once."""
    present = [e for e in [*system.entities, "patient_identifier"] if e in ENTITY_TABLES]
    split = system.name in plan.split_systems
    base: dict[str, pd.DataFrame] = {}
    if "care_unit" in present:
        frames = list(_core_chunks(connection, system, "care_unit", chunk))
        base["care_unit"] = (
            pd.concat(frames, ignore_index=True)
            if frames
            else pd.DataFrame(columns=needed_columns(system, "care_unit"), dtype="string")
        )
    unit_level = sorted(
        (e for e in present if not is_patient_level(system, e)),
        key=lambda e: _via_depth(system, e),
    )
    targets = {
        unit.via_entity
        for e in unit_level
        if (unit := system.entities[e].care_unit) is not None and unit.via_entity
    }
    known: dict[str, pd.Series] = {}
    first = pd.Series(dtype="int64")
    pending: list[pd.Series] = []
    for entity in unit_level:
        key = ENTITIES[entity].id_field()
        gathered: list[pd.Series] = []
        frames_of = (
            iter([base["care_unit"]])
            if entity == "care_unit"
            else _core_chunks(connection, system, entity, chunk)
        )
        for frame in frames_of:
            tables = {**base, entity: frame}
            found = memberships(plan, system, tables, known, first, entities=[entity])
            rows = assign(plan, system, tables, found=found)[entity]
            ids = frame[key].to_numpy()
            yield entity, pd.Series(rows["wave"].to_numpy(), index=ids, dtype="string")
            if split:
                pending.append(first_waves_of(plan, system, tables, {entity: found[entity]}))
                if sum(len(p) for p in pending) >= max(chunk, len(first)):
                    first = _fold(first, pending)  # amortised: folded as often as it doubles
            if entity in targets:
                units = row_units(system, tables, known, entities=[entity])[entity][0]
                gathered.append(pd.Series(units.to_numpy(), index=ids, dtype="string"))
        first = _fold(first, pending)
        if entity in targets:
            joined = (
                pd.concat(gathered) if gathered else pd.Series(dtype="string", index=pd.Index([]))
            )
            known[entity] = joined[~joined.index.duplicated()]
    for entity in present:
        if entity in unit_level:
            continue
        key = ENTITIES[entity].id_field()
        for frame in _core_chunks(connection, system, entity, chunk):
            tables = {entity: frame}
            found = memberships(plan, system, tables, known, first if split else None, [entity])
            rows = assign(plan, system, tables, found=found)[entity]
            yield entity, pd.Series(rows["wave"].to_numpy(), index=frame[key].to_numpy())


def slice_ids(
    connection: sa.Connection,
    plan: WavePlan,
    wave: str,
    catalog: Catalog,
    chunk: int = CORE_CHUNK,
) -> dict[str, set[str]]:
    """Per core table, the ids of the rows of ``wave``'s slice of its split systems, by
    :func:`core_assignment` (read a chunk at a time)."""
    found: dict[str, set[str]] = {}
    for name in plan.systems_of(wave):
        if name not in plan.split_systems:
            continue
        system = catalog.system(name)
        for entity, waves in core_assignment(connection, plan, system, chunk):
            mine = waves.index[(waves == wave).fillna(False).to_numpy(bool)]
            found.setdefault(entity, set()).update(str(i) for i in mine)
    return found


def wave_row_ids(
    connection: sa.Connection, plan: WavePlan, wave: str, catalog: Catalog
) -> dict[str, set[str]]:
    """Per core table, the ids of the wave's slice and of every row its promoted batches wrote,
    overwrote or deleted: the rows its rollback may change. Everything else must not move."""
    from etl.load.promote import _touched_ids

    found = slice_ids(connection, plan, wave, catalog)
    batches = connection.execute(
        sa.select(promotion.c.batch_id).where(
            (promotion.c.wave == wave) & (promotion.c.state == PROMOTED)
        )
    ).scalars()
    for batch_id in list(batches):
        for entity in ENTITY_TABLES:
            if entity not in ENTITIES:
                continue
            touched = connection.execute(_touched_ids(entity, batch_id)).scalars()
            found.setdefault(entity, set()).update(str(i) for i in touched)
    return found


def slice_checksums(
    connection: sa.Connection,
    plan: WavePlan,
    wave: str,
    catalog: Catalog,
    outside_of: dict[str, set[str]] | None = None,
    chunk: int = 20_000,
    legacy: bool = False,
) -> dict[str, dict[str, str]]:
    """Per core table, row count and SHA-256 of the wave's slice (its whole systems' rows and
    its rows of the split systems, by the assignment over the core's rows) and of every other
    row (``outside``; with ``outside_of``: every row not of these ids, a set fixed before a
    rollback so that the same rows are compared after it), in key order.

    Each table is streamed ``chunk`` rows at a time and the result does not depend on the chunk
    size (etl/cutover/slice_checksum.py); ``legacy``: the definition before checksum version 2,
    to compare with evidence recorded before it."""
    from etl.cutover.slice_checksum import id_index, table_checksums

    whole = list(plan.wave(wave).systems)
    ids = slice_ids(connection, plan, wave, catalog)
    excluded = outside_of if outside_of is not None else ids
    inside: dict[str, str] = {}
    outside: dict[str, str] = {}
    for entity in ENTITY_TABLES:
        if entity not in ENTITIES:
            continue
        key = ENTITIES[entity].id_field()
        mine = id_index(ids.get(entity, set()))
        others = id_index(excluded.get(entity, set()))

        def select(
            frame: pd.DataFrame, mine: pd.Index = mine, others: pd.Index = others, key: str = key
        ) -> list[np.ndarray]:
            in_whole = frame["source_system"].isin(whole).fillna(False).to_numpy(bool)
            member = frame[key].isin(mine).fillna(False).to_numpy(bool) | in_whole
            away = frame[key].isin(others).fillna(False).to_numpy(bool) | in_whole
            return [member, ~away]

        inside[entity], outside[entity] = table_checksums(
            connection, entity, select, 2, chunk, legacy
        )
    return {"slice": inside, "outside": outside}


def patients_loaded(connection: sa.Connection, plan: WavePlan) -> bool:
    """Whether the plan's patients wave has promoted batches (a unit wave needs its patients)."""
    if plan.patients not in {w.wave for w in plan.waves}:
        return True  # first_wave: patients move with each wave's rows
    return (
        connection.execute(
            sa.select(sa.func.count()).where(
                (promotion.c.wave == plan.patients) & (promotion.c.state == PROMOTED)
            )
        ).scalar_one()
        > 0
    )


def later_slice_waves(connection: sa.Connection, plan: WavePlan, wave: str) -> list[str]:
    """Waves whose slices of the split systems are promoted and point at ``wave``'s patients
    (only the patients wave has such dependants)."""
    if wave != plan.patients:
        return []
    rows = connection.execute(
        sa.select(promotion.c.wave)
        .where(
            (promotion.c.state == PROMOTED)
            & promotion.c.source_system.in_(plan.split_systems)
            & (promotion.c.wave != wave)
            & promotion.c.wave.is_not(None)
        )
        .distinct()
    ).scalars()
    return sorted(str(w) for w in rows if w in {x.wave for x in plan.waves})
