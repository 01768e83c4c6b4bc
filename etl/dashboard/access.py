"""The dashboard's share of the access log: page views, evidence views and downloads, failed
sign-ins.

A plain ASGI middleware (registered in ``app.py``) around every request:

* it finds the viewer the way the routes do (``Dashboard.authenticator``) and serves the request
  *as* that person (``etl.core.audit.acting_as``), so what the pages read through the steward
  queue is logged under the signed-in user, never the server's OS user;
* it logs the view when the response starts, before any of its body leaves: a page that could
  not be logged is not shown (the request fails instead);
* a sign-in that fails (a wrong token posted to ``/login``, an unknown bearer token, a forged
  or expired session cookie) is logged as ``dashboard_sign_in_failed`` with the client address
  and reason; never the token.

Only the path is logged, never the query string.
"""

from __future__ import annotations

import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from etl.core.audit import DASHBOARD, acting_as, record_access

UNAUTHENTICATED = "unauthenticated"
# Evidence packs: zip downloads of a wave's evidence (``/waves/<wave>/evidence[/<label>]``) and a
# recorded pack's text in a page (``/waves/<wave>/evidence/<label>/evidence.md``).
_EVIDENCE = re.compile(
    r"/waves/(?P<wave>[^/]+)/evidence(?:/(?P<label>[^/]+)(?P<text>/evidence\.md)?)?$"
)
_FILES = "/files/"


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        dashboard = scope["app"].state.dashboard
        request = Request(scope)
        viewer, refusal = await _viewer(dashboard, request)
        path = scope.get("path", "")
        method = scope.get("method", "GET")

        async def logged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                await _log(dashboard.settings, request, viewer, refusal, method, path, status)
            await send(message)

        if viewer is None:
            await self.app(scope, receive, logged_send)
            return
        with acting_as(viewer.name, DASHBOARD):
            await self.app(scope, receive, logged_send)


async def _viewer(dashboard, request: Request):
    """(viewer, None), or (None, why a credential on the request was refused)."""
    from etl.dashboard.auth import Forbidden, NotAuthenticated

    has_credential = "authorization" in request.headers or bool(request.cookies)
    try:
        return await dashboard.authenticator.authenticate(request), None
    except (NotAuthenticated, Forbidden) as error:
        return None, (str(error) if has_credential else None)


async def _log(settings, request: Request, viewer, refusal, method, path, status) -> None:
    client = request.client.host if request.client else None
    if viewer is None:
        # 401: wrong user name or token; 429: refused while sign-ins are rate limited.
        failed_login = method == "POST" and path.endswith("/login") and status in (401, 429)
        if failed_login or (refusal and status in (401, 403)):
            await run_in_threadpool(
                record_access,
                settings,
                "dashboard_sign_in_failed",
                "",
                "",
                0,
                user_name=UNAUTHENTICATED,
                purpose="security",
                detail={
                    "path": path,
                    "client": client,
                    "reason": (
                        ("rate limited" if status == 429 else "token not valid")
                        if failed_login
                        else refusal
                    ),
                },
            )
        return
    if status >= 400:
        return  # refused, not found or failed: nothing was shown
    evidence = _EVIDENCE.search(path)
    if evidence and method == "GET" and status < 300:
        action = "dashboard_evidence_view" if evidence["text"] else "dashboard_evidence_download"
        detail = {"path": path, "wave": evidence["wave"], "pack": evidence["label"] or "fresh"}
    elif _FILES in path:
        action, detail = "dashboard_file", {"path": path, "status": status}
    else:
        action, detail = "dashboard_view", {"path": path, "method": method, "status": status}
    detail["client"] = client
    await run_in_threadpool(record_access, settings, action, "", "", 0, detail=detail)
