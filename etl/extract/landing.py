"""Write a source system's datasets to the Parquet landing zone, with a manifest.

Each landed row keeps its lineage: ``_row_number`` (1-based, in source order), ``_source_key``
(the dataset's key columns joined by ``|``) and ``_row_hash`` (to tell exact duplicates from
conflicting ones). The manifest holds row counts and SHA-256 checksums of the landed files.

Accounting starts at the source, by a second count. For every source file the reader's count
of physical records (readable or not, ``ReadStats.records``) must equal an independent count
of the raw bytes (etl.extract.physical); for every table the rows read must equal ``COUNT(*)``
taken in the same snapshot (see ``readers.snapshot``). Otherwise the batch stops with a
``PhysicalCountError`` before its manifest is written. The manifest records, per source file,
its bytes, SHA-256, physical records, the reader's records, unreadable records, stray text and
the names the spec does not declare.

A batch is ``full`` or ``delta``. Both land every dataset whole; a delta also lists which rows
are new, changed or deleted since its base batch, and only those are transformed and accounted
for (see etl.extract.delta).

A delta need not parse a source file again that has not changed since its base: a file dataset
whose every file has the bytes, SHA-256 and physical record count the base recorded for it, read
by the same reader (``reader_fingerprint``: the dataset's spec, the reader's code and the
libraries it hashes rows with), takes a copy of the base's landed snapshot, checked against the
SHA-256 the base's manifest recorded for it (``_unchanged_since_base``). Any difference, or
anything missing to tell (a base from before the fingerprint, a snapshot gone or altered), reads
the file in full. Every file is still hashed in full: a change that keeps its size and
modification time is caught. A table of a SQLite database file (ELVIS) is carried over the same
way when the database file has the bytes and SHA-256 the base recorded for the table, taken in
the snapshot it was read in (``_table_unchanged_since_base``; etl.extract.sqlite_file says when a
file's bytes prove its tables: rollback-journal mode, no journal or WAL beside it). A table on a
database server is always read in full. The classification of a
carried-over snapshot's duplicate keys depends on the snapshot alone, so it is the base's too: a
copy of its duplicates file, checked against the SHA-256 the base's manifest recorded for it
(``_carried_duplicates``); without one, or altered, it is classified again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import logging
import platform
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa
from pydantic import BaseModel, Field

from etl.batch import BatchPaths, utc_now, write_json
from etl.catalog import Catalog, FileDataset, SourceFormat, SqlDataset, SystemSpec
from etl.core import files, residency
from etl.core.arrow import open_parquet
from etl.core.files import sha256_of as _sha256
from etl.core.ids import combined_row_hashes, row_hashes, text_value_hashes
from etl.extract import physical, readers, sqlite_file
from etl.extract.records import ReadStats
from etl.settings import Settings

ROW_NUMBER = "_row_number"
SOURCE_KEY = "_source_key"
ROW_HASH = "_row_hash"
# A reader that cannot parse a record (broken JSON line, malformed HL7 message, bad XML record)
# still emits it as a row, fields empty and this column saying why: it is quarantined, not lost.
READ_ERROR = "_read_error"
LINEAGE_COLUMNS = (ROW_NUMBER, SOURCE_KEY, ROW_HASH, READ_ERROR)
FULL, DELTA = "full", "delta"

LOG = logging.getLogger(__name__)


class PhysicalCountError(RuntimeError):
    """A reader consumed a different number of records than the source physically holds."""


class DeltaCounts(BaseModel):
    """A delta dataset: rows new, changed or dependent (these are processed), keys deleted."""

    new: int
    changed: int
    dependent: int
    deleted: int

    @property
    def rows(self) -> int:
        return self.new + self.changed + self.dependent


class SourceFile(BaseModel):
    """One source file (or table) as read: the physical count beside the reader's."""

    path: str  # the file, or the table's name
    # Of the source file itself; for a table, of its SQLite database file as the table was read
    # (etl.extract.sqlite_file.digest), None on a server or when the file alone proves nothing.
    bytes: int | None = None
    sha256: str | None = None
    physical_records: int  # the independent count (raw bytes, or COUNT(*))
    records: int  # the reader's physical records: parsed + unreadable
    unreadable: int
    stray: int = 0  # stretches of text outside any record (each landed as one unreadable row)
    rows: int  # rows landed from it (an HL7 message may give several)
    unknown_fields: dict[str, int] = Field(default_factory=dict)  # name -> records carrying it


class LandedDataset(BaseModel):
    dataset: str
    source: str
    rows: int
    sha256: str  # of the landed Parquet file
    # Relative to the landing zone (``<batch>/<system>/landed/<dataset>.parquet``): the same on
    # every worker, whatever the storage root (a worker's own folders are never recorded).
    path: str
    exact_duplicates: int
    conflicting_duplicate_rows: int
    delta: DeltaCounts | None = None  # only in a delta batch
    sources: list[SourceFile] = Field(default_factory=list)  # empty in manifests before issue 10
    # The dataset's reader (``reader_fingerprint``); None in older manifests (and for a table,
    # before tables of SQLite files were carried over).
    reader: str | None = None
    # True when the snapshot is a copy of the base's, its source unchanged (module docstring).
    carried_over: bool = False
    # Of the duplicates file (``BatchPaths.duplicates_file``); None in older manifests.
    duplicates_sha256: str | None = None

    @property
    def physical_records(self) -> int:
        return sum(source.physical_records for source in self.sources)

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


# Landed files are read by the pipeline's own readers, whole columns at a time and never with a
# filter, so they carry no min/max statistics (a quarter of the writer's time on text columns),
# and dictionary pages only for a column with few distinct values, where they pay (a column of
# mostly distinct values, the lineage columns among them, costs time to try a dictionary and bytes
# to fall back from it). Measured on ELVIS and Melior at 20,000 people: ParquetWriter's CPU time
# -55%, 20% fewer bytes, no slower to read back.
_DICTIONARY_DISTINCT_SHARE = 0.2
# A column whose first chunk holds more distinct values than this share of its rows is hashed
# value by value in the chunks after it (``text_value_hashes``: the same hashes, sooner).
_MOSTLY_DISTINCT_SHARE = 0.5


def _landing_schema(columns: list[str]) -> pa.Schema:
    return pa.schema(
        [(c, pa.string()) for c in columns]
        + [(ROW_NUMBER, pa.int64()), (SOURCE_KEY, pa.string()), (ROW_HASH, pa.uint64())]
        + [(READ_ERROR, pa.string())]
    )


def _source_keys(table: pa.Table, key: list[str]) -> pa.Array | pa.ChunkedArray:
    """Each row's key values, trimmed of white space and joined by ``|``; null if one is null
    (as pandas' ``.str.strip()`` and ``+`` of Arrow-backed text computed it before)."""
    trimmed = [
        pc.utf8_trim_whitespace(table.column(column).cast(pa.large_string())) for column in key
    ]
    if len(trimmed) == 1:
        return trimmed[0]
    return pc.binary_join_element_wise(*trimmed, pa.scalar("|", pa.large_string()))


def _row_hashes(
    chunk: pd.DataFrame | None, table: pa.Table, mostly_distinct: frozenset[str]
) -> tuple[np.ndarray, dict[str, int] | None]:
    """The rows' hashes over every column but the lineage ones, in the chunk's order (as
    ``row_hashes`` of the chunk), and the distinct values of each column not ``mostly_distinct``
    (None if not all text). ``chunk``: the frame ``table`` was made of, if it was one."""
    hashed = [name for name in table.column_names if name not in LINEAGE_COLUMNS]
    if not hashed or not all(
        pa.types.is_string(table.schema.field(name).type)
        or pa.types.is_large_string(table.schema.field(name).type)
        for name in hashed
    ):
        if chunk is None:
            chunk = pd.DataFrame(
                {name: table.column(name).to_pandas() for name in hashed},
                index=pd.RangeIndex(table.num_rows),
            )
        return row_hashes(chunk[hashed]), None
    by_column = {
        name: text_value_hashes(table.column(name), is_mostly_distinct=name in mostly_distinct)
        for name in hashed
    }
    combined = combined_row_hashes([hashes for hashes, _ in by_column.values()], table.num_rows)
    counted = {name: distinct for name, (_, distinct) in by_column.items() if distinct is not None}
    return combined, counted


# A chunk as a reader yields it: a pandas frame (the record readers), an Arrow table of text
# columns (delimited and fixed-width files) or a dict of Arrow text arrays (tables).
Chunk: TypeAlias = pd.DataFrame | pa.Table | dict[str, pa.Array]


def _with_lineage(
    chunk: Chunk,
    schema: pa.Schema,
    key: list[str],
    first_row: int,
    mostly_distinct: frozenset[str] = frozenset(),
) -> tuple[pa.Table, dict[str, int] | None]:
    """The chunk as a landed table (``schema``), and each column's distinct values if counted
    (``mostly_distinct``: columns not worth counting, see ``_row_hashes``). An Arrow chunk is
    taken as it is: the same table ``pa.Table.from_pandas`` makes of its frame, without the
    frame (whose conversion was most of the cost of a small chunk)."""
    if isinstance(chunk, pd.DataFrame):
        frame: pd.DataFrame | None = chunk
        table = pa.Table.from_pandas(chunk, preserve_index=False)
    else:
        frame, table = None, chunk if isinstance(chunk, pa.Table) else pa.table(chunk)
    rows = table.num_rows
    hashes, distinct = _row_hashes(frame, table, mostly_distinct)
    lineage = {
        ROW_NUMBER: pa.array(np.arange(first_row, first_row + rows, dtype=np.int64)),
        SOURCE_KEY: _source_keys(table, key),
        ROW_HASH: pa.array(hashes, type=pa.uint64()),
        READ_ERROR: (
            table.column(READ_ERROR)
            if READ_ERROR in table.column_names
            else pa.nulls(rows, type=pa.string())
        ),
    }
    arrays = [
        lineage[field.name] if field.name in lineage else table.column(field.name)
        for field in schema
    ]
    return pa.Table.from_arrays(arrays, names=schema.names).cast(schema), distinct


def _dictionary_columns(columns: list[str], distinct: dict[str, int] | None, rows: int) -> list:
    """The columns written with dictionary pages: those of few distinct values in the first
    chunk (every value column when that is not known), and ``_read_error`` (mostly null)."""
    share = _DICTIONARY_DISTINCT_SHARE * rows
    chosen = [c for c in columns if distinct is None or distinct.get(c, 0) <= share]
    return [*chosen, READ_ERROR]


def _write_parquet(
    chunks,
    columns: list[str],
    key: list[str],
    path: Path,
    kept: list[pa.Table] | None = None,
    keep_rows: int = 0,
) -> int:
    """Land the chunks in ``path``; their rows. ``kept``: filled with the landed tables'
    ``DUPLICATE_COLUMNS`` while the rows written are at most ``keep_rows`` (emptied past it),
    for ``_classify_duplicates`` to take instead of reading them back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".parquet.tmp")
    schema = _landing_schema(columns)
    rows = 0
    writer = None
    mostly_distinct: frozenset[str] = frozenset()
    try:
        for chunk in chunks:
            table, distinct = _with_lineage(chunk, schema, key, rows + 1, mostly_distinct)
            if writer is None:  # the first chunk tells the dictionary columns, and which to count
                writer = _landing_writer(
                    temporary, schema, _dictionary_columns(columns, distinct, table.num_rows)
                )
                mostly_distinct = frozenset(
                    name
                    for name, count in (distinct or {}).items()
                    if count > _MOSTLY_DISTINCT_SHARE * table.num_rows
                )
            writer.write_table(table)
            rows += table.num_rows
            if kept is not None:
                if rows <= keep_rows:
                    kept.append(table.select(DUPLICATE_COLUMNS))
                else:
                    kept.clear()
        if writer is None:  # no rows at all: a file of the schema only
            writer = _landing_writer(temporary, schema, _dictionary_columns(columns, None, 0))
        writer.close()
    except BaseException:
        try:
            if writer is not None:
                writer.close()
        finally:
            temporary.unlink(missing_ok=True)
        raise
    temporary.replace(path)
    return rows


def _landing_writer(path: Path, schema: pa.Schema, dictionary_columns: list) -> pq.ParquetWriter:
    return pq.ParquetWriter(path, schema, use_dictionary=dictionary_columns, write_statistics=False)


# --- the physical count beside the reader's ---------------------------------------------------


def _reader_start_lines(path: Path, dataset: FileDataset) -> Iterator[int | None]:
    """The line where the reader starts each record (read again: only after a mismatch)."""
    previous = None
    for record in readers.read_file(path, dataset, ReadStats(path)):
        if record.record is not None and record.record != previous:
            previous = record.record
            yield record.line


def _first_difference(path: Path, dataset: FileDataset) -> str:
    """Where the reader's records and the physical ones first part, if it can be told."""
    starts = physical.record_start_lines(path, dataset)
    if starts is None:
        return "(the first difference cannot be located by line for this format)"
    try:
        reader_starts = _reader_start_lines(path, dataset)
        for ordinal, (by_reader, by_bytes) in enumerate(
            zip(reader_starts, starts, strict=False), start=1
        ):
            if by_reader is None:
                return "(the reader does not report record lines)"
            if by_reader != by_bytes:
                return (
                    f"first difference at record {ordinal}: the reader starts it at line "
                    f"{by_reader}, the physical count at line {by_bytes}"
                )
    except readers.BrokenFileError:
        return "(the reader stops on a broken file)"
    return "the records agree up to the shorter count: the difference is at the end of the file"


def _mismatch(system: str, name: str, where: str, read: int, counted: int, detail: str) -> str:
    return (
        f"{system} dataset {name}: {where}: the reader consumed {read} record(s), the "
        f"independent physical count finds {counted}; {detail}. Nothing of this batch was "
        "landed. Some records would be lost or split without a trace: look at the source at "
        "that place, then fix the export (or report the reader's mistake) and re-run."
    )


def _file_frames(
    system: str,
    name: str,
    dataset: FileDataset,
    folder: Path,
    sources: list[SourceFile],
    chunk_rows: int,
) -> Iterator[Chunk]:
    """Every file's rows in chunks, in order, each file checked against its physical count when
    read."""
    for path in readers.matching_files(folder, dataset, system):
        counted = physical.count_physical(path, dataset)
        before = path.stat()
        stats, rows = ReadStats(path), 0
        for chunk in readers.read_file_chunks_for_landing(path, dataset, stats, chunk_rows):
            rows += len(chunk)
            yield chunk
        after = path.stat()
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise PhysicalCountError(
                f"{system} dataset {name}: file {path} changed while it was read; nothing of "
                "this batch was landed. Extract from a finished export (or a frozen copy)."
            )
        if stats.records != counted.records:
            where = _first_difference(path, dataset)
            raise PhysicalCountError(
                _mismatch(system, name, f"file {path}", stats.records, counted.records, where)
            )
        sources.append(
            SourceFile(
                path=str(path),
                bytes=counted.bytes,
                sha256=counted.sha256,
                physical_records=counted.records,
                records=stats.records,
                unreadable=stats.unreadable,
                stray=stats.stray,
                rows=rows,
                unknown_fields=dict(stats.unknown_fields),
            )
        )


def _land_file_dataset(
    system: str,
    name: str,
    dataset: FileDataset,
    folder: Path,
    target: Path,
    chunk_rows: int,
    kept: list[pa.Table] | None = None,
) -> tuple[int, list[SourceFile]]:
    sources: list[SourceFile] = []
    chunks = _file_frames(system, name, dataset, folder, sources, chunk_rows)
    rows = _write_parquet(
        chunks, dataset.column_names, dataset.key, target, kept, keep_rows=chunk_rows
    )
    return rows, sources


# What the landed snapshot of a file dataset depends on besides the source's bytes: the reader's
# code (and the catalog models it reads the spec with), the row hashing, the libraries.
_READER_CODE = (
    *sorted(Path(__file__).parent.glob("*.py")),
    Path(__file__).parents[1] / "catalog.py",
    Path(__file__).parents[1] / "core" / "ids.py",
    Path(__file__).parents[1] / "core" / "arrow.py",
)


@functools.cache
def _reader_code_digest() -> str:
    digest = hashlib.sha256()
    for path in _READER_CODE:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    versions = (
        platform.python_version(),
        pd.__version__,
        pa.__version__,
        np.__version__,
        sqlite3.sqlite_version,  # a table's reader: the library that reads the database file
        sa.__version__,
    )
    for version in versions:
        digest.update(version.encode() + b"\0")
    return digest.hexdigest()


def reader_fingerprint(dataset: FileDataset | SqlDataset) -> str:
    """What the landed snapshot of ``dataset`` depends on besides its source's bytes."""
    digest = hashlib.sha256(_reader_code_digest().encode())
    digest.update(dataset.model_dump_json().encode())
    return digest.hexdigest()


def _unchanged_since_base(
    system: str,
    name: str,
    dataset: FileDataset,
    folder: Path,
    base: LandingManifest,
    settings: Settings,
    target: Path,
) -> tuple[int, list[SourceFile]] | None:
    """The base's landed snapshot of ``name``, copied to ``target``, if the dataset's source is
    the same to the byte and read by the same reader; None (read it in full) at any doubt.

    The list of files must be the base's, and every file is read whole for its SHA-256, which
    must equal the one the base recorded beside its physical count (so the count is the base's:
    the same bytes, counted by the same code); the base's snapshot must still hash to the SHA-256
    its manifest recorded."""
    previous = base.datasets.get(name)
    if (
        previous is None
        or previous.reader is None
        or previous.reader != reader_fingerprint(dataset)
        or not previous.sources
    ):
        return None
    paths = readers.matching_files(folder, dataset, system)
    if [str(path) for path in paths] != [source.path for source in previous.sources]:
        return None
    sources = []
    for path, before in zip(paths, previous.sources, strict=True):
        if (
            before.sha256 is None
            or before.records != before.physical_records
            or path.stat().st_size != before.bytes  # a quick no; the same size proves nothing
            or _sha256(path) != before.sha256
        ):
            return None
        # The same bytes, counted by the same code (in the fingerprint): the same count.
        sources.append(before.model_copy(deep=True))
    return _carried_snapshot(system, name, previous, sources, settings, target)


def _carried_snapshot(
    system: str,
    name: str,
    previous: LandedDataset,
    sources: list[SourceFile],
    settings: Settings,
    target: Path,
) -> tuple[int, list[SourceFile]] | None:
    """The base's landed snapshot copied to ``target`` if it still hashes to the SHA-256 its
    manifest recorded: its rows and ``sources``; None (read the source in full) if not."""
    snapshot = settings.resolved_landing_dir / previous.path
    if not _copy_checked(snapshot, target, previous.sha256):
        LOG.warning(
            "%s %s: the base batch's landed snapshot is gone or does not match its manifest's "
            "checksum; reading the source in full",
            system,
            name,
        )
        return None
    return previous.rows, sources


def _table_unchanged_since_base(
    system: str,
    name: str,
    dataset: SqlDataset,
    database: tuple[int, str] | None,
    base: LandingManifest,
    settings: Settings,
    target: Path,
) -> tuple[int, list[SourceFile]] | None:
    """The base's landed snapshot of the table ``name``, copied to ``target``, if its SQLite
    database file is the same to the byte as when the base read the table, and the table is read
    by the same reader; None (read it in full) at any doubt.

    ``database``: the file's size and SHA-256 now (``_database_now``), None when the file alone
    proves nothing (etl.extract.sqlite_file) or the source is not a SQLite file. The base must
    have recorded the same for the table, taken in the snapshot it read the table in, with its
    ``COUNT(*)`` equal to the rows it read; the base's snapshot must still hash to the SHA-256 its
    manifest recorded."""
    previous = base.datasets.get(name)
    if (
        database is None
        or previous is None
        or previous.reader is None
        or previous.reader != reader_fingerprint(dataset)
        or len(previous.sources) != 1
    ):
        return None
    before = previous.sources[0]
    if (
        before.path != dataset.table
        or before.sha256 is None
        or before.records != before.physical_records
        or (before.bytes, before.sha256) != database
    ):
        return None
    # The same bytes, read by the same code (in the fingerprint): the same rows and count.
    return _carried_snapshot(
        system, name, previous, [before.model_copy(deep=True)], settings, target
    )


def _database_now(engine: sa.Engine, database: Path) -> tuple[int, str] | None:
    """The SQLite database file's size and SHA-256, taken in a read transaction that has read
    the database (its shared lock held: no writer changes the file meanwhile)."""
    opened = sqlite_file.identity(database)  # before the snapshot's connection opens it
    with readers.snapshot(engine) as connection:
        connection.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar()
        return sqlite_file.digest(database, opened)


def _copy_checked(source: Path, target: Path, sha256: str) -> bool:
    """Copy ``source`` to ``target`` if the copy's SHA-256 is ``sha256``; False (nothing left at
    ``target``'s temporary name) if it is not, or ``source`` is gone."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".parquet.tmp")
    try:
        shutil.copyfile(source, temporary)
        if _sha256(temporary) != sha256:
            temporary.unlink(missing_ok=True)
            return False
    except FileNotFoundError:
        temporary.unlink(missing_ok=True)
        return False
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    temporary.replace(target)
    return True


def _carried_duplicates(
    settings: Settings, base: LandingManifest, name: str, target: Path
) -> tuple[int, int] | None:
    """For a snapshot carried over from ``base``: the base's classification of its duplicate
    keys (merged rows, conflicting rows), its file copied to ``target``; None (classify again)
    when the base recorded no checksum for it or the file is gone or altered."""
    previous = base.datasets[name]
    if previous.duplicates_sha256 is None:
        return None
    source = BatchPaths.of(settings, base.batch_id, base.system).duplicates_file(name)
    if not _copy_checked(source, target, previous.duplicates_sha256):
        LOG.warning(
            "%s %s: the base batch's duplicates file is gone or does not match its manifest's "
            "checksum; classifying the duplicate keys again",
            base.system,
            name,
        )
        return None
    return previous.exact_duplicates, previous.conflicting_duplicate_rows


def _land_table(
    system: str,
    name: str,
    dataset: SqlDataset,
    engine,
    target: Path,
    chunk_rows: int,
    kept: list[pa.Table] | None = None,
    database: Path | None = None,
) -> tuple[int, list[SourceFile]]:
    """``database``: the source's SQLite file, whose size and SHA-256 are recorded as the
    table was read (in its snapshot), for a later delta to compare with."""
    stats = ReadStats(Path(dataset.table))
    # Before the snapshot's connection opens the file (etl.extract.sqlite_file).
    opened = sqlite_file.identity(database) if database is not None else None
    with readers.snapshot(engine) as connection:
        counted = physical.count_table(connection, dataset.table)
        chunks = readers.read_table_arrays(connection, dataset, chunk_rows, stats)
        rows = _write_parquet(
            chunks, dataset.columns, dataset.key, target, kept, keep_rows=chunk_rows
        )
        file = (
            sqlite_file.digest(database, opened)
            if database is not None and opened is not None
            else None
        )
    if stats.records != counted:
        target.unlink(missing_ok=True)
        detail = "COUNT(*) and the rows were read in one snapshot where the backend allows"
        raise PhysicalCountError(
            _mismatch(system, name, f"table {dataset.table}", stats.records, counted, detail)
        )
    source = SourceFile(
        path=dataset.table,
        bytes=file[0] if file is not None else None,
        sha256=file[1] if file is not None else None,
        physical_records=counted,
        records=stats.records,
        unreadable=stats.unreadable,
        rows=rows,
    )
    return rows, [source]


def _log_sources(system: str, name: str, sources: list[SourceFile]) -> None:
    """Counts only: names of unknown fields stay in the manifest (a key may be a value)."""
    for source in sources:
        LOG.info(
            "%s %s: %s: %d physical records, %d read, %d unreadable, %d stray",
            system,
            name,
            Path(source.path).name,
            source.physical_records,
            source.records,
            source.unreadable,
            source.stray,
        )
        if source.unknown_fields:
            LOG.warning(
                "%s %s: %s: %d field name(s) the spec does not declare, in up to %d record(s); "
                "see the landing manifest",
                system,
                name,
                Path(source.path).name,
                len(source.unknown_fields),
                max(source.unknown_fields.values()),
            )


DUPLICATE_SCHEMA = pa.schema([(ROW_NUMBER, pa.int64()), ("outcome", pa.string())])
# The landed columns duplicates are told by.
DUPLICATE_COLUMNS = (ROW_NUMBER, SOURCE_KEY, ROW_HASH)


def _buckets(source: pq.ParquetFile, chunk_rows: int) -> int:
    return max(1, -(-source.metadata.num_rows // max(1, chunk_rows)))


def _classify_duplicates(
    landed: Path, target: Path, chunk_rows: int = 100_000, lineage: pa.Table | None = None
) -> tuple[int, int]:
    """Rows sharing a key: exact copies after the first are merged; differing ones conflict.

    Memory is bounded by ``chunk_rows``, not by the dataset: a dataset larger than one chunk is
    first split by a hash of its key into as many bucket files as it has chunks (a key's rows all
    go to one bucket), and each bucket is classified on its own. One bucket is the whole file.
    """
    columns = list(DUPLICATE_COLUMNS)
    if lineage is not None:  # the landed file's columns, as written (at most a chunk of rows)
        result = _duplicates_of(lineage)
    elif (buckets := _buckets(source := open_parquet(landed), chunk_rows)) == 1:
        result = _duplicates_of(pq.read_table(landed, columns=columns))
    else:
        with tempfile.TemporaryDirectory(prefix=".duplicates_", dir=target.parent) as folder:
            parts = [Path(folder) / f"{bucket}.arrow" for bucket in range(buckets)]
            schema = source.schema_arrow
            # Scratch files, written and read once: Arrow's own file format (no encoding to
            # pay for either way), each chunk's rows put in bucket order by one stable sort and
            # handed out as slices (in file order within a bucket, as a filter per bucket did).
            part_schema = pa.schema([schema.field(c) for c in columns])
            with contextlib.ExitStack() as stack:
                writers = [
                    stack.enter_context(pa.ipc.new_file(str(part), part_schema)) for part in parts
                ]
                for batch in source.iter_batches(batch_size=chunk_rows, columns=columns):
                    # Any hash of the key will do (the outcome does not depend on the buckets,
                    # only on a key's rows meeting in one).
                    key_hashes, _ = text_value_hashes(
                        batch.column(SOURCE_KEY), is_mostly_distinct=True
                    )
                    bucket_of_row = (key_hashes % np.uint64(buckets)).astype(np.intp)
                    in_order = batch.take(pa.array(np.argsort(bucket_of_row, kind="stable")))
                    start = 0
                    for writer, rows in zip(
                        writers, np.bincount(bucket_of_row, minlength=buckets).tolist(), strict=True
                    ):
                        if rows:
                            writer.write_batch(in_order.slice(start, rows))
                        start += rows
            result = pa.concat_tables([_duplicates_of(_read_scratch(part)) for part in parts])
    result = result.sort_by(ROW_NUMBER)
    pq.write_table(result, target)
    counts = result.group_by("outcome").aggregate([("outcome", "count")]).to_pydict()
    by_outcome = dict(zip(counts["outcome"], counts["outcome_count"], strict=True))
    return by_outcome.get("merged", 0), by_outcome.get("duplicate_source_key", 0)


def _read_scratch(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def _duplicates_of(table: pa.Table) -> pa.Table:
    """The merged and conflicting rows of ``table`` (row number, key, row hash), unsorted.

    Only a key on two rows or more can have either: those keys are found by a count alone, and
    the grouping that tells copies from conflicts (distinct hashes, first row) sees their rows
    only, a few of the dataset's (the same outcome at a third of the cost of grouping all)."""
    table = table.filter(pc.is_valid(table[SOURCE_KEY]))  # keyless rows are quarantined apart
    counted = pc.value_counts(table[SOURCE_KEY])
    repeated_keys = counted.field("values").filter(pc.greater(counted.field("counts"), 1))
    if not len(repeated_keys):
        return DUPLICATE_SCHEMA.empty_table()
    table = table.filter(pc.is_in(table[SOURCE_KEY], value_set=repeated_keys))
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
    return result.cast(DUPLICATE_SCHEMA)


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


@dataclass(frozen=True)
class _Source:
    """A system's source as one extract reads it: the folder of its files, or an engine on its
    database; for a SQLite file, its path and (a delta's) size and SHA-256 now."""

    spec: SystemSpec
    folder: Path | None = None
    engine: sa.Engine | None = None
    database: Path | None = None
    database_now: tuple[int, str] | None = None

    @classmethod
    @contextlib.contextmanager
    def opened(cls, spec: SystemSpec, settings: Settings, is_delta: bool) -> Iterator[_Source]:
        if spec.format is not SourceFormat.SQL:
            yield cls(spec, folder=readers.source_path(spec, settings))
            return
        url = readers.source_url(spec, settings)
        engine = readers.read_only_engine(url)
        try:
            database = sqlite_file.database_path(url)
            now = _database_now(engine, database) if is_delta and database is not None else None
            yield cls(spec, engine=engine, database=database, database_now=now)
        finally:
            engine.dispose()


def _land_dataset(
    system: str,
    name: str,
    source: _Source,
    base: LandingManifest | None,
    settings: Settings,
    paths: BatchPaths,
) -> LandedDataset:
    """One dataset landed, or (a delta's source unchanged since its base) carried over."""
    dataset = source.spec.datasets[name]
    target = paths.landed_file(name)
    carried = None
    kept: list[pa.Table] = []  # the landed duplicate columns, if at most a chunk
    if isinstance(dataset, SqlDataset):
        if base is not None:
            carried = _table_unchanged_since_base(
                system, name, dataset, source.database_now, base, settings, target
            )
        land = functools.partial(
            _land_table, system, name, dataset, source.engine, database=source.database
        )
    else:
        assert source.folder is not None  # a file dataset's system has its folder
        if base is not None:
            carried = _unchanged_since_base(
                system, name, dataset, source.folder, base, settings, target
            )
        land = functools.partial(_land_file_dataset, system, name, dataset, source.folder)
    if carried is not None:
        LOG.info("%s %s: source unchanged since the base batch", system, name)
        rows, sources = carried
    else:
        rows, sources = land(target, settings.chunk_rows, kept)
    _log_sources(system, name, sources)
    duplicates = paths.duplicates_file(name)
    # A carried-over copy was checked against the base's recorded SHA-256 as it was made: that
    # is its digest, not hashed again (nor is a copied duplicates file).
    carried_from = base.datasets[name] if carried is not None and base is not None else None
    classified = (
        _carried_duplicates(settings, base, name, duplicates)
        if carried_from is not None and base is not None
        else None
    )
    merged, conflicting = classified or _classify_duplicates(
        target, duplicates, settings.chunk_rows, pa.concat_tables(kept) if kept else None
    )
    return LandedDataset(
        dataset=name,
        source=dataset.source_name,
        rows=rows,
        sha256=carried_from.sha256 if carried_from is not None else _sha256(target),
        path=target.relative_to(settings.resolved_landing_dir).as_posix(),
        exact_duplicates=merged,
        conflicting_duplicate_rows=conflicting,
        sources=sources,
        reader=reader_fingerprint(dataset),
        carried_over=carried is not None,
        duplicates_sha256=carried_from.duplicates_sha256
        if carried_from is not None and classified is not None
        else _sha256(duplicates),
    )


def extract_system(
    catalog: Catalog,
    system: str,
    batch_id: str,
    as_of_date: dt.date,
    settings: Settings,
    kind: str = FULL,
    base_wave: str | None = None,
) -> LandingManifest:
    """Land every dataset of ``system``; schema drift stops before any dataset is read.

    A ``delta`` batch needs a promoted batch of the system to compare with (refused otherwise)
    and records, per dataset, the rows that changed since it; ``base_wave``: only a batch that
    wave promoted (a wave's slice of a system split by care unit changes since its own load).
    """
    # Deferred: etl.extract.delta builds on this module's lineage columns and models.
    from etl.extract import delta

    if kind not in (FULL, DELTA):
        raise ValueError(f"batch kind must be '{FULL}' or '{DELTA}', not '{kind}'")
    base_batch_id = (
        delta.require_base(settings, system, batch_id, base_wave) if kind == DELTA else None
    )
    base = read_manifest(settings, base_batch_id, system) if base_batch_id is not None else None
    spec = catalog.system(system).spec
    paths = BatchPaths.of(settings, batch_id, system)
    residency.check_storage(paths.root, "the landing zone (VARDFLYTT_LANDING_DIR)", settings)
    files.private_dir(settings.resolved_landing_dir)
    check_schema(catalog, system, settings)
    with _Source.opened(spec, settings, is_delta=base is not None) as source:
        landed = {
            name: _land_dataset(system, name, source, base, settings, paths)
            for name in spec.datasets
        }
    delta.clear(paths, list(landed))
    if base_batch_id is not None and base is not None:
        # A snapshot byte for byte the base's has nothing new, changed or deleted.
        identical = {
            name
            for name, dataset in landed.items()
            if name in base.datasets and base.datasets[name].sha256 == dataset.sha256
        }
        counts = delta.compare_with_base(
            catalog, system, batch_id, base_batch_id, settings, identical
        )
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
    files.private_tree(paths.root.parent)  # the batch's folder: made under whatever umask
    return manifest


def read_manifest(settings: Settings, batch_id: str, system: str) -> LandingManifest:
    path = BatchPaths.of(settings, batch_id, system).manifest_file
    if not path.exists():
        raise FileNotFoundError(
            f"{system}: batch {batch_id} has not been extracted ({path} missing)"
        )
    return LandingManifest.model_validate_json(path.read_text("utf-8"))
