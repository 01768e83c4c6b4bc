"""Fresh core schemas on the real PostgreSQL server, without running the migrations per test.

Each pytest-xdist worker keeps a pool of schemas migrated to head by the product itself
(``etl.core.database.core_engine``). A test takes one; when it is done the schema is put back
exactly as a fresh migration leaves it, or dropped when that cannot be shown:

- every table is emptied (DELETE), and the tables a migration fills (``alembic_version``,
  ``access_log_head``) get back the rows it left, compared by content;
- the schema's structure (tables, columns with their collations, defaults, constraints, indexes
  with their CLUSTER and replica identity marks, comments, triggers, functions, types,
  privileges) must have the fingerprint it had after the migration, or it is dropped (a test
  that altered or dropped anything never hands its schema on);
- schemas derived from it (``<schema>_rehearsal_...``) are dropped.

Each taking gets its own URL (``application_name`` counts up), so nothing a process caches by
URL outlives a test. Migrating cost 0.4 s of the server's CPU and 0.2 s of the test's, 2-4 s of
wall on a busy machine, for each of ~150 PostgreSQL tests; a reset costs a few milliseconds.
``empty_schema`` gives a schema nobody migrated, for tests of the migration itself.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import sqlalchemy as sa

# One query: the schema's structure as text, its own name left out, hashed.
_FINGERPRINT = """
WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = %(schema)s)
SELECT md5(replace(coalesce(string_agg(item, E'\\n' ORDER BY item), ''), %(schema)s, '@'))
FROM (
  SELECT 'namespace ' || coalesce(n.nspacl::text, '') AS item
    FROM pg_namespace n WHERE n.oid = (SELECT oid FROM ns)
  UNION ALL
  SELECT 'relation ' || c.relname || ' ' || c.relkind::text || ' ' || coalesce(c.relacl::text, '')
    || ' ' || c.relpersistence::text || ' ' || c.relrowsecurity::text || ' ' || c.relreplident::text
    FROM pg_class c WHERE c.relnamespace = (SELECT oid FROM ns)
  UNION ALL
  SELECT 'column ' || c.relname || '.' || a.attname || ' ' || a.attnum::text || ' '
    || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull::text || ' '
    || coalesce(pg_get_expr(d.adbin, d.adrelid), '') || ' '
    || coalesce((SELECT collname FROM pg_collation WHERE oid = a.attcollation), '')
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.relnamespace = (SELECT oid FROM ns) AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ' '
    || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace = (SELECT oid FROM ns)
  UNION ALL
  SELECT 'index ' || pg_get_indexdef(i.indexrelid) || ' ' || i.indisclustered::text || ' '
    || i.indisreplident::text
    FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
    WHERE c.relnamespace = (SELECT oid FROM ns)
  UNION ALL
  SELECT 'comment ' || c.relname || ' ' || d.objsubid::text || ' ' || d.description
    FROM pg_description d JOIN pg_class c ON c.oid = d.objoid
    WHERE d.classoid = 'pg_class'::regclass AND c.relnamespace = (SELECT oid FROM ns)
  UNION ALL
  SELECT 'comment ' || con.conname || ' ' || d.description
    FROM pg_description d JOIN pg_constraint con ON con.oid = d.objoid
    WHERE d.classoid = 'pg_constraint'::regclass AND con.connamespace = (SELECT oid FROM ns)
  UNION ALL
  SELECT 'trigger ' || t.tgenabled::text || ' ' || pg_get_triggerdef(t.oid)
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
    WHERE c.relnamespace = (SELECT oid FROM ns) AND NOT t.tgisinternal
  UNION ALL
  SELECT 'function ' || p.oid::regprocedure::text || ' ' || pg_get_functiondef(p.oid)
    || ' ' || coalesce(p.proacl::text, '')
    FROM pg_proc p WHERE p.pronamespace = (SELECT oid FROM ns)
  UNION ALL
  SELECT 'type ' || t.typname || ' ' || t.typtype::text || ' '
    || coalesce((SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                 FROM pg_enum e WHERE e.enumtypid = t.oid), '')
    FROM pg_type t WHERE t.typnamespace = (SELECT oid FROM ns)
) AS structure
"""


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SchemaPool:
    """This process's migrated schemas on the server at ``base_url``."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.engine = sa.create_engine(base_url)
        self.idle: list[str] = []
        self.owned: set[str] = set()
        self.takings = itertools.count(1)
        self.fingerprint: str | None = None
        self.tables: list[str] = []
        self.seeds: dict[str, str] = {}  # table -> its rows after the migration, as JSON

    def url(self, schema: str) -> str:
        query = {"options": f"-csearch_path={schema}", "application_name": self._name()}
        return (
            sa.make_url(self.base_url)
            .update_query_dict(query)
            .render_as_string(hide_password=False)
        )

    def _name(self) -> str:
        return f"vardflytt_test_{next(self.takings)}"

    def create(self) -> str:
        schema = f"vardflytt_test_{uuid.uuid4().hex[:8]}"
        with self.engine.begin() as connection:
            connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
        return schema

    def take(self) -> str:
        """A schema at head with no rows but those the migrations write."""
        if self.idle:
            return self.idle.pop()
        from etl.core.database import core_engine

        schema = self.create()
        self.owned.add(schema)
        url = self.url(schema)
        core_engine(url).dispose()  # the product's own migration, once per pooled schema
        with self.engine.connect() as connection:
            fingerprint = self._fingerprint(connection, schema)
            if self.fingerprint is None:
                self.fingerprint = fingerprint
                self.tables = self._tables(connection, schema)
                self.seeds = self._contents(connection, schema)
        assert fingerprint == self.fingerprint, "two migrations to head differ"
        return schema

    def give_back(self, schema: str) -> None:
        """Reset ``schema`` for the next test, or drop it when it cannot be shown to be fresh."""
        self.drop_derived(schema)
        try:
            with self.engine.begin() as connection:
                fresh = self._fingerprint(connection, schema) == self.fingerprint
                if fresh:
                    self._reset(connection, schema)
        except sa.exc.DBAPIError:
            fresh = False
        if fresh:
            self.idle.append(schema)
        else:
            self.drop(schema)

    def _reset(self, connection: sa.Connection, schema: str) -> None:
        # Triggers (the access log's append-only guard) and foreign-key checks do not fire
        # while the schema is emptied (the tests' server user is a superuser).
        connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
        # DELETE of the tables that have rows: a test leaves few, and TRUNCATE of all 80 tables
        # (new files for each, fsynced) took ~1.5 s on the busy machine, DELETE milliseconds.
        names = [t for t in self.tables if t not in self.seeds]
        filled = connection.exec_driver_sql(
            " UNION ALL ".join(
                f"SELECT %s WHERE EXISTS (SELECT FROM {_quoted(schema)}.{_quoted(t)})"
                for t in names
            ),
            tuple(names),
        ).scalars()
        for table in list(filled):
            connection.exec_driver_sql(f"DELETE FROM {_quoted(schema)}.{_quoted(table)}")
        now = self._contents(connection, schema, list(self.seeds))
        for table, rows in self.seeds.items():
            if now.get(table) == rows:
                continue
            target = f"{_quoted(schema)}.{_quoted(table)}"
            connection.exec_driver_sql(f"DELETE FROM {target}")
            connection.exec_driver_sql(
                f"INSERT INTO {target} SELECT * FROM json_populate_recordset(NULL::{target}, %s)",
                (rows,),
            )
        assert self._contents(connection, schema, list(self.seeds)) == self.seeds

    def _fingerprint(self, connection: sa.Connection, schema: str) -> str | None:
        return connection.exec_driver_sql(_FINGERPRINT, {"schema": schema}).scalar()

    def _tables(self, connection: sa.Connection, schema: str) -> list[str]:
        return list(
            connection.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename",
                (schema,),
            ).scalars()
        )

    def _contents(
        self, connection: sa.Connection, schema: str, tables: list[str] | None = None
    ) -> dict[str, str]:
        """Table -> its rows as canonical JSON, for the tables that have rows."""
        names = tables if tables is not None else self.tables
        if not names:
            return {}
        parts = [
            f"SELECT %s AS name, (SELECT json_agg(r ORDER BY r::text)::text "
            f"FROM {_quoted(schema)}.{_quoted(t)} r) AS rows"
            for t in names
        ]
        result = connection.exec_driver_sql(" UNION ALL ".join(parts), tuple(names)).all()
        return {name: json.dumps(json.loads(rows), sort_keys=True) for name, rows in result if rows}

    def drop_derived(self, schema: str) -> None:
        with self.engine.begin() as connection:
            derived = connection.exec_driver_sql(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
                (f"{schema}\\_%",),
            ).scalars()
            for name in list(derived):
                connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {_quoted(name)} CASCADE")

    def drop(self, schema: str) -> None:
        self.drop_derived(schema)
        with self.engine.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {_quoted(schema)} CASCADE")
        self.owned.discard(schema)

    def close(self) -> None:
        for schema in list(self.owned):
            self.drop(schema)
        self.idle.clear()
        self.engine.dispose()

    def migrated(self) -> AbstractContextManager[str]:
        """A URL of a schema at head, fresh for this test; reset or dropped after it."""
        return self._lent(self.take(), self.give_back)

    def empty(self) -> AbstractContextManager[str]:
        """A URL of a new schema nobody migrated (the product migrates it on first use)."""
        return self._lent(self.create(), self.drop)

    @contextmanager
    def _lent(self, schema: str, after: Callable[[str], None]) -> Iterator[str]:
        from etl.core.database import core_engine

        url = self.url(schema)
        try:
            yield url
        finally:
            try:
                core_engine(url).dispose()  # pooled connections must not outlive the test
            finally:
                # even when that fails (a schema the test left that the product cannot
                # migrate): the schema is dropped or put back, never left on the server
                after(schema)
