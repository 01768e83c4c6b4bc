"""Sign in and out: the token form of the standalone dashboard (Airflow signs in its own users)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from etl.dashboard.app import (
    Dashboard,
    DashboardDep,
    ViewerDep,
    _local_path,
    _Refused,
    url_path,
)
from etl.dashboard.auth import SESSION_COOKIE, TokenAuthenticator, Viewer
from etl.dashboard.sessions import SESSION_SECONDS

router = APIRouter()


@router.get("/login", name="login_form", response_class=HTMLResponse)
def login_form(request: Request, dashboard: DashboardDep, next: str = "") -> Response:
    authenticator = dashboard.authenticator
    return dashboard.render(
        request,
        "login.html",
        None,
        title="Sign in",
        message=None,
        login_form=authenticator.has_login_form,
        login_url=authenticator.login_url(request),
        next_path=next,
    )


def login_refused(
    request: Request, dashboard: Dashboard, status_code: int, message: str, next_path: str
):
    authenticator = dashboard.authenticator
    return dashboard.render(
        request,
        "login.html",
        None,
        status_code=status_code,
        title="Sign in",
        message=message,
        login_form=authenticator.has_login_form,
        login_url=authenticator.login_url(request),
        next_path=next_path,
    )


@router.post("/login", name="login")
async def login(request: Request, dashboard: DashboardDep) -> Response:
    authenticator = dashboard.authenticator
    form = await request.form()
    name = str(form.get("name", "")).strip()[:200]
    token = str(form.get("token", ""))
    next_path = str(form.get("next", ""))
    if not isinstance(authenticator, TokenAuthenticator):
        return login_refused(request, dashboard, 401, "Sign in through Airflow.", next_path)
    address = request.client.host if request.client else "unknown"
    store = authenticator.store
    lockout = await run_in_threadpool(store.lockout, name, address)
    if lockout is not None:
        # Refused even with the right token: otherwise the limit would not stop guessing.
        retry_at = dt.datetime.fromtimestamp(lockout.retry_at, dt.UTC)
        minutes = -(-lockout.retry_after_seconds // 60)
        whose = "for this user" if lockout.scope == "user" else "from this address"
        response = login_refused(
            request,
            dashboard,
            429,
            f"Too many failed sign-ins {whose}. "
            f"Try again after {retry_at:%H:%M:%S} UTC (in {minutes} min).",
            next_path,
        )
        response.headers["Retry-After"] = str(lockout.retry_after_seconds)
        return response
    user = authenticator.user_for_token(token, name) if name else None
    if user is None:
        await run_in_threadpool(store.record_failure, name, address)
        # Never says which of the two was wrong: no guessing user names.
        return login_refused(
            request, dashboard, 401, "That user name and token do not match.", next_path
        )
    await run_in_threadpool(store.clear_failures, user.name)
    cookie = await run_in_threadpool(authenticator.session_cookie, user)
    response = RedirectResponse(_local_path(request, next_path), 303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=dashboard.options.tls or request.url.scheme == "https",
        path=request.scope.get("root_path") or "/",
    )
    return response


@router.post("/logout", name="logout")
async def logout(request: Request, viewer: ViewerDep, dashboard: DashboardDep) -> Response:
    await _require_csrf(request, dashboard, viewer)
    authenticator = dashboard.authenticator
    if isinstance(authenticator, TokenAuthenticator):
        # Server-side: the cookie, wherever a copy of it is, opens nothing from now on.
        await run_in_threadpool(authenticator.end_session, viewer)
    response = RedirectResponse(url_path(request, "login_form"), 303)
    response.delete_cookie(
        SESSION_COOKIE,
        path=request.scope.get("root_path") or "/",
        httponly=True,
        samesite="strict",
        secure=dashboard.options.tls or request.url.scheme == "https",
    )
    return response


async def _require_csrf(request: Request, dashboard: Dashboard, viewer: Viewer) -> dict:
    form = dict(await request.form(max_fields=5000))
    if viewer.needs_csrf and not dashboard.csrf.is_valid(viewer, form.get("csrf")):
        raise _Refused(403, "the form has expired or did not come from this dashboard")
    return form


# ------------------------------------------------------------------ pages
