"""The transform stage for one entity of one batch: landed Parquet in, core-shaped Parquet out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel

from etl.batch import BatchPaths
from etl.catalog import Catalog, EntityMapping, ReserveIssue
from etl.core import files
from etl.core.arrow import iter_frames, stage_schema, to_arrow
from etl.extract.delta import iter_selected_frames, selected_row_numbers
from etl.extract.landing import DELTA, ROW_NUMBER, read_manifest
from etl.settings import Settings
from etl.transform.engine import (
    OUTCOME_COLUMNS,
    ReserveNumbers,
    load_lookups,
    load_reference_keys,
    reserve_numbers_in_core,
    transform_chunk,
)

OUTCOME_SCHEMA = pa.schema(
    [(ROW_NUMBER, pa.int64())] + [(name, pa.string()) for name in OUTCOME_COLUMNS[1:]]
)


class LandedFileChangedError(RuntimeError):
    """A landed file no longer matches the digest its manifest recorded at extract."""


def check_landed_digest(
    paths: BatchPaths,
    system: str,
    batch_id: str,
    dataset: str,
    expected: str,
    duplicates_expected: str | None = None,
) -> None:
    """Fail closed: a landed file changed after extract (by hand, a copy gone wrong, a disk) is
    never transformed; the freeze window's verification trusts the chain from the landed files
    to the core (etl/cutover/reconcile.py), so the chain must be tamper-evident here. So is the
    dataset's duplicates file where the manifest recorded its SHA-256 (a row marked merged there
    is not loaded)."""
    checked = [(paths.landed_file(dataset), expected)]
    if duplicates_expected is not None:
        checked.append((paths.duplicates_file(dataset), duplicates_expected))
    for landed, digest in checked:
        if files.sha256_of(landed) == digest:
            continue
        raise LandedFileChangedError(
            f"system {system}, batch {batch_id}: the landed file {landed.name} differs from the "
            "SHA-256 its landing manifest recorded at extract; the landing zone was changed "
            f"after extract. Nothing was transformed: extract again (`vardflytt run {system}`)."
        )


class StageReport(BaseModel):
    """Counts only: safe for logs and XCom."""

    system: str
    entity: str
    batch_id: str
    rows_in: int
    rows_out: int
    outcomes: dict[str, int]


# Stage files are read by this pipeline only: whole columns, chunk by chunk, and scanned with a
# filter only on id columns (etl/validate/context.py, references.py), which keep their min/max
# statistics; no other column's are read, so none are written (part of the writer's time on
# text). Dictionary pages only for a text column of few distinct values in a sample of the first
# chunk, where they pay; a column of mostly distinct values (ids, keys, hashes, instants) costs
# time to try a dictionary and bytes to fall back from it. The values read back are the same.
_DICTIONARY_SAMPLE_ROWS = 2048
_DICTIONARY_DISTINCT_SHARE = 0.2
_FILTERED_SUFFIX = "_id"
# Compression: Snappy, as pyarrow writes by default, except for a text column written without a
# dictionary whose values Snappy barely shortens (random hex ids and content hashes: by about a
# tenth, for about twice the writing time of the plain column). Told from the same sample: its
# values' bytes compressed with Snappy. Such a column's pages are about as large either way
# (memory stays as it was), and the values read back are the same.
COMPRESSION = "snappy"
_INCOMPRESSIBLE_SHARE = 0.9


def _is_text(type_: pa.DataType) -> bool:
    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


def _is_incompressible(values: pa.Array) -> bool:
    """Whether Snappy leaves the bytes of the text values at least 90% as long."""
    _validity, offsets, data = values.buffers()
    if data is None or not len(values):
        return False
    # Only the bytes the values use (a slice shares its parent's buffers).
    width = np.int64 if pa.types.is_large_string(values.type) else np.int32
    bounds = np.frombuffer(offsets, dtype=width)[[values.offset, values.offset + len(values)]]
    raw = data.slice(int(bounds[0]), int(bounds[1] - bounds[0]))
    if not raw.size:
        return False
    return pa.compress(raw, codec=COMPRESSION).size >= _INCOMPRESSIBLE_SHARE * raw.size


def writer_options(schema: pa.Schema, first: pa.Table | None) -> dict:
    """``ParquetWriter`` options for a stage file of ``schema`` whose first table is ``first``
    (None when the file gets no rows)."""
    dictionary: list[str] = []
    plain: set[str] = set()
    if first is not None:
        sample = first.slice(0, _DICTIONARY_SAMPLE_ROWS)
        share = _DICTIONARY_DISTINCT_SHARE * max(1, sample.num_rows)
        for field in schema:
            if not _is_text(field.type) or field.name not in sample.column_names:
                continue
            values = sample.column(field.name)
            if pc.count_distinct(values).as_py() <= share:
                dictionary.append(field.name)
            elif _is_incompressible(values.combine_chunks()):
                plain.add(field.name)
    statistics = [field.name for field in schema if field.name.endswith(_FILTERED_SUFFIX)]
    compression = {f.name: "none" if f.name in plain else COMPRESSION for f in schema}
    return {
        "use_dictionary": dictionary,
        "write_statistics": statistics,
        "compression": compression,
    }


class StageWriter:
    """Parquet writers for a stage's rows and outcomes, committed atomically on close. A file's
    writer is opened with its first rows (they choose its encodings, ``writer_options``)."""

    def __init__(self, paths: dict[str, tuple[Path, pa.Schema]]):
        self._targets = paths
        self._writers: dict[str, pq.ParquetWriter] = {}
        for path, _schema in paths.values():
            files.private_dir(path.parent)
            files.temporary_file(self._temporary(path))

    @staticmethod
    def _temporary(path: Path) -> Path:
        return path.with_suffix(".parquet.tmp")

    def _writer(self, name: str, first: pa.Table | None) -> pq.ParquetWriter:
        writer = self._writers.get(name)
        if writer is None:
            path, schema = self._targets[name]
            options = writer_options(schema, first)
            writer = pq.ParquetWriter(self._temporary(path), schema, **options)
            self._writers[name] = writer
        return writer

    def write(self, name: str, table: pa.Table) -> None:
        if table.num_rows:
            self._writer(name, table).write_table(table)

    def close(self) -> None:
        for name, (path, _schema) in self._targets.items():
            self._writer(name, None).close()
            self._temporary(path).replace(path)
            files.private_file(path)


def outcomes_table(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame[OUTCOME_COLUMNS], schema=OUTCOME_SCHEMA, preserve_index=False)


def count_outcomes(frames: list[pd.DataFrame]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for frame in frames:
        for outcome, number in frame["outcome"].value_counts().items():
            counts[str(outcome)] = counts.get(str(outcome), 0) + int(number)
    return counts


@dataclass(frozen=True)
class _ChunkInputs:
    """What every chunk of an entity is mapped against, read once per entity: the source keys
    its references point at, its lookups, the extract's duplicate rows, the reserve numbers in
    the core. Used by the chunks only: an entity without a row to map (a delta that selects
    none of its rows) writes the same empty result without them."""

    reference_keys: dict[str, pd.Index]
    lookups: dict[str, pd.Series]
    duplicates: pd.DataFrame
    reserve_numbers: ReserveNumbers

    @classmethod
    def read(
        cls, paths: BatchPaths, mapping: EntityMapping, settings: Settings, system: str
    ) -> _ChunkInputs:
        # Reserve numbers the mapping issues stay unique across chunks, batches and systems.
        reserve_numbers = ReserveNumbers()
        if mapping.reserve.issue is not ReserveIssue.NEVER:
            reserve_numbers = reserve_numbers_in_core(settings.resolved_core_url, system)
        return cls(
            reference_keys=load_reference_keys(paths, mapping),
            lookups=load_lookups(paths, mapping),
            duplicates=pq.read_table(paths.duplicates_file(mapping.dataset)).to_pandas(),
            reserve_numbers=reserve_numbers,
        )


def _check_inputs_landed(paths: BatchPaths, mapping: EntityMapping) -> None:
    """Fail closed as a full read would: an entity with no row to map still needs the landed
    files its chunks would have been mapped against (their footers are read, not their rows)."""
    needed = [paths.duplicates_file(mapping.dataset)]
    needed += [paths.landed_file(reference.dataset) for reference in mapping.references]
    needed += [paths.landed_file(lookup.dataset) for lookup in mapping.lookups]
    for path in needed:
        pq.read_metadata(path)


@files.temporaries_removed_on_failure()
def transform_entity(
    catalog: Catalog, system: str, entity: str, batch_id: str, settings: Settings
) -> StageReport:
    """Map the entity's landed rows (a delta's rows only); each ends as a core row or an outcome."""
    mapping = catalog.system(system).entities[entity]
    manifest = read_manifest(settings, batch_id, system)
    paths = BatchPaths.of(settings, batch_id, system)
    targets = {
        "rows": (paths.stage_file("transformed", entity), stage_schema(entity)),
        "outcomes": (paths.stage_file("transformed", entity, "outcomes"), OUTCOME_SCHEMA),
    }
    if mapping.identifiers:
        targets["identifiers"] = (
            paths.stage_file("transformed", "patient_identifier"),
            stage_schema("patient_identifier"),
        )
    writer = StageWriter(targets)
    rows_in = rows_out = 0
    outcome_frames = []
    landed = paths.landed_file(mapping.dataset)
    landed_dataset = manifest.datasets[mapping.dataset]
    check_landed_digest(
        paths,
        system,
        batch_id,
        mapping.dataset,
        landed_dataset.sha256,
        landed_dataset.duplicates_sha256,
    )
    if manifest.kind == DELTA:
        # A delta maps only its new, changed and dependent rows; the rest are already in the core.
        selected = selected_row_numbers(paths, mapping.dataset)
        chunks = iter_selected_frames(landed, settings.chunk_rows, selected)
    else:
        chunks = iter_frames(landed, settings.chunk_rows)
    inputs: _ChunkInputs | None = None
    for chunk in chunks:
        if inputs is None:  # read when the first row comes: a delta may select none
            inputs = _ChunkInputs.read(paths, mapping, settings, system)
        result = transform_chunk(
            chunk,
            mapping,
            catalog,
            batch_id,
            manifest.as_of_date,
            inputs.reference_keys,
            inputs.duplicates,
            inputs.lookups,
            inputs.reserve_numbers,
            require_approved_codes=settings.require_approved_codes,
        )
        writer.write("rows", to_arrow(result.rows, entity))
        writer.write("outcomes", outcomes_table(result.outcomes))
        if result.patient_identifiers is not None:
            writer.write("identifiers", to_arrow(result.patient_identifiers, "patient_identifier"))
        outcome_frames.append(result.outcomes[["outcome"]])
        rows_in += len(chunk)
        rows_out += len(result.rows)
        del chunk, result  # not alive while the next chunk is read and mapped: one chunk at a time
    if inputs is None:
        _check_inputs_landed(paths, mapping)
    writer.close()
    return StageReport(
        system=system,
        entity=entity,
        batch_id=batch_id,
        rows_in=rows_in,
        rows_out=rows_out,
        outcomes=count_outcomes(outcome_frames),
    )
