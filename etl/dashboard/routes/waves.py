"""The waves: the overview (``/``) and one wave's page."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from etl.dashboard.app import (
    DashboardDep,
    ViewerDep,
    _require_wave,
    core_chart,
    go_no_go_waiting,
    url_path,
    wave_plan,
)

router = APIRouter()


@router.get("/", name="waves", response_class=HTMLResponse)
def waves_page(request: Request, viewer: ViewerDep, dashboard: DashboardDep) -> Response:
    from etl.dashboard import data, wave_ledger
    from etl.steward.queue import summary

    with dashboard.connection() as connection:
        latest = data.batch_figures(connection, data.latest_batch_ids(connection))
        plan, plan_problem = wave_ledger.load_wave_plan(
            Path(dashboard.settings.mappings_dir), dashboard.settings.wave_plan
        )
        core = data.core_now(connection, plan)
        waves = wave_ledger.waves(
            connection, plan, evaluate=wave_ledger.criteria_now(dashboard.settings), core=core
        )
    latest_totals = data.totals(latest)
    evaluated = latest_totals["rows_evaluated"]
    return dashboard.render(
        request,
        "waves.html",
        viewer,
        section="waves",
        title="Waves",
        waves=waves,
        core=core,
        core_chart=core_chart(core),
        plan_problem=plan_problem,
        latest=sorted(latest, key=lambda b: b.system),
        latest_totals=latest_totals,
        latest_pass_rate=1 - latest_totals["rows_failed"] / evaluated if evaluated else None,
        accounted=sum(1 for b in latest if b.is_accounted),
        open_problems=sum(row.open for row in summary(dashboard.settings)),
    )


@router.get("/waves/{wave}", name="wave", response_class=HTMLResponse)
def wave_page(request: Request, wave: str, viewer: ViewerDep, dashboard: DashboardDep) -> Response:
    from etl.dashboard import wave_ledger

    with dashboard.connection() as connection:
        detail = wave_ledger.wave_detail(
            connection,
            wave,
            wave_plan(dashboard.settings),
            evaluate=wave_ledger.criteria_now(dashboard.settings),
        )
    _require_wave(detail)
    packs = dashboard.evidence_root() / wave
    recorded = sorted(p.stem for p in packs.glob("*.zip")) if packs.is_dir() else []
    return dashboard.render(
        request,
        "wave.html",
        viewer,
        section="waves",
        title=f"Wave {wave}",
        wave=detail,
        waiting=go_no_go_waiting(dashboard.settings, detail),
        recorded_packs=[
            (label, url_path(request, "recorded_evidence", wave=wave, label=label))
            for label in reversed(recorded)
        ],
    )
