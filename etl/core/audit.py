"""The access log of patient data (Patientdatalagen): who, when, what, why and which patients.

**Who** is one function, :func:`current_user`, used by every writer of the log and by the
pipeline's ledger rows: the signed-in dashboard user while a request is served; inside an
Airflow task the person who triggered the run (``dag_run.triggering_user_name``), or
``airflow:<run type>`` for a run nobody triggered (scheduled, asset-triggered), never the DAG's
owner; on the command line the operating-system user.

**Which patients** are keyed pseudonyms (``etl/core/pseudonym.py``: HMAC of system and source
key), never numbers: listed per entry up to :data:`MAX_LISTED_SUBJECTS`; a bulk access (a whole
batch, every core patient) records its scope and count instead.

**Tamper-evident**: entries form a hash chain. Each entry has a sequence number and
``entry_hash = sha256(previous_hash + canonical JSON of its content)``; ``access_log_head`` holds
the newest sequence and hash (so a deleted newest entry shows too) and the purge anchor. Appends
are serialised by updating the head row first, which takes PostgreSQL's row lock and SQLite's
write lock, so two processes never fork the chain. ``etl/core/audit_review.py`` verifies,
exports and purges.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import getpass
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from etl.batch import utc_now
from etl.core.database import core_engine
from etl.core.tables import ACCESS_LOG_HEAD_ID, GENESIS_HASH, access_log, access_log_head
from etl.settings import Settings

# Channels: where an access came from (the ``process`` column starts with it).
COMMAND_LINE, AIRFLOW, DASHBOARD = "cli", "airflow", "dashboard"
# More patients than this in one access are recorded by scope and count, not one by one.
MAX_LISTED_SUBJECTS = 5_000
# What a bulk access covered, when its patients are not listed.
SCOPE_LISTED, SCOPE_BATCH, SCOPE_ALL = "listed", "batch", "all"
# No system or batch (a dashboard page, a sign-in): stored as empty text, the columns are NOT NULL.
NOT_APPLICABLE = ""
# ``airflow dags test`` triggers as this name; the person is the OS user running the command.
_AIRFLOW_TEST_TRIGGER = "dag_test"

# Why data is read, by action prefix; callers may name a purpose of their own.
PURPOSES = {
    "extract": "migration",
    "read_source": "migration",
    "transform": "migration",
    "validate": "migration",
    "write_core": "migration",
    "rollback": "migration",
    "validation_report": "data quality",
    "steward": "data quality review",
    "identity": "identity resolution",
    "dashboard": "cutover follow-up",
    "audit": "log review",
    "purge": "retention",
    "profile": "data profiling",
    "coverage": "mapping coverage",
}


@dataclass(frozen=True)
class Actor:
    """Who acts (a person, or ``airflow:<run type>``) and through which channel."""

    name: str
    channel: str


_acting: contextvars.ContextVar[Actor | None] = contextvars.ContextVar(
    "vardflytt_actor", default=None
)


@contextlib.contextmanager
def acting_as(name: str, channel: str = DASHBOARD) -> Iterator[Actor]:
    """Everything logged inside is done by ``name`` (a signed-in dashboard user)."""
    actor = Actor(name, channel)
    token = _acting.set(actor)
    try:
        yield actor
    finally:
        _acting.reset(token)


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return f"uid:{os.getuid()}"


def _airflow_actor() -> Actor | None:
    """The triggering person of the Airflow run this task belongs to, if inside a task."""
    # Airflow exports AIRFLOW_CTX_* while a task runs; outside one, never import Airflow.
    if not os.environ.get("AIRFLOW_CTX_DAG_RUN_ID"):
        return None
    dag_run = None
    with contextlib.suppress(Exception):  # not inside a task after all (a subprocess of one)
        from airflow.sdk import get_current_context

        dag_run = get_current_context().get("dag_run")
    if dag_run is None:
        return Actor("airflow:unknown-trigger", AIRFLOW)
    return Actor(triggering_user(dag_run), AIRFLOW)


def triggering_user(dag_run: Any) -> str:
    """The person behind an Airflow run; ``airflow:<run type>`` when no person triggered it."""
    name = (getattr(dag_run, "triggering_user_name", None) or "").strip()
    if name == _AIRFLOW_TEST_TRIGGER:
        return os_user()  # `airflow dags test` runs in the caller's own process
    if name:
        return name
    run_type = getattr(dag_run, "run_type", None)
    return f"airflow:{getattr(run_type, 'value', run_type) or 'unknown-trigger'}"


def current_actor() -> Actor:
    return _acting.get() or _airflow_actor() or Actor(os_user(), COMMAND_LINE)


def current_user() -> str:
    """Who is acting: the dashboard user, the Airflow run's triggering user, or the OS user."""
    return current_actor().name


# --- append-only, in the database itself ----------------------------------------------------------
# Triggers refuse UPDATE and DELETE on access_log (and TRUNCATE on PostgreSQL), so no code path
# and no casual SQL session edits it; the chain catches whoever drops them first. A purge drops
# the delete guard inside its own transaction and puts it back before committing.

_GUARD_MESSAGE = "access_log is append-only (retention: vardflytt audit purge)"
_SQLITE_GUARDS = {
    "access_log_no_update": f"CREATE TRIGGER access_log_no_update BEFORE UPDATE ON access_log "
    f"BEGIN SELECT RAISE(ABORT, '{_GUARD_MESSAGE}'); END",
    "access_log_no_delete": f"CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log "
    f"BEGIN SELECT RAISE(ABORT, '{_GUARD_MESSAGE}'); END",
}
_POSTGRES_FUNCTION = f"""
CREATE OR REPLACE FUNCTION vardflytt_access_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '{_GUARD_MESSAGE}';
END $$ LANGUAGE plpgsql
"""
_POSTGRES_GUARDS = {
    "access_log_no_update": "CREATE TRIGGER access_log_no_update BEFORE UPDATE ON access_log "
    "FOR EACH ROW EXECUTE FUNCTION vardflytt_access_log_append_only()",
    "access_log_no_delete": "CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log "
    "FOR EACH ROW EXECUTE FUNCTION vardflytt_access_log_append_only()",
    "access_log_no_truncate": "CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON "
    "access_log FOR EACH STATEMENT EXECUTE FUNCTION vardflytt_access_log_append_only()",
}


def _guards(connection: sa.Connection) -> dict[str, str]:
    return {"sqlite": _SQLITE_GUARDS, "postgresql": _POSTGRES_GUARDS}.get(
        connection.dialect.name, {}
    )


def install_append_only(connection: sa.Connection, names: Iterable[str] | None = None) -> None:
    """(Re)create the guards (all, or the named ones); idempotent."""
    guards = _guards(connection)
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(_POSTGRES_FUNCTION)
    for name in names or guards:
        if name in guards:
            drop_guard(connection, name)
            connection.exec_driver_sql(guards[name])


def drop_guard(connection: sa.Connection, name: str) -> None:
    on = " ON access_log" if connection.dialect.name == "postgresql" else ""
    connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}{on}")


# --- entries and their chain --------------------------------------------------------------------

# The columns an entry's hash covers, in this order (the chain columns themselves excepted).
CONTENT_COLUMNS = (
    "sequence",
    "access_id",
    "accessed_at",
    "user_name",
    "process",
    "action",
    "purpose",
    "source_system",
    "entity",
    "batch_id",
    "run_id",
    "rows",
    "subject_scope",
    "subject_count",
    "subjects",
    "detail",
)


def _utc_text(moment: dt.datetime) -> str:
    # SQLite hands timestamps back naive (they were stored as UTC); PostgreSQL in its time zone.
    aware = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment
    return aware.astimezone(dt.UTC).isoformat(timespec="microseconds")


def canonical_content(entry: dict[str, Any]) -> str:
    """An entry's content as the hash sees it: fixed keys, UTC time, no whitespace."""
    content: dict[str, Any] = {name: entry.get(name) for name in CONTENT_COLUMNS}
    content["accessed_at"] = _utc_text(content["accessed_at"])
    content["sequence"] = int(content["sequence"])
    content["rows"] = int(content["rows"])
    if content["subject_count"] is not None:
        content["subject_count"] = int(content["subject_count"])
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def entry_hash(previous_hash: str, entry: dict[str, Any]) -> str:
    text = previous_hash + "\n" + canonical_content(entry)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_TAKE_HEAD = (
    access_log_head.update()
    .where(access_log_head.c.head_id == ACCESS_LOG_HEAD_ID)
    .values(sequence=access_log_head.c.sequence)
)
_TAKE_HEAD_RETURNING = _TAKE_HEAD.returning(*access_log_head.c)
_READ_HEAD = sa.select(access_log_head).where(access_log_head.c.head_id == ACCESS_LOG_HEAD_ID)


def lock_head(connection: sa.Connection) -> sa.Row[Any]:
    """Take the chain's head for this transaction (first statement: a write, so the lock is held
    from here on) and return it. Creates the head of a chain that has none yet."""
    head = access_log_head
    take, read = _TAKE_HEAD, _READ_HEAD
    if connection.dialect.update_returning:
        # the lock and the row in one statement (PostgreSQL, SQLite): one round trip less
        found = connection.execute(_TAKE_HEAD_RETURNING).one_or_none()
        if found is not None:
            return found
    elif connection.execute(take).rowcount:
        return connection.execute(read).one()
    connection.execute(
        head.insert().values(
            head_id=ACCESS_LOG_HEAD_ID,
            sequence=0,
            entry_hash=GENESIS_HASH,
            anchor_sequence=0,
            anchor_hash=GENESIS_HASH,
        )
    )
    return connection.execute(read).one()


def append_entry(connection: sa.Connection, values: dict[str, Any]) -> dict[str, Any]:
    """Append one entry to the chain inside the caller's transaction; returns it with its hash."""
    head = lock_head(connection)
    entry = {
        "access_id": str(uuid.uuid4()),
        **values,
        "sequence": int(head.sequence) + 1,
        # Stamped under the lock: time order and chain order agree, which purging relies on.
        "accessed_at": values.get("accessed_at") or utc_now(),
        "previous_hash": head.entry_hash,
    }
    entry["entry_hash"] = entry_hash(head.entry_hash, entry)
    # prepared statements with parameters: built once, compiled once per connection's dialect
    connection.execute(access_log.insert(), entry)
    connection.execute(
        _ADVANCE_HEAD, {"new_sequence": entry["sequence"], "new_hash": entry["entry_hash"]}
    )
    return entry


_ADVANCE_HEAD = (
    access_log_head.update()
    .where(access_log_head.c.head_id == ACCESS_LOG_HEAD_ID)
    .values(sequence=sa.bindparam("new_sequence"), entry_hash=sa.bindparam("new_hash"))
)


def subject_fields(
    subjects: Iterable[str | None] | None, scope: str | None = None, count: int | None = None
) -> dict[str, Any]:
    """``subjects``/``subject_scope``/``subject_count`` for a set of pseudonyms: listed (sorted,
    unique) up to the bound, else the scope and count only."""
    if subjects is None:
        return {"subject_scope": scope, "subject_count": count, "subjects": None}
    unique = sorted({s for s in subjects if s})
    for pseudonym in unique:
        if not pseudonym.startswith("ps_"):  # a raw key or number must never get in here
            raise ValueError("access-log subjects are keyed pseudonyms (ps_...)")
    if len(unique) > MAX_LISTED_SUBJECTS:
        return {
            "subject_scope": scope or SCOPE_BATCH,
            "subject_count": len(unique),
            "subjects": None,
        }
    return {
        "subject_scope": SCOPE_LISTED,
        "subject_count": len(unique),
        "subjects": json.dumps(unique, separators=(",", ":")),
    }


def access_values(
    action: str,
    system: str,
    batch_id: str,
    rows: int,
    entity: str | None = None,
    run_id: str | None = None,
    user_name: str | None = None,
    *,
    purpose: str | None = None,
    subjects: Iterable[str | None] | None = None,
    subject_scope: str | None = None,
    subject_count: int | None = None,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The columns of one entry, its chain position aside (see :func:`record_access`)."""
    actor = current_actor()
    return {
        "user_name": user_name or actor.name,
        "process": f"{actor.channel}:{action}",
        "action": action,
        "purpose": purpose or _purpose(action),
        "source_system": system or NOT_APPLICABLE,
        "entity": entity,
        "batch_id": batch_id or NOT_APPLICABLE,
        "run_id": run_id or os.environ.get("AIRFLOW_CTX_DAG_RUN_ID"),
        "rows": int(rows),
        **subject_fields(subjects, subject_scope, subject_count),
        "detail": json.dumps(detail, sort_keys=True, default=str) if detail else None,
    }


def record_access(settings: Settings, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Append one access-log entry in its own transaction, committed before this returns.

    Arguments: ``action, system, batch_id, rows[, entity, run_id, user_name]`` and, by name,
    ``purpose``; ``subjects``, the keyed pseudonyms of the patients' rows touched (for a bulk
    access leave it None and give ``subject_scope`` (batch / all) and ``subject_count``);
    ``detail``, ids and names only, never patient values. ``user_name`` names the person only
    where the caller knows better than :func:`current_user` (rare)."""
    values = access_values(*args, **kwargs)
    with core_engine(settings.resolved_audit_url).begin() as connection:
        return append_entry(connection, values)


def record_access_on(connection: sa.Connection, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """The same, inside the caller's transaction: the entry commits (or not) with the write."""
    return append_entry(connection, access_values(*args, **kwargs))


def _purpose(action: str) -> str:
    for prefix, purpose in PURPOSES.items():
        if action == prefix or action.startswith(prefix + "_"):
            return purpose
    return "migration"
