"""Data residency: every core, source, landing, evidence and Airflow connection is checked against
the declared hosts and storage roots before anything connects or is written (etl/core/residency).
"""

from __future__ import annotations

import datetime as dt
import re
import socket

import pytest
import sqlalchemy as sa

from etl.core.residency import Residency, ResidencyError
from etl.settings import Settings

PASSWORD = "Pw-n0t-for-logs"


@pytest.fixture
def no_dns(monkeypatch):
    """A name must be decided by the list alone: any look-up fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"DNS was asked about {args[0]!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "gethostbyname", refuse)


def _settings(tmp_path, **values) -> Settings:
    return Settings(home=tmp_path / "home", **values)


# --- hosts ------------------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("url", "host"),
    [
        pytest.param("postgresql://db.example.com/x", "db.example.com", id="public-host-name"),
        pytest.param(f"postgresql://u:{PASSWORD}@8.8.8.8:5432/x", "8.8.8.8", id="public-ip"),
        pytest.param("mysql+pymysql://root@10.1.2.3/x", "10.1.2.3", id="private-ip-not-listed"),
        pytest.param("postgresql://[2001:db8::1]/x", "2001:db8::1", id="ipv6-outside"),
        pytest.param(
            "postgresql://127.0.0.1/x?host=db.example.com", "db.example.com", id="libpq-query-host"
        ),
        pytest.param("postgresql://localhost.example.com/x", "localhost.example.com", id="suffix"),
    ],
)
def test_a_database_outside_the_allowed_hosts_is_refused_with_a_clear_message(
    tmp_path, no_dns, url, host
):
    with pytest.raises(ResidencyError) as refused:
        Residency.of(_settings(tmp_path)).check_database_url(url, "VARDFLYTT_CORE_URL")
    message = str(refused.value)
    assert host in message
    assert "VARDFLYTT_CORE_URL" in message  # which setting
    assert "VARDFLYTT_ALLOWED_HOSTS" in message  # how to allow it
    assert PASSWORD not in message


@pytest.mark.unit
@pytest.mark.parametrize(
    "url",
    [
        pytest.param("postgresql+psycopg://postgres@127.0.0.1:5432/test", id="loopback-ip"),
        pytest.param("postgresql://u:pw@localhost/x", id="localhost"),
        pytest.param("postgresql://[::1]/x", id="ipv6-loopback"),
        pytest.param("postgresql:///x?host=/var/run/postgresql", id="unix-socket"),
        pytest.param("mysql+pymysql://root@/x?unix_socket=/run/mysqld.sock", id="mysql-socket"),
        pytest.param("sqlite:///relative.sqlite", id="sqlite-file"),
        pytest.param("sqlite://", id="sqlite-memory"),
    ],
)
def test_loopback_sockets_and_sqlite_are_allowed_by_default(tmp_path, no_dns, url):
    Residency.of(_settings(tmp_path)).check_database_url(url, "VARDFLYTT_CORE_URL")


@pytest.mark.unit
def test_listed_cidrs_and_names_are_allowed_and_nothing_else(tmp_path, no_dns):
    residency = Residency.of(
        _settings(tmp_path, allowed_hosts="10.20.0.0/16, db.region.internal, 127.0.0.1")
    )
    residency.check_database_url("postgresql://10.20.5.6/x", "S")
    residency.check_database_url("postgresql://DB.Region.Internal./x", "S")  # case, trailing dot
    residency.check_database_url("postgresql://127.0.0.1/x", "S")
    for url in ("postgresql://10.21.0.1/x", "postgresql://other.region.internal/x"):
        with pytest.raises(ResidencyError):
            residency.check_database_url(url, "S")
    with pytest.raises(ResidencyError):  # the list replaces the default: localhost is not in it
        residency.check_database_url("postgresql://localhost/x", "S")


@pytest.mark.unit
def test_an_unreadable_url_is_refused_without_echoing_its_password(tmp_path):
    with pytest.raises(ResidencyError) as refused:
        Residency.of(_settings(tmp_path)).check_database_url(
            f"postgresql://u:{PASSWORD}@host:port/x", "VARDFLYTT_CORE_URL"
        )
    assert PASSWORD not in str(refused.value)


# --- storage roots ----------------------------------------------------------------------------


@pytest.mark.unit
def test_storage_outside_the_roots_is_refused_and_inside_allowed(tmp_path):
    roots = f"{tmp_path / 'allowed'}, s3://region-bucket/vardflytt"
    residency = Residency.of(_settings(tmp_path, allowed_storage_roots=roots))
    residency.check_storage(tmp_path / "allowed" / "landing" / "b1", "S")
    residency.check_storage("s3://region-bucket/vardflytt/landing/b1", "S")
    for outside in (
        tmp_path / "elsewhere",
        tmp_path / "allowed-not",  # a prefix of the name is not a folder above it
        tmp_path / "allowed" / ".." / "elsewhere",
        "s3://other-bucket/vardflytt/x",
        "s3://region-bucket/vardflytt-copy/x",
        "s3://region-bucket/vardflytt/../x",
        "gs://region-bucket/vardflytt/x",
        "https://storage.example.com/vardflytt/x",
    ):
        with pytest.raises(ResidencyError) as refused:
            residency.check_storage(outside, "the landing zone (VARDFLYTT_LANDING_DIR)")
        assert "VARDFLYTT_LANDING_DIR" in str(refused.value)
        assert "VARDFLYTT_ALLOWED_STORAGE_ROOTS" in str(refused.value)


@pytest.mark.unit
def test_a_symbolic_link_out_of_a_root_is_outside(tmp_path):
    (tmp_path / "allowed").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "allowed" / "link").symlink_to(tmp_path / "outside")
    residency = Residency.of(_settings(tmp_path, allowed_storage_roots=str(tmp_path / "allowed")))
    with pytest.raises(ResidencyError):
        residency.check_storage(tmp_path / "allowed" / "link" / "data", "S")


@pytest.mark.unit
def test_the_default_roots_are_home_and_the_configured_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("VARDFLYTT_SOURCE_DEMO_PATH", str(tmp_path / "exports"))
    residency = Residency.of(
        _settings(tmp_path, estate_dir=tmp_path / "estate", landing_dir=tmp_path / "landing")
    )
    for inside in ("home/evidence", "estate/elvis", "landing/b1", "exports/demo"):
        residency.check_storage(tmp_path / inside, "S")
    with pytest.raises(ResidencyError):
        residency.check_storage(tmp_path / "reports-elsewhere", "S")


@pytest.mark.unit
def test_a_sqlite_core_outside_explicit_roots_is_refused(tmp_path):
    residency = Residency.of(_settings(tmp_path, allowed_storage_roots=str(tmp_path / "home")))
    residency.check_database_url(f"sqlite:///{tmp_path / 'home' / 'core.sqlite'}", "S")
    with pytest.raises(ResidencyError):
        residency.check_database_url(f"sqlite:///{tmp_path / 'public' / 'core.sqlite'}", "S")


# --- the places that connect or write ---------------------------------------------------------


@pytest.mark.unit
def test_the_core_engine_refuses_a_public_host_before_connecting(no_dns, monkeypatch):
    from etl.core.database import core_engine, new_engine

    created = []
    monkeypatch.setattr(sa, "create_engine", lambda *a, **k: created.append(a))
    for url in (f"postgresql+psycopg://u:{PASSWORD}@db.example.com/x", "postgresql://8.8.8.8/x"):
        with pytest.raises(ResidencyError) as refused:
            core_engine(url)
        assert PASSWORD not in str(refused.value)
        with pytest.raises(ResidencyError):
            new_engine(url)
    assert created == []


@pytest.mark.integration
@pytest.mark.postgres
def test_the_core_on_loopback_postgresql_is_allowed_until_the_list_leaves_it_out(
    postgres_url, monkeypatch
):
    from etl.core.database import HEAD_REVISION, core_engine, new_engine, schema_revision

    assert schema_revision(core_engine(postgres_url)) == HEAD_REVISION
    monkeypatch.setenv("VARDFLYTT_ALLOWED_HOSTS", "10.0.0.0/8")
    with pytest.raises(ResidencyError, match=re.escape("127.0.0.1")):
        new_engine(postgres_url)


@pytest.mark.unit
def test_a_source_on_a_public_host_is_refused_before_extract(tmp_path, monkeypatch, no_dns):
    from etl import pipeline
    from etl.extract import readers

    spec = pipeline.catalog(_settings(tmp_path)).system("elvis").spec
    monkeypatch.setenv("VARDFLYTT_SOURCE_ELVIS_URL", f"postgresql://u:{PASSWORD}@8.8.8.8/elvis")
    with pytest.raises(ResidencyError) as refused:
        readers.source_url(spec, _settings(tmp_path))
    assert "VARDFLYTT_SOURCE_ELVIS_URL" in str(refused.value)
    assert PASSWORD not in str(refused.value)
    monkeypatch.setenv("VARDFLYTT_SOURCE_ELVIS_URL", "postgresql://elvis-db.example.com/elvis")
    with pytest.raises(ResidencyError, match=re.escape("elvis-db.example.com")):
        readers.source_url(spec, _settings(tmp_path))


@pytest.mark.unit
def test_a_source_export_folder_outside_the_roots_is_refused(tmp_path, monkeypatch):
    from etl import pipeline
    from etl.extract import readers

    settings = _settings(tmp_path, allowed_storage_roots=str(tmp_path / "home"))
    spec = pipeline.catalog(settings).system("melior").spec
    monkeypatch.setenv(spec.connection.path_env, str(tmp_path / "share" / "melior"))
    with pytest.raises(ResidencyError, match=spec.connection.path_env):
        readers.source_path(spec, settings)


@pytest.mark.integration
def test_landing_outside_the_roots_is_refused_and_nothing_is_written(
    small_estate, settings_for, tmp_path
):
    from etl import pipeline
    from etl.extract.landing import extract_system

    outside = tmp_path / "public-share" / "landing"
    settings = settings_for(
        small_estate,
        f"sqlite:///{tmp_path / 'home' / 'core.sqlite'}",
        landing_dir=outside,
        allowed_storage_roots=f"{tmp_path / 'home'},{small_estate}",
    )
    with pytest.raises(ResidencyError, match="VARDFLYTT_LANDING_DIR"):
        extract_system(pipeline.catalog(settings), "elvis", "b1", dt.date(2026, 7, 1), settings)
    assert not outside.exists()


@pytest.mark.integration
def test_an_evidence_pack_outside_the_roots_is_refused(settings_for, tmp_path):
    from etl.cutover.evidence import write_pack

    settings = settings_for(core_url=f"sqlite:///{tmp_path / 'home' / 'core.sqlite'}")
    with pytest.raises(ResidencyError, match="evidence"):
        write_pack(settings, "w1_skaraborg", "x", out_root=tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.unit
@pytest.mark.parametrize(
    ("variable", "value", "host"),
    [
        pytest.param(
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
            f"postgresql+psycopg2://airflow:{PASSWORD}@airflow-db.example.com/airflow",
            "airflow-db.example.com",
            id="metadata-db-name",
        ),
        pytest.param(
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
            f"postgresql://airflow:{PASSWORD}@8.8.8.8/airflow",
            "8.8.8.8",
            id="metadata-db-ip",
        ),
        pytest.param(
            "AIRFLOW_CONN_ELVIS",
            f"postgres://u:{PASSWORD}@elvis.example.com:5432/elvis",
            "elvis.example.com",
            id="connection-uri",
        ),
        pytest.param(
            "AIRFLOW_CONN_ELVIS",
            f'{{"conn_type": "postgres", "host": "8.8.4.4", "password": "{PASSWORD}"}}',
            "8.8.4.4",
            id="connection-json",
        ),
    ],
)
def test_airflow_outside_the_allowed_hosts_is_refused(
    tmp_path, monkeypatch, no_dns, variable, value, host
):
    from etl.airflow_env import airflow_environment

    monkeypatch.setenv(variable, value)
    with pytest.raises(ResidencyError) as refused:
        airflow_environment(_settings(tmp_path))
    assert host in str(refused.value)
    assert PASSWORD not in str(refused.value)


@pytest.mark.unit
def test_airflow_on_its_own_sqlite_or_loopback_postgresql_is_allowed(tmp_path, monkeypatch):
    from etl.airflow_env import airflow_environment

    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)
    assert airflow_environment(_settings(tmp_path))["AIRFLOW_HOME"]
    monkeypatch.setenv(
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql+psycopg2://airflow@127.0.0.1/airflow"
    )
    airflow_environment(_settings(tmp_path))


@pytest.mark.unit
def test_airflow_cfg_metadata_database_is_checked_too(tmp_path, monkeypatch, no_dns):
    from etl.airflow_env import airflow_environment

    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)
    settings = _settings(tmp_path)
    settings.airflow_home.mkdir(parents=True)
    (settings.airflow_home / "airflow.cfg").write_text(
        "[database]\nsql_alchemy_conn = postgresql://airflow@metadata.example.com/airflow\n"
    )
    with pytest.raises(ResidencyError, match=re.escape("metadata.example.com")):
        airflow_environment(settings)
