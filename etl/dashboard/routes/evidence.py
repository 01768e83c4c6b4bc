"""Evidence packs of a wave: a fresh one as a zip, and the packs the cutover recorded."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from etl.batch import safe_batch_id
from etl.dashboard.app import (
    DashboardDep,
    ViewerDep,
    _require_wave,
    _zip,
    url_path,
    wave_plan,
)

router = APIRouter()


@router.get("/waves/{wave}/evidence", name="evidence")
def evidence(request: Request, wave: str, viewer: ViewerDep, dashboard: DashboardDep) -> Response:
    """A fresh evidence pack of the wave (etl/cutover/evidence.py's format), as a zip."""
    import tempfile

    from etl.dashboard import wave_ledger

    with dashboard.connection() as connection:
        _require_wave(wave_ledger.wave_detail(connection, wave, wave_plan(dashboard.settings)))
    label = f"dashboard_{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}"
    from etl.core.files import private_dir
    from etl.cutover.evidence import write_pack

    # Working files under the home (an allowed storage root, owner-only), not the system's
    # shared temporary folder; removed when the download is built, or when it fails.
    scratch_root = private_dir(Path(dashboard.settings.home) / "tmp")
    with tempfile.TemporaryDirectory(dir=scratch_root) as scratch:
        root = write_pack(
            dashboard.settings, wave, label, Path(scratch), {"downloaded_by": viewer.name}
        )
        content = root.with_suffix(".zip").read_bytes()
    return _zip(content, f"evidence_{safe_batch_id(wave)}_{label}.zip")


@router.get("/waves/{wave}/evidence/{label}", name="recorded_evidence")
def recorded_evidence(
    wave: str, label: str, viewer: ViewerDep, dashboard: DashboardDep
) -> Response:
    """A pack the cutover recorded (``<home>/evidence/<wave>/<label>.zip``)."""
    try:
        base = (dashboard.evidence_root() / wave).resolve()
        target = (base / f"{label}.zip").resolve()
        is_found = target.is_relative_to(dashboard.evidence_root().resolve())
        is_found = is_found and target.is_file()
    except (ValueError, OSError):  # a name no file can have
        is_found = False
    if not is_found:
        raise StarletteHTTPException(404, "no such evidence pack")
    return _zip(target.read_bytes(), f"evidence_{safe_batch_id(wave)}_{target.stem}.zip")


@router.get("/waves/{wave}/evidence/{label}/evidence.md", name="recorded_evidence_text")
def recorded_evidence_text(
    request: Request, wave: str, label: str, viewer: ViewerDep, dashboard: DashboardDep
):
    """A recorded pack's ``evidence.md``, as text in a page: what the go/no-go request in
    Airflow links to (``etl.cutover.airflow_hitl.evidence_links``)."""
    try:
        root = dashboard.evidence_root().resolve()
        target = (root / wave / label / "evidence.md").resolve()
        is_found = target.is_relative_to(root) and target.is_file()
    except (ValueError, OSError):  # a name no file can have
        is_found = False
    if not is_found:
        raise StarletteHTTPException(404, "no such evidence pack")
    has_zip = target.parent.with_name(f"{target.parent.name}.zip").is_file()
    return dashboard.render(
        request,
        "evidence.html",
        viewer,
        section="waves",
        title=f"Evidence pack {label} of wave {wave}",
        wave_name=wave,
        label=label,
        text=target.read_text("utf-8", errors="replace"),
        zip_href=(
            url_path(request, "recorded_evidence", wave=wave, label=label) if has_zip else None
        ),
    )
