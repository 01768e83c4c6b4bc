"""How Airflow's components connect to its metadata database: the ``connect_args`` that the
project's Airflow environment names (``[database] sql_alchemy_connect_args`` and
``sql_alchemy_connect_args_async``, etl/airflow_env.py), read by every ``airflow`` process when
it creates its engines.

On SQLite (``make demo``, ``make airflow``) the api-server, scheduler, DAG processor and triggerer
all write one file. Python's sqlite3 waits 5 s by default for another writer's lock and then
fails; on a machine busy with the test suite, the api-server's write of an approver's answer
(Airflow logs each such request in the metadata database) waited longer and the approver got HTTP
500 "Database error" instead of an answer. Here a writer waits up to
``SQLITE_BUSY_TIMEOUT_SECONDS``, as the core's SQLite connections do (etl/core/database.py).
On a server database (the cluster's PostgreSQL) nothing is added: its drivers take no such
argument.

No timeout helps one case, which is Airflow's (3.3) and SQLite's: the api-server's audit log of
a user's request (``action_logging``) is an ``async`` dependency that inserts and commits through
a sync session on the event loop. If, at that moment, a request in the server's thread pool has
written (the execution API's update of a task's rendered fields, say) and waits for the loop to
commit it, the loop waits for that request's lock while holding up its commit: nothing in the
server answers until the busy timeout fails the audit write, and that request gets HTTP 500
"Database error" (the UI: "Response failed"; nothing of it is recorded, and answering again
works). CI saw it on 2026-12-07. On PostgreSQL the two writes touch different rows and never
wait for each other: the cluster (etl/cluster.py) and production run Airflow on a server
database. On SQLite, ``vardflytt cutover approve`` and the demo send a go/no-go answer that
failed so again (``answer_once_recorded``, etl/cutover/airflow_hitl.py), as the end-to-end tests
make their requests again (tests/e2e/airflow_server.py).

Imported by Airflow (``conf.getimport``) once its configuration is loaded, never by the project.
"""

from __future__ import annotations

from airflow.configuration import conf

SQLITE_BUSY_TIMEOUT_SECONDS = 30.0


def _is_sqlite() -> bool:
    # The async engine follows the sync one (Airflow derives aiosqlite from a sqlite URL).
    return conf.get("database", "sql_alchemy_conn", fallback="").startswith("sqlite")


# Two dicts: Airflow adds ``check_same_thread`` to the sync engine's own.
CONNECT_ARGS: dict[str, object] = {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS} if _is_sqlite() else {}
ASYNC_CONNECT_ARGS: dict[str, object] = dict(CONNECT_ARGS)
