"""Streaming readers, one per source format, yielding chunks of raw string columns.

Values stay exactly as the source has them (as text); parsing is the transform stage's job.
Undecodable bytes become U+FFFD so the row can be quarantined instead of failing the file.
A file dataset's ``file`` may be a glob pattern (``archive/*.hl7``): the matching files are
read in sorted order as one dataset. HL7 v2, XML and JSON lines are read record by record
(``hl7v2``, ``xml_records``, ``jsonl``); a record that cannot be parsed is still a row, with
``_read_error`` saying why.
"""

from __future__ import annotations

import functools
import gc
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from etl.catalog import FileDataset, FileFormat, SqlDataset, SystemSpec
from etl.core import residency
from etl.core.arrow import one_array
from etl.extract import hl7v2, jsonl, text_records, xml_records
from etl.extract.records import (
    DRIFT_SAMPLE_RECORDS,
    READ_ERROR,
    ReadStats,
    Record,
    compare_paths,
    describe,
    frames,
)
from etl.extract.records import BrokenFileError as BrokenFileError  # raised by the readers
from etl.settings import Settings

REPLACEMENT_CHARACTER = "\ufffd"


class SchemaDriftError(RuntimeError):
    """The source no longer looks like its spec: stop this source before anything loads."""


class SourceUnavailableError(RuntimeError):
    """The source cannot be reached or read."""


def source_url(spec: SystemSpec, settings: Settings) -> str:
    connection = spec.connection
    url = os.environ.get(connection.url_env or "") or connection.default_url
    if not url:
        raise SourceUnavailableError(
            f"{spec.system}: no database URL; set {connection.url_env} to the source's URL"
        )
    url = url.format(estate_dir=settings.resolved_estate_dir)
    setting = connection.url_env or f"default_url in mappings/{spec.system}/system.yaml"
    residency.check_database_url(url, f"the {spec.system} source ({setting})", settings)
    return url


def source_path(spec: SystemSpec, settings: Settings) -> Path:
    connection = spec.connection
    path = os.environ.get(connection.path_env or "") or connection.default_path
    if not path:
        raise SourceUnavailableError(
            f"{spec.system}: no export folder; set {connection.path_env} to the folder"
        )
    folder = Path(path.format(estate_dir=settings.resolved_estate_dir))
    setting = connection.path_env or f"default_path in mappings/{spec.system}/system.yaml"
    residency.check_storage(folder, f"the {spec.system} export folder ({setting})", settings)
    return folder


def _decode_replacing(data: bytes) -> str:
    """SQLite text as the source meant it where it is UTF-8, U+FFFD where it is not."""
    return data.decode("utf-8", "replace")


def read_only_engine(url: str) -> sa.Engine:
    """An engine that cannot write: the legacy source is never modified."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if not Path(database).exists():
            raise SourceUnavailableError(f"source database file {database} does not exist")
        # A connection per use, not a pooled one: each snapshot opens the file the path names
        # then (a delta compares that file's bytes with its base's: etl.extract.sqlite_file).
        engine = sa.create_engine(
            f"sqlite:///file:{database}?mode=ro&uri=true", poolclass=sa.pool.NullPool
        )

        @sa.event.listens_for(engine, "connect")
        def _undecodable_text_is_data(dbapi_connection, _record) -> None:
            # SQLite stores whatever bytes it was given; text that is not UTF-8 must become
            # U+FFFD (a quarantined row), not an exception that stops the whole table.
            # (read_table decodes a table's text column-wise instead, to the same strings.)
            dbapi_connection.text_factory = _decode_replacing

        return engine
    if parsed.get_backend_name() == "postgresql":
        # Keep any options the URL already has (such as a search_path) and add read-only. libpq
        # takes one options string: a key given twice in the URL (a tuple here) is joined.
        given = parsed.query.get("options") or ()
        kept = [given] if isinstance(given, str) else list(given)
        options = " ".join([*kept, "-c default_transaction_read_only=on"])
        return sa.create_engine(parsed.update_query_dict({"options": options}))
    engine = sa.create_engine(parsed)
    if parsed.get_backend_name() in {"mysql", "mariadb"}:

        @sa.event.listens_for(engine, "connect")
        def _read_only(dbapi_connection, _record) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET SESSION TRANSACTION READ ONLY")

    return engine


def _diff(where: str, declared: list[str], actual: list[str]) -> str:
    missing = [c for c in declared if c not in actual]
    unexpected = [c for c in actual if c not in declared]
    lines = [f"schema drift in {where}: the source no longer matches its spec; nothing was loaded."]
    lines += [f"  - {column}   (declared in the spec, missing in the source)" for column in missing]
    lines += [f"  + {column}   (in the source, not in the spec)" for column in unexpected]
    lines.append("  Fix: update mappings/ (or the export) and re-run this source.")
    return "\n".join(lines)


def check_sql_schema(system: str, engine: sa.Engine, name: str, dataset: SqlDataset) -> None:
    inspector = sa.inspect(engine)
    if not inspector.has_table(dataset.table):
        raise SchemaDriftError(f"schema drift in {system} table {dataset.table}: table is missing")
    actual = [column["name"] for column in inspector.get_columns(dataset.table)]
    # Column order in a table does not matter to a SELECT by name; names do.
    if sorted(c.lower() for c in actual) != sorted(c.lower() for c in dataset.columns):
        raise SchemaDriftError(_diff(f"{system} table {dataset.table}", dataset.columns, actual))


def is_pattern(file: str) -> bool:
    return any(character in file for character in "*?[")


def matching_files(folder: Path, dataset: FileDataset, system: str = "") -> list[Path]:
    """The dataset's files in sorted order; a pattern that matches nothing is schema drift."""
    if not is_pattern(dataset.file):
        return [folder / dataset.file]
    files = sorted(path for path in folder.glob(dataset.file) if path.is_file())
    if not files:
        where = f"{system} file pattern" if system else "file pattern"
        raise SchemaDriftError(
            f"schema drift in {where} {folder / dataset.file}: no files match; "
            "nothing was loaded. Fix: check the export folder or the pattern in mappings/."
        )
    return files


def check_file_schema(system: str, folder: Path, dataset: FileDataset) -> None:
    """Compare each file's layout with the spec before anything is read (first records only)."""
    for path in matching_files(folder, dataset, system):
        if not path.exists():
            raise SchemaDriftError(f"schema drift in {system} file {path}: the file is missing")
        where = f"{system} file {path}"
        if dataset.format is FileFormat.HL7V2:
            _check_hl7v2(where, path, dataset)
        elif dataset.format is FileFormat.XML:
            _check_xml(where, path, dataset)
        elif dataset.format is FileFormat.JSONL:
            _check_jsonl(where, path, dataset)
        else:
            _check_text_layout(where, path, dataset)


def _check_text_layout(where: str, path: Path, dataset: FileDataset) -> None:
    with path.open("rb") as handle:
        first_line = handle.readline().rstrip(b"\r\n")
    if dataset.format is FileFormat.FIXED_WIDTH:
        # every fixed-width field has a width (checked by the catalog)
        expected = sum(field.width for field in dataset.fields)  # type: ignore[misc]
        if first_line and len(first_line) != expected:
            raise SchemaDriftError(
                f"schema drift in {where}: record 1 is {len(first_line)} characters, "
                f"the spec's fields add up to {expected}. Fix the field widths in mappings/."
            )
        return
    header = first_line.decode(dataset.encoding, errors="replace").split(dataset.delimiter)
    header = [column.strip().strip('"') for column in header]
    if header != dataset.columns:
        raise SchemaDriftError(_diff(where, dataset.columns, header))


def _check_hl7v2(where: str, path: Path, dataset: FileDataset) -> None:
    """A message of a declared type parses, and carries every segment the spec reads."""
    limit = DRIFT_SAMPLE_RECORDS
    found = hl7v2.sample(path, dataset, limit)
    if not found.declared_messages:
        seen = ", ".join(found.message_types) or "none that parse"
        raise SchemaDriftError(
            f"schema drift in {where}: no message of type {', '.join(dataset.message_types)} "
            f"that parses among the first {min(found.messages, limit)} message(s) "
            f"(types seen: {seen}); nothing was loaded. "
            "Fix: check the archive or 'message_types' in mappings/."
        )
    missing = [s for s in hl7v2.declared_segments(dataset) if s not in found.segments]
    if missing:
        lines = [
            f"schema drift in {where}: the source no longer matches its spec; nothing was loaded."
        ]
        lines += [
            f"  - {segment}   (declared in the spec, in none of the first "
            f"{found.declared_messages} {'/'.join(dataset.message_types)} message(s))"
            for segment in missing
        ]
        lines.append("  Fix: update the field paths in mappings/ (or the export) and re-run.")
        raise SchemaDriftError("\n".join(lines))


def _check_xml(where: str, path: Path, dataset: FileDataset) -> None:
    """The record path yields records whose elements and attributes are the declared paths."""
    found = xml_records.sample(path, dataset, DRIFT_SAMPLE_RECORDS)
    if not found.records:
        seen = ", ".join(found.element_paths[:10]) or "no elements"
        raise SchemaDriftError(
            f"schema drift in {where}: record path {dataset.record_path} yields no record "
            f"(elements seen: {seen}); nothing was loaded. Fix: 'record_path' in mappings/."
        )
    _check_paths(where, [f.path or "" for f in dataset.fields], found.paths, "/")


def _check_jsonl(where: str, path: Path, dataset: FileDataset) -> None:
    """The keys of the first objects, as dotted paths, are the declared paths."""
    found = jsonl.sample(path, dataset, DRIFT_SAMPLE_RECORDS)
    if not found.objects:
        raise SchemaDriftError(
            f"schema drift in {where}: no JSON object among the first {found.lines} line(s); "
            "nothing was loaded. Fix: check the export."
        )
    _check_paths(where, [f.path or "" for f in dataset.fields], found.paths, ".")


def _check_paths(where: str, declared: list[str], actual: list[str], separator: str) -> None:
    missing, unexpected = compare_paths(declared, actual, separator)
    if missing or unexpected:
        present = [path for path in declared if path not in missing]
        raise SchemaDriftError(_diff(where, declared, present + unexpected))


# A value holding one of these cannot be trusted as the source meant it: NUL, C0 controls and
# U+FFFD (bytes the source's encoding could not decode). TAB, LF and CR are ordinary in free
# text (a note's line breaks), so they are refused in key columns only. (A lone surrogate cannot
# reach a chunk: the string columns are UTF-8 Arrow arrays, and text that is not UTF-8 becomes
# U+FFFD when the driver decodes it.)
_UNREADABLE_VALUE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffd]")
_UNREADABLE_KEY = re.compile("[\x00-\x1f\ufffd]")
_VALUE_PROBLEMS = (  # reason code, what is in the value, the character class that says so
    ("nul_in_field", "a NUL character", re.compile("\x00")),
    ("undecodable_bytes", "bytes the source's encoding cannot decode", re.compile("\ufffd")),
    ("control_character", "a control character", re.compile("[\x00-\x1f]")),
)


@contextmanager
def snapshot(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection whose reads share one snapshot of the source, where the backend allows.

    PostgreSQL and MySQL/MariaDB (InnoDB): one REPEATABLE READ transaction, so a ``COUNT(*)``
    and the rows read after it see the same committed data. SQLite: one explicit read
    transaction (its shared lock, or its WAL snapshot, holds until the end). Other backends:
    one transaction at their default isolation, which does not promise a snapshot.
    """
    backend = engine.dialect.name
    with engine.connect() as connection:
        if backend in {"postgresql", "mysql", "mariadb"}:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        if backend == "sqlite":
            connection.exec_driver_sql("BEGIN")
        try:
            yield connection
        finally:
            connection.rollback()  # read only: nothing to keep


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """The cyclic garbage collector paused while a chunk's rows are fetched and transposed.

    Rows are tuples of strings, bytes and numbers: they make no reference cycles, but every
    700 tuples allocated start a collection pass over the young objects (the rows fetched so
    far), which on ELVIS cost about a third of the read. Resumed on leaving (if it was on)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def _text_as_bytes(connection: sa.Connection, is_wanted: bool) -> Iterator[None]:
    """While inside, a SQLite connection that decodes text with ``_decode_replacing`` hands
    text over as bytes instead (``read_table`` decodes them a column at a time, to the same
    strings); restored on leaving, so nothing else on the connection ever sees bytes."""
    if not is_wanted:
        yield
        return
    dbapi_connection = connection.connection.dbapi_connection
    dbapi_connection.text_factory = bytes  # type: ignore[union-attr]
    try:
        yield
    finally:
        dbapi_connection.text_factory = _decode_replacing  # type: ignore[union-attr]


def _decodes_text_replacing(connection: sa.Connection) -> bool:
    if connection.dialect.name != "sqlite":
        return False
    dbapi_connection = connection.connection.dbapi_connection
    return getattr(dbapi_connection, "text_factory", None) is _decode_replacing


def _text_array(values: tuple, is_bytes: bool) -> pa.Array | None:
    """One column of a chunk as Arrow text; None when a value is not text (or NULL).

    ``is_bytes``: the values are SQLite text as bytes (``_text_as_bytes``), decoded as
    ``_decode_replacing`` would: Arrow's UTF-8 check accepts exactly what Python's strict
    decoder does, and a column holding anything else is decoded value by value, replacing."""
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        array = None
    if is_bytes:
        if array is not None and array.type in (pa.binary(), pa.null()):
            try:
                return one_array(array.cast(pa.large_string()))
            except pa.ArrowInvalid:  # not UTF-8 somewhere in the column
                pass
        decoded = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values]
        return _text_array(tuple(decoded), is_bytes=False)
    if array is None or array.type not in (pa.string(), pa.null()):
        return None
    return one_array(array.cast(pa.large_string()))


def _text_frame(rows: Sequence, columns: list[str], is_bytes: bool) -> dict[str, pa.Array] | None:
    """The rows as one Arrow text array per column; None if a column is not all text."""
    if is_bytes and rows:
        arrays = _utf8_columns(rows, columns)
        if arrays is not None:
            return arrays
    by_column = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
    arrays = {}
    for name, values in zip(columns, by_column, strict=True):
        array = _text_array(values, is_bytes)
        if array is None:
            return None
        arrays[name] = array
    return arrays


def _utf8_columns(rows: Sequence, columns: list[str]) -> dict[str, pa.Array] | None:
    """SQLite rows of text as bytes (or NULL) as Arrow text columns, converted row-wise in one
    C++ pass (as one struct array of binary fields) instead of a Python tuple per column and a
    type inference per column: the arrays ``_text_array`` makes of them, at half the cost.
    None when a value is neither bytes nor NULL, or a column is not all UTF-8 (those take
    ``_text_array``'s way, which decodes them replacing)."""
    try:
        rows_array = pa.array(rows, type=pa.struct([(c, pa.large_binary()) for c in columns]))
        if isinstance(rows_array, pa.ChunkedArray):
            rows_array = rows_array.combine_chunks()
        return {
            name: rows_array.field(index).cast(pa.large_string())
            for index, name in enumerate(columns)
        }
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None


def _as_text_like_read_sql(rows: Sequence, columns: list[str], is_bytes: bool) -> pd.DataFrame:
    """Rows holding a value that is not text, converted as ``pd.read_sql_query(...,
    dtype="string")`` converts them (the CAST in ``read_table`` makes this the rare path)."""
    if is_bytes:
        rows = [
            tuple(v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in row)
            for row in rows
        ]
    return pd.DataFrame.from_records(
        [tuple(row) for row in rows], columns=columns, coerce_float=True
    ).astype("string")


def _may_hold(array: pa.Array) -> bool:
    """False only when no value of ``array`` can hold a C0 control character or U+FFFD: its
    UTF-8 bytes have no byte below 0x20 and no 0xEF (the first byte of U+FFFD's encoding)."""
    data = array.buffers()[2]
    if data is None:
        return False
    data_bytes = np.frombuffer(data, dtype=np.uint8)
    return bool((data_bytes < 0x20).any() or (data_bytes == 0xEF).any())


def _quarantine_unreadable_values(
    arrays: dict[str, pa.Array], dataset: SqlDataset, first_row: int, stats: ReadStats
) -> dict[str, pa.Array]:
    """Rows with a value nobody can trust become unreadable: values NA, ``_read_error`` set
    (the chunk's columns, then ``_read_error``)."""
    keys = set(dataset.key)
    rows = len(next(iter(arrays.values()))) if arrays else 0
    is_bad: dict[str, np.ndarray] = {}
    for column in dataset.columns:
        if not _may_hold(arrays[column]):
            continue
        pattern = (_UNREADABLE_KEY if column in keys else _UNREADABLE_VALUE).pattern
        matches = pc.match_substring_regex(arrays[column], pattern).fill_null(False)
        if pc.any(matches).as_py():
            is_bad[column] = matches.to_numpy(zero_copy_only=False)
    bad_rows = (
        np.flatnonzero(np.logical_or.reduce(list(is_bad.values())))
        if is_bad
        else np.empty(0, dtype=np.int64)
    )
    errors: list[str | None] = [None] * rows
    for position in bad_rows.tolist():
        column = next(c for c in dataset.columns if c in is_bad and is_bad[c][position])
        value = arrays[column][position].as_py()
        reason, what = next((r, w) for r, w, p in _VALUE_PROBLEMS if p.search(value))
        errors[position] = describe(
            reason,
            dataset.table,
            record=first_row + position,
            detail=f"column {column} holds {what}",
        )
    if len(bad_rows):
        is_row_bad = pa.array(np.isin(np.arange(rows), bad_rows))
        no_value = pa.scalar(None, pa.large_string())
        arrays = {c: pc.if_else(is_row_bad, no_value, a) for c, a in arrays.items()}
    stats.records += rows
    stats.unreadable += len(bad_rows)
    return {**arrays, READ_ERROR: pa.array(errors, pa.large_string())}


def _table_frame(arrays: dict[str, pa.Array]) -> pd.DataFrame:
    """A chunk of ``read_table_arrays`` as the frame ``read_table`` yields."""
    return pd.DataFrame({c: pd.arrays.ArrowStringArray(a) for c, a in arrays.items()})


def read_table(
    connection: sa.Connection, dataset: SqlDataset, chunk_rows: int, stats: ReadStats
) -> Iterator[pd.DataFrame]:
    """The table's rows in key order, as text; ``stats`` counts them and the unreadable ones.

    Chunks as ``pd.read_sql_query(query, chunksize=chunk_rows, dtype="string")`` gives them (one
    empty chunk for an empty table), built column-wise into Arrow text arrays from the driver's
    rows rather than through pandas' object arrays.
    """
    for arrays in read_table_arrays(connection, dataset, chunk_rows, stats):
        yield _table_frame(arrays)


@functools.lru_cache(maxsize=256)
def _text_query(table_name: str, columns: tuple[str, ...], key: tuple[str, ...]) -> sa.Select:
    """The table's columns as text, in key order (built once per process: statements are
    immutable)."""
    table = sa.table(table_name, *(sa.column(c) for c in columns))
    query = sa.select(*(sa.cast(table.c[c], sa.String).label(c) for c in columns))
    return query.order_by(*(table.c[k] for k in key))


def _statement(query: sa.Select, dialect: sa.Dialect) -> str:
    """``query`` (one of ``_text_query``) compiled to SQL text for ``dialect``, kept per query
    and kind of dialect: on a small table, compiling it was most of the read."""
    key = (query, type(dialect), dialect.server_version_info)
    statement = _STATEMENTS.get(key)
    if statement is None:
        if len(_STATEMENTS) >= 256:
            _STATEMENTS.clear()
        statement = _STATEMENTS[key] = str(query.compile(dialect=dialect))
    return statement


_STATEMENTS: dict[tuple, str] = {}


def read_table_arrays(
    connection: sa.Connection, dataset: SqlDataset, chunk_rows: int, stats: ReadStats
) -> Iterator[dict[str, pa.Array]]:
    """``read_table``'s chunks as the Arrow text arrays they are built from (the columns, then
    ``_read_error``): landing writes them as they are, without a pandas frame in between."""
    query = _text_query(dataset.table, tuple(dataset.columns), tuple(dataset.key))
    is_bytes = _decodes_text_replacing(connection)
    columns = dataset.columns

    def as_arrays(rows: Sequence) -> dict[str, pa.Array]:
        arrays = _text_frame(rows, columns, is_bytes)
        if arrays is None:
            frame = _as_text_like_read_sql(rows, columns, is_bytes)
            arrays = {c: pa.array(frame[c].array) for c in columns}
        return arrays

    first_row = 1
    for count, arrays in _fetch(connection, query, chunk_rows, is_bytes, as_arrays):
        if not count and first_row > 1:
            return
        yield _quarantine_unreadable_values(arrays, dataset, first_row, stats)
        if not count:
            return
        first_row += count


_Converted = TypeVar("_Converted")


def _fetch(
    connection: sa.Connection,
    query: sa.Select,
    chunk_rows: int,
    is_bytes: bool,
    convert: Callable[[Sequence], _Converted],
) -> Iterator[tuple[int, _Converted]]:
    """The query's rows, ``chunk_rows`` at a time, then an empty chunk: each chunk's row count
    and ``convert`` of its rows (the rows themselves are dropped before the next is fetched).

    SQLite: straight from a cursor of the connection's own DB-API connection (a SQLite cursor
    steps through the rows as they are fetched: nothing is buffered, and no SQLAlchemy row
    object is built per row). Other backends: a server-side cursor (``stream_results``).

    The cyclic garbage collector stays paused from the fetch until the rows are converted and
    freed (``_no_cycle_collection``): resumed while they were alive, its first pass would walk
    every row tuple of the chunk (about a quarter of ELVIS's read)."""
    if connection.dialect.name != "sqlite":
        streaming = connection.execution_options(stream_results=True, max_row_buffer=chunk_rows)
        result = streaming.execute(query)
        try:
            while True:
                with _no_cycle_collection():
                    rows = result.fetchmany(chunk_rows)
                    count, converted = len(rows), convert(rows)
                    del rows
                yield count, converted
                if not count:
                    return
        finally:
            result.close()
        return
    statement = _statement(query, connection.dialect)
    dbapi_error = connection.dialect.loaded_dbapi.Error
    cursor = connection.connection.cursor()
    try:
        with _text_as_bytes(connection, is_bytes):
            cursor.execute(statement)
        while True:
            with _no_cycle_collection():
                with _text_as_bytes(connection, is_bytes):
                    rows = cursor.fetchmany(chunk_rows)
                count, converted = len(rows), convert(rows)
                del rows
            yield count, converted
            if not count:
                return
    except dbapi_error as error:
        # The error SQLAlchemy raises for a failed statement (a stopped run's message names it).
        raise sa.exc.DBAPIError.instance(statement, None, error, dbapi_error) from error
    finally:
        cursor.close()


def read_sql_chunks(
    engine: sa.Engine, dataset: SqlDataset, chunk_rows: int
) -> Iterator[pd.DataFrame]:
    """The table's chunks without accounting (landing counts them in one snapshot)."""
    with snapshot(engine) as connection:
        yield from read_table(connection, dataset, chunk_rows, ReadStats(Path(dataset.table)))


# One reader per file format; each reads ONE file and fills its ReadStats as it goes.
RECORD_READERS: dict[FileFormat, Callable[[Path, FileDataset, ReadStats], Iterator[Record]]] = {
    FileFormat.DELIMITED: text_records.read_records,
    FileFormat.FIXED_WIDTH: text_records.read_records,
    FileFormat.HL7V2: hl7v2.read_records,
    FileFormat.XML: xml_records.read_records,
    FileFormat.JSONL: jsonl.read_records,
}


def read_file(path: Path, dataset: FileDataset, stats: ReadStats) -> Iterator[Record]:
    """The rows of one file of ``dataset``; ``stats`` counts what the reader saw."""
    return RECORD_READERS[dataset.format](path, dataset, stats)


# Readers that build a file's chunks column-wise (no Python object per value): the hot path of
# extraction. They yield exactly the frames ``frames(read_file(...))`` would.
FRAME_READERS: dict[
    FileFormat, Callable[[Path, FileDataset, ReadStats, int], Iterator[pd.DataFrame]]
] = {
    FileFormat.DELIMITED: text_records.read_frames,
    FileFormat.FIXED_WIDTH: text_records.read_frames,
}


def read_file_chunks_for_landing(
    path: Path, dataset: FileDataset, stats: ReadStats, chunk_rows: int
) -> Iterator[pa.Table] | Iterator[pd.DataFrame]:
    """``read_file_frames``' chunks, as the Arrow tables ``text_records.read_frames`` builds its
    frames of when it is the frame reader (landing takes either: the frame would only be turned
    back into the same table)."""
    if FRAME_READERS.get(dataset.format) is text_records.read_frames:
        return text_records.read_tables(path, dataset, stats, chunk_rows)
    return read_file_frames(path, dataset, stats, chunk_rows)


def read_file_frames(
    path: Path, dataset: FileDataset, stats: ReadStats, chunk_rows: int
) -> Iterator[pd.DataFrame]:
    """The rows of one file of ``dataset`` in chunks of at most ``chunk_rows``."""
    frame_reader = FRAME_READERS.get(dataset.format)
    if frame_reader is not None:
        return frame_reader(path, dataset, stats, chunk_rows)
    return frames(read_file(path, dataset, stats), dataset.column_names, chunk_rows)


def read_file_chunks(folder: Path, dataset: FileDataset, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Chunks of every file of the dataset, in file order (no accounting: see landing)."""
    files = matching_files(folder, dataset)
    records = chain.from_iterable(read_file(path, dataset, ReadStats(path)) for path in files)
    yield from frames(records, dataset.column_names, chunk_rows)
