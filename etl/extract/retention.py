"""Landing retention: landed patient data is removed once it is past its declared retention and
no longer needed, and every removed file is recorded.

The retention is declared per system (``landing_retention_days`` in ``mappings/<system>/
system.yaml``) or for all systems (``VARDFLYTT_LANDING_RETENTION_DAYS``); a system with neither
is never purged. A batch's age counts from its extraction (the manifest's ``extracted_at``).

Only batches that nothing will read again are purged: superseded and rolled-back batches, and
promoted batches other than each system's latest promoted batch (the next delta's base) and that
batch's own base when it is a delta (a re-run of it compares with that base). A batch that is
staged, unaccounted, landed but never staged (a run may still be in flight) or unknown to the
core is never purged, whatever its age.

Further back along that chain of deltas, to its full load, each batch keeps its manifest and its
``<dataset>.delta.parquet`` lists (which rows each delta processed, small) when its landed
snapshots are purged: without them the problems still open after the latest batch (its
validation trend, the steward queue) can no longer be told apart from those resolved.

Each file is recorded before it is removed: in the access log (``etl.core.audit``, action
``purge_landing``: who, when, system, batch, the file as entity, its rows) and, with its size in
bytes, in ``<home>/purges/landing.jsonl``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
from pathlib import Path

import sqlalchemy as sa
from pydantic import BaseModel, Field

from etl.batch import BatchPaths, safe_batch_id
from etl.catalog import Catalog
from etl.core import files
from etl.core.audit import current_user, record_access
from etl.core.batch_states import PROMOTED, ROLLED_BACK, SUPERSEDED
from etl.core.database import core_engine
from etl.core.tables import load_batch, promotion
from etl.settings import Settings

ACTION = "purge_landing"
PURGE_LOG = Path("purges") / "landing.jsonl"  # under VARDFLYTT_HOME
_FINISHED = {SUPERSEDED, ROLLED_BACK}


class LandedFile(BaseModel):
    path: str  # relative to the landing zone
    bytes: int
    rows: int | None = None  # Parquet files only


class LandingBatch(BaseModel):
    """One system's landing folder of one batch, and what purge decided for it."""

    batch_id: str
    system: str
    state: str  # the batch's state in the core, or "landed" (not in the core yet)
    extracted_at: dt.datetime | None
    retention_days: int | None
    is_expired: bool
    is_purgeable: bool
    reason: str  # why it is kept, or why it may go
    files: list[LandedFile] = Field(default_factory=list)  # what a purge removes (or would)
    # Kept when the rest goes: the manifest and delta lists of a batch in the latest promoted
    # batch's chain of deltas.
    kept: list[LandedFile] = Field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)


def retention_days(catalog: Catalog, system: str, settings: Settings) -> int | None:
    """The system's own retention, else the global one; None: nothing declared, keep forever."""
    systems = catalog.systems
    own = systems[system].spec.landing_retention_days if system in systems else None
    return own if own is not None else settings.landing_retention_days


def survey(catalog: Catalog, settings: Settings, now: dt.datetime) -> list[LandingBatch]:
    """Every batch folder in the landing zone, each with whether it may be purged and why."""
    root = settings.resolved_landing_dir
    if not root.is_dir():
        return []
    states, latest = _ledger(settings)
    needed, trimmed = _still_needed(settings, latest)
    batches = []
    for folder in sorted(p for p in root.glob("*/*") if p.is_dir()):
        batch_name, system = folder.parent.name, folder.name
        batch_id, state = states.get((safe_batch_id(batch_name), system), (batch_name, "landed"))
        extracted_at = _extracted_at(folder)
        days = retention_days(catalog, system, settings)
        is_expired = (
            days is not None
            and extracted_at is not None
            and now - extracted_at >= dt.timedelta(days=days)
        )
        if days is None:
            purgeable, reason = False, "no retention declared"
        elif extracted_at is None:
            purgeable, reason = False, "extraction time unknown (no readable manifest)"
        elif not is_expired:
            purgeable, reason = False, f"within its {days}-day retention"
        elif (system, batch_id) in needed:
            purgeable, reason = False, needed[(system, batch_id)]
        elif state in _FINISHED or state == PROMOTED:
            purgeable, reason = True, f"{state}, past its {days}-day retention"
        else:
            purgeable, reason = False, f"{state}: not finished (never purged)"
        landed, kept = _files(folder, root), list[LandedFile]()
        if (system, batch_id) in trimmed:
            landed, kept = _split_kept(folder, root, landed)
            if purgeable and not landed:
                purgeable, reason = (
                    False,
                    f"only its manifest and delta lists left: {trimmed[(system, batch_id)]}",
                )
            elif purgeable:
                reason += f"; its manifest and delta lists kept: {trimmed[(system, batch_id)]}"
        batches.append(
            LandingBatch(
                batch_id=batch_id,
                system=system,
                state=state,
                extracted_at=extracted_at,
                retention_days=days,
                is_expired=is_expired,
                is_purgeable=purgeable,
                reason=reason,
                files=landed,
                kept=kept,
            )
        )
    return batches


def purge(
    catalog: Catalog, settings: Settings, now: dt.datetime, dry_run: bool = False
) -> list[LandingBatch]:
    """Remove the purgeable batches' landing folders (recorded file by file, before removal);
    returns them. ``dry_run``: only say what would go."""
    chosen = [batch for batch in survey(catalog, settings, now) if batch.is_purgeable]
    if dry_run:
        return chosen
    log = files.private_dir((settings.home / PURGE_LOG).parent) / PURGE_LOG.name
    who = current_user()
    for batch in chosen:
        for landed in batch.files:
            # Recorded first: a purge killed half-way is still in the log.
            record_access(
                settings, ACTION, batch.system, batch.batch_id, landed.rows or 0, landed.path
            )
            _append(
                log,
                {
                    "purged_at": now.isoformat(),
                    "user_name": who,
                    "system": batch.system,
                    "batch_id": batch.batch_id,
                    "state": batch.state,
                    "file": landed.path,
                    "bytes": landed.bytes,
                    "rows": landed.rows,
                },
            )
        folder = BatchPaths.of(settings, batch.batch_id, batch.system).root
        if batch.kept:
            root = settings.resolved_landing_dir
            for landed in batch.files:
                (root / landed.path).unlink(missing_ok=True)
            for directory in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
                with contextlib.suppress(OSError):
                    directory.rmdir()  # emptied folders only (the deepest first)
            continue
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()  # the batch folder, once no system of it is left
    return chosen


def _ledger(settings: Settings) -> tuple[dict[tuple[str, str], tuple[str, str]], dict]:
    """``{(safe batch id, system): (batch id, state)}`` and each system's latest promoted batch."""
    engine = core_engine(settings.resolved_core_url)
    states: dict[tuple[str, str], tuple[str, str]] = {}
    latest: dict[str, str] = {}
    with engine.connect() as connection:
        for row in connection.execute(
            sa.select(load_batch.c.batch_id, load_batch.c.source_system, load_batch.c.status)
        ):
            states[(safe_batch_id(row.batch_id), row.source_system)] = (row.batch_id, row.status)
        # The promotion ledger's state wins over load_batch's status (it is the batch's fate).
        for row in connection.execute(
            sa.select(promotion.c.batch_id, promotion.c.source_system, promotion.c.state).order_by(
                promotion.c.seq.is_(None), promotion.c.seq
            )
        ):
            states[(safe_batch_id(row.batch_id), row.source_system)] = (row.batch_id, row.state)
            if row.state == PROMOTED:
                latest[row.source_system] = row.batch_id  # ordered by seq: the last one wins
    return states, latest


# The longest chain of deltas followed back from a latest promoted batch (as the open problems).
MAX_DELTA_CHAIN = 1000


def _base_of(settings: Settings, system: str, batch_id: str) -> str | None:
    manifest = BatchPaths.of(settings, batch_id, system).manifest_file
    with contextlib.suppress(OSError, ValueError, AttributeError):
        base = json.loads(manifest.read_text("utf-8")).get("base_batch_id")
        return str(base) if base else None
    return None


def _still_needed(
    settings: Settings, latest: dict[str, str]
) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], str]]:
    """Batches a later run reads: each system's latest promoted one, and its delta base; and the
    batches further back along its chain of deltas (to the full load), whose manifest and delta
    lists the open problems after the latest batch are computed from."""
    needed, trimmed = {}, {}
    for system, batch_id in latest.items():
        needed[(system, batch_id)] = "the latest promoted batch (the next delta's base)"
        base = _base_of(settings, system, batch_id)
        if base:
            needed[(system, base)] = f"the delta base of the latest promoted batch {batch_id}"
        seen = {batch_id}
        while base and base not in seen and len(seen) <= MAX_DELTA_CHAIN:
            seen.add(base)
            base = _base_of(settings, system, base)
            if base and (system, base) not in needed:
                trimmed[(system, base)] = (
                    f"in the chain of deltas of the latest promoted batch {batch_id} (which "
                    "rows each delta checked: the problems still open)"
                )
    return needed, trimmed


def _split_kept(
    folder: Path, root: Path, landed: list[LandedFile]
) -> tuple[list[LandedFile], list[LandedFile]]:
    """``landed`` split into what may go and what stays: the manifest and the delta lists."""
    paths = BatchPaths(folder)
    kept_names = {paths.manifest_file.name}
    removed: list[LandedFile] = []
    kept: list[LandedFile] = []
    for file in landed:
        path = root / file.path
        is_kept = path.parent == paths.landed and (
            path.name in kept_names or path.name.endswith(".delta.parquet")
        )
        (kept if is_kept else removed).append(file)
    return removed, kept


def _extracted_at(folder: Path) -> dt.datetime | None:
    manifest = BatchPaths(folder).manifest_file
    with contextlib.suppress(OSError, ValueError, TypeError):
        stamp = json.loads(manifest.read_text("utf-8"))["extracted_at"]
        parsed = dt.datetime.fromisoformat(stamp)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None


def _files(folder: Path, root: Path) -> list[LandedFile]:
    import pyarrow.parquet as pq

    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rows = None
        if path.suffix == ".parquet":
            with contextlib.suppress(Exception):  # a damaged file is still purged and recorded
                rows = pq.read_metadata(path).num_rows
        found.append(
            LandedFile(path=path.relative_to(root).as_posix(), bytes=path.stat().st_size, rows=rows)
        )
    return found


def _append(log: Path, entry: dict) -> None:
    with log.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
    files.private_file(log)
