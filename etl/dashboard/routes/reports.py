"""Reports: the mapping docs and validation reports, and their files."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from etl.dashboard.app import (
    BATCH_REPORTS,
    DATA_DOCS_INDEX,
    DashboardDep,
    ViewerDep,
    _batch_report_folders,
    _mapping_docs_href,
    _report_file_href,
    _serve_file,
    url_path,
)

router = APIRouter()


@router.get("/reports", name="reports", response_class=HTMLResponse)
def reports_page(request: Request, viewer: ViewerDep, dashboard: DashboardDep) -> Response:
    root = dashboard.validation_root()
    runs = (
        sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != BATCH_REPORTS)
        if root.is_dir()
        else []
    )
    return dashboard.render(
        request,
        "reports.html",
        viewer,
        section="reports",
        title="Reports",
        mapping_docs=_mapping_docs_href(request, dashboard),
        validation=[
            (
                name,
                _report_file_href(request, dashboard, name, "summary.html"),
                _report_file_href(request, dashboard, name, DATA_DOCS_INDEX),
            )
            for name in reversed(runs)
        ],
        batch_reports=[
            (
                name,
                _report_file_href(request, dashboard, name, "summary.html"),
                _report_file_href(request, dashboard, name, DATA_DOCS_INDEX),
            )
            for name in _batch_report_folders(dashboard)
        ],
    )


# Report files are served under the same layout as ``<home>`` (docs/, reports/validation/),
# so the relative links between them (a summary's link to the mapping docs) resolve.
@router.get("/files/docs/{path:path}", name="docs_file")
def docs_file(path: str, viewer: ViewerDep, dashboard: DashboardDep) -> Response:
    return _serve_file(dashboard.docs_root(), path, dashboard.frame_ancestors)


@router.get("/files/reports/validation/{path:path}", name="validation_file")
def validation_file(path: str, viewer: ViewerDep, dashboard: DashboardDep) -> Response:
    return _serve_file(dashboard.validation_root(), path, dashboard.frame_ancestors)


@router.get("/files/validation/{path:path}", name="validation_file_before")
def validation_file_before(request: Request, path: str, viewer: ViewerDep) -> Response:
    """Where validation reports were served before: links people kept still work."""
    return RedirectResponse(url_path(request, "validation_file", path=path), 308)
