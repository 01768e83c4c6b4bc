"""Data residency: patient data goes only to hosts and storage the operator has declared.

Two lists, read from the environment at run time:

``VARDFLYTT_ALLOWED_HOSTS``
    Comma-separated CIDRs and host names that databases (core, sources, Airflow's metadata
    database and connections) may be on. Default: loopback only (``127.0.0.0/8, ::1,
    localhost``). Unix sockets and SQLite files have no host and are always allowed here (a
    SQLite file is a storage path, below). A host *name* is allowed only when it is listed
    (matched by name, case-insensitively; DNS is never asked, because what a name resolves to can
    change after the check); an IP literal must be inside a listed CIDR.

``VARDFLYTT_ALLOWED_STORAGE_ROOTS``
    Comma-separated folders and root URLs (``s3://bucket/prefix``, ``https://host/path``) that
    patient data may be written under: the landing zone and its stage files, a SQLite core,
    evidence packs, reports given an ``--out``, the source export folders read. When set it is the
    whole list. When unset, the default is what the operator already named in vardflytt's own
    settings: ``VARDFLYTT_HOME`` and the folders of ``VARDFLYTT_STORAGE_ROOT``,
    ``VARDFLYTT_ESTATE_DIR``, ``VARDFLYTT_LANDING_DIR`` and ``VARDFLYTT_SOURCE_*_PATH`` (and the
    SQLite core file named by ``VARDFLYTT_CORE_URL``). Anything else, such as an ``--out`` folder
    elsewhere or any remote URL, is refused until it is listed. An URL storage root
    (``s3://``) must be listed, and its S3 endpoint's host must be an allowed host
    (etl/core/storage.py); a task's working copy of it is in ``VARDFLYTT_HOME/scratch``, so an
    explicit list names ``VARDFLYTT_HOME`` too.

Every check runs before the connection is made or the first byte written, and a refusal names
the setting, the host or path (never a password) and how to allow it.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from etl.core.redact import redact
from etl.settings import Settings, get_settings

if TYPE_CHECKING:
    import sqlalchemy as sa

HOSTS_VARIABLE = "VARDFLYTT_ALLOWED_HOSTS"
ROOTS_VARIABLE = "VARDFLYTT_ALLOWED_STORAGE_ROOTS"
DEFAULT_HOSTS = ("127.0.0.0/8", "::1", "localhost")
_SOURCE_PATH_PREFIX, _SOURCE_PATH_SUFFIX = "VARDFLYTT_SOURCE_", "_PATH"
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ResidencyError(PermissionError):
    """A connection or a write to a host or place the operator has not allowed."""


def _items(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def _is_url(location: str) -> bool:
    scheme = urlsplit(location).scheme
    return len(scheme) > 1 and "://" in location  # "C:" would be a drive, not a scheme


@dataclass(frozen=True)
class Residency:
    """The allowed hosts and storage roots in force."""

    names: frozenset[str]
    networks: tuple[_Network, ...]
    roots: tuple[Path, ...]
    root_urls: tuple[str, ...]
    roots_are_explicit: bool

    @classmethod
    def of(cls, settings: Settings | None = None) -> Residency:
        settings = settings or get_settings()
        names: set[str] = set()
        networks: list[_Network] = []
        for entry in _items(settings.allowed_hosts) or list(DEFAULT_HOSTS):
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                names.add(entry.lower().rstrip("."))
        explicit = _items(settings.allowed_storage_roots)
        entries = explicit or [str(path) for path in default_roots(settings)]
        return cls(
            names=frozenset(names),
            networks=tuple(networks),
            roots=tuple(_real(Path(entry)) for entry in entries if not _is_url(entry)),
            root_urls=tuple(entry.rstrip("/") for entry in entries if _is_url(entry)),
            roots_are_explicit=bool(explicit),
        )

    # --- hosts -------------------------------------------------------------------------------

    def host_allowed(self, host: str) -> bool:
        address = _ip(host)
        if address is not None:
            return any(address in network for network in self.networks)
        return host.lower().rstrip(".") in self.names

    def check_host(self, host: str, setting: str) -> None:
        if not self.host_allowed(host):
            kind = "IP address" if _ip(host) is not None else "host name"
            how = (
                f"add a CIDR holding it to {HOSTS_VARIABLE}"
                if kind == "IP address"
                else f"add the name itself to {HOSTS_VARIABLE} (names are not resolved)"
            )
            raise ResidencyError(
                f"data residency: {setting} points at {kind} '{host}', which is not an allowed "
                f"host; nothing was connected. Allowed: {self._hosts_text()}. If patient data "
                f"may go there, {how}."
            )

    def _hosts_text(self) -> str:
        return ", ".join([*(str(n) for n in self.networks), *sorted(self.names)]) or "(none)"

    # --- storage -----------------------------------------------------------------------------

    def storage_allowed(self, location: str | Path) -> bool:
        text = str(location)
        if _is_url(text):
            parts = urlsplit(text)
            if parts.scheme == "file":
                return self.storage_allowed(parts.path)
            key = _url_key(text)
            return key is not None and any(
                key[:3] == root[:3] and key[3][: len(root[3])] == root[3]
                for root in map(_url_key, self.root_urls)
                if root is not None
            )
        path = _real(Path(text))
        return any(path == root or path.is_relative_to(root) for root in self.roots)

    def check_storage(self, location: str | Path, setting: str) -> None:
        if not self.storage_allowed(location):
            roots = [*(str(r) for r in self.roots), *self.root_urls] or ["(none)"]
            source = (
                ROOTS_VARIABLE
                if self.roots_are_explicit
                else f"the default (unset {ROOTS_VARIABLE}: VARDFLYTT_HOME and the folders "
                "named in VARDFLYTT_* settings)"
            )
            raise ResidencyError(
                f"data residency: {setting} is '{redact(location)}', outside the allowed storage "
                f"roots; nothing was read or written there. Allowed by {source}: "
                f"{', '.join(roots)}. If patient data may be stored there, add it (or a folder "
                f"above it) to {ROOTS_VARIABLE}."
            )

    # --- database URLs -----------------------------------------------------------------------

    def check_database_url(self, url: str, setting: str) -> None:
        """Refuse a database URL whose host (or SQLite file) is not allowed."""
        import sqlalchemy as sa

        try:
            parsed = sa.make_url(url)
        except Exception:
            raise ResidencyError(
                f"data residency: {setting} is not a database URL vardflytt can read "
                f"('{redact(url)}'), so where it connects cannot be checked; nothing was connected"
            ) from None
        if parsed.get_backend_name() == "sqlite":
            database = (parsed.database or "").removeprefix("file:")
            if database and database != ":memory:" and not database.startswith(":memory:"):
                self._check_sqlite_file(database, setting)
            return
        for host in database_hosts(parsed):
            self.check_host(host, setting)

    def _check_sqlite_file(self, database: str, setting: str) -> None:
        # Under the default roots a SQLite file named by a setting is allowed by being named
        # (see the module docstring); an explicit list decides for every file.
        if self.roots_are_explicit:
            self.check_storage(database, setting)


def database_hosts(parsed: sa.URL) -> list[str]:
    """Every network host a SQLAlchemy URL may connect to; unix sockets are left out.

    libpq takes further hosts from the query (``host=a,b``, ``hostaddr=``) and uses them before
    the URL's own host, so each one is checked."""
    hosts: list[str] = []
    if parsed.host:
        hosts.append(parsed.host)
    for key in ("host", "hostaddr"):
        values = parsed.query.get(key)
        for value in [values] if isinstance(values, str) else list(values or ()):
            hosts += [h.strip() for h in value.split(",") if h.strip()]
    # A path (or an abstract socket name) is a unix socket on this machine: no network.
    return [host for host in hosts if not host.startswith(("/", "@"))]


def default_roots(settings: Settings) -> list[Path]:
    """Where data may be written when the operator has not listed the roots."""
    roots = [settings.home, settings.resolved_estate_dir]
    if not settings.is_remote_storage:  # an URL root is allowed only by being listed
        roots += [settings.storage_dir, settings.resolved_landing_dir]
    elif settings.landing_dir is not None:
        roots.append(settings.landing_dir)
    roots += [
        Path(value)
        for name, value in os.environ.items()
        if name.startswith(_SOURCE_PATH_PREFIX) and name.endswith(_SOURCE_PATH_SUFFIX) and value
    ]
    return roots


def _url_key(url: str) -> tuple[str, str, int | None, tuple[str, ...]] | None:
    """Scheme, host, port and path segments of a storage URL (credentials and query ignored);
    None for a path that climbs (``..``), which is never under a root."""
    parts = urlsplit(url)
    segments = tuple(segment for segment in parts.path.split("/") if segment not in ("", "."))
    if ".." in segments:
        return None
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port, segments


def _real(path: Path) -> Path:
    """Absolute, with symbolic links and ``..`` resolved, even when the path does not exist yet."""
    return Path(os.path.realpath(path.expanduser()))


# --- the checks the rest of the code calls (one line at each place data may leave) -----------


def check_database_url(url: str, setting: str, settings: Settings | None = None) -> None:
    Residency.of(settings).check_database_url(url, setting)


def check_storage(location: str | Path, setting: str, settings: Settings | None = None) -> None:
    Residency.of(settings).check_storage(location, setting)


def check_airflow(environment: dict[str, str], settings: Settings) -> None:
    """Airflow's metadata database and every connection given in the environment."""
    residency = Residency.of(settings)
    metadata = environment.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") or _configured_metadata_url(
        Path(environment.get("AIRFLOW_HOME", settings.airflow_home))
    )
    if metadata:
        residency.check_database_url(
            metadata, "Airflow's metadata database (AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)"
        )
    # The Celery executor's broker and result backend carry task messages and results.
    for name in ("AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND"):
        value = environment.get(name, "")
        for host in connection_hosts(value.removeprefix("db+")) if value else []:
            residency.check_host(host, f"Airflow's Celery setting {name}")
    for name, value in sorted(environment.items()):
        if name.startswith("AIRFLOW_CONN_") and value:
            for host in connection_hosts(value):
                residency.check_host(host, f"Airflow connection {name}")


def _configured_metadata_url(airflow_home: Path) -> str | None:
    """``[database] sql_alchemy_conn`` of the project's airflow.cfg, when it sets one."""
    import configparser

    config_file = airflow_home / "airflow.cfg"
    if not config_file.exists():
        return None
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read(config_file, encoding="utf-8")
    value = parser.get("database", "sql_alchemy_conn", fallback="").strip()
    # Airflow's own default: a SQLite file in its home, which may be written as a template.
    return value if value and "{" not in value else None


def connection_hosts(value: str) -> Iterable[str]:
    """Hosts of an Airflow connection given as a URI or as JSON."""
    import json

    if value.lstrip().startswith("{"):
        try:
            content = json.loads(value)
        except ValueError:
            return []
        host = str(content.get("host") or "")
        return [h.strip() for h in host.split(",") if h.strip() and not h.startswith("/")]
    hostname = urlsplit(value).hostname
    return [hostname] if hostname else []
