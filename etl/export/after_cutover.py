"""The FHIR export at the end of a cutover (the cutover DAG's last task before the lease goes).

A wave the go/no-go approved is cut over; its promoted rows are then written as FHIR R4 NDJSON
into the same folder ``vardflytt export fhir --wave W`` writes by default, so the next core
system's import has them the moment the wave is live. A rejected wave exports nothing.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from etl.export.bulk import export_for
from etl.settings import Settings


def export_folder(settings: Settings, wave: str | None) -> Path:
    """``VARDFLYTT_HOME/export/fhir/<wave>`` (``all`` for every row), as the command's default."""
    return settings.home / "export" / "fhir" / (wave or "all")


def export_cut_over_wave(settings: Settings, wave: str, decision: dict[str, Any]) -> dict[str, Any]:
    """Export ``wave`` if ``decision`` (the cutover DAG's ``record_decision``) approved it.

    Returns counts and the folder relative to the home (XCom: no patient data, no worker path)."""
    if decision.get("decision") != "approve":
        return {"wave": wave, "exported": False, "reason": "the go/no-go did not approve"}
    folder = export_folder(settings, wave)
    result = export_for(settings, folder, wave=wave, transaction_time=dt.datetime.now(dt.UTC))
    return {
        "wave": wave,
        "exported": True,
        "folder": folder.relative_to(settings.home).as_posix(),
        "counts": result.counts,
        "unresolved_references": result.issues,
        "batches": len(result.batch_ids),
    }
