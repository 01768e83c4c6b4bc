"""PostgreSQL: a run in a fresh schema, and the cutover figures (pipeline load against a plain
``COPY``, rollback against load)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from etl.bench.figures import (
    SYSTEMS,
    TO_SQL_CHUNK_ROWS,
    bench_schema_name,
    redact_url,
    rows_per_second,
    url_with_search_path,
)
from etl.bench.migration import _in_process_run, bench_settings
from etl.settings import Settings


def cutover_figures(
    settings: Settings,
    label: str,
    log: Callable[[str], None],
    systems: tuple[str, ...] = SYSTEMS,
    to_sql: bool = True,
) -> dict[str, Any]:
    """PostgreSQL: the pipeline's load (staging by reference, then promotion: COPY of new rows,
    upsert with history of changed ones) against a plain ``COPY`` of the same final rows into
    empty copies of the same tables, and the time a rollback of each batch takes against its
    load. Measured in the same run, same server; beside the wall seconds, this process's CPU
    seconds of the load and of the plain ``COPY`` (the server's are not in them). ``to_sql=False``
    leaves out the slow naive peer (its figures are then None)."""
    from etl.core.database import core_engine

    engine = core_engine(settings.resolved_core_url)
    measured = {
        system: _system_cutover(engine, settings, system, label, log, to_sql) for system in systems
    }
    per_system = {
        system: {
            "rows": figures["rows"],
            "load_seconds": round(figures["load"], 3),
            "load_cpu_seconds": round(figures["load_cpu"], 3),
            "plain_copy_seconds": round(figures["copy"], 3),
            "plain_copy_cpu_seconds": round(figures["copy_cpu"], 3),
            "to_sql_seconds": round(figures["to_sql"], 3) if to_sql else None,
            "rollback_seconds": round(figures["undo"], 3),
        }
        for system, figures in measured.items()
    }
    total = {key: sum(figures[key] for figures in measured.values()) for key in _CUTOVER_FIGURES}
    rows = int(total["rows"])
    load_rate = rows_per_second(rows, total["load"])
    copy_rate = rows_per_second(rows, total["copy"])
    return {
        "plain_copy_seconds": round(total["copy"], 3),
        "plain_copy_cpu_seconds": round(total["copy_cpu"], 3),
        "to_sql_seconds": round(total["to_sql"], 3) if to_sql else None,
        "to_sql_rows_per_second": rows_per_second(rows, total["to_sql"]) if to_sql else None,
        "rows": rows,
        "load_rows_per_second": load_rate,
        "plain_copy_rows_per_second": copy_rate,
        "load_to_plain_copy_ratio": round(load_rate / copy_rate, 3)
        if load_rate and copy_rate
        else None,
        "rollback_seconds": round(total["undo"], 3),
        "load_seconds": round(total["load"], 3),
        "load_cpu_seconds": round(total["load_cpu"], 3),
        "rollback_to_load_ratio": round(total["undo"] / total["load"], 3)
        if total["load"]
        else None,
        "per_system": per_system,
    }


# What ``_system_cutover`` measures of one system (seconds unless named otherwise).
_CUTOVER_FIGURES = ("rows", "load", "load_cpu", "copy", "copy_cpu", "to_sql", "undo")


def _system_cutover(
    engine: Any,
    settings: Settings,
    system: str,
    label: str,
    log: Callable[[str], None],
    to_sql: bool,
) -> dict[str, float]:
    """One system of ``cutover_figures``: its batch rolled back (timed), loaded again (timed,
    wall and CPU), its final rows copied plainly into empty copies of the tables and, with
    ``to_sql``, written by pandas' ``to_sql``; the figures unrounded, keyed as
    ``_CUTOVER_FIGURES``."""
    import pyarrow as pa

    from etl import pipeline
    from etl.batch import BatchPaths
    from etl.core.arrow import entity_schema, open_parquet
    from etl.load.bulk import bulk_insert
    from etl.load.promote import rollback

    batch_id = pipeline.batch_id_for(system, f"bench_{label}")
    log(f"{label}: {system} rollback (timed)")
    started = time.perf_counter()
    with engine.begin() as connection:
        rollback(connection, batch_id)
    undo = time.perf_counter() - started
    log(f"{label}: {system} load again: stage with COPY + promote (timed)")
    started, cpu_started = time.perf_counter(), time.process_time()
    report = pipeline.load(system, batch_id, run_id=f"bench_{label}", settings=settings)
    load = time.perf_counter() - started
    load_cpu = time.process_time() - cpu_started
    log(f"{label}: {system} plain COPY of the same rows into empty copies of the tables")
    paths = BatchPaths.of(settings, batch_id, system)
    entities = [e["entity"] for e in report["entities"]]
    copy = copy_cpu = system_to_sql = 0.0
    with engine.begin() as connection:
        for entity in entities:
            table = _empty_copy(connection, entity, "copy")
            source = open_parquet(paths.stage_file("validated", entity))
            columns = entity_schema(entity).names
            started, cpu_started = time.perf_counter(), time.process_time()
            for batch in source.iter_batches(batch_size=settings.chunk_rows, columns=columns):
                bulk_insert(connection, table, pa.Table.from_batches([batch]))
            copy += time.perf_counter() - started
            copy_cpu += time.process_time() - cpu_started
            connection.exec_driver_sql(f'DROP TABLE "{table}"')
    if to_sql:
        log(f"{label}: {system} pandas to_sql(method='multi') of the same rows (naive peer)")
        with engine.begin() as connection:
            for entity in entities:
                system_to_sql += _to_sql_seconds(
                    connection, entity, paths.stage_file("validated", entity), settings.chunk_rows
                )
    return {
        "rows": sum(e["staged"] for e in report["entities"]),
        "load": load,
        "load_cpu": load_cpu,
        "copy": copy,
        "copy_cpu": copy_cpu,
        "to_sql": system_to_sql,
        "undo": undo,
    }


def _empty_copy(connection: Any, entity: str, kind: str) -> str:
    """An empty table shaped like the core's ``entity`` (same types, constraints, indexes)."""
    table = f"bench_{kind}_{entity}"
    connection.exec_driver_sql(f'DROP TABLE IF EXISTS "{table}"')
    connection.exec_driver_sql(f'CREATE TABLE "{table}" (LIKE "{entity}" INCLUDING ALL)')
    return table


def _to_sql_seconds(connection: Any, entity: str, parquet_file: Path, chunk_rows: int) -> float:
    """Seconds pandas ``to_sql(method="multi")`` takes to insert the file's rows into an empty
    copy of ``entity``: what a data engineer writes first. Reading Parquet into pandas is not
    timed (the pipeline's own read is not timed in the COPY figure either)."""

    from etl.core.arrow import entity_schema, open_parquet

    table = _empty_copy(connection, entity, "to_sql")
    columns = entity_schema(entity).names
    # PostgreSQL takes at most 65,535 parameters per statement.
    chunksize = max(1, min(TO_SQL_CHUNK_ROWS, 65_000 // max(1, len(columns))))
    seconds = 0.0
    for batch in open_parquet(parquet_file).iter_batches(batch_size=chunk_rows, columns=columns):
        frame = batch.to_pandas()
        started = time.perf_counter()
        frame.to_sql(
            table, connection, if_exists="append", index=False, method="multi", chunksize=chunksize
        )
        seconds += time.perf_counter() - started
    connection.exec_driver_sql(f'DROP TABLE "{table}"')
    return seconds


@contextmanager
def fresh_schema(
    base_url: str, log: Callable[[str], None], schema: str | None = None
) -> Iterator[str]:
    """A URL on a new schema of the server, dropped on leaving (its pooled connections closed)."""
    import sqlalchemy as sa

    from etl.core.database import core_engine

    schema = schema or bench_schema_name()
    admin = sa.create_engine(base_url)
    try:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = url_with_search_path(base_url, schema)
        log(f"postgresql: schema {schema} created")
        try:
            yield url
        finally:
            core_engine(url).dispose()
            with admin.begin() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            log(f"postgresql: schema {schema} dropped")
    finally:
        admin.dispose()


def _postgres_run(
    base_url: str,
    run_dir: Path,
    estate: Path,
    chunk_rows: int,
    as_of: dt.date,
    log: Callable[[str], None],
    with_cutover: bool = True,
    jobs: int = 1,
    repeats: int = 1,
) -> dict[str, Any]:
    """Load into a fresh schema on the server (dropped afterwards in any case), ``repeats``
    times, each with its plain COPY beside it (``median_repeat`` picks the run reported)."""
    from etl.bench.goals import median_repeat

    runs = []
    for index in range(repeats):
        schema = bench_schema_name()
        home = run_dir / ("postgresql" if index == 0 else f"postgresql_{index + 1}")
        with fresh_schema(base_url, log, schema) as url:
            settings = bench_settings(home, estate, chunk_rows, url)
            log(f"postgresql: repeat {index + 1} of {repeats}")
            result = _in_process_run(
                "postgresql",
                "postgresql",
                settings,
                as_of,
                log,
                jobs=jobs,
                core_url=redact_url(url),
                schema=schema,
            )
            if with_cutover:
                result["cutover"] = cutover_figures(settings, "postgresql", log, to_sql=index == 0)
        runs.append(result)
    return median_repeat(runs) if repeats > 1 else runs[0]
