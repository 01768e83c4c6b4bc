"""``manifest.json``: what an estate holds, so checks can compare the pipeline's counts with it.

Nothing in it depends on where or when the estate was written (paths are relative), so the same
seed gives the same manifest.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class GeneratedFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str  # relative to the estate folder, with forward slashes
    system: str | None = None
    dataset: str | None = None
    rows: int | None = None  # data rows (without header), as written
    sha256: str | None = None  # for byte-deterministic files (not the SQLite database)


class DefectClassSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows: int
    expected_outcome: str
    datasets: dict[str, int]  # "system.dataset" -> rows


class EstateManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    FILENAME: ClassVar[str] = "manifest.json"

    format_version: int = 1
    seed: int
    patients: int
    extract_date: dt.date
    elvis_url: str  # "sqlite:///{estate_dir}/elvis/elvis.sqlite" or the URL without password
    files: list[GeneratedFile]
    row_counts: dict[str, dict[str, int]]  # system -> dataset -> rows as written
    people: dict[str, int]
    defect_rows: int
    defect_classes: dict[str, DefectClassSummary]

    def write(self, out_dir: Path) -> Path:
        path = Path(out_dir) / self.FILENAME
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, out_dir: Path) -> EstateManifest:
        path = Path(out_dir) / cls.FILENAME
        return cls.model_validate_json(path.read_text(encoding="utf-8"))

    def file(self, system: str, dataset: str) -> GeneratedFile:
        for item in self.files:
            if item.system == system and item.dataset == dataset:
                return item
        raise KeyError(f"{system}.{dataset}")
