"""Streaming readers, one per source format, yielding chunks of raw string columns.

Values stay exactly as the source has them (as text); parsing is the transform stage's job.
Undecodable bytes become U+FFFD so the row can be quarantined instead of failing the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from etl.catalog import FileDataset, FileFormat, SqlDataset, SystemSpec
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


def check_file_schema(system: str, folder: Path, dataset: FileDataset) -> None:
    path = folder / dataset.file
    if not path.exists():
        raise SchemaDriftError(f"schema drift in {system} file {path}: the file is missing")
    with path.open("rb") as handle:
        first_line = handle.readline().rstrip(b"\r\n")
    if dataset.format is FileFormat.FIXED_WIDTH:
        expected = sum(field.width for field in dataset.fields)
        if first_line and len(first_line) != expected:
            raise SchemaDriftError(
                f"schema drift in {system} file {path}: record 1 is {len(first_line)} characters, "
                f"the spec's fields add up to {expected}. Fix the field widths in mappings/."
            )
        return
    header = first_line.decode(dataset.encoding, errors="replace").split(dataset.delimiter)
    header = [column.strip().strip('"') for column in header]
    if header != dataset.columns:
        raise SchemaDriftError(_diff(f"{system} file {path}", dataset.columns, header))


def read_sql_chunks(
    engine: sa.Engine, dataset: SqlDataset, chunk_rows: int
) -> Iterator[pd.DataFrame]:
    table = sa.table(dataset.table, *(sa.column(c) for c in dataset.columns))
    query = sa.select(*(sa.cast(table.c[c], sa.String).label(c) for c in dataset.columns))
    query = query.order_by(*(table.c[key] for key in dataset.key))
    with engine.connect().execution_options(stream_results=True, max_row_buffer=chunk_rows) as conn:
        yield from pd.read_sql_query(query, conn, chunksize=chunk_rows, dtype="string")


def read_file_chunks(folder: Path, dataset: FileDataset, chunk_rows: int) -> Iterator[pd.DataFrame]:
    path = folder / dataset.file
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
