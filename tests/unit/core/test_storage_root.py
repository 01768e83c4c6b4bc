"""The storage root setting and its residency check: a folder by default (the layout `make demo`
has always had), an s3:// URL only when listed and only on an allowed, named endpoint."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from etl.core import storage
from etl.core.residency import ResidencyError
from etl.settings import Settings

pytestmark = pytest.mark.unit

ROOT = "s3://vardflytt/region"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """A refusal happens before any name is resolved or any byte sent."""

    def refuse(*args, **kwargs):
        raise AssertionError("the check must not touch the network")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VARDFLYTT_PSEUDONYM_KEY", "the-same-key-on-every-worker")


def _settings(tmp_path: Path, **values) -> Settings:
    values.setdefault("home", tmp_path / "home")
    return Settings(**values)


def test_the_default_root_is_home_so_the_demo_layout_is_unchanged(tmp_path):
    settings = _settings(tmp_path)

    assert settings.storage_dir == tmp_path / "home"
    assert settings.resolved_landing_dir == tmp_path / "home" / "landing"
    assert not settings.is_remote_storage
    storage.check_root(settings)


def test_a_shared_folder_or_file_url_moves_the_landing_zone_under_it(tmp_path):
    shared = tmp_path / "shared"
    for root in (str(shared), f"file://{shared}"):
        settings = _settings(tmp_path, storage_root=root, allowed_storage_roots=str(shared))
        assert not settings.is_remote_storage
        assert settings.resolved_landing_dir == shared / "landing"
        storage.check_root(settings)


def test_a_folder_root_outside_explicit_roots_is_refused(tmp_path):
    settings = _settings(
        tmp_path,
        storage_root=str(tmp_path / "elsewhere"),
        allowed_storage_roots=str(tmp_path / "a"),
    )
    with pytest.raises(ResidencyError, match="VARDFLYTT_STORAGE_ROOT"):
        storage.check_root(settings)


def test_a_remote_root_is_never_read_as_a_local_folder(tmp_path):
    settings = _settings(tmp_path, storage_root=ROOT)

    assert settings.is_remote_storage
    with pytest.raises(RuntimeError, match="s3:// URL"):
        _ = settings.resolved_landing_dir


def test_an_s3_root_is_refused_until_listed(tmp_path):
    settings = _settings(
        tmp_path, storage_root=ROOT, storage_options={"endpoint_url": "http://127.0.0.1:9000"}
    )
    with pytest.raises(ResidencyError, match="outside the allowed storage roots"):
        storage.check_root(settings)


def test_an_s3_endpoint_on_a_host_not_allowed_is_refused(tmp_path):
    settings = _settings(
        tmp_path,
        storage_root=ROOT,
        allowed_storage_roots=ROOT,
        storage_options={"endpoint_url": "https://s3.eu-north-1.amazonaws.com", "secret": "hush"},
    )
    with pytest.raises(ResidencyError) as refused:
        storage.check_root(settings)
    message = str(refused.value)
    assert "s3.eu-north-1.amazonaws.com" in message and "VARDFLYTT_ALLOWED_HOSTS" in message
    assert "hush" not in message


def test_an_s3_endpoint_given_by_the_aws_variable_is_checked_too(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://203.0.113.7:9000")
    settings = _settings(tmp_path, storage_root=ROOT, allowed_storage_roots=ROOT)
    with pytest.raises(ResidencyError, match=r"203\.0\.113\.7"):
        storage.check_root(settings)


def test_an_s3_root_without_an_endpoint_would_be_public_cloud_and_is_refused(tmp_path):
    settings = _settings(tmp_path, storage_root=ROOT, allowed_storage_roots=ROOT)
    with pytest.raises(ResidencyError, match="names no S3 endpoint"):
        storage.check_root(settings)


def test_an_allowed_on_premises_endpoint_passes(tmp_path):
    settings = _settings(
        tmp_path,
        storage_root=f"{ROOT}/wave-1",
        allowed_storage_roots=ROOT,
        allowed_hosts="10.0.0.0/8,objects.vgregion.internal",
        storage_options={"endpoint_url": "https://objects.vgregion.internal:9000"},
    )
    storage.check_root(settings)


def test_an_s3_root_without_a_shared_pseudonym_key_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("VARDFLYTT_PSEUDONYM_KEY")
    settings = _settings(
        tmp_path,
        storage_root=ROOT,
        allowed_storage_roots=ROOT,
        storage_options={"endpoint_url": "http://127.0.0.1:9000"},
    )
    with pytest.raises(storage.StorageError, match="VARDFLYTT_PSEUDONYM_KEY"):
        storage.check_root(settings)


def test_an_unsupported_scheme_is_refused(tmp_path):
    settings = _settings(
        tmp_path, storage_root="gs://bucket/x", allowed_storage_roots="gs://bucket"
    )
    with pytest.raises(storage.StorageError, match="not supported"):
        storage.check_root(settings)


def test_storage_options_come_from_the_environment_as_json(tmp_path, monkeypatch):
    monkeypatch.setenv("VARDFLYTT_STORAGE_ROOT", ROOT)
    monkeypatch.setenv("VARDFLYTT_STORAGE_OPTIONS", json.dumps({"endpoint_url": "http://x:1"}))
    settings = Settings(home=tmp_path)

    assert settings.resolved_storage_root == ROOT
    assert storage.endpoint_url(settings) == "http://x:1"


def test_a_folder_root_workspace_is_the_root_itself(tmp_path):
    settings = _settings(tmp_path)
    with storage.workspace(settings, ["landing/b/s"]) as local:
        assert local is settings


def test_landing_purge_refuses_an_s3_landing_zone_and_purges_nothing(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from etl.cli import app

    monkeypatch.setenv("VARDFLYTT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VARDFLYTT_STORAGE_ROOT", ROOT)
    result = CliRunner().invoke(app, ["landing", "purge"])

    assert result.exit_code == 1
    assert "not supported yet" in result.output and "nothing was purged" in result.output


def test_a_relative_folder_root_is_refused_as_each_worker_would_resolve_its_own(tmp_path):
    settings = _settings(tmp_path, storage_root="shared/vardflytt")
    with pytest.raises(storage.StorageError, match="relative path"), storage.workspace(settings):
        pass
