"""A PostgreSQL source is opened read-only whatever options its URL already names."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from etl.extract.readers import read_only_engine

BASE = "postgresql+psycopg://reader@db.example.invalid/elvis"


@pytest.mark.unit
@pytest.mark.parametrize(
    "query, kept",
    [
        ("", []),
        ("?options=-csearch_path%3Delvis", ["-csearch_path=elvis"]),
        (
            "?options=-csearch_path%3Delvis&options=-cstatement_timeout%3D0",
            ["-csearch_path=elvis", "-cstatement_timeout=0"],
        ),
    ],
    ids=["none", "one", "repeated"],
)
def test_the_url_options_are_kept_and_read_only_is_added(query, kept):
    engine = read_only_engine(BASE + query)
    options = engine.url.query["options"]
    assert options == " ".join([*kept, "-c default_transaction_read_only=on"])  # one string
    engine.dispose()


@pytest.mark.integration
@pytest.mark.postgres
def test_a_source_with_repeated_options_is_read_and_never_written(postgres_empty_url):
    """The fresh schema's search_path comes in the URL's options; a second options key adds a
    setting. Both hold, and a write is refused by the server."""
    url = sa.make_url(postgres_empty_url)
    first = url.query["options"]
    repeated = url.update_query_dict({"options": (first, "-cstatement_timeout=12345")})
    setup = sa.create_engine(postgres_empty_url)
    with setup.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE patient (id int)")
        connection.exec_driver_sql("INSERT INTO patient VALUES (1)")
    setup.dispose()
    engine = read_only_engine(repeated.render_as_string(hide_password=False))
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM patient").scalar() == 1
        assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "12345ms"
        with pytest.raises(sa.exc.InternalError, match="read-only transaction"):
            connection.exec_driver_sql("INSERT INTO patient VALUES (2)")
    engine.dispose()
