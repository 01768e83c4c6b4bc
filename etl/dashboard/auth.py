"""Who is asking, and what they may do: project leads read, data stewards also act.

Two ways in, one result (a ``Viewer``):

* **standalone** (``vardflytt dashboard``): users with tokens, from ``VARDFLYTT_DASHBOARD_USERS``
  (``name:role:token`` or ``name:role:sha256:<hex digest of the token>``, comma-separated). A
  token is sent as ``Authorization: Bearer <token>`` or, with the user name, exchanged at
  ``/login`` for a signed, HTTP-only, same-site session cookie. Without the variable, a local
  demo gets two users (``lead`` and ``steward``) with random tokens in
  ``<home>/secrets/dashboard-users.json`` (mode 0600),
  the way the pseudonym key is made for a demo; production sets the variable from its secret
  store.
* **inside Airflow** (the plugin): Airflow's own login. Plugin routes are not protected by
  Airflow by default, so every route checks Airflow's JWT (bearer header or Airflow's session
  cookie) and the auth manager's permission to use the website; the Airflow user names in
  ``VARDFLYTT_DASHBOARD_STEWARDS`` may act as stewards.

Standalone sessions live server-side (``etl/dashboard/sessions.py``): the cookie holds a signed
random session id, signing out deletes the session, failed sign-ins are rate limited per user
name and per client address. A form post authenticated by a cookie must also carry a CSRF token
signed for that user *and that session* (a token from another or an ended session is refused).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.requests import Request

from etl.dashboard.sessions import SESSION_SECONDS, SessionStore
from etl.settings import Settings

SESSION_COOKIE = "vardflytt_dashboard"
AIRFLOW_COOKIE = "_token"  # Airflow's own session cookie (its JWT)
MIN_TOKEN_CHARACTERS = 16
DEMO_USERS_FILE = "dashboard-users.json"
SECRET_FILE = "dashboard.key"


class Role(StrEnum):
    LEAD = "lead"  # reads every page
    STEWARD = "steward"  # reads, and decides on quarantined rows


class NotAuthenticated(Exception):
    """No valid credential on the request."""


class Forbidden(Exception):
    """Authenticated, but not allowed to do this."""


class DashboardSettings(BaseSettings):
    """The dashboard's own configuration, read from the environment at run time."""

    model_config = SettingsConfigDict(env_prefix="VARDFLYTT_DASHBOARD_", extra="ignore")

    users: str | None = Field(default=None, description="name:role:token, comma-separated")
    secret: str | None = Field(default=None, description="Key signing sessions and CSRF tokens")
    stewards: str = Field(default="", description="Airflow user names who may act as stewards")
    tls: bool = Field(
        default=False,
        description="Served over HTTPS (directly or behind a TLS proxy): Secure cookies and HSTS",
    )


@dataclass(frozen=True)
class DashboardUser:
    name: str
    role: Role
    token_sha256: str


@dataclass(frozen=True)
class Viewer:
    """The authenticated person behind a request."""

    name: str
    role: Role
    via: str  # bearer | session | airflow
    # The sign-in this request rides on (cookie-based only); a secret, so kept out of repr.
    session_id: str | None = field(default=None, repr=False)

    @property
    def can_act(self) -> bool:
        return self.role == Role.STEWARD

    @property
    def needs_csrf(self) -> bool:
        """Cookies ride along on cross-site posts; a bearer header does not."""
        return self.via != "bearer"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_users(text: str) -> list[DashboardUser]:
    """``name:role:token`` or ``name:role:sha256:<hex>`` entries, comma-separated."""
    users = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        name, _, rest = entry.partition(":")
        role, _, credential = rest.partition(":")
        if not name or not credential:
            raise ValueError(f"dashboard user {name or entry[:12]!r}: write name:role:token")
        try:
            parsed_role = Role(role)
        except ValueError as error:
            raise ValueError(
                f"dashboard user {name!r}: role {role!r} is not one of "
                f"{', '.join(r.value for r in Role)}"
            ) from error
        if credential.startswith("sha256:"):
            digest = credential.removeprefix("sha256:").lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"dashboard user {name!r}: sha256 digest must be 64 hex digits")
        elif len(credential) < MIN_TOKEN_CHARACTERS:
            raise ValueError(
                f"dashboard user {name!r}: a token needs at least {MIN_TOKEN_CHARACTERS} characters"
            )
        else:
            digest = token_digest(credential)
        users.append(DashboardUser(name=name, role=parsed_role, token_sha256=digest))
    return users


def _secret_file(settings: Settings, name: str) -> Path:
    return Path(settings.home) / "secrets" / name


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def dashboard_secret(settings: Settings, configured: str | None = None) -> bytes:
    """The key signing sessions and CSRF tokens: configured, or made once for a local demo."""
    if configured:
        if len(configured) < MIN_TOKEN_CHARACTERS:
            raise ValueError(f"VARDFLYTT_DASHBOARD_SECRET needs {MIN_TOKEN_CHARACTERS}+ characters")
        return configured.encode("utf-8")
    path = _secret_file(settings, SECRET_FILE)
    if not path.exists():
        # Another process (a second API server worker) may make it first.
        with contextlib.suppress(FileExistsError):
            _write_private(path, secrets.token_hex(32))
    return path.read_text("utf-8").strip().encode("utf-8")


def demo_tokens(settings: Settings, create: bool = False) -> dict[str, str]:
    """The local demo's tokens by user name (``lead``, ``steward``), made once if asked."""
    path = _secret_file(settings, DEMO_USERS_FILE)
    if not path.exists():
        if not create:
            return {}
        tokens = {
            Role.LEAD.value: secrets.token_urlsafe(24),
            Role.STEWARD.value: secrets.token_urlsafe(24),
        }
        _write_private(path, json.dumps(tokens, indent=2))
    return json.loads(path.read_text("utf-8"))


def configured_users(settings: Settings, dashboard: DashboardSettings) -> list[DashboardUser]:
    if dashboard.users:
        return parse_users(dashboard.users)
    return [
        DashboardUser(name=name, role=Role(name), token_sha256=token_digest(token))
        for name, token in demo_tokens(settings).items()
    ]


class Authenticator:
    """Says who a request comes from, or raises ``NotAuthenticated`` / ``Forbidden``."""

    has_login_form = False

    async def authenticate(self, request: Request) -> Viewer:
        raise NotImplementedError

    def login_url(self, request: Request) -> str | None:
        return None


def _bearer(request: Request) -> str | None:
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    return credential.strip() if scheme.lower() == "bearer" and credential.strip() else None


class TokenAuthenticator(Authenticator):
    """Configured users with tokens: a bearer header, or a session cookie from ``/login``."""

    has_login_form = True

    def __init__(
        self, users: list[DashboardUser], secret: bytes, store: SessionStore | None = None
    ) -> None:
        self.users = {user.token_sha256: user for user in users}
        self.sessions = URLSafeTimedSerializer(secret, salt="vardflytt-dashboard-session")
        # In memory unless given a file: sessions then end when the process does.
        self.store = store if store is not None else SessionStore(None)

    def user_for_token(self, token: str, name: str | None = None) -> DashboardUser | None:
        """The user holding ``token`` (and called ``name``, when a name is given)."""
        digest = token_digest(token)
        for known, user in self.users.items():
            if hmac.compare_digest(known, digest) and (name is None or user.name == name):
                return user
        return None

    def session_cookie(self, user: DashboardUser) -> str:
        """Start a server-side session for ``user``; the cookie value names it (signed)."""
        session = self.store.start(user.name, user.token_sha256[:16])
        return self.sessions.dumps({"sid": session.session_id})

    def end_session(self, viewer: Viewer) -> None:
        if viewer.session_id:
            self.store.end(viewer.session_id)

    async def authenticate(self, request: Request) -> Viewer:
        token = _bearer(request)
        if token is not None:
            user = self.user_for_token(token)
            if user is None:
                raise NotAuthenticated("unknown token")
            return Viewer(user.name, user.role, "bearer")
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            raise NotAuthenticated("no credential")
        try:
            signed = self.sessions.loads(cookie, max_age=SESSION_SECONDS)
        except BadSignature as error:
            raise NotAuthenticated("invalid or expired session") from error
        session_id = signed.get("sid") if isinstance(signed, dict) else None
        session = self.store.find(session_id) if isinstance(session_id, str) else None
        if session is None:
            raise NotAuthenticated("signed out or expired session")
        # A session lasts only while its user keeps the same token (revoking a token ends it).
        for user in self.users.values():
            if user.name == session.user_name and user.token_sha256[:16] == (
                session.token_fingerprint
            ):
                return Viewer(user.name, user.role, "session", session.session_id)
        raise NotAuthenticated("session of an unknown user")


class AirflowAuthenticator(Authenticator):
    """Airflow's login: its JWT (bearer or Airflow's cookie) and the auth manager's verdict."""

    def __init__(self, stewards: set[str]) -> None:
        self.stewards = stewards

    async def authenticate(self, request: Request) -> Viewer:
        from airflow.api_fastapi.app import get_auth_manager
        from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
        from airflow.api_fastapi.core_api.security import get_user
        from fastapi import HTTPException
        from fastapi.security import HTTPAuthorizationCredentials

        token = _bearer(request)
        credentials = (
            HTTPAuthorizationCredentials(scheme="Bearer", credentials=token) if token else None
        )
        try:
            user = await get_user(request, None, credentials)
        except HTTPException as error:
            raise NotAuthenticated(str(error.detail)) from error
        if not get_auth_manager().is_authorized_view(access_view=AccessView.WEBSITE, user=user):
            raise Forbidden("Airflow does not let this user use the website")
        name = user.get_name()
        role = Role.STEWARD if name in self.stewards else Role.LEAD
        # Airflow's sign-in is its JWT: CSRF tokens are bound to it, so they end with it.
        return Viewer(name, role, "airflow", token or request.cookies.get(AIRFLOW_COOKIE))

    def login_url(self, request: Request) -> str | None:
        from airflow.api_fastapi.app import get_auth_manager

        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        try:
            # Back to the page asked for after signing in (Airflow checks it is its own URL).
            return get_auth_manager().get_url_login(next_url=here)
        except Exception:  # an auth manager without a login page: say so, do not crash
            return None


def _session_binding(viewer: Viewer) -> str:
    """What ties a CSRF token to one sign-in, without putting the session id in the page."""
    if not viewer.session_id:
        return ""
    return hashlib.sha256(b"csrf\x1f" + viewer.session_id.encode("utf-8")).hexdigest()[:32]


class CsrfTokens:
    """Form tokens signed for one user and one session; valid for a session's length."""

    def __init__(self, secret: bytes) -> None:
        self.serializer = URLSafeTimedSerializer(secret, salt="vardflytt-dashboard-csrf")

    def issue(self, viewer: Viewer) -> str:
        return self.serializer.dumps({"user": viewer.name, "session": _session_binding(viewer)})

    def is_valid(self, viewer: Viewer, token: object) -> bool:
        """A form's token, as posted: anything but a non-empty string (a file, say) is refused."""
        if not isinstance(token, str) or not token:
            return False
        try:
            signed = self.serializer.loads(token, max_age=SESSION_SECONDS)
        except BadSignature:
            return False
        if not isinstance(signed, dict):
            return False
        return hmac.compare_digest(str(signed.get("user")), viewer.name) and hmac.compare_digest(
            str(signed.get("session")), _session_binding(viewer)
        )
