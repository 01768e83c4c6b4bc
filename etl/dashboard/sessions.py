"""Server-side sign-in state of the standalone dashboard: sessions, and failed sign-in attempts.

A session cookie carries a random session id (signed, so a forged cookie never reaches the
store); the store keeps only the id's SHA-256, the user, and when the session started and was
last used. Signing out deletes the row, so a copied cookie is refused from then on; a session
also ends after ``SESSION_SECONDS`` in all and ``IDLE_SECONDS`` unused.

Failed sign-ins are counted per user name and per client address in a sliding window; past the
limit, sign-in is refused (even with the right token) until the window has moved on, and the
refusal says when.

The store is an owner-only SQLite file under ``<home>/dashboard/`` (not the core database: the
standalone dashboard may run beside a read-only core, and needs no core schema change), so it
survives restarts and is shared by the workers of one host. ``SessionStore(None)`` keeps it in
memory, for tests and single-process use.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SESSION_SECONDS = 8 * 3600  # a working day, then sign in again
IDLE_SECONDS = 3600  # unused this long: ended
TOUCH_SECONDS = 60  # record "last used" at most this often (fewer writes)
ATTEMPT_WINDOW_SECONDS = 15 * 60
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 20
STORE_FILE = "sessions.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dashboard_session (
    session_sha256 TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    token_fingerprint TEXT NOT NULL,
    started_at REAL NOT NULL,
    used_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS failed_sign_in (
    scope TEXT NOT NULL,          -- 'user:<sha256 of the name>' or 'address:<sha256 of it>'
    attempted_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_failed_sign_in ON failed_sign_in (scope, attempted_at);
"""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Session:
    session_id: str
    user_name: str
    token_fingerprint: str  # which token the user signed in with (revoking it ends the session)


@dataclass(frozen=True)
class Lockout:
    """Sign-in refused until ``retry_at`` (epoch seconds)."""

    retry_at: float
    scope: str  # "user" | "address"

    @property
    def retry_after_seconds(self) -> int:
        return max(1, int(self.retry_at - time.time()) + 1)


class SessionStore:
    """Sessions and failed sign-ins in SQLite: a file (owner-only) or, with ``None``, memory."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._memory: sqlite3.Connection | None = None
        if path is None:
            self._memory = sqlite3.connect(":memory:", check_same_thread=False)
            self._memory.executescript(_SCHEMA)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(path.parent, 0o700)
            if not path.exists():
                with contextlib.suppress(FileExistsError):  # another worker made it first
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.chmod(path, 0o600)
            connection = sqlite3.connect(path, timeout=10)
            try:
                connection.executescript(_SCHEMA)  # commits by itself
            finally:
                connection.close()

    @classmethod
    def under(cls, home: Path) -> SessionStore:
        return cls(Path(home) / "dashboard" / STORE_FILE)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._memory is not None:
                with self._memory:
                    yield self._memory
                return
            assert self.path is not None
            connection = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            try:
                connection.execute("BEGIN IMMEDIATE")
                yield connection
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            finally:
                connection.close()

    # ------------------------------------------------------------------ sessions

    def start(self, user_name: str, token_fingerprint: str) -> Session:
        session_id = secrets.token_urlsafe(32)
        now = time.time()
        with self._connect() as connection:
            connection.execute(
                "DELETE FROM dashboard_session WHERE started_at < ? OR used_at < ?",
                (now - SESSION_SECONDS, now - IDLE_SECONDS),
            )
            connection.execute(
                "INSERT INTO dashboard_session VALUES (?, ?, ?, ?, ?)",
                (_sha256(session_id), user_name, token_fingerprint, now, now),
            )
        return Session(session_id, user_name, token_fingerprint)

    def find(self, session_id: str) -> Session | None:
        """The live session with this id, or ``None`` (never started, signed out, expired)."""
        now = time.time()
        key = _sha256(session_id)
        with self._connect() as connection:
            row = connection.execute(
                "SELECT user_name, token_fingerprint, started_at, used_at "
                "FROM dashboard_session WHERE session_sha256 = ?",
                (key,),
            ).fetchone()
            if row is None:
                return None
            user_name, fingerprint, started_at, used_at = row
            if started_at < now - SESSION_SECONDS or used_at < now - IDLE_SECONDS:
                connection.execute("DELETE FROM dashboard_session WHERE session_sha256 = ?", (key,))
                return None
            if used_at < now - TOUCH_SECONDS:
                connection.execute(
                    "UPDATE dashboard_session SET used_at = ? WHERE session_sha256 = ?", (now, key)
                )
        return Session(session_id, user_name, fingerprint)

    def end(self, session_id: str) -> None:
        with self._connect() as connection:
            connection.execute(
                "DELETE FROM dashboard_session WHERE session_sha256 = ?", (_sha256(session_id),)
            )

    # ------------------------------------------------------------------ sign-in attempts

    @staticmethod
    def _scopes(user_name: str, address: str) -> list[tuple[str, str, int]]:
        return [
            ("user", "user:" + _sha256(user_name.casefold()), MAX_FAILURES_PER_USER),
            ("address", "address:" + _sha256(address), MAX_FAILURES_PER_ADDRESS),
        ]

    def lockout(self, user_name: str, address: str) -> Lockout | None:
        """Whether sign-in for this user or from this address is refused now, and until when."""
        now = time.time()
        since = now - ATTEMPT_WINDOW_SECONDS
        found: Lockout | None = None
        with self._connect() as connection:
            for label, scope, limit in self._scopes(user_name, address):
                times = [
                    row[0]
                    for row in connection.execute(
                        "SELECT attempted_at FROM failed_sign_in WHERE scope = ? "
                        "AND attempted_at >= ? ORDER BY attempted_at DESC LIMIT ?",
                        (scope, since, limit),
                    )
                ]
                if len(times) >= limit:
                    # Refused until the limit-th latest failure leaves the window.
                    retry_at = times[-1] + ATTEMPT_WINDOW_SECONDS
                    if found is None or retry_at > found.retry_at:
                        found = Lockout(retry_at, label)
        return found

    def record_failure(self, user_name: str, address: str) -> None:
        now = time.time()
        with self._connect() as connection:
            connection.execute(
                "DELETE FROM failed_sign_in WHERE attempted_at < ?",
                (now - ATTEMPT_WINDOW_SECONDS,),
            )
            connection.executemany(
                "INSERT INTO failed_sign_in VALUES (?, ?)",
                [(scope, now) for _, scope, _ in self._scopes(user_name, address)],
            )

    def clear_failures(self, user_name: str) -> None:
        """A successful sign-in forgives the user's failures (not the address's)."""
        with self._connect() as connection:
            connection.execute(
                "DELETE FROM failed_sign_in WHERE scope = ?",
                ("user:" + _sha256(user_name.casefold()),),
            )
