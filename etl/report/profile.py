"""Source profile of one system's landed batch (``vardflytt profile``): what the legacy data
looks like, column by column, without showing anything that identifies a person.

Per column: an inferred type, the share of null or blank values, the number of distinct values,
value lengths, value *shapes* and (for columns that are safe to show) the most frequent values.
A column is *masked* (no values, only shapes and statistics) when a mapping sends it to a
sensitive core field or uses it as an identifier, when no mapping uses it (nobody has declared
what it holds), when it only links rows (keys and references: the frequency of a patient number
is that patient's amount of care), or when its values look like identity numbers. Counts below
:data:`~etl.report.masking.MIN_COUNT` are never shown. The Parquet files are read in chunks of
``VARDFLYTT_CHUNK_ROWS`` rows and every summary is bounded, so memory does not grow with the data.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel
from rich.table import Table
from rich.text import Text

from etl.batch import BatchPaths, safe_batch_id, write_json
from etl.catalog import Catalog
from etl.core.arrow import open_parquet
from etl.core.audit import SCOPE_BATCH, record_access
from etl.extract.landing import read_manifest
from etl.report.masking import MIN_COUNT, identity_like, is_safe_to_show, shapes
from etl.report.render import render_html, write_text
from etl.report.sketches import DistinctCounter, FrequencySketch
from etl.report.usage import column_uses, is_link_only, mapping_sensitivity
from etl.settings import Settings

TOP_N = 10
TYPE_SHARE = 0.9  # the share of non-blank values a type must cover
IDENTITY_SHARE = 0.2  # the share of identity-like values that masks a whole column
CODE_DISTINCT_LIMIT = 50
TOKEN_LENGTH = 32
_TOKEN_PATTERNS = ("code", "single_token")
UNMAPPED_REASON = "no mapping uses it, so nobody has declared what it holds"
# How often one patient number occurs says how much care that patient had: not for a report.
LINK_REASON = "its values are row keys linking to other rows; counts and shapes say enough"

_DAY = r"(0[1-9]|[12][0-9]|3[01])"
_MONTH = r"(0[1-9]|1[0-2])"
_PATTERNS = {
    "integer": r"^[+-]?[0-9]+$",
    "decimal": r"^[+-]?[0-9]+([.,][0-9]+)?$",
    "date": (
        rf"^([0-9]{{4}}-{_MONTH}-{_DAY}|{_DAY}\.{_MONTH}\.[0-9]{{4}}"
        rf"|(18|19|20)[0-9]{{2}}{_MONTH}{_DAY}|[0-9]{{2}}{_MONTH}{_DAY})$"
    ),
    "timestamp": (
        rf"^([0-9]{{4}}-{_MONTH}-{_DAY}[ T]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]+)?)?"
        rf"(Z|[+-][0-9]{{2}}:?[0-9]{{2}})?"
        rf"|(18|19|20)[0-9]{{2}}{_MONTH}{_DAY}([01][0-9]|2[0-3])[0-5][0-9]([0-5][0-9])?)$"
    ),
    # Upper-case tokens (ICD10, KVÅ, HSA-id, J/N) or tokens with a digit (legacy ``z861a``);
    # at most TOKEN_LENGTH long (checked apart: counted repeats of \p{} classes compile slowly).
    "code": r"^([\p{Lu}0-9][\p{Lu}0-9.\-_/+:]*|[\pL0-9.\-_/+:]*[0-9][\pL0-9.\-_/+:]*)$",
    "single_token": r"^\S+$",
}


class InferredType(StrEnum):
    INTEGER = "integer"
    DECIMAL = "decimal"
    DATE = "date-like"
    TIMESTAMP = "timestamp-like"
    CODE = "code-like"
    TEXT = "text"
    EMPTY = "empty"


class ValueCount(BaseModel):
    value: str
    rows: int


class LengthStats(BaseModel):
    min: int
    max: int
    mean: float


class ColumnProfile(BaseModel):
    column: str
    used_by: list[str]
    inferred_type: InferredType
    type_share: float | None  # share of non-blank values that fit the inferred type
    is_masked: bool
    masked_because: list[str]
    rows: int
    null_or_blank_rows: int
    null_or_blank_share: float | None
    distinct: int
    distinct_is_estimate: bool
    length: LengthStats | None
    shapes: list[ValueCount]
    top_values: list[ValueCount]
    rows_not_shown_as_shapes: int
    rows_not_shown_as_values: int  # every non-blank row, for a masked column
    counts_are_lower_bounds: bool


class DatasetProfile(BaseModel):
    dataset: str
    source: str
    rows: int
    sha256: str
    columns: list[ColumnProfile]


class SystemProfile(BaseModel):
    system: str
    batch_id: str
    min_count: int
    top_n: int
    datasets: list[DatasetProfile]


class ColumnSummary:
    """Everything kept about one column while its chunks stream past (bounded)."""

    def __init__(self, name: str, masked_because: list[str]) -> None:
        self.name = name
        self.masked_because = masked_because
        self.rows = self.blank = self.identity_rows = 0
        self.length_min: int | None = None
        self.length_max: int | None = None
        self.length_total = 0
        self.matches = dict.fromkeys(_PATTERNS, 0)
        self.distinct = DistinctCounter()
        self.shapes = FrequencySketch()
        # Values of a column known to be sensitive are never kept, not even in memory.
        self.values = None if masked_because else FrequencySketch()

    def update(self, column: pa.Array) -> None:
        trimmed = pc.utf8_trim_whitespace(column.cast(pa.string()))
        present = pc.fill_null(pc.not_equal(trimmed, ""), False)
        values = trimmed.filter(present)
        self.rows += len(column)
        self.blank += len(column) - len(values)
        if len(values) == 0:
            return
        lengths = pc.utf8_length(values)
        extremes = pc.min_max(lengths).as_py()
        if self.length_min is None or extremes["min"] < self.length_min:
            self.length_min = extremes["min"]
        if self.length_max is None or extremes["max"] > self.length_max:
            self.length_max = extremes["max"]
        self.length_total += pc.sum(lengths).as_py()
        is_short = pc.less_equal(lengths, TOKEN_LENGTH)
        for name, pattern in _PATTERNS.items():
            matches = pc.match_substring_regex(values, pattern)
            if name in _TOKEN_PATTERNS:
                matches = pc.and_(matches, is_short)
            self.matches[name] += pc.sum(matches).as_py() or 0
        self.identity_rows += int(identity_like(values).sum())
        self.distinct.update(values.to_numpy(zero_copy_only=False))
        self.shapes.update(_value_counts(shapes(values)))
        if self.values is not None:
            self.values.update(_value_counts(values))

    def _inferred_type(self) -> tuple[InferredType, float | None]:
        present = self.rows - self.blank
        if present == 0:
            return InferredType.EMPTY, None
        share = {name: count / present for name, count in self.matches.items()}
        candidates = [
            (InferredType.TIMESTAMP, share["timestamp"]),
            (InferredType.DATE, share["date"] + share["timestamp"]),
            (InferredType.INTEGER, share["integer"]),
            (InferredType.DECIMAL, share["decimal"]),
            (InferredType.CODE, share["code"]),
        ]
        for inferred, fit in candidates:
            if fit >= TYPE_SHARE:
                return inferred, round(fit, 4)
        if share["single_token"] >= TYPE_SHARE and self.distinct.count <= CODE_DISTINCT_LIMIT:
            return InferredType.CODE, round(share["single_token"], 4)
        return InferredType.TEXT, None

    def result(self, used_by: list[str]) -> ColumnProfile:
        present = self.rows - self.blank
        masked_because = list(self.masked_because)
        if present and self.identity_rows / present >= IDENTITY_SHARE:
            masked_because.append(
                f"{self.identity_rows / present:.0%} of its values look like identity numbers"
            )
        shown_shapes = [
            ValueCount(value=shape, rows=rows)
            for shape, rows in self.shapes.most_common()
            if rows >= MIN_COUNT
        ][:TOP_N]
        shown_values = []
        if not masked_because and self.values is not None:
            shown_values = [
                ValueCount(value=value, rows=rows)
                for value, rows in self.values.most_common()
                if is_safe_to_show(value, rows)
            ][:TOP_N]
        inferred, fit = self._inferred_type()
        return ColumnProfile(
            column=self.name,
            used_by=used_by,
            inferred_type=inferred,
            type_share=fit,
            is_masked=bool(masked_because),
            masked_because=masked_because,
            rows=self.rows,
            null_or_blank_rows=self.blank,
            null_or_blank_share=round(self.blank / self.rows, 4) if self.rows else None,
            distinct=self.distinct.count,
            distinct_is_estimate=self.distinct.is_estimate,
            length=LengthStats(
                # set whenever a value is present
                min=self.length_min,  # type: ignore[arg-type]
                max=self.length_max,  # type: ignore[arg-type]
                mean=round(self.length_total / present, 1),
            )
            if present
            else None,
            shapes=shown_shapes,
            top_values=shown_values,
            rows_not_shown_as_shapes=present - sum(item.rows for item in shown_shapes),
            rows_not_shown_as_values=present - sum(item.rows for item in shown_values),
            counts_are_lower_bounds=self.shapes.is_pruned
            or (self.values is not None and self.values.is_pruned),
        )


def _value_counts(values: pa.Array) -> pd.Series:
    counted = pc.value_counts(values)
    return pd.Series(
        counted.field("counts").to_numpy(zero_copy_only=False).astype(np.int64),
        index=counted.field("values").to_numpy(zero_copy_only=False),
    )


def profile_dataset(
    path: Path, dataset: str, source: str, sha256: str, uses: dict, chunk_rows: int
) -> DatasetProfile:
    """Profile the declared columns of one landed Parquet file, chunk by chunk."""
    parquet = open_parquet(path)
    available = set(parquet.schema_arrow.names)
    columns = [column for column in uses if column in available]
    summaries = {}
    for column in columns:
        reasons = mapping_sensitivity(uses[column])
        if not uses[column]:
            reasons.append(UNMAPPED_REASON)
        if is_link_only(uses[column]):
            reasons.append(LINK_REASON)
        summaries[column] = ColumnSummary(column, reasons)
    rows = 0
    for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns):
        rows += batch.num_rows
        for column in columns:
            summaries[column].update(batch.column(column))
    return DatasetProfile(
        dataset=dataset,
        source=source,
        rows=rows,
        sha256=sha256,
        columns=[
            summaries[column].result(sorted({use.label for use in uses[column]}))
            for column in columns
        ],
    )


def profile_system(
    settings: Settings, catalog: Catalog, system: str, batch_id: str
) -> SystemProfile:
    """Profile every landed dataset of ``system`` in ``batch_id`` (counts and shapes only)."""
    mappings = catalog.system(system)
    manifest = read_manifest(settings, batch_id, system)
    # Profiling reads every landed value (to count and mask them): logged before it reads.
    record_access(
        settings,
        "profile",
        system,
        batch_id,
        manifest.total_rows,
        purpose="data profiling",
        subject_scope=SCOPE_BATCH,
        subject_count=manifest.total_rows,
    )
    paths = BatchPaths.of(settings, batch_id, system)
    uses = column_uses(mappings)
    datasets = []
    for name in mappings.spec.datasets:
        landed = manifest.datasets.get(name)
        if landed is None:
            continue
        datasets.append(
            profile_dataset(
                paths.landed_file(name),
                name,
                landed.source,
                landed.sha256,
                uses[name],
                settings.chunk_rows,
            )
        )
    return SystemProfile(
        system=system, batch_id=batch_id, min_count=MIN_COUNT, top_n=TOP_N, datasets=datasets
    )


def profile_paths(settings: Settings, profile: SystemProfile) -> tuple[Path, Path]:
    folder = settings.home / "reports" / "profile" / safe_batch_id(profile.batch_id)
    return folder / f"{profile.system}.json", folder / f"{profile.system}.html"


def write_profile(settings: Settings, profile: SystemProfile) -> tuple[Path, Path]:
    """``var/reports/profile/<batch>/<system>.{json,html}``."""
    json_path, html_path = profile_paths(settings, profile)
    write_json(json_path, profile.model_dump(mode="json"))
    write_text(html_path, render_html("profile.html", profile=profile))
    return json_path, html_path


def _counts(items: list[ValueCount], limit: int = 3) -> Text:
    return Text(", ".join(f"{item.value} ×{item.rows}" for item in items[:limit]))


def profile_tables(profile: SystemProfile) -> list[Table]:
    """One terminal table per dataset. Cells are ``Text``, so no value is read as markup."""
    tables = []
    for dataset in profile.datasets:
        table = Table(
            title=f"{profile.system} / {dataset.dataset} ({dataset.source}): {dataset.rows} rows",
            title_justify="left",
        )
        for heading in ("column", "type", "masked", "null/blank", "distinct", "length"):
            table.add_column(heading, justify="right" if heading in {"distinct"} else "left")
        table.add_column("shapes (rows)", overflow="fold")
        table.add_column("top values (rows)", overflow="fold")
        for column in dataset.columns:
            length = column.length
            table.add_row(
                Text(column.column),
                Text(column.inferred_type.value),
                Text("masked", style="red") if column.is_masked else Text("no"),
                Text(
                    "–"
                    if column.null_or_blank_share is None
                    else f"{column.null_or_blank_share:.1%}"
                ),
                Text(f"{'~' if column.distinct_is_estimate else ''}{column.distinct}"),
                Text(f"{length.min}–{length.max}" if length else "–"),
                _counts(column.shapes),
                Text("(masked)", style="dim") if column.is_masked else _counts(column.top_values),
            )
        tables.append(table)
    return tables
