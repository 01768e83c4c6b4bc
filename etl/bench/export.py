"""Throughput of the FHIR export (``vardflytt export fhir --all``) over the core a bench run loaded.

Cheap by design: one export of the SQLite run's core, in this process, timed with the RSS
sampler the migration uses. Rows are the rows of the exported entities' core tables (counted
before, untimed); resources are NDJSON lines written (a row whose patient the core lacks is
refused). The peak is this process's RSS during the export (streaming: bounded by the chunk, not
by the core's size).
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

from etl.bench.figures import rows_per_second, shown, to_mib
from etl.bench.memory import RssSampler, measure


def measure_export(core_url: str, out_dir: Path, chunk_size: int = 5000) -> dict[str, Any]:
    """Export every core row to ``out_dir`` (removed afterwards); seconds, rates, peak RSS."""
    import sqlalchemy as sa

    from etl.core.database import core_engine
    from etl.core.tables import ENTITY_TABLES
    from etl.export.bulk import SPECS, export_fhir

    engine = core_engine(core_url)
    try:
        with engine.connect() as connection:
            rows = sum(
                connection.scalar(sa.select(sa.func.count()).select_from(ENTITY_TABLES[entity]))
                or 0
                for entity in dict.fromkeys(spec.entity for spec in SPECS)
            )
        with RssSampler() as sampler, measure(sampler) as timing:
            result = export_fhir(
                engine,
                out_dir,
                wave=None,
                transaction_time=dt.datetime.now(dt.UTC),
                chunk_size=chunk_size,
                request="vardflytt bench (export fhir --all)",
            )
        size = sum(p.stat().st_size for p in out_dir.iterdir())
    finally:
        engine.dispose()
        shutil.rmtree(out_dir, ignore_errors=True)
    resources = sum(result.counts.values())
    return {
        "seconds": round(timing.seconds, 3),
        "cpu_seconds": None if timing.cpu_seconds is None else round(timing.cpu_seconds, 3),
        "chunk_size": chunk_size,
        "core_rows": rows,
        "resources": resources,
        "unresolved_references": result.issues,
        "rows_per_second": rows_per_second(rows, timing.seconds),
        "resources_per_second": rows_per_second(resources, timing.seconds),
        "ndjson_mib": to_mib(size),
        "start_rss_mib": to_mib(timing.start_rss_bytes),
        "peak_rss_mib": to_mib(timing.peak_rss_bytes),
        "counts": result.counts,
    }


def export_lines(export: dict[str, Any]) -> list[str]:
    """The export's line in ``results.md``."""
    if export.get("error"):
        return ["## FHIR export", "", f"failed: {export['error']}"]
    return [
        "## FHIR export (SQLite core, --all)",
        "",
        f"{export['resources']:,} resources from {export['core_rows']:,} core rows in "
        f"{shown(export['seconds'])} s: {shown(export['rows_per_second'], 0)} rows/s, "
        f"{shown(export['resources_per_second'], 0)} resources/s; "
        f"{shown(export['ndjson_mib'], 1)} MiB NDJSON; peak RSS {shown(export['peak_rss_mib'], 1)} "
        f"MiB (from {shown(export['start_rss_mib'], 1)}).",
    ]
