"""How well the pipeline catches the estate's planted defects (``vardflytt dq recall``).

The synthetic estate records every defect it plants in ``defects.csv`` with the outcome the
pipeline should give the row (``quarantine:<reason>``, ``merged``, ``excluded:<rule>``). Against a
migrated core this report counts, per defect class:

* **planted**: defect rows in the datasets the selected batches migrated;
* **caught**: those whose outcome is the expected one: a ``quarantine`` row with the expected
  reason, or an ``excluded`` / ``merged`` outcome in the batch's validated outcome files (where
  those files are gone, the ``batch_accounting`` counts stand in, per dataset);
* **recall** = caught / planted, and what the missed rows got instead (``loaded`` or another
  outcome).

And over all rows: the **false-positive rate** = quarantined rows that carry no planted defect /
clean (defect-free) extracted rows. Counts only: no keys, row numbers or values leave here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import cast

import pandas as pd
import pyarrow.parquet as pq
import sqlalchemy as sa
from pydantic import BaseModel
from rich.table import Table

from etl.batch import BatchPaths
from etl.core.database import core_engine
from etl.core.tables import batch_accounting, load_batch, quarantine
from etl.settings import Settings

DEFECTS_FILE = "defects.csv"
QUARANTINE_PREFIX = "quarantine:"
LOADED = "loaded"
ROW = ["system", "dataset", "row_number"]


class NoBatchesError(LookupError):
    """Nothing in the core to measure against."""


class ClassRecall(BaseModel):
    defect_class: str
    expected_outcome: str
    planted: int
    caught: int
    missed_as: dict[str, int] = {}

    @property
    def recall(self) -> float | None:
        return self.caught / self.planted if self.planted else None


class RecallReport(BaseModel):
    """Counts only: safe for logs and reports."""

    batches: list[str]
    systems: list[str]
    classes: list[ClassRecall]
    rows_extracted: int
    defect_rows: int
    false_positives: int
    false_positive_reasons: dict[str, int] = {}

    @property
    def planted(self) -> int:
        return sum(c.planted for c in self.classes)

    @property
    def caught(self) -> int:
        return sum(c.caught for c in self.classes)

    @property
    def recall(self) -> float | None:
        return self.caught / self.planted if self.planted else None

    @property
    def clean_rows(self) -> int:
        return self.rows_extracted - self.defect_rows

    @property
    def false_positive_rate(self) -> float | None:
        return self.false_positives / self.clean_rows if self.clean_rows else None

    def by_class(self) -> dict[str, ClassRecall]:
        return {c.defect_class: c for c in self.classes}


def recall_report(
    settings: Settings,
    estate_dir: Path | None = None,
    batch_ids: Sequence[str] = (),
    run_id: str | None = None,
) -> RecallReport:
    """Recall per defect class and the false-positive rate of the selected batches.

    Batches: those named, else those of ``run_id``, else each system's latest (non-dry) batch.
    """
    estate = Path(estate_dir) if estate_dir else settings.resolved_estate_dir
    defects = read_defects(estate / DEFECTS_FILE)
    engine = core_engine(settings.resolved_core_url)
    with engine.connect() as connection:
        batches = _select_batches(connection, batch_ids, run_id)
        accounting = _accounting(connection, batches)
        quarantined = _quarantined(connection, batches)
    outcomes, counted = _excluded_and_merged(settings, accounting)

    migrated = accounting[["system", "dataset"]].drop_duplicates()
    planted = defects.merge(migrated, on=["system", "dataset"])
    actual = pd.concat([quarantined, outcomes], ignore_index=True).drop_duplicates()
    classes = _class_recall(planted, actual, counted)

    planted_rows = planted[ROW].drop_duplicates()
    flagged = quarantined[[*ROW, "outcome"]].drop_duplicates(ROW)
    unplanted = flagged.merge(planted_rows, on=ROW, how="left", indicator=True)
    unplanted = unplanted[unplanted["_merge"] == "left_only"]
    extracted = accounting.drop_duplicates(["batch_id", "system", "dataset"])["extracted"]
    return RecallReport(
        batches=sorted(batches),
        systems=sorted(accounting["system"].unique()),
        classes=classes,
        rows_extracted=int(extracted.sum()),
        defect_rows=len(planted_rows),
        false_positives=len(unplanted),
        false_positive_reasons={
            str(k): int(v) for k, v in unplanted["outcome"].value_counts().sort_index().items()
        },
    )


def read_defects(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: recall needs the estate's ground truth")
    defects = pd.read_csv(path, dtype=str, keep_default_na=False)
    defects["row_number"] = defects["row_number"].astype("int64")
    return defects


def _select_batches(
    connection: sa.Connection, batch_ids: Sequence[str], run_id: str | None
) -> list[str]:
    if batch_ids:
        return list(batch_ids)
    real = sa.not_(load_batch.c.is_dry_run)
    if run_id:
        query = sa.select(load_batch.c.batch_id).where(real & (load_batch.c.run_id == run_id))
        batches = list(connection.execute(query).scalars())
    else:
        ranked = (
            sa.select(
                load_batch.c.batch_id,
                sa.func.row_number()
                .over(
                    partition_by=load_batch.c.source_system,
                    order_by=load_batch.c.started_at.desc(),
                )
                .label("rank"),
            )
            .where(real)
            .subquery()
        )
        query = sa.select(ranked.c.batch_id).where(ranked.c.rank == 1)
        batches = list(connection.execute(query).scalars())
    if not batches:
        raise NoBatchesError(
            f"no loaded batches{f' for run {run_id}' if run_id else ''} in the core: "
            "migrate first (vardflytt run) or name --batch"
        )
    return batches


def _accounting(connection: sa.Connection, batches: list[str]) -> pd.DataFrame:
    query = sa.select(
        batch_accounting.c.batch_id,
        batch_accounting.c.source_system.label("system"),
        batch_accounting.c.entity,
        batch_accounting.c.dataset,
        batch_accounting.c.extracted,
        batch_accounting.c.excluded,
        batch_accounting.c.merged,
    ).where(batch_accounting.c.batch_id.in_(batches))
    frame = pd.DataFrame(connection.execute(query).mappings().all())
    if frame.empty:
        raise NoBatchesError(f"no accounting recorded for batches {', '.join(batches)}")
    return frame


def _quarantined(connection: sa.Connection, batches: list[str]) -> pd.DataFrame:
    query = (
        sa.select(
            quarantine.c.source_system.label("system"),
            quarantine.c.dataset,
            quarantine.c.row_number,
            quarantine.c.reason,
        )
        .where(quarantine.c.batch_id.in_(batches))
        .distinct()
    )
    frame = pd.DataFrame(
        connection.execute(query).mappings().all(), columns=[*ROW, "reason"]
    ).astype({"row_number": "int64"})
    frame["outcome"] = QUARANTINE_PREFIX + frame["reason"].astype(str)
    return frame[[*ROW, "outcome"]]


def _excluded_and_merged(
    settings: Settings, accounting: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Row outcomes ``excluded:<rule>`` / ``merged`` from the batches' validated outcome files,
    and, for datasets whose file is gone, their counts from ``batch_accounting``."""
    frames, counted = [], []
    for row in accounting.itertuples():
        if not (row.excluded or row.merged):
            continue
        # pandas-stubs type itertuples() fields as any scalar; these hold text
        path = BatchPaths.of(settings, row.batch_id, row.system).stage_file(  # type: ignore[arg-type]
            "validated",
            row.entity,  # type: ignore[arg-type]
            "outcomes",
        )
        if not path.is_file():
            counted.append((row.system, row.dataset, row.excluded, row.merged))
            continue
        table = pq.read_table(path, columns=["_row_number", "outcome", "reason"]).to_pandas()
        table = table[table["outcome"].isin(["excluded", "merged"])]
        frames.append(
            pd.DataFrame(
                {
                    "system": row.system,
                    "dataset": row.dataset,
                    "row_number": table["_row_number"].astype("int64"),
                    "outcome": table["outcome"].where(
                        table["outcome"] == "merged", "excluded:" + table["reason"].astype(str)
                    ),
                }
            )
        )
    outcomes = (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*ROW, "outcome"])
    )
    return outcomes, pd.DataFrame(counted, columns=["system", "dataset", "excluded", "merged"])


def _class_recall(
    planted: pd.DataFrame, actual: pd.DataFrame, counted: pd.DataFrame
) -> list[ClassRecall]:
    joined = planted.merge(actual, on=ROW, how="left")
    joined["outcome"] = joined["outcome"].fillna(LOADED)
    joined["is_caught"] = joined["outcome"] == joined["expected_outcome"]
    per_row = joined.groupby([*ROW, "defect_class", "expected_outcome"], sort=False).agg(
        is_caught=("is_caught", "any"), outcome=("outcome", "first")
    )
    per_row = per_row.reset_index()
    # Where only counts survive, a dataset's excluded/merged rows count as caught up to the count.
    for row in counted.itertuples():
        for outcome, number in (("merged", row.merged), ("excluded:", row.excluded)):
            rows = per_row[
                (per_row["system"] == row.system)
                & (per_row["dataset"] == row.dataset)
                & per_row["expected_outcome"].str.startswith(outcome)
            ]
            # pandas-stubs: loc takes an Index slice; number is a count
            per_row.loc[rows.index[: int(number)], "is_caught"] = True  # type: ignore[index, arg-type]
    classes = []
    for (defect_class, expected), group in per_row.groupby(["defect_class", "expected_outcome"]):
        missed = group.loc[~group["is_caught"], "outcome"].value_counts().sort_index()
        classes.append(
            ClassRecall(
                defect_class=cast(str, defect_class),
                expected_outcome=cast(str, expected),
                planted=len(group),
                caught=int(group["is_caught"].sum()),
                missed_as={str(k): int(v) for k, v in missed.items()},
            )
        )
    return classes


def recall_table(report: RecallReport) -> Table:
    table = Table(
        title=f"planted defects caught ({len(report.systems)} systems, "
        f"{len(report.batches)} batches)"
    )
    for column in ("defect class", "expected outcome", "planted", "caught", "recall", "missed as"):
        table.add_column(column, justify="right" if column in {"planted", "caught"} else "left")
    for item in report.classes:
        table.add_row(
            item.defect_class,
            item.expected_outcome,
            str(item.planted),
            str(item.caught),
            _percent(item.recall),
            ", ".join(f"{k} {v}" for k, v in item.missed_as.items()),
        )
    table.add_row("all", "", str(report.planted), str(report.caught), _percent(report.recall), "")
    return table


def summary_line(report: RecallReport) -> str:
    reasons = ", ".join(f"{k} {v}" for k, v in report.false_positive_reasons.items())
    return (
        f"recall {_percent(report.recall)} ({report.caught} of {report.planted}); "
        f"false positives {report.false_positives} of {report.clean_rows} clean rows "
        f"({_percent(report.false_positive_rate, 3)}){f': {reasons}' if reasons else ''}"
    )


def _percent(value: float | None, decimals: int = 1) -> str:
    return "-" if value is None else f"{value:.{decimals}%}"
