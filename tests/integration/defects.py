"""Compare what the pipeline quarantined with the estate's ground truth of injected defects."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from etl.settings import Settings


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


@contextmanager
def estate_copy_home(kind: str, small_estate: Path, root: Path, core_of) -> Iterator[Settings]:
    """Settings of a project home under ``root`` with its own copy of ``small_estate`` (the
    shared estate stays read-only: a test may change its copy's legacy data) and a core of
    ``kind`` (``core_of``: sqlite or postgres), set in the environment for the ``with`` block;
    the estate copy is ``settings.estate_dir``."""
    estate = root / "estate"
    shutil.copytree(small_estate, estate)
    with core_of(kind, root) as core_url, pytest.MonkeyPatch.context() as patch:
        patch.setenv("VARDFLYTT_HOME", str(root / "home"))
        patch.setenv("VARDFLYTT_ESTATE_DIR", str(estate))
        patch.setenv("VARDFLYTT_CORE_URL", core_url)
        for name in ("VARDFLYTT_LANDING_DIR", "VARDFLYTT_SOURCE_ELVIS_URL"):
            patch.delenv(name, raising=False)
        yield Settings()
