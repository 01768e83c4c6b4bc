"""Write a source system's datasets to the Parquet landing zone, with a manifest.

Each landed row keeps its lineage: ``_row_number`` (1-based, in source order), ``_source_key``
(the dataset's key columns joined by ``|``) and ``_row_hash`` (to tell exact duplicates from
conflicting ones). The manifest holds row counts and SHA-256 checksums of the landed files.

A batch is ``full`` or ``delta``. Both land every dataset whole; a delta also lists which rows
are new, changed or deleted since its base batch, and only those are transformed and accounted
for (see etl.extract.delta).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel

from etl.batch import BatchPaths, utc_now, write_json
from etl.catalog import Catalog, FileDataset, SourceFormat, SqlDataset
from etl.core.ids import row_hashes
from etl.extract import readers
from etl.settings import Settings

ROW_NUMBER = "_row_number"
SOURCE_KEY = "_source_key"
ROW_HASH = "_row_hash"
# A reader that cannot parse a record (broken JSON line, malformed HL7 message, bad XML record)
# still emits it as a row, fields empty and this column saying why: it is quarantined, not lost.
READ_ERROR = "_read_error"
LINEAGE_COLUMNS = (ROW_NUMBER, SOURCE_KEY, ROW_HASH, READ_ERROR)
FULL, DELTA = "full", "delta"


class DeltaCounts(BaseModel):
    """A delta dataset: rows new, changed or dependent (these are processed), keys deleted."""

    new: int
    changed: int
    dependent: int
    deleted: int

    @property
    def rows(self) -> int:
        return self.new + self.changed + self.dependent


class LandedDataset(BaseModel):
    dataset: str
    source: str
    rows: int
    sha256: str
    path: str
    exact_duplicates: int
    conflicting_duplicate_rows: int
    delta: DeltaCounts | None = None  # only in a delta batch

    @property
    def extracted(self) -> int:
        """The rows this batch must account for: the whole snapshot, or a delta's rows."""
        return self.rows if self.delta is None else self.delta.rows


class LandingManifest(BaseModel):
    system: str
    batch_id: str
    as_of_date: dt.date
    extracted_at: str
    datasets: dict[str, LandedDataset]
    kind: str = FULL
    base_batch_id: str | None = None  # a delta's base: the batch it was compared with

    @property
    def total_rows(self) -> int:
        return sum(dataset.rows for dataset in self.datasets.values())


def _with_lineage(chunk: pd.DataFrame, key: list[str], first_row: int) -> pd.DataFrame:
    chunk = chunk.reset_index(drop=True)
    if READ_ERROR not in chunk.columns:
        chunk[READ_ERROR] = pd.Series(pd.NA, index=chunk.index, dtype="string")
    source_key = chunk[key[0]].astype("string").str.strip()
    for column in key[1:]:
        source_key = source_key + "|" + chunk[column].astype("string").str.strip()
    chunk[ROW_NUMBER] = pd.RangeIndex(first_row, first_row + len(chunk), dtype="int64")
    chunk[SOURCE_KEY] = source_key
    chunk[ROW_HASH] = row_hashes(chunk.drop(columns=[ROW_NUMBER, SOURCE_KEY, READ_ERROR]))
    return chunk


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_parquet(chunks, columns: list[str], key: list[str], path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".parquet.tmp")
    schema = pa.schema(
        [(c, pa.string()) for c in columns]
        + [(ROW_NUMBER, pa.int64()), (SOURCE_KEY, pa.string()), (ROW_HASH, pa.uint64())]
        + [(READ_ERROR, pa.string())]
    )
    rows = 0
    with pq.ParquetWriter(temporary, schema) as writer:
        for chunk in chunks:
            chunk = _with_lineage(chunk, key, rows + 1)
            writer.write_table(pa.Table.from_pandas(chunk, schema=schema, preserve_index=False))
            rows += len(chunk)
    temporary.replace(path)
    return rows


def _classify_duplicates(landed: Path, target: Path) -> tuple[int, int]:
    """Rows sharing a key: exact copies after the first are merged; differing ones conflict."""
    table = pq.read_table(landed, columns=[ROW_NUMBER, SOURCE_KEY, ROW_HASH])
    table = table.filter(pc.is_valid(table[SOURCE_KEY]))  # keyless rows are quarantined apart
    keys = table.group_by(SOURCE_KEY).aggregate(
        [(ROW_HASH, "count_distinct"), (ROW_NUMBER, "min"), (ROW_NUMBER, "count")]
    )
    repeated = keys.filter(pc.greater(keys[f"{ROW_NUMBER}_count"], 1))
    joined = table.join(repeated, SOURCE_KEY, join_type="inner")
    is_conflict = pc.greater(joined[f"{ROW_HASH}_count_distinct"], 1)
    is_copy = pc.and_(
        pc.invert(is_conflict), pc.greater(joined[ROW_NUMBER], joined[f"{ROW_NUMBER}_min"])
    )
    outcome = pc.if_else(is_conflict, "duplicate_source_key", pc.if_else(is_copy, "merged", None))
    result = pa.table({ROW_NUMBER: joined[ROW_NUMBER], "outcome": outcome}).filter(
        pc.is_valid(outcome)
    )
    pq.write_table(result.sort_by(ROW_NUMBER), target)
    counts = result.group_by("outcome").aggregate([("outcome", "count")]).to_pydict()
    by_outcome = dict(zip(counts["outcome"], counts["outcome_count"], strict=True))
    return by_outcome.get("merged", 0), by_outcome.get("duplicate_source_key", 0)


def check_schema(catalog: Catalog, system: str, settings: Settings) -> None:
    """Compare every dataset's real columns with the spec; raise SchemaDriftError on difference."""
    spec = catalog.system(system).spec
    if spec.format is SourceFormat.SQL:
        engine = readers.read_only_engine(readers.source_url(spec, settings))
        try:
            for name, dataset in spec.datasets.items():
                assert isinstance(dataset, SqlDataset)
                readers.check_sql_schema(system, engine, name, dataset)
        finally:
            engine.dispose()
    else:
        folder = readers.source_path(spec, settings)
        for dataset in spec.datasets.values():
            assert isinstance(dataset, FileDataset)
            readers.check_file_schema(system, folder, dataset)


def extract_system(
    catalog: Catalog,
    system: str,
    batch_id: str,
    as_of_date: dt.date,
    settings: Settings,
    kind: str = FULL,
) -> LandingManifest:
    """Land every dataset of ``system``; schema drift stops before any dataset is read.

    A ``delta`` batch needs a promoted batch of the system to compare with (refused otherwise)
    and records, per dataset, the rows that changed since it.
    """
    # Deferred: etl.extract.delta builds on this module's lineage columns and models.
    from etl.extract import delta

    if kind not in (FULL, DELTA):
        raise ValueError(f"batch kind must be '{FULL}' or '{DELTA}', not '{kind}'")
    base_batch_id = delta.require_base(settings, system, batch_id) if kind == DELTA else None
    spec = catalog.system(system).spec
    check_schema(catalog, system, settings)
    paths = BatchPaths.of(settings, batch_id, system)
    landed: dict[str, LandedDataset] = {}
    engine = None
    if spec.format is SourceFormat.SQL:
        engine = readers.read_only_engine(readers.source_url(spec, settings))
    try:
        for name, dataset in spec.datasets.items():
            if isinstance(dataset, SqlDataset):
                chunks = readers.read_sql_chunks(engine, dataset, settings.chunk_rows)
                columns = dataset.columns
            else:
                folder = readers.source_path(spec, settings)
                chunks = readers.read_file_chunks(folder, dataset, settings.chunk_rows)
                columns = dataset.column_names
            target = paths.landed_file(name)
            rows = _write_parquet(chunks, columns, dataset.key, target)
            merged, conflicting = _classify_duplicates(target, paths.duplicates_file(name))
            landed[name] = LandedDataset(
                dataset=name,
                source=dataset.source_name,
                rows=rows,
                sha256=_sha256(target),
                path=str(target),
                exact_duplicates=merged,
                conflicting_duplicate_rows=conflicting,
            )
    finally:
        if engine is not None:
            engine.dispose()
    delta.clear(paths, list(landed))
    if base_batch_id is not None:
        counts = delta.compare_with_base(catalog, system, batch_id, base_batch_id, settings)
        for name, dataset_counts in counts.items():
            landed[name].delta = dataset_counts
    manifest = LandingManifest(
        system=system,
        batch_id=batch_id,
        as_of_date=as_of_date,
        extracted_at=utc_now().isoformat(),
        datasets=landed,
        kind=kind,
        base_batch_id=base_batch_id,
    )
    write_json(paths.manifest_file, manifest.model_dump())
    return manifest


def read_manifest(settings: Settings, batch_id: str, system: str) -> LandingManifest:
    path = BatchPaths.of(settings, batch_id, system).manifest_file
    if not path.exists():
        raise FileNotFoundError(
            f"{system}: batch {batch_id} has not been extracted ({path} missing)"
        )
    return LandingManifest.model_validate_json(path.read_text("utf-8"))
