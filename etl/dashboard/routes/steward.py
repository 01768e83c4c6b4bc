"""The steward's queue and decisions on quarantined and flagged rows."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from etl.dashboard.app import (
    DashboardDep,
    ViewerDep,
    _decide,
    _local_path,
    _read_result,
    _Refused,
    render_steward,
)

router = APIRouter()


@router.get("/steward", name="steward", response_class=HTMLResponse)
def steward_page(
    request: Request,
    viewer: ViewerDep,
    dashboard: DashboardDep,
    system: str = "",
    check: str = "",
    reason: str = "",
    status: str = "open",
    kind: str = "quarantined",
    batch: str = "",
    result: str = "",
) -> Response:
    # The banner is never text from the URL: only an outcome this dashboard signed for
    # this viewer a moment ago (a crafted or forwarded link shows nothing).
    notice, error = _read_result(dashboard, viewer, result)
    return render_steward(
        request, dashboard, viewer, system, check, reason, status, kind, batch, notice, error
    )


@router.post("/steward/decide", name="steward_decide")
async def steward_decide(request: Request, viewer: ViewerDep, dashboard: DashboardDep) -> Response:
    if not viewer.can_act:
        raise _Refused(403, "only data stewards may decide on quarantined rows")
    form = await request.form(max_fields=5000)
    if viewer.needs_csrf and not dashboard.csrf.is_valid(viewer, form.get("csrf")):
        raise _Refused(403, "the form has expired or did not come from this dashboard")
    handles = [str(h) for h in form.getlist("handle")]
    decision = str(form.get("decision", ""))
    justification = str(form.get("justification", "")).strip() or None
    back = _local_path(request, str(form.get("back", "")), default="steward")
    message = await run_in_threadpool(
        _decide, dashboard.settings, viewer, handles, decision, justification
    )
    signed = dashboard.results.dumps(
        {"viewer": viewer.name, "ok": message.ok, "text": message.text}
    )
    separator = "&" if "?" in back else "?"
    return RedirectResponse(f"{back}{separator}{urlencode({'result': signed})}", 303)
