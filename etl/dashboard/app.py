"""The dashboard's web application: server-rendered pages over the read model, nothing else.

``create_app`` builds it for either host: standalone (``vardflytt dashboard``, token users) or
inside Airflow (the plugin mounts it; Airflow's login). Every route but the sign-in form requires
an authenticated viewer; steward actions also require the steward role and, for cookie sessions,
a CSRF token. Pages carry a Content-Security-Policy that lets them load nothing from anywhere:
the stylesheet is inlined under its hash and the charts are inline SVG.

Every response also carries ``X-Frame-Options`` and CSP ``frame-ancestors`` (nobody may frame
the standalone dashboard; inside Airflow only Airflow's own UI, which shows plugin views in an
iframe), ``nosniff``, ``no-referrer`` and, when ``VARDFLYTT_DASHBOARD_TLS`` says it is served
over HTTPS, HSTS and ``Secure`` cookies. A path with a NUL, a control character, a broken
percent-escape or bytes that are not UTF-8 is a 404 before any route sees it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import mimetypes
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, unquote_to_bytes, urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from etl.batch import safe_batch_id
from etl.core import storage
from etl.dashboard import charts
from etl.dashboard.access import AccessLogMiddleware
from etl.dashboard.auth import (
    AirflowAuthenticator,
    Authenticator,
    CsrfTokens,
    DashboardSettings,
    Forbidden,
    NotAuthenticated,
    TokenAuthenticator,
    Viewer,
    configured_users,
    dashboard_secret,
)
from etl.dashboard.sessions import SessionStore
from etl.settings import Settings, get_settings

STYLESHEET = Path(__file__).with_name("static") / "dashboard.css"
QUEUE_PAGE_ROWS = 200
HISTORY_ROWS = 25
RESULT_SECONDS = 300  # a decision's banner shows for this long after the redirect
HSTS = "max-age=31536000; includeSubDomains"


# --------------------------------------------------------------------------- formatting


def _num(value: Any) -> str:
    if value is None:
        return "–"
    return f"{int(value):,}".replace(",", "\u202f")  # narrow no-break space, as Swedish writes


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}\u00a0%"


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 60:
        return f"{value:.1f}\u00a0s"
    minutes, seconds = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes}\u00a0min {seconds}\u00a0s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}\u00a0h {minutes}\u00a0min"


def _rate(value: float | None) -> str:
    return "–" if value is None else _num(round(value))


def _ts(value: dt.datetime | dt.date | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return value.isoformat()


@cache
def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("etl.dashboard", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(num=_num, pct=_pct, seconds=_seconds, rate=_rate, ts=_ts)
    from etl.dashboard.data import totals

    environment.globals.update(meter=charts.meter, totals=totals)
    return environment


@cache
def _stylesheet() -> tuple[str, str]:
    """The stylesheet and its CSP hash source."""
    text = STYLESHEET.read_text("utf-8")
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return text, f"'sha256-{digest}'"


NOT_FRAMED, FRAMED_BY_HOST = "'none'", "'self'"


def page_policy(frame_ancestors: str = NOT_FRAMED) -> str:
    """Nothing may be loaded from anywhere; framed by nobody (standalone) or the host (Airflow)."""
    return (
        f"default-src 'none'; style-src {_stylesheet()[1]}; img-src 'self' data:; "
        f"form-action 'self'; frame-ancestors {frame_ancestors}; base-uri 'none'"
    )


def file_policy(frame_ancestors: str = NOT_FRAMED) -> str:
    """Reports written by other tools (mapping docs, GX Data Docs) may use their own inline
    styles and scripts; they still may not reach any other host."""
    return (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
        f"img-src 'self' data:; frame-ancestors {frame_ancestors}; base-uri 'none'; "
        "connect-src 'none'"
    )


COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

# In a decoded path: NUL and other control characters, and U+FFFD (what a server decodes bytes
# that are not UTF-8 into). In a raw path: a % not followed by two hex digits.
_BAD_PATH_CHARACTER = re.compile(r"[\x00-\x1f\x7f\ufffd]")
_BROKEN_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def is_bad_path(scope: Scope) -> bool:
    """Whether a request's path (or query) holds bytes no page of ours can be named by."""
    if _BAD_PATH_CHARACTER.search(scope.get("path", "")):
        return True
    raw_path = scope.get("raw_path") or b""
    query = scope.get("query_string") or b""
    for raw in (raw_path, query.replace(b"+", b" ")):
        if _BROKEN_ESCAPE.search(raw):
            return True
        try:
            decoded = unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return True
        if _BAD_PATH_CHARACTER.search(decoded.replace("\t", " ")):
            return True
    return False


class SecurityMiddleware:
    """Refuses unnameable paths with a 404 and puts the security headers on every response."""

    def __init__(self, app: ASGIApp, dashboard: Dashboard) -> None:
        self.app, self.dashboard = app, dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = self.dashboard.security_headers()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                mutable = MutableHeaders(scope=message)
                for name, value in headers.items():
                    mutable.setdefault(name, value)
                mutable.setdefault(
                    "Content-Security-Policy",
                    f"default-src 'none'; frame-ancestors {self.dashboard.frame_ancestors}",
                )
            await send(message)

        if is_bad_path(scope):
            request = Request(scope)
            response = self.dashboard.render(
                request,
                "error.html",
                await self.dashboard.viewer_or_none(request),
                status_code=404,
                title="404",
                message="There is no such page.",
            )
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


# --------------------------------------------------------------------------- the application


class Dashboard:
    """What the routes share: settings (read lazily, at first use), authenticator, templates."""

    def __init__(
        self,
        settings_factory: Callable[[], Settings],
        authenticator_factory: Callable[[Settings], Authenticator],
        is_framed_by_host: bool = False,
    ) -> None:
        self._settings_factory = settings_factory
        self._authenticator_factory = authenticator_factory
        self._settings: Settings | None = None
        self._authenticator: Authenticator | None = None
        self._csrf: CsrfTokens | None = None
        self._results: URLSafeTimedSerializer | None = None
        self.options = DashboardSettings()
        self.frame_ancestors = FRAMED_BY_HOST if is_framed_by_host else NOT_FRAMED

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = self._settings_factory()
        return self._settings

    @property
    def authenticator(self) -> Authenticator:
        if self._authenticator is None:
            self._authenticator = self._authenticator_factory(self.settings)
        return self._authenticator

    @property
    def csrf(self) -> CsrfTokens:
        if self._csrf is None:
            self._csrf = CsrfTokens(dashboard_secret(self.settings, self.options.secret))
        return self._csrf

    @property
    def results(self) -> URLSafeTimedSerializer:
        """Signs the outcome of a steward decision for the redirect that shows it."""
        if self._results is None:
            secret = dashboard_secret(self.settings, self.options.secret)
            self._results = URLSafeTimedSerializer(secret, salt="vardflytt-dashboard-result")
        return self._results

    def security_headers(self) -> dict[str, str]:
        headers = {
            **COMMON_HEADERS,
            "X-Frame-Options": "SAMEORIGIN" if self.frame_ancestors == FRAMED_BY_HOST else "DENY",
        }
        if self.options.tls:
            headers["Strict-Transport-Security"] = HSTS
        return headers

    async def viewer_or_none(self, request: Request) -> Viewer | None:
        """The signed-in viewer, for an error page's navigation; nobody if not signed in (or if
        the failure is in signing in itself: an error page never fails in turn)."""
        try:
            return await self.authenticator.authenticate(request)
        except Exception:
            return None

    def connection(self):
        from etl.core.database import core_engine

        return core_engine(self.settings.resolved_core_url).connect()

    def render(
        self,
        request: Request,
        template: str,
        viewer: Viewer | None,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        def url(name: str, **params: Any) -> str:
            return url_path(request, name, **params)

        html = (
            _environment()
            .get_template(template)
            .render(
                url=url,
                viewer=viewer,
                csrf=self.csrf.issue(viewer) if viewer else "",
                # Our own file, inlined verbatim: escaping it would break its CSP hash.
                stylesheet=Markup(_stylesheet()[0]),
                now=dt.datetime.now(dt.UTC),
                section=context.pop("section", None),
                **context,
            )
        )
        headers = {
            **self.security_headers(),
            "Content-Security-Policy": page_policy(self.frame_ancestors),
        }
        return HTMLResponse(html, status_code=status_code, headers=headers)

    # Paths of reports other tools write, served read-only under authentication: under the
    # storage root (etl/core/storage.py), so reports and packs written on any worker; with an
    # s3:// root, this host's copy of the bucket's folder, brought up to date at each call.
    def docs_root(self) -> Path:
        return storage.readable(self.settings, "docs")

    def evidence_root(self) -> Path:
        return storage.readable(self.settings, "evidence")

    def validation_root(self) -> Path:
        return storage.readable(self.settings, "reports/validation")


class _Refused(Exception):
    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code, self.detail = status_code, detail


async def current_viewer(request: Request) -> Viewer:
    """The authenticated viewer of a request, or a refusal (401 sign in, 403 not allowed)."""
    dashboard: Dashboard = request.app.state.dashboard
    try:
        return await dashboard.authenticator.authenticate(request)
    except NotAuthenticated as error:
        raise _Refused(401, str(error)) from error
    except Forbidden as error:
        raise _Refused(403, str(error)) from error


ViewerDep = Annotated[Viewer, Depends(current_viewer)]


def current_dashboard(request: Request) -> Dashboard:
    """The dashboard (settings, authenticator, templates) of the app serving a request."""
    return request.app.state.dashboard


DashboardDep = Annotated[Dashboard, Depends(current_dashboard)]


def token_authenticator(settings: Settings) -> Authenticator:
    dashboard = DashboardSettings()
    return TokenAuthenticator(
        configured_users(settings, dashboard),
        dashboard_secret(settings, dashboard.secret),
        SessionStore.under(Path(settings.home)),
    )


def airflow_authenticator(_settings: Settings) -> Authenticator:
    stewards = {name.strip() for name in DashboardSettings().stewards.split(",") if name.strip()}
    return AirflowAuthenticator(stewards)


def create_app(
    settings: Settings | None = None,
    authenticator: Callable[[Settings], Authenticator] = token_authenticator,
    root_path: str = "",
    is_framed_by_host: bool = False,
) -> FastAPI:
    """The dashboard as an ASGI app; settings default to the environment at first request.

    ``is_framed_by_host``: inside Airflow, whose UI shows plugin views in an iframe of its own
    origin; the standalone dashboard may be framed by nobody.
    """
    dashboard = Dashboard(
        (lambda: settings) if settings is not None else get_settings,
        authenticator,
        is_framed_by_host,
    )
    app = FastAPI(
        title="vardflytt cutover dashboard",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # no schema endpoint: every route is a page behind a login
        root_path=root_path,
    )
    app.state.dashboard = dashboard
    app.add_middleware(AccessLogMiddleware)  # page views, downloads, failed sign-ins (PDL)
    app.add_middleware(SecurityMiddleware, dashboard=dashboard)

    app.exception_handler(_Refused)(_refused)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(Exception)(_server_error)
    # The pages: imported here, as they import this module's helpers.
    from etl.dashboard.routes import ROUTERS

    for router in ROUTERS:
        app.include_router(router)
    return app


# --------------------------------------------------------------------------- error pages


async def _refused(request: Request, error: _Refused) -> Response:
    dashboard: Dashboard = request.app.state.dashboard
    authenticator = dashboard.authenticator
    if error.status_code == 401:
        login_url = authenticator.login_url(request)
        # Inside Airflow a browser goes to Airflow's own sign-in page, which returns it here.
        if login_url and not authenticator.has_login_form and _is_page_request(request):
            return RedirectResponse(login_url, 303, headers=COMMON_HEADERS)
        response = dashboard.render(
            request,
            "login.html",
            None,
            status_code=401,
            title="Sign in",
            message="Sign in to see the cutover dashboard.",
            login_form=authenticator.has_login_form,
            login_url=login_url,
            next_path=request.url.path,
        )
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    return await _error_page(request, 403, "Not allowed", error.detail)


async def _http_error(request: Request, error: StarletteHTTPException) -> Response:
    return await _error_page(request, error.status_code, f"{error.status_code}", str(error.detail))


async def _server_error(request: Request, error: Exception) -> Response:
    # The error's text stays in the server's log: it may name things a page must not show.
    return await _error_page(
        request,
        500,
        "500",
        "Something went wrong on the server; the dashboard's log has the details. "
        "Try again, or go back to a page in the menu above.",
    )


async def _error_page(request: Request, status_code: int, title: str, message: str) -> Response:
    """An error page with the navigation, for whoever is signed in (or nobody)."""
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard.render(
        request,
        "error.html",
        await dashboard.viewer_or_none(request),
        status_code=status_code,
        title=title,
        message=message,
    )


def url_path(request: Request, name: str, **params: Any) -> str:
    """The path of one of this app's routes, under wherever it is mounted (Airflow: /vardflytt).

    ``request.url_for`` asks the outermost router, which inside Airflow is Airflow's own.
    """
    path = request.app.router.url_path_for(name, **params)
    return (request.scope.get("root_path") or "").rstrip("/") + str(path)


def _is_page_request(request: Request) -> bool:
    """A browser navigating to a page, not a program that should get a plain 401."""
    return request.method in {"GET", "HEAD"} and "text/html" in request.headers.get("accept", "")


def _require_wave(wave) -> None:
    if not (wave.batches or wave.transitions or wave.updated_at or wave.planned_systems):
        raise StarletteHTTPException(404, f"no wave {wave.name!r} in the plan or the ledger")


def _local_path(request: Request, wanted: str, default: str = "waves") -> str:
    """A redirect target inside this app only (never another host: no open redirect)."""
    root = request.scope.get("root_path") or ""
    if wanted.startswith("/") and not wanted.startswith("//") and wanted.startswith(root):
        return wanted
    return url_path(request, default)


def _zip(content: bytes, filename: str) -> Response:
    return Response(
        content,
        media_type="application/zip",
        headers={**COMMON_HEADERS, "Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _serve_file(root: Path, path: str, frame_ancestors: str = NOT_FRAMED) -> Response:
    try:
        base = root.resolve()
        target = (base / path).resolve()
        if target.is_dir():
            target = target / "index.html"
        is_found = target.is_relative_to(base) and target.is_file()
    except (ValueError, OSError):  # a name no file can have (the middleware stops most)
        is_found = False
    if not is_found:
        raise StarletteHTTPException(404, "no such report file")
    media_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return Response(
        target.read_bytes(),
        media_type=media_type,
        headers={**COMMON_HEADERS, "Content-Security-Policy": file_policy(frame_ancestors)},
    )


DATA_DOCS_INDEX = "data_docs/index.html"  # where etl/report/validation.py builds Data Docs
BATCH_REPORTS = "batches"  # etl/report/validation.py: BATCHES, each batch's report


def _mapping_docs_href(request: Request, dashboard: Dashboard) -> str | None:
    if (dashboard.docs_root() / "index.html").is_file():
        return url_path(request, "docs_file", path="index.html")
    return None


def _report_file_href(request: Request, dashboard: Dashboard, name: str, file: str) -> str | None:
    """A link to one file of a validation report (a run's folder, or ``batches/<batch>``), only
    if the file is there to serve."""
    root = dashboard.validation_root()
    parts = name.split("/")
    is_batch = len(parts) == 2 and parts[0] == BATCH_REPORTS
    if (len(parts) > 1 and not is_batch) or any(part in {"", ".", ".."} for part in parts):
        return None
    if not (root / name / file).is_file():
        return None
    return url_path(request, "validation_file", path=f"{name}/{file}")


def _batch_report_name(batch_id: str) -> str | None:
    """``batches/<batch>``: where a batch's own report is (every run writes one per batch)."""
    try:
        return f"{BATCH_REPORTS}/{safe_batch_id(batch_id)}"
    except ValueError:  # a name no batch can have
        return None


def _batch_report_href(
    request: Request, dashboard: Dashboard, batch_id: str, file: str
) -> str | None:
    """A link to one file of a batch's own report, only if the file is there to serve."""
    name = _batch_report_name(batch_id)
    return _report_file_href(request, dashboard, name, file) if name else None


def _batch_report_folders(dashboard: Dashboard) -> list[str]:
    """``batches/<batch>`` of every batch report, the one written last first."""
    root = dashboard.validation_root() / BATCH_REPORTS
    if not root.is_dir():
        return []
    written = [
        (summary.stat().st_mtime, folder.name)
        for folder in root.iterdir()
        if folder.is_dir() and (summary := folder / "summary.json").is_file()
    ]
    return [f"{BATCH_REPORTS}/{name}" for _, name in sorted(written, reverse=True)]


def _validation_href(request: Request, dashboard: Dashboard, run_id: str) -> str | None:
    """The run's Data Docs (or, without them, its summary), if a report was written for it."""
    for name in dict.fromkeys((run_id, safe_batch_id(run_id))):
        href = _report_href(request, dashboard, name)
        if href:
            return href
    return None


def _latest_report(dashboard: Dashboard) -> str | None:
    """The validation report written last, a run's or a batch's (``batches/<batch>``), by its
    summary's time (folder names are run ids, batch ids or ``latest``: none sorts by time)."""
    root = dashboard.validation_root()
    if not root.is_dir():
        return None
    folders = [p for p in root.iterdir() if p.is_dir() and p.name != BATCH_REPORTS]
    if (root / BATCH_REPORTS).is_dir():
        folders += [p for p in (root / BATCH_REPORTS).iterdir() if p.is_dir()]
    written = [
        (summary.stat().st_mtime, folder.relative_to(root).as_posix())
        for folder in folders
        if (summary := folder / "summary.json").is_file()
    ]
    return max(written)[1] if written else None


def _report_href(request: Request, dashboard: Dashboard, name: str) -> str | None:
    """A report's Data Docs, or without them its summary."""
    for file in (DATA_DOCS_INDEX, "summary.html"):
        href = _report_file_href(request, dashboard, name, file)
        if href:
            return href
    return None


def _read_result(dashboard: Dashboard, viewer: Viewer, token: str) -> tuple[str, str]:
    """(notice, error) of a decision this dashboard signed for this viewer, else nothing."""
    if not token:
        return "", ""
    try:
        result = dashboard.results.loads(token, max_age=RESULT_SECONDS)
    except BadSignature:
        return "", ""
    if not isinstance(result, dict) or result.get("viewer") != viewer.name:
        return "", ""
    text = str(result.get("text", ""))
    return (text, "") if result.get("ok") else ("", text)


def go_no_go_waiting(settings: Settings, wave):
    """The wave's go/no-go requests waiting in Airflow, for the wave page (``etl.cutover.
    waiting``): who may answer is the plan's ``airflow_users`` of each role."""
    from etl.cutover.waiting import go_no_go_status

    approvers = (wave.plan_criteria or {}).get("approvers") or {}
    plan_users = {role: list(a.get("airflow_users") or []) for role, a in approvers.items()}
    return go_no_go_status(settings, wave.name, plan_users)


def wave_plan(settings: Settings) -> dict[str, dict]:
    from etl.dashboard.wave_ledger import load_wave_plan

    return load_wave_plan(Path(settings.mappings_dir), settings.wave_plan)[0]


def run_chart_label(run) -> str:
    """A run on a chart's axis: its DAG, then its phase and when it started (runs of one DAG
    differ by their time), on two lines so that neither is long."""
    from etl.dashboard.data import PHASE_OF_STATE

    parts = run.label.split(" · ")
    phase = parts.pop() if len(parts) > 1 and parts[-1] in PHASE_OF_STATE.values() else None
    started = f"{run.started_at:%Y-%m-%d %H:%M}" if run.started_at else "not started"
    # A delta run checked only its new, changed and dependent rows: its shares are of those.
    delta = "delta (its processed rows)" if "delta" in getattr(run, "kinds", []) else None
    return " · ".join(parts) + "\n" + " · ".join(p for p in (phase, delta, started) if p)


def trend_charts(history) -> dict[str, Any]:
    from etl.dashboard.charts import Series, bar_chart, line_chart, percent

    labels = [run_chart_label(run) for run in history]
    x_title = "run (DAG · phase, start UTC)"
    return {
        "rows_chart": bar_chart(
            "Rows per run by outcome",
            labels,
            [
                Series(name, [run.total(name) for run in history], f"s-{name}")
                for name in ("loaded", "quarantined", "excluded", "merged")
            ],
            x_title=x_title,
            y_title="rows",
        ),
        "quality_chart": line_chart(
            "Rows passing checks and rows quarantined, per run: shares of the rows the run "
            "processed (a delta run only its new, changed and dependent rows, not the whole "
            "system; its earlier problems still open are on the steward page)",
            labels,
            [
                Series("rows passing checks", [r.dq_pass_rate for r in history], "s-rate"),
                Series("rows quarantined", [r.quarantine_rate for r in history], "s-rate2"),
            ],
            fmt=percent,
            maximum=1.0,
            x_title=x_title,
            y_title="share of the rows the run processed",
        ),
        "duration_chart": line_chart(
            "Run duration in seconds",
            labels,
            [Series("duration (s)", [r.duration_seconds for r in history], "s-time")],
            x_title=x_title,
            y_title="seconds",
        ),
        "throughput_chart": line_chart(
            "Throughput: source rows extracted per second of the run",
            labels,
            [Series("rows/s", [r.rows_per_second for r in history], "s-loaded")],
            x_title=x_title,
            y_title="rows per second",
        ),
    }


def core_chart(core) -> Any:
    """Rows in the core per source system that has any, from the same read model as the cards."""
    from etl.dashboard.charts import horizontal_bar_chart

    systems = [s for s in core.systems if s.is_in_core]
    return horizontal_bar_chart(
        "Rows in the core per source system",
        [s.system for s in systems],
        [s.rows_in_core for s in systems],
        "s-loaded",
        "rows in the core (promoted, not rolled back)",
    )


class _Message:
    def __init__(self, ok: bool, text: str) -> None:
        self.ok, self.text = ok, text


def _decide(
    settings: Settings,
    viewer: Viewer,
    handles: list[str],
    decision: str,
    justification: str | None,
) -> _Message:
    from etl.core.decisions import FIXED_AT_SOURCE, WAIVED
    from etl.steward import actions

    if not handles:
        return _Message(False, "choose at least one row")
    try:
        if decision == WAIVED:
            outcomes = actions.waive(settings, handles, justification or "", by=viewer.name)
        elif decision == FIXED_AT_SOURCE:
            outcomes = actions.fix_at_source(
                settings, handles, by=viewer.name, justification=justification
            )
        else:
            return _Message(False, f"unknown decision {decision!r}")
    except actions.StewardError as error:
        return _Message(False, str(error))
    recorded = sum(1 for o in outcomes if o.is_recorded)
    notes = sorted({o.note for o in outcomes if o.note})
    text = (
        f"{decision.replace('_', ' ')}: {recorded} row(s) recorded by {viewer.name}"
        + (f", {len(outcomes) - recorded} already so" if recorded < len(outcomes) else "")
        + (". " + " ".join(notes) if notes else "")
    )
    return _Message(True, text)


def render_steward(
    request: Request,
    dashboard: Dashboard,
    viewer: Viewer,
    system: str,
    check: str,
    reason: str,
    status: str,
    kind: str,
    batch: str,
    notice: str,
    error: str,
) -> Response:
    from etl.core.decisions import ReviewStatus
    from etl.steward import actions
    from etl.steward.queue import QueueFilter, list_queue, summary

    settings = dashboard.settings
    try:
        review_status = ReviewStatus(status)
    except ValueError:
        review_status = ReviewStatus.OPEN
    query_filter = QueueFilter(
        system=system or None,
        check=check or None,
        reason=reason or None,
        batch_id=batch or None,
        status=review_status,
        is_flagged=kind == "flagged",
        limit=QUEUE_PAGE_ROWS,
    )
    page = list_queue(settings, query_filter)
    counts = summary(settings, batch or None)
    reasons = _quarantine_reasons(dashboard, batch)
    query = request.url.query
    back = request.url.path + (f"?{_without_messages(query)}" if query else "")
    # The chosen batch's own report; else the report written last (a batch's or a run's).
    report_name = _batch_report_name(batch) if batch else _latest_report(dashboard)
    return dashboard.render(
        request,
        "steward.html",
        viewer,
        section="steward",
        title="Data steward",
        page=page,
        summary=counts,
        reasons=reasons,
        systems=sorted({row.system for row in counts}),
        checks=sorted({row.check for row in counts}),
        reason_names=sorted({row["reason"] for row in reasons}),
        statuses=[s.value for s in ReviewStatus],
        query={
            "system": system,
            "check": check,
            "reason": reason,
            "status": review_status.value,
            "flagged": kind == "flagged",
            "batch": batch,
        },
        notice=notice,
        error=error,
        back=back,
        history=actions.history(settings, limit=HISTORY_ROWS),
        mapping_docs=_mapping_docs_href(request, dashboard),
        validation_report=_report_href(request, dashboard, report_name) if report_name else None,
        report_name=report_name,
    )


def _quarantine_reasons(dashboard: Dashboard, batch: str) -> list[dict[str, Any]]:
    """Quarantined rows per system, entity and reason: of the chosen batch, or by default of
    every problem still open (as the queue lists them)."""
    import sqlalchemy as sa

    from etl.core.tables import quarantine
    from etl.steward.queue import open_quarantine

    with dashboard.connection() as connection:
        chosen = (
            quarantine.c.batch_id == batch
            if batch
            else open_quarantine(dashboard.settings, connection)
        )
        return [
            dict(row._mapping)
            for row in connection.execute(
                sa.select(
                    quarantine.c.source_system,
                    quarantine.c.entity,
                    quarantine.c.reason,
                    sa.func.count().label("rows"),
                )
                .where(chosen)
                .group_by(quarantine.c.source_system, quarantine.c.entity, quarantine.c.reason)
                .order_by(quarantine.c.source_system, quarantine.c.entity, quarantine.c.reason)
            )
        ]


STEWARD_FILTERS = frozenset({"system", "check", "reason", "status", "kind", "batch"})


def _without_messages(query: str) -> str:
    """The page's filters, to come back to after a decision; nothing else from the URL."""
    return urlencode([(k, v) for k, v in parse_qsl(query) if k in STEWARD_FILTERS])
