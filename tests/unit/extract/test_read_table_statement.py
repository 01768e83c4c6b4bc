"""``read_table``'s SELECT is built and compiled once per process (``readers._text_query``,
``readers._statement``): the SQL is what compiling it afresh gives, per table and dialect."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from etl.extract import readers

pytestmark = pytest.mark.unit


def _fresh(table: str, columns: list[str], key: list[str], dialect) -> str:
    clause = sa.table(table, *(sa.column(c) for c in columns))
    query = sa.select(*(sa.cast(clause.c[c], sa.String).label(c) for c in columns))
    return str(query.order_by(*(clause.c[k] for k in key)).compile(dialect=dialect))


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect(), mysql.dialect()])
def test_kept_statements_are_the_fresh_ones(dialect):
    specs = [("patient", ["id", "name"], ["id"]), ("visit", ["id", "at", "who"], ["who", "id"])]
    for _ in range(2):  # the second time from the cache
        for table, columns, key in specs:
            query = readers._text_query(table, tuple(columns), tuple(key))
            assert readers._statement(query, dialect) == _fresh(table, columns, key, dialect)


def test_a_statement_is_kept_per_kind_of_dialect():
    query = readers._text_query("patient", ("id", "name"), ("id",))
    as_sqlite = readers._statement(query, sqlite.dialect())
    assert readers._statement(query, mysql.dialect()) != as_sqlite  # CAST(... AS CHAR)
