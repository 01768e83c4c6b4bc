"""A batch: one run of one source system, with its own folder of stage outputs.

Every stage reads and writes only inside its batch folder, so re-running a task for the same
batch recomputes the same files (tasks are transactions; nothing reads "latest").
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl.settings import Settings

if TYPE_CHECKING:
    from pydantic import BaseModel

_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


def safe_batch_id(raw: str) -> str:
    """Batch ids become folder names: keep them readable and path-safe."""
    cleaned = _UNSAFE.sub("_", raw).strip("._")
    if not cleaned:
        raise ValueError(f"batch id {raw!r} has no usable characters")
    return cleaned


def new_batch_id(system: str, label: str) -> str:
    """A fresh batch id for a run with no id of its own (the command line): readable (system,
    label, UTC time to the microsecond) and unique even for runs started in the same instant (a
    random suffix). Batches are ordered by their extraction time, never by this text."""
    stamp = utc_now().strftime("%Y%m%dT%H%M%S%f")
    return safe_batch_id(f"{system}__{label}__{stamp}_{secrets.token_hex(4)}")


@dataclass(frozen=True)
class BatchPaths:
    """Where one system's stage outputs live for one batch."""

    root: Path

    @classmethod
    def of(cls, settings: Settings, batch_id: str, system: str) -> BatchPaths:
        return cls(settings.resolved_landing_dir / safe_batch_id(batch_id) / system)

    @property
    def landed(self) -> Path:
        return self.root / "landed"

    @property
    def transformed(self) -> Path:
        return self.root / "transformed"

    @property
    def validated(self) -> Path:
        return self.root / "validated"

    def landed_file(self, dataset: str) -> Path:
        return self.landed / f"{dataset}.parquet"

    def duplicates_file(self, dataset: str) -> Path:
        return self.landed / f"{dataset}.duplicates.parquet"

    @property
    def manifest_file(self) -> Path:
        return self.landed / "_manifest.json"

    def stage_file(self, stage: str, entity: str, kind: str = "rows") -> Path:
        suffix = "" if kind == "rows" else f".{kind}"
        return self.root / stage / f"{entity}{suffix}.parquet"


def write_json(path: Path, content: Any) -> None:
    _write_json_text(path, json.dumps(content, indent=2, default=str, ensure_ascii=False))


def write_model_json(path: Path, model: BaseModel) -> None:
    """``write_json(path, model.model_dump(mode="json"))``: the same JSON (the same text for
    what the reports hold, strings, integers and plain decimals), serialised by pydantic's
    compiled encoder. With an indent, ``json.dumps`` runs its pure-Python encoder over every
    value: a report listing thousands of problem rows spent most of its writing there."""
    _write_json_text(path, model.model_dump_json(indent=2))


def _write_json_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    try:
        temporary.write_text(text, "utf-8")
    except BaseException:
        temporary.unlink(missing_ok=True)  # a failed write leaves nothing behind
        raise
    temporary.replace(path)  # atomic: a killed task never leaves half a manifest
    os.chmod(path, 0o600)  # manifests are patient-data folders' files: owner-only


def utc_now() -> dt.datetime:
    """Wall-clock time for audit columns only; business logic takes dates as arguments."""
    return dt.datetime.now(dt.UTC)
