"""The steward's code work (``vardflytt codes unmapped``): the source codes no crosswalk maps.

Per system, batch, entity, ``map_code`` column and code: the landed rows carrying the code, the
rows the batch quarantined for it, and the crosswalk file that misses it. Codes are values of a
code list, not patient data; only counts and codes leave this module. A value that is not
code-shaped (too long, spaces, other characters: free text typed into a code field) or that looks
like an identity number is never shown: those rows are counted under :data:`MASKED`.

* **rows**: landed rows whose cleaned value (trimmed, upper case, as ``map_code`` reads it) no
  crosswalk row maps (``unmapped``), or only a ``proposed`` row maps (``proposed``; quarantined
  as ``unapproved_code`` while ``VARDFLYTT_REQUIRE_APPROVED_CODES`` is on). Counted in the
  landed Parquet, so a code in a row quarantined earlier for another reason is listed too.
* **quarantined**: of those, rows the batch quarantined for this column with reason
  ``unmapped_code``/``unapproved_code``: the rows behind ``vardflytt coverage``'s
  unmapped-code count (the same outcomes files, :func:`etl.report.coverage.batch_codes`), by
  code. None when the batch has no outcomes file for the entity yet.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel
from rich.markup import escape
from rich.table import Table

from etl.batch import BatchPaths
from etl.catalog import PROPOSED, Catalog, ColumnMapping, EntityMapping, SystemMappings
from etl.core.arrow import open_parquet
from etl.core.audit import SCOPE_BATCH, record_access
from etl.core.vocabulary import MapCodeArgs, clean_text
from etl.extract.landing import ROW_NUMBER
from etl.layout import CROSSWALK_DIR
from etl.report.coverage import UNMAPPED_CODE, _CoreDatabase
from etl.report.masking import contains_identity_number
from etl.settings import Settings

UNAPPROVED_CODE = "unapproved_code"
UNMAPPED, AWAITING_APPROVAL = "unmapped", PROPOSED
# A code as code lists write them: letters, digits and . - _ / : + , at most 32 characters.
CODE_PATTERN = r"[A-Z0-9ÅÄÖ][A-Z0-9ÅÄÖ._/:+\-]{0,31}"
MASKED = "(masked: not code-shaped)"
TEMPLATE_COLUMNS = (
    "crosswalk",
    "source_code",
    "target_code",
    "note",
    "status",
    "decided_by",
    "decided_at",
)


class UnmappedCode(BaseModel):
    system: str
    batch_id: str
    entity: str
    dataset: str
    column: str
    crosswalk: str
    crosswalk_file: str
    code: str
    status: str  # "unmapped" or "proposed" (mapped only by a proposed row)
    rows: int
    quarantined_rows: int | None


class CodesListing(BaseModel):
    batches: dict[str, str]  # system -> the batch listed
    notes: list[str]
    codes: list[UnmappedCode]

    def totals(self) -> dict[str, int]:
        """Rows with an unmapped (or only proposed) code, per system."""
        totals: Counter[str] = Counter()
        for code in self.codes:
            totals[code.system] += code.rows
        return dict(totals)


def _code_columns(mapping: EntityMapping) -> list[tuple[ColumnMapping, MapCodeArgs]]:
    return [
        (column, column.parsed_args())
        for column in mapping.columns
        if column.transform == "map_code" and column.source
    ]


def _latest_landed_batch(settings: Settings, system: str) -> str | None:
    """Without a core database: the batch whose landed manifest for ``system`` is newest."""
    root = settings.resolved_landing_dir
    if not root.is_dir():
        return None
    found = [
        (manifest.stat().st_mtime_ns, batch.name)
        for batch in root.iterdir()
        if (manifest := BatchPaths(batch / system).manifest_file).exists()
    ]
    return max(found)[1] if found else None


def _quarantined_rows(paths: BatchPaths, entity: str, column: str) -> set[int] | None:
    """Row numbers the batch quarantined for an unmapped or unapproved code in ``column``."""
    for stage in ("validated", "transformed"):
        path = paths.stage_file(stage, entity, "outcomes")
        if path.exists():
            table = pq.read_table(path, columns=[ROW_NUMBER, "reason", "field"])
            hits = pc.and_(
                pc.is_in(table.column("reason"), pa.array([UNMAPPED_CODE, UNAPPROVED_CODE])),
                pc.equal(table.column("field"), column),
            )
            chosen = table.filter(pc.fill_null(hits, False))
            return set(chosen.column(ROW_NUMBER).to_pylist())
    return None


def _shown(code: str) -> str:
    """The code itself, or :data:`MASKED` when it could be free text or an identity number."""
    if pd.isna(code) or contains_identity_number(code):
        return MASKED
    return code


def _column_codes(
    landed: Path,
    column: str,
    table: dict[str, str],
    proposed: frozenset[str],
    args: MapCodeArgs,
    quarantined: set[int] | None,
    chunk_rows: int,
) -> dict[tuple[str, str], tuple[int, int]]:
    """``{(code, status): (rows, quarantined rows)}`` over the landed column, chunk by chunk."""
    counts: Counter[tuple[str, str]] = Counter()
    held: Counter[tuple[str, str]] = Counter()
    source = open_parquet(landed)
    for batch in source.iter_batches(batch_size=chunk_rows, columns=[ROW_NUMBER, column]):
        frame = batch.to_pandas()
        cleaned = clean_text(frame[column]).str.upper()
        is_standard = (
            cleaned.str.fullmatch(args.standard_pattern).fillna(False)
            if args.standard_pattern
            else pd.Series(False, index=cleaned.index)
        )
        is_known = cleaned.isin(table.keys())
        is_proposed = cleaned.isin(proposed) & is_known
        open_ = cleaned.notna() & ~is_standard & (~is_known | is_proposed)
        if not open_.any():
            continue
        codes = cleaned[open_]
        is_code = codes.str.fullmatch(CODE_PATTERN).fillna(False)
        shown = codes.where(is_code, MASKED).map(_shown)
        status = pd.Series(UNMAPPED, index=codes.index).mask(is_proposed[open_], AWAITING_APPROVAL)
        keys = list(zip(shown, status, strict=True))
        counts.update(keys)
        if quarantined:
            is_held = frame.loc[open_, ROW_NUMBER].isin(quarantined).to_numpy()
            held.update(key for key, hit in zip(keys, is_held, strict=True) if hit)
    return {key: (rows, held[key]) for key, rows in counts.items()}


def _chosen_batches(
    settings: Settings, systems: list[SystemMappings], batch_id: str | None, notes: list[str]
) -> dict[str, str]:
    """Per system, the given batch, else its latest loaded one, else its newest landed one."""
    latest = [] if batch_id is not None else _CoreDatabase(settings, notes).latest_batches()
    batches: dict[str, str] = {}
    for mappings in systems:
        if batch_id is not None:
            candidates = [batch_id]
        else:
            landed_batch = _latest_landed_batch(settings, mappings.name)
            candidates = [*latest, *([landed_batch] if landed_batch else [])]
        for candidate in candidates:
            if BatchPaths.of(settings, candidate, mappings.name).manifest_file.exists():
                batches[mappings.name] = candidate
                break
    return batches


def _entity_codes(
    settings: Settings,
    catalog: Catalog,
    system: str,
    batch: str,
    entity: str,
    mapping: EntityMapping,
    notes: list[str],
) -> list[UnmappedCode]:
    columns = _code_columns(mapping)
    if not columns:
        return []
    paths = BatchPaths.of(settings, batch, system)
    landed = paths.landed_file(mapping.dataset)
    if not landed.exists():
        notes.append(f"{system} {batch}: {mapping.dataset} not landed (retention?)")
        return []
    present = set(pq.read_schema(landed).names)
    found: list[UnmappedCode] = []
    for column, args in columns:
        source = column.source or ""
        if source not in present:
            notes.append(
                f"{system}.{entity}.{column.target}: {source} comes from a lookup, not the "
                "landed file: not listed"
            )
            continue
        quarantined = _quarantined_rows(paths, entity, source)
        counted = _column_codes(
            landed,
            source,
            catalog.crosswalks[args.crosswalk],
            catalog.proposed_codes.get(args.crosswalk, frozenset()),
            args,
            quarantined,
            settings.chunk_rows,
        )
        file = catalog.root / CROSSWALK_DIR / f"{args.crosswalk}.csv"
        found.extend(
            UnmappedCode(
                system=system,
                batch_id=batch,
                entity=entity,
                dataset=mapping.dataset,
                column=source,
                crosswalk=args.crosswalk,
                crosswalk_file=str(file),
                code=code,
                status=status,
                rows=rows,
                quarantined_rows=None if quarantined is None else held,
            )
            for (code, status), (rows, held) in sorted(counted.items())
        )
    return found


def unmapped_codes(
    settings: Settings,
    catalog: Catalog,
    system: str | None = None,
    batch_id: str | None = None,
    user_name: str | None = None,
) -> CodesListing:
    """The unmapped (and only proposed) codes of each system's latest (or the given) batch;
    ``user_name``: who reads them, where the caller knows (the dashboard's viewer)."""
    notes: list[str] = []
    systems = [catalog.system(system)] if system else list(catalog.systems.values())
    batches = _chosen_batches(settings, systems, batch_id, notes)
    if not batches:
        notes.append("no landed batch to list codes from: run the pipeline first (or --batch)")
    for batch in sorted(set(batches.values())):  # reads the landed code columns, row by row
        record_access(
            settings,
            "codes unmapped",
            "",
            batch,
            0,
            user_name=user_name,
            purpose="unmapped code listing",
            subject_scope=SCOPE_BATCH,
        )
    found: list[UnmappedCode] = []
    for mappings in systems:
        if (listed := batches.get(mappings.name)) is None:
            continue
        for entity, mapping in mappings.entities.items():
            found += _entity_codes(settings, catalog, mappings.name, listed, entity, mapping, notes)
    return CodesListing(batches=batches, notes=notes, codes=found)


def write_template(listing: CodesListing, path: Path) -> int:
    """A CSV to fill: one ``proposed`` row per crosswalk and unmapped code (masked values left
    out: they are fixed at the source). Fill ``target_code`` and ``decided_by``/``decided_at``,
    then copy the rows, without the ``crosswalk`` column, into that crosswalk's file. Returns
    the number of rows written."""
    rows: dict[tuple[str, str], list[str]] = {}
    for item in listing.codes:
        if item.status != UNMAPPED or item.code == MASKED:
            continue
        where = f"{item.system}.{item.dataset}.{item.column}"
        key = (item.crosswalk, item.code)
        if key not in rows:
            rows[key] = [where, str(item.rows)]
        else:
            rows[key] = [f"{rows[key][0]}, {where}", str(int(rows[key][1]) + item.rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(TEMPLATE_COLUMNS)
        for (crosswalk, code), (where, count) in sorted(rows.items()):
            note = f"seen in {where}: {count} rows"
            writer.writerow([crosswalk, code, "", note, PROPOSED, "", ""])
    return len(rows)


def codes_table(listing: CodesListing) -> Table:
    table = Table(title="source codes no approved crosswalk row maps (codes and counts only)")
    for heading in (
        "system",
        "entity",
        "column",
        "code",
        "status",
        "rows",
        "quarantined",
        "crosswalk file",
    ):
        table.add_column(heading, justify="right" if heading in {"rows", "quarantined"} else "left")
    for code in listing.codes:
        table.add_row(
            escape(code.system),
            escape(code.entity),
            escape(code.column),
            escape(code.code),
            code.status,
            str(code.rows),
            "–" if code.quarantined_rows is None else str(code.quarantined_rows),
            escape(f"{CROSSWALK_DIR}/{code.crosswalk}.csv"),
        )
    return table
