"""The steward's code work: source codes no approved crosswalk row maps, per system."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from etl.dashboard.app import DashboardDep, ViewerDep

router = APIRouter()


@router.get("/codes", name="codes", response_class=HTMLResponse)
async def codes_page(
    request: Request, viewer: ViewerDep, dashboard: DashboardDep, system: str = ""
) -> Response:
    from etl import pipeline
    from etl.report.codes import unmapped_codes

    settings = dashboard.settings
    catalog = pipeline.catalog(settings)
    chosen = system if system in catalog.systems else None
    listing = await run_in_threadpool(unmapped_codes, settings, catalog, chosen, None, viewer.name)
    return dashboard.render(
        request,
        "codes.html",
        viewer,
        section="reports",
        title="Unmapped source codes",
        listing=listing,
        totals=listing.totals(),
        systems=sorted(catalog.systems),
        system=chosen or "",
    )
