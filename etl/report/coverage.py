"""Mapping coverage per system (``vardflytt coverage``): counts and shares only.

* **Columns**: the share of declared source columns the mappings use (see
  :mod:`etl.report.usage` for what counts as used), per dataset and per system.
* **Codes**: per batch, the share of extracted rows quarantined with reason ``unmapped_code``
  (a local code no crosswalk knows), per system and entity. Rows come from the batch's validated
  outcomes Parquet, else from the ``quarantine`` table; extracted rows from ``batch_accounting``,
  else from the landing manifest. A row is counted once, under the first problem found in it,
  so a row with an earlier problem and an unmapped code counts under the earlier problem.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import sqlalchemy as sa
from pydantic import BaseModel
from rich.markup import escape
from rich.table import Table

from etl.batch import BatchPaths, write_json
from etl.catalog import Catalog, SystemMappings
from etl.core.arrow import open_parquet
from etl.core.audit import SCOPE_BATCH, record_access
from etl.core.database import core_engine
from etl.core.tables import batch_accounting, quarantine
from etl.extract.landing import read_manifest
from etl.report.usage import unmapped_columns
from etl.settings import Settings
from etl.status import latest_batches

UNMAPPED_CODE = "unmapped_code"


class DatasetColumns(BaseModel):
    dataset: str
    declared: int
    mapped: int
    share: float | None
    unmapped: list[str]


class EntityCodes(BaseModel):
    entity: str
    dataset: str
    extracted_rows: int | None
    extracted_from: str | None  # "batch_accounting" or "manifest"
    unmapped_code_rows: int | None
    unmapped_code_from: str | None  # "validated_outcomes" or "quarantine"
    share: float | None
    by_field: dict[str, int]


class BatchCodes(BaseModel):
    batch_id: str
    extracted_rows: int
    unmapped_code_rows: int
    share: float | None
    entities: list[EntityCodes]


class SystemCoverage(BaseModel):
    system: str
    declared_columns: int
    mapped_columns: int
    column_share: float | None
    datasets: list[DatasetColumns]
    batches: list[BatchCodes]


class CoverageReport(BaseModel):
    batch_ids: list[str]
    notes: list[str]
    systems: list[SystemCoverage]


def share(part: int | None, whole: int | None) -> float | None:
    return round(part / whole, 6) if part is not None and whole else None


def column_coverage(system: SystemMappings) -> list[DatasetColumns]:
    unmapped = unmapped_columns(system)
    datasets = []
    for name in system.spec.datasets:
        declared = len(system.spec.dataset_columns(name))
        missing = unmapped.get(name, [])
        datasets.append(
            DatasetColumns(
                dataset=name,
                declared=declared,
                mapped=declared - len(missing),
                share=share(declared - len(missing), declared),
                unmapped=missing,
            )
        )
    return datasets


class _CoreDatabase:
    """Read-only look-ups in the core database; absent (no file, unreachable) means empty."""

    def __init__(self, settings: Settings, notes: list[str]) -> None:
        self.engine: sa.Engine | None = None
        url = settings.resolved_core_url
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
            notes.append("no core database yet: counts come from the batch files only")
            return
        try:
            self.engine = core_engine(url)
        except sa.exc.OperationalError:
            notes.append("core database not reachable: counts come from the batch files only")

    def latest_batches(self) -> list[str]:
        if self.engine is None:
            return []
        with self.engine.connect() as connection:
            return sorted(latest_batches(connection))

    def extracted(self, batch_id: str, system: str) -> dict[str, int]:
        if self.engine is None:
            return {}
        query = sa.select(batch_accounting.c.entity, batch_accounting.c.extracted).where(
            (batch_accounting.c.batch_id == batch_id) & (batch_accounting.c.source_system == system)
        )
        with self.engine.connect() as connection:
            return {row.entity: int(row.extracted) for row in connection.execute(query)}

    def unmapped_code_rows(self, batch_id: str, system: str) -> dict[str, dict[str, int]]:
        """``{entity: {field: rows}}`` of rows quarantined for an unmapped code."""
        if self.engine is None:
            return {}
        query = (
            sa.select(quarantine.c.entity, quarantine.c.field, sa.func.count().label("rows"))
            .where(
                (quarantine.c.batch_id == batch_id)
                & (quarantine.c.source_system == system)
                & (quarantine.c.reason == UNMAPPED_CODE)
            )
            .group_by(quarantine.c.entity, quarantine.c.field)
        )
        found: dict[str, dict[str, int]] = {}
        with self.engine.connect() as connection:
            for row in connection.execute(query):
                found.setdefault(row.entity, {})[row.field or "(unknown)"] = int(row.rows)
        return found


def unmapped_codes_in_outcomes(path: Path, chunk_rows: int) -> dict[str, int]:
    """``{field: rows}`` with reason ``unmapped_code`` in one outcomes Parquet, chunk by chunk."""
    counts: dict[str, int] = {}
    source = open_parquet(path)
    for batch in source.iter_batches(batch_size=chunk_rows, columns=["reason", "field"]):
        hits = batch.filter(pc.fill_null(pc.equal(batch.column("reason"), UNMAPPED_CODE), False))
        if hits.num_rows == 0:
            continue
        fields = pc.fill_null(hits.column("field"), "(unknown)")
        for item in pc.value_counts(fields).to_pylist():
            counts[item["values"]] = counts.get(item["values"], 0) + int(item["counts"])
    return counts


def batch_codes(
    settings: Settings,
    system: SystemMappings,
    batch_id: str,
    database: _CoreDatabase,
) -> BatchCodes | None:
    """Unmapped-code rows of one system in one batch; None when the batch has no such system."""
    paths = BatchPaths.of(settings, batch_id, system.name)
    accounted = database.extracted(batch_id, system.name)
    quarantined = None
    manifest = None
    if paths.manifest_file.exists():
        manifest = read_manifest(settings, batch_id, system.name)
    if manifest is None and not accounted:
        return None
    entities = []
    for entity, mapping in system.entities.items():
        extracted, extracted_from = None, None
        if entity in accounted:
            extracted, extracted_from = accounted[entity], "batch_accounting"
        elif manifest is not None and mapping.dataset in manifest.datasets:
            extracted, extracted_from = manifest.datasets[mapping.dataset].extracted, "manifest"
        outcomes = paths.stage_file("validated", entity, "outcomes")
        by_field: dict[str, int] | None = None
        found_in = None
        if outcomes.exists():
            by_field = unmapped_codes_in_outcomes(outcomes, settings.chunk_rows)
            found_in = "validated_outcomes"
        elif entity in accounted:
            if quarantined is None:
                quarantined = database.unmapped_code_rows(batch_id, system.name)
            by_field = quarantined.get(entity, {})
            found_in = "quarantine"
        rows = sum(by_field.values()) if by_field is not None else None
        entities.append(
            EntityCodes(
                entity=entity,
                dataset=mapping.dataset,
                extracted_rows=extracted,
                extracted_from=extracted_from,
                unmapped_code_rows=rows,
                unmapped_code_from=found_in,
                share=share(rows, extracted),
                by_field=dict(sorted((by_field or {}).items())),
            )
        )
    known = [
        e for e in entities if e.extracted_rows is not None and e.unmapped_code_rows is not None
    ]
    extracted_total = sum(e.extracted_rows or 0 for e in known)
    unmapped_total = sum(e.unmapped_code_rows or 0 for e in known)
    return BatchCodes(
        batch_id=batch_id,
        extracted_rows=extracted_total,
        unmapped_code_rows=unmapped_total,
        share=share(unmapped_total, extracted_total),
        entities=entities,
    )


def coverage_report(
    settings: Settings, catalog: Catalog, batch_ids: list[str] | None = None
) -> CoverageReport:
    """Column coverage of every system; code coverage of the given (or latest loaded) batches."""
    notes: list[str] = []
    database = _CoreDatabase(settings, notes)
    batches = list(batch_ids) if batch_ids else database.latest_batches()
    if not batches:
        notes.append("no batch given or loaded: column coverage only")
    for batch in batches:  # code coverage reads the batch's landed code columns, row by row
        record_access(
            settings,
            "coverage",
            "",
            batch,
            0,
            purpose="mapping coverage",
            subject_scope=SCOPE_BATCH,
        )
    systems = []
    for name, system in catalog.systems.items():
        datasets = column_coverage(system)
        declared = sum(d.declared for d in datasets)
        mapped = sum(d.mapped for d in datasets)
        codes = [batch_codes(settings, system, batch, database) for batch in batches]
        systems.append(
            SystemCoverage(
                system=name,
                declared_columns=declared,
                mapped_columns=mapped,
                column_share=share(mapped, declared),
                datasets=datasets,
                batches=[c for c in codes if c is not None],
            )
        )
    for batch in batches:
        if not any(b.batch_id == batch for s in systems for b in s.batches):
            notes.append(f"batch {batch}: no landed files or accounting for any system")
    return CoverageReport(batch_ids=batches, notes=notes, systems=systems)


def coverage_path(settings: Settings) -> Path:
    return settings.home / "reports" / "coverage" / "coverage.json"


def write_coverage(report: CoverageReport, path: Path) -> Path:
    write_json(path, report.model_dump(mode="json"))
    return path


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _count(value: int | None) -> str:
    return "–" if value is None else str(value)


def coverage_tables(report: CoverageReport) -> list[Table]:
    columns = Table(title="mapped source columns (declared in system.yaml, used by a mapping)")
    for heading in ("system", "dataset", "declared", "mapped", "share", "unmapped columns"):
        columns.add_column(
            heading, justify="right" if heading in {"declared", "mapped", "share"} else "left"
        )
    for system in report.systems:
        for dataset in system.datasets:
            columns.add_row(
                escape(system.system),
                escape(dataset.dataset),
                str(dataset.declared),
                str(dataset.mapped),
                _percent(dataset.share),
                escape(", ".join(dataset.unmapped)) or "–",
            )
        columns.add_row(
            f"[bold]{escape(system.system)}[/bold]",
            "[bold]all datasets[/bold]",
            str(system.declared_columns),
            str(system.mapped_columns),
            f"[bold]{_percent(system.column_share)}[/bold]",
            "",
            end_section=True,
        )
    tables = [columns]
    if any(system.batches for system in report.systems):
        codes = Table(title=f"rows with unmapped codes ({UNMAPPED_CODE}) per extracted rows")
        for heading in (
            "batch",
            "system",
            "entity",
            "extracted",
            "unmapped code",
            "share",
            "fields",
        ):
            codes.add_column(
                heading,
                justify="right" if heading in {"extracted", "unmapped code", "share"} else "left",
            )
        for system in report.systems:
            for batch in system.batches:
                for entity in batch.entities:
                    codes.add_row(
                        escape(batch.batch_id),
                        escape(system.system),
                        escape(entity.entity),
                        _count(entity.extracted_rows),
                        _count(entity.unmapped_code_rows),
                        _percent(entity.share),
                        escape(", ".join(f"{f} {n}" for f, n in entity.by_field.items())) or "–",
                    )
                codes.add_row(
                    escape(batch.batch_id),
                    f"[bold]{escape(system.system)}[/bold]",
                    "[bold]all entities[/bold]",
                    str(batch.extracted_rows),
                    str(batch.unmapped_code_rows),
                    f"[bold]{_percent(batch.share)}[/bold]",
                    "",
                    end_section=True,
                )
        tables.append(codes)
    return tables
