"""Runs and trends, and one run's batches, checks and reports."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from etl.dashboard.app import (
    DATA_DOCS_INDEX,
    DashboardDep,
    ViewerDep,
    _batch_report_href,
    _validation_href,
    trend_charts,
)

router = APIRouter()


@router.get("/runs", name="runs", response_class=HTMLResponse)
def runs_page(request: Request, viewer: ViewerDep, dashboard: DashboardDep) -> Response:
    from etl.dashboard import data

    with dashboard.connection() as connection:
        history = data.runs(connection)
    return dashboard.render(
        request,
        "runs.html",
        viewer,
        section="runs",
        title="Runs and trends",
        runs=history,
        **trend_charts(history),
    )


@router.get("/runs/{run_id}", name="run", response_class=HTMLResponse)
def run_page(request: Request, run_id: str, viewer: ViewerDep, dashboard: DashboardDep) -> Response:
    from etl.dashboard import data

    with dashboard.connection() as connection:
        batch_ids = data.run_batch_ids(connection, run_id)
        if not batch_ids:  # a batch loaded without a run id is a run of its own
            batch_ids = [run_id]
        batches = data.batch_figures(connection, batch_ids)
        if not batches:
            raise StarletteHTTPException(404, f"no run {run_id!r}")
        checks = data.check_rows(connection, batch_ids)
    run = data.RunSummary(run_id=run_id, batches=sorted(batches, key=lambda b: b.system))
    return dashboard.render(
        request,
        "run.html",
        viewer,
        section="runs",
        title=f"Run {run_id}",
        run=run,
        checks=checks,
        validation_report=_validation_href(request, dashboard, run_id),
        batch_reports=[
            (
                batch.system,
                batch.batch_id,
                _batch_report_href(request, dashboard, batch.batch_id, "summary.html"),
                _batch_report_href(request, dashboard, batch.batch_id, DATA_DOCS_INDEX),
            )
            for batch in run.batches
        ],
    )
