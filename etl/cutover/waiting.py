"""Which go/no-go a wave's cutover run is waiting for, read from Airflow itself.

The final run of ``vardflytt_cutover_<wave>`` asks each approving role in a human-in-the-loop
task ``go_no_go_<role>`` (``etl.cutover.airflow_hitl``). While it waits, Airflow holds the
request in its metadata database: a ``hitl_detail`` row (Airflow 3.1+) for the task instance,
without a response, the task instance ``awaiting_input`` (Airflow 3.3; ``deferred`` where a
trigger does the waiting).

Read from Airflow's metadata database, not its REST API, because:

* it needs no Airflow credential in the dashboard. The REST API answers a signed-in Airflow user
  only; the standalone dashboard's viewers have no Airflow identity, so the dashboard would hold
  a standing service password of its own (one more secret to issue, store and rotate);
* it needs nothing but the database to be up. ``airflow dags test``, the scheduler and the
  triggerer write the request there; the api-server only reads it, so the REST API would say
  "unreachable" whenever the api-server is down while a run waits (as in ``make demo`` between
  its steps);
* it is the database the project already configures and checks: ``AIRFLOW__DATABASE__
  SQL_ALCHEMY_CONN``, else ``[database] sql_alchemy_conn`` in the project's airflow.cfg, else
  Airflow's default SQLite file in ``<home>/airflow``; its host must be an allowed host
  (``etl.core.residency``), as for every Airflow command the project runs.

The price is a table that is Airflow's own, not a published interface: the query reads few
columns, the pinned Airflow's schema is tested (tests/integration/test_cutover_waiting.py runs a
real go/no-go into a database Airflow migrated), and a missing table or column fails closed like
an unreachable database: ``AirflowUnreadable``, which the wave page shows as "Airflow
unreachable", never as "nothing waiting". A SQLite database is opened read-only and never
created.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from etl.cutover.airflow_hitl import APPROVAL_TASK_PREFIX, WAITING_STATES
from etl.dag_names import cutover_dag_id
from etl.settings import Settings

if TYPE_CHECKING:
    import sqlalchemy as sa

CONNECT_SECONDS = 5


class AirflowUnreadable(RuntimeError):
    """Airflow's metadata database cannot be read: whether anything waits is unknown."""


@dataclass(frozen=True)
class WaitingGoNoGo:
    """One role's go/no-go that a run is waiting for: no identities beyond account names."""

    role: str
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    state: str
    waiting_since: dt.datetime
    airflow_users: tuple[str, ...]  # who Airflow lets answer (the task's assignees)
    plan_users: tuple[str, ...]  # who mappings/waves.yaml names for the role
    url: str  # the task's Required Actions page in Airflow's UI

    @property
    def is_as_planned(self) -> bool:
        """Whether Airflow asks exactly the people the plan names (a run started before a plan
        change asks the people of its own time)."""
        return set(self.airflow_users) == set(self.plan_users)


@dataclass(frozen=True)
class GoNoGoStatus:
    """What a page shows: the waiting requests, or why Airflow could not be read."""

    waiting: list[WaitingGoNoGo]
    problem: str | None  # set: unknown whether anything waits (never shown as "nothing")
    required_actions_url: str


def go_no_go_status(
    settings: Settings, wave: str, plan_users: dict[str, list[str]]
) -> GoNoGoStatus:
    """``waiting_go_no_go`` for a page: an unreadable Airflow is a ``problem``, not an error."""
    try:
        waiting, problem = waiting_go_no_go(settings, wave, plan_users), None
    except AirflowUnreadable as error:
        waiting, problem = [], str(error)
    return GoNoGoStatus(waiting, problem, required_actions_url(settings))


def required_actions_url(settings: Settings) -> str:
    """Airflow's Required Actions page, open requests only."""
    return f"{settings.airflow_url.rstrip('/')}/required_actions?response_received=false"


def task_url(settings: Settings, dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """One task's Required Actions page (the URL Airflow's own HITL operator links to)."""
    path = "/".join(
        quote(part, safe="") for part in ("dags", dag_id, "runs", run_id, "tasks", task_id)
    )
    query = urlencode({"map_index": map_index})
    return f"{settings.airflow_url.rstrip('/')}/{path}/required_actions?{query}"


def metadata_url(settings: Settings) -> str:
    """The URL of Airflow's metadata database, as the project's Airflow commands resolve it."""
    import os

    from etl.core.residency import _configured_metadata_url

    configured = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    configured = configured or _configured_metadata_url(settings.airflow_home)
    return configured or f"sqlite:///{settings.airflow_home / 'airflow.db'}"


def _engine(url: str) -> sa.Engine:
    """A read-only engine: a SQLite file is opened read-only (never created), a server is given
    a short connect timeout (a page must not hang on an unreachable host)."""
    import sqlite3

    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if not database or database == ":memory:" or not Path(database).is_file():
            raise AirflowUnreadable(
                f"there is no Airflow metadata database at {database or '(none)'}: Airflow has "
                "not run with this VARDFLYTT_HOME, or runs with another database (set "
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN for the dashboard as for Airflow)"
            )
        uri = f"file:{quote(str(Path(database).resolve()))}?mode=ro"
        return sa.create_engine(
            "sqlite://",
            creator=lambda: sqlite3.connect(uri, uri=True, timeout=CONNECT_SECONDS),
            poolclass=sa.pool.NullPool,
        )
    is_server = parsed.get_backend_name() in {"postgresql", "mysql"}
    connect_args = {"connect_timeout": CONNECT_SECONDS} if is_server else {}
    return sa.create_engine(parsed, connect_args=connect_args, poolclass=sa.pool.NullPool)


def _utc(value: object) -> dt.datetime:
    """Airflow's UtcDateTime: a datetime (PostgreSQL, MySQL) or ISO text (SQLite)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):
        raise AirflowUnreadable(f"hitl_detail.created_at holds {type(value).__name__}")
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _users(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = json.loads(value)
    return tuple(str(user.get("id")) for user in value or [] if isinstance(user, dict))


def _waiting_query(dag_id: str) -> sa.Select[Any]:
    """The open go/no-go requests of the DAG: Airflow's HITL rows without a response, joined
    to their waiting task instances, oldest first."""
    import sqlalchemy as sa

    hitl = sa.table(
        "hitl_detail",
        sa.column("ti_id"),
        sa.column("created_at"),
        sa.column("responded_at"),
        sa.column("assignees"),
    )
    task_instance = sa.table(
        "task_instance",
        sa.column("id"),
        sa.column("dag_id"),
        sa.column("run_id"),
        sa.column("task_id"),
        sa.column("map_index"),
        sa.column("state"),
    )
    return (
        sa.select(
            task_instance.c.run_id,
            task_instance.c.task_id,
            task_instance.c.map_index,
            task_instance.c.state,
            hitl.c.created_at,
            hitl.c.assignees,
        )
        .select_from(hitl.join(task_instance, task_instance.c.id == hitl.c.ti_id))
        .where(
            (task_instance.c.dag_id == dag_id)
            & task_instance.c.task_id.startswith(APPROVAL_TASK_PREFIX, autoescape=True)
            & task_instance.c.state.in_(WAITING_STATES)
            & hitl.c.responded_at.is_(None)
        )
        .order_by(hitl.c.created_at, task_instance.c.task_id)
    )


def _query_rows(url: str, query: sa.Select[Any]) -> Sequence[sa.Row[Any]]:
    """Run the query on a read-only engine of the database, disposed of afterwards."""
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(query).all()
    finally:
        engine.dispose()


def _waiting_entry(
    settings: Settings, dag_id: str, row: sa.Row[Any], plan_users: dict[str, list[str]]
) -> WaitingGoNoGo:
    """One row of the query as the role's waiting go/no-go, with its plan users and page."""
    role = row.task_id.removeprefix(APPROVAL_TASK_PREFIX)
    map_index = int(row.map_index)
    return WaitingGoNoGo(
        role=role,
        dag_id=dag_id,
        run_id=row.run_id,
        task_id=row.task_id,
        map_index=map_index,
        state=row.state,
        waiting_since=_utc(row.created_at),
        airflow_users=_users(row.assignees),
        plan_users=tuple(plan_users.get(role, [])),
        url=task_url(settings, dag_id, row.run_id, row.task_id, map_index),
    )


def waiting_go_no_go(
    settings: Settings, wave: str, plan_users: dict[str, list[str]]
) -> list[WaitingGoNoGo]:
    """Every go/no-go of the wave's cutover DAG that is waiting for an answer, oldest first.

    ``plan_users``: role -> the Airflow accounts ``mappings/waves.yaml`` names for it. Raises
    ``AirflowUnreadable`` (naming the database, never its password, and what to do) when the
    metadata database cannot be reached or is not the schema this reads."""
    import sqlalchemy as sa

    from etl.core.redact import redact
    from etl.core.residency import ResidencyError, check_database_url

    url = metadata_url(settings)
    try:
        check_database_url(
            url, "Airflow's metadata database (AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)", settings
        )
    except ResidencyError as error:  # its message names the setting and host, no password
        raise AirflowUnreadable(str(error)) from error
    dag_id = cutover_dag_id(wave)
    query = _waiting_query(dag_id)
    try:
        rows = _query_rows(url, query)
        waiting = []
        for row in rows:
            waiting.append(_waiting_entry(settings, dag_id, row, plan_users))
        return waiting
    except AirflowUnreadable:
        raise
    except (
        sa.exc.SQLAlchemyError,
        OSError,
        ImportError,
        ValueError,
        TypeError,
        AttributeError,
        KeyError,
    ) as error:
        raise AirflowUnreadable(
            f"cannot read Airflow's metadata database {redact(url)} "
            f"({type(error).__name__}); check that it is up and migrated to this Airflow "
            "version, and that the dashboard has AIRFLOW__DATABASE__SQL_ALCHEMY_CONN as Airflow "
            "does"
        ) from error
