"""Streaming readers, one per source format, yielding chunks of raw string columns.

Values stay exactly as the source has them (as text); parsing is the transform stage's job.
Undecodable bytes become U+FFFD so the row can be quarantined instead of failing the file.
A file dataset's ``file`` may be a glob pattern (``archive/*.hl7``): the matching files are
read in sorted order as one dataset. HL7 v2, XML and JSON lines are read record by record
(``hl7v2``, ``xml_records``, ``jsonl``); a record that cannot be parsed is still a row, with
``_read_error`` saying why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from etl.catalog import FileDataset, FileFormat, SqlDataset, SystemSpec
from etl.extract import hl7v2, jsonl, xml_records
from etl.extract.records import DRIFT_SAMPLE_RECORDS, compare_paths, frames
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
    return url.format(estate_dir=settings.resolved_estate_dir)


def source_path(spec: SystemSpec, settings: Settings) -> Path:
    connection = spec.connection
    path = os.environ.get(connection.path_env or "") or connection.default_path
    if not path:
        raise SourceUnavailableError(
            f"{spec.system}: no export folder; set {connection.path_env} to the folder"
        )
    return Path(path.format(estate_dir=settings.resolved_estate_dir))


def read_only_engine(url: str) -> sa.Engine:
    """An engine that cannot write: the legacy source is never modified."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if not Path(database).exists():
            raise SourceUnavailableError(f"source database file {database} does not exist")
        return sa.create_engine(f"sqlite:///file:{database}?mode=ro&uri=true")
    if parsed.get_backend_name() == "postgresql":
        # Keep any options the URL already has (such as a search_path) and add read-only.
        options = " ".join(
            filter(None, [parsed.query.get("options"), "-c default_transaction_read_only=on"])
        )
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
        expected = sum(field.width for field in dataset.fields)
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


def read_sql_chunks(
    engine: sa.Engine, dataset: SqlDataset, chunk_rows: int
) -> Iterator[pd.DataFrame]:
    table = sa.table(dataset.table, *(sa.column(c) for c in dataset.columns))
    query = sa.select(*(sa.cast(table.c[c], sa.String).label(c) for c in dataset.columns))
    query = query.order_by(*(table.c[key] for key in dataset.key))
    with engine.connect().execution_options(stream_results=True, max_row_buffer=chunk_rows) as conn:
        yield from pd.read_sql_query(query, conn, chunksize=chunk_rows, dtype="string")


def read_file_chunks(folder: Path, dataset: FileDataset, chunk_rows: int) -> Iterator[pd.DataFrame]:
    files = matching_files(folder, dataset)
    record_readers = {
        FileFormat.HL7V2: hl7v2.read_records,
        FileFormat.XML: xml_records.read_files,
        FileFormat.JSONL: jsonl.read_files,
    }
    if dataset.format in record_readers:
        records = record_readers[dataset.format](files, dataset)
        yield from frames(records, dataset.column_names, chunk_rows)
        return
    for path in files:
        yield from _read_text_table(path, dataset, chunk_rows)


def _read_text_table(path: Path, dataset: FileDataset, chunk_rows: int) -> Iterator[pd.DataFrame]:
    common = {
        "dtype": "string",
        "encoding": dataset.encoding,
        "encoding_errors": "replace",
        "keep_default_na": False,
        "chunksize": chunk_rows,
    }
    if dataset.format is FileFormat.FIXED_WIDTH:
        reader = pd.read_fwf(
            path,
            widths=[field.width for field in dataset.fields],
            names=dataset.column_names,
            header=None,
            # Only the line ending is padding; inner spaces stay for the transform to judge.
            delimiter="\r\n",
            **common,
        )
    else:
        reader = pd.read_csv(
            path, sep=dataset.delimiter, header=0, quotechar='"', engine="c", **common
        )
    with reader:
        yield from reader
