"""Compare what the pipeline quarantined with the estate's ground truth of injected defects."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import sqlalchemy as sa


def expected_quarantine(estate: Path, systems: tuple[str, ...]) -> set[tuple[str, str, int, str]]:
    defects = pd.read_csv(estate / "defects.csv", dtype=str)
    defects = defects[
        defects["system"].isin(systems) & defects["expected_outcome"].str.startswith("quarantine:")
    ]
    reasons = defects["expected_outcome"].str.removeprefix("quarantine:")
    return set(
        zip(
            defects["system"],
            defects["dataset"],
            defects["row_number"].astype(int),
            reasons,
            strict=True,
        )
    )


def actual_quarantine(core_url: str) -> set[tuple[str, str, int, str]]:
    engine = sa.create_engine(core_url)
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT source_system, dataset, row_number, reason FROM quarantine"
        ).all()
    engine.dispose()
    return {(system, dataset, int(row), reason) for system, dataset, row, reason in rows}
