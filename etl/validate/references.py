"""Referential integrity: every pointer at a patient, contact, care unit or practitioner resolves.

A suite declares its entity's reference columns in its top-level ``meta.references``::

    "references": {
        "patient_id": {"entity": "patient"},
        "care_unit_hsa_id": {"entity": "care_unit", "column": "hsa_id"}
    }

Each becomes one check, ``<entity>.<column>.references_<target>``
(``encounter.patient_id.references_patient``), judged like any other: its severity (error
quarantines the row, warning loads and flags it), threshold and waivability are in
``expectations/thresholds.yaml``, its tallies go to ``dq_result`` and the gate.

A value resolves when the target exists in this batch's transformed rows of the same system
(``<target>.parquet``, matched on ``column``, by default the target's id) or in the core table
(rows promoted earlier by this system, by a delta's base, or by another system or wave: an
HSA-id is resolved against every system's care units; a core id only against its own system's
rows, so the core is not asked before the system's first promoted batch). A missing value is
not judged here: the completeness checks (``not_null``) say whether the column may be empty.

A reference by core id whose target is in this batch's landing but was quarantined while
transforming (a patient with an invalid personnummer) is not dangling: the target exists and
waits in the steward's queue. It fails a second check, ``<entity>.<column>.<target>_in_quarantine``
(a warning with max_failure_rate 1.0 in the reviewed thresholds: loaded and flagged, so the
steward sees which rows wait for their target, while the defect is gated once, under the
target's own checks, instead of once per contact or lab result). Declaring it an error per
system holds such rows back with their target.

Memory stays bounded by the chunk: only the chunk's distinct keys are looked up, the batch file
is read with a filter on that key column only, and the core is asked in slices of keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from etl.batch import BatchPaths
from etl.core.arrow import one_array, open_parquet, scan_filtered
from etl.core.ids import core_ids
from etl.extract.landing import SOURCE_KEY
from etl.validate.keyscan import rows_with_keys

if TYPE_CHECKING:
    from etl.validate.checks import CheckRule

REFERENCES = "references"
REASON = "unresolved_reference"
QUARANTINED_TARGET_REASON = "reference_to_quarantined_row"
CORE_SLICE = 5_000


class ReferenceDeclarationError(ValueError):
    """A suite's ``meta.references`` declaration is malformed."""


@dataclass(frozen=True)
class Reference:
    """One reference column of an entity and the target it must resolve to."""

    entity: str
    column: str
    target: str
    target_column: str

    @property
    def check_name(self) -> str:
        return f"{self.entity}.{self.column}.references_{self.target}"

    @property
    def is_by_id(self) -> bool:
        """A core id: derived from the target's source key, so found in the batch's landing."""
        from etl.core.model import ENTITIES

        return self.target_column == ENTITIES[self.target].id_field()

    @property
    def quarantined_check_name(self) -> str:
        return f"{self.entity}.{self.column}.{self.target}_in_quarantine"

    def check_names(self) -> list[str]:
        return [self.check_name, *([self.quarantined_check_name] if self.is_by_id else [])]


def declared_references(entity: str, meta: dict | None) -> list[Reference]:
    """The reference columns a suite declares, in file order."""
    from etl.core.model import ENTITIES

    declared = (meta or {}).get(REFERENCES) or {}
    if not isinstance(declared, dict):
        raise ReferenceDeclarationError(
            f"suite '{entity}': meta.references must map column -> target"
        )
    fields = ENTITIES[entity].model_fields if entity in ENTITIES else {}
    references = []
    for column, spec in declared.items():
        if not isinstance(spec, dict) or "entity" not in spec:
            raise ReferenceDeclarationError(
                f"suite '{entity}': meta.references.{column} needs 'entity'"
            )
        target = spec["entity"]
        if target not in ENTITIES:
            raise ReferenceDeclarationError(
                f"suite '{entity}': meta.references.{column}: '{target}' is not a core entity"
            )
        target_column = spec.get("column") or ENTITIES[target].id_field()
        if column not in fields:
            raise ReferenceDeclarationError(
                f"suite '{entity}': '{column}' is not a column of {entity}"
            )
        if target_column not in ENTITIES[target].model_fields:
            raise ReferenceDeclarationError(
                f"suite '{entity}': meta.references.{column}: '{target_column}' is not a "
                f"column of {target}"
            )
        references.append(Reference(entity, column, target, target_column))
    return references


def unresolved(
    paths: BatchPaths | None,
    reference: Reference,
    values: pd.Series,
    core_url: str | None,
    in_batch: bool = True,
    system: str | None = None,
) -> pd.Series:
    """True where a non-empty value resolves neither in the batch nor in the core.

    ``in_batch=False`` asks the core only (the gate uses it when the batch's target rows are not
    going to be promoted). ``system``: the referencing rows' system, whose core ids a reference
    by id holds (``_in_core``)."""
    return _unresolved(paths, reference, values, core_url, in_batch, system)[0]


def _unresolved(
    paths: BatchPaths | None,
    reference: Reference,
    values: pd.Series,
    core_url: str | None,
    in_batch: bool = True,
    system: str | None = None,
) -> tuple[pd.Series, pa.Array]:
    """``unresolved``, with the values as they were looked up: trimmed text, null where that
    left nothing (an Arrow array in the order of ``values``)."""
    text = _trimmed(values)
    # The chunk's distinct keys (nulls left out) and each row's position among them, as Arrow
    # arrays: no Python object per key. Whether a key resolves is decided once per distinct key;
    # each row takes its key's answer (looking the rows up in the found keys again hashed every
    # found key a second time).
    encoded = pc.dictionary_encode(one_array(text))
    wanted = encoded.dictionary.cast(pa.large_string())
    if len(wanted) == 0:
        return pd.Series(False, index=values.index), text
    resolved = np.zeros(len(wanted), dtype=bool)
    if in_batch and paths is not None:
        found = _in_batch(paths, reference, wanted)
        resolved |= np.asarray(pc.is_in(wanted, value_set=found), dtype=bool)
    if not resolved.all() and core_url:
        remaining = wanted.filter(pa.array(~resolved))
        in_core = _in_core(core_url, reference, remaining.to_pylist(), system)
        found_in_core = pa.array(list(in_core), type=wanted.type)
        resolved |= np.asarray(pc.is_in(wanted, value_set=found_in_core), dtype=bool)
    # Present, and not found (a null has no position: never failing).
    positions = encoded.indices
    failing = ~resolved[np.asarray(positions.fill_null(0), dtype=np.int64)]
    if positions.null_count:
        failing &= np.asarray(positions.is_valid(), dtype=bool)
    return pd.Series(failing, index=values.index), text


def _trimmed(values: pd.Series) -> pa.Array:
    """``values.astype("string").str.strip()``, masked to NA where empty, as Arrow text: the
    same kernel pandas runs for its Arrow-backed text, without a pandas array per step."""
    if _is_arrow_text(values):
        trimmed = pc.utf8_trim_whitespace(pa.array(values))
        return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, trimmed.type), trimmed)
    text = values.astype("string").str.strip()
    return pa.array(text.mask(text == ""), type=pa.large_string())


def _is_arrow_text(values: pd.Series) -> bool:
    dtype = values.dtype
    return isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"


def landed_ids(
    landed_file: Path, system: str, target: str, wanted: set[str], chunk_rows: int = 100_000
) -> set[str]:
    """Which ``wanted`` core ids belong to rows of the batch's landed ``target`` dataset (whatever
    became of them); the landed keys are read in slices, one column only."""
    if not wanted or not landed_file.exists():
        return set()
    stat = landed_file.stat()
    landed = _landed_core_ids(
        landed_file.resolve(), stat.st_mtime_ns, stat.st_size, system, target, chunk_rows
    )
    # The landed ids that were asked for: the same set as the asked ids that landed, with the
    # lookup table built over the few asked ids, not over every landed row (a table that grew
    # with the system, built again for every validated chunk).
    asked = pa.array(list(wanted), type=pa.large_string())
    return set(landed.filter(pc.is_in(landed, value_set=asked)).to_pylist())


@lru_cache(maxsize=2)
def _landed_core_ids(
    landed_file: Path, _mtime_ns: int, _size: int, system: str, target: str, chunk_rows: int
) -> pa.Array:
    """The core ids of every landed ``target`` row (Arrow text: 32 bytes an id, ids only),
    hashed once per landed file, not once per validated chunk of every entity pointing at it
    (a landed file is not changed after extract: transform refuses one that is)."""
    parts = [pa.array([], type=pa.large_string())]
    source = open_parquet(landed_file)
    for batch in source.iter_batches(batch_size=chunk_rows, columns=[SOURCE_KEY]):
        keys = batch.column(0).to_pandas().astype("string")
        ids = core_ids(system, target, keys[keys.notna()])
        parts.append(pa.array(ids, type=pa.large_string()))
    return pc.unique(pa.concat_arrays(parts))


def _in_batch(paths: BatchPaths, reference: Reference, wanted: pa.Array) -> pa.Array:
    """Which of the ``wanted`` keys the batch's transformed target rows hold (large_string)."""
    none = pa.array([], type=pa.large_string())
    source = paths.stage_file("transformed", reference.target)
    # Scanned for the wanted keys with every chunk (one batch of the file in memory at a time),
    # not its keys cached whole: memory stays bounded by the chunk, not by the target's rows.
    if not source.exists():
        return none
    column = reference.target_column
    table = rows_with_keys(source, column, [column], wanted)
    if table is None:
        dataset = ds.dataset(source)
        if column not in dataset.schema.names:
            return none
        table = scan_filtered(
            dataset, [column], pc.is_in(pc.field(column), value_set=wanted.cast(pa.string()))
        )
    found = table.column(0)
    if found.type in (pa.string(), pa.large_string()):
        return pc.drop_null(found).combine_chunks().cast(pa.large_string())
    return pa.array([str(v) for v in found.to_pylist() if v is not None], type=pa.large_string())


def _in_core(
    core_url: str, reference: Reference, wanted: list[str], system: str | None = None
) -> set[str]:
    """Which ``wanted`` keys the core's target table holds.

    A reference by id of ``system``'s rows holds that system's core ids: until a batch of the
    system is promoted the core holds none of them, and the target table is not read
    (``has_promoted``: so a system's validation does not wait for another system's first
    promotion, which holds that table exclusively until it commits)."""
    import sqlalchemy as sa

    from etl.core.batch_states import has_promoted
    from etl.core.database import core_engine
    from etl.core.tables import ENTITY_TABLES

    column = ENTITY_TABLES[reference.target].c[reference.target_column]
    found: set[str] = set()
    with core_engine(core_url).connect() as connection:
        if reference.is_by_id and system is not None and not has_promoted(connection, system):
            return found
        for start in range(0, len(wanted), CORE_SLICE):
            part = wanted[start : start + CORE_SLICE]
            query = sa.select(column).where(column.in_(part)).distinct()
            found.update(str(value) for (value,) in connection.execute(query))
    return found


def reference_failures(
    paths: BatchPaths,
    rows: pd.DataFrame,
    references: list[Reference],
    id_column: str,
    core_url: str | None,
    rule_of: Callable[[str], CheckRule],
    in_landing: Callable[[Reference, set[str]], set[str]] | None = None,
    system: str | None = None,
):
    """One ``Failure`` per reference check that some row of the chunk fails, with the severity
    and dimension ``rule_of(check)`` gives (the system's rule in thresholds.yaml).

    ``in_landing(reference, ids)`` says which unresolved ids are rows of the batch's landing
    (quarantined while transforming); without it every unresolved id is a dangling reference.
    ``system``: the rows' system (a reference by id is looked up in the core only once a batch
    of it is promoted, ``_in_core``)."""
    from etl.validate.suites import Failure

    failures = []
    for reference in references:
        if reference.column not in rows.columns or rows.empty:
            continue
        failing, text = _unresolved(
            paths, reference, rows[reference.column], core_url, system=system
        )
        if not failing.any():
            continue
        quarantined = pd.Series(False, index=rows.index)
        if in_landing is not None and reference.is_by_id:
            # ``text`` is the column trimmed, null where that left it empty: on failing rows
            # (never empty ones) the trimmed values themselves.
            is_failing = pa.array(failing.to_numpy(bool))
            asked = pc.unique(text.filter(is_failing))
            held = in_landing(reference, set(asked.to_pylist()))
            is_held = pc.is_in(text, value_set=pa.array(sorted(held), type=text.type))
            quarantined = failing & pd.Series(
                np.asarray(is_held.fill_null(False), dtype=bool), index=rows.index
            )
        for check, reason, mask in (
            (reference.check_name, REASON, failing & ~quarantined),
            (reference.quarantined_check_name, QUARANTINED_TARGET_REASON, quarantined),
        ):
            if mask.any():
                rule = rule_of(check)
                failures.append(
                    Failure(
                        check,
                        reference.column,
                        reason,
                        rule.severity,
                        rows.loc[mask, id_column].astype("string").reset_index(drop=True),
                        rule.dimension,
                    )
                )
    return failures
