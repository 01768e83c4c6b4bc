"""The ELVIS spec extracts the same rows from MariaDB and PostgreSQL as from SQLite."""

from __future__ import annotations

import datetime as dt

import pyarrow.parquet as pq
import pytest

from etl import pipeline
from etl.estate import generate_estate

pytestmark = pytest.mark.integration
# A legacy source on a server: a database of its own (PostgreSQL: a schema nobody migrated).
SOURCE_DATABASE = {"mariadb": "mariadb_url", "postgres": "postgres_empty_url"}

AS_OF = dt.date(2026, 7, 1)


def _landed(settings, batch_id: str) -> dict[str, list]:
    manifest = pipeline.extract("elvis", batch_id, AS_OF, settings)
    # An extract-only run: it holds the system until a load or a release ends the run.
    assert pipeline.release_system("elvis", batch_id, settings)
    folder = settings.resolved_landing_dir / batch_id / "elvis" / "landed"
    return {
        name: pq.read_table(folder / f"{name}.parquet").drop(["_row_hash"]).to_pylist()
        for name in manifest["rows"]
    }


@pytest.mark.parametrize(
    "server",
    [
        pytest.param("mariadb", marks=pytest.mark.mariadb),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ],
)
def test_elvis_on_a_database_server_lands_like_sqlite(
    server, request, tmp_path, settings_for, monkeypatch, estate_of
):
    url = request.getfixturevalue(SOURCE_DATABASE[server])
    estate = estate_of(150, 11)  # the same estate generated once per test run (read-only here)
    settings = settings_for(estate)
    from_sqlite = _landed(settings, "from-sqlite")

    generate_estate(tmp_path / "server-estate", patients=150, seed=11, elvis_url=url)
    monkeypatch.setenv("VARDFLYTT_SOURCE_ELVIS_URL", url)
    from_server = _landed(settings, "from-server")

    assert from_server.keys() == from_sqlite.keys()
    for name in from_sqlite:
        assert from_server[name] == from_sqlite[name], name


@pytest.mark.parametrize(
    "server",
    [
        pytest.param("mariadb", marks=pytest.mark.mariadb),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ],
)
def test_legacy_server_connections_refuse_writes(server, request, tmp_path):
    import sqlalchemy as sa

    from etl.extract.readers import read_only_engine

    url = request.getfixturevalue(SOURCE_DATABASE[server])
    generate_estate(tmp_path / "estate", patients=60, seed=5, elvis_url=url)
    engine = read_only_engine(url)
    with engine.connect() as connection, pytest.raises(sa.exc.DBAPIError, match=r"(?i)read.only"):
        connection.exec_driver_sql("DELETE FROM patient")
    engine.dispose()
