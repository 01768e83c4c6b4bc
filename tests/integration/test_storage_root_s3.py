"""The storage root on a real S3 endpoint: moto's server on a loopback port, reached over HTTP by
s3fs exactly as an on-premises S3-compatible store would be.

Proves that landing, stage files and reports land in the bucket, that the core reconciles, that
a worker's local home keeps nothing but its private scratch (emptied when each task ends), and
that each stage runs where none of its upstream's local folders exist: only the bucket and the
core database are shared.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from pathlib import Path

import pytest

from etl import pipeline
from etl.cutover.reconcile import reconcile_system
from etl.settings import Settings

pytestmark = pytest.mark.integration

AS_OF = dt.date(2026, 7, 1)
SYSTEMS = ("elvis", "melior")
BUCKET, PREFIX = "vardflytt-test", "region/storage"
ROOT = f"s3://{BUCKET}/{PREFIX}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint():
    """A real HTTP S3 server (moto) on a free loopback port, with an empty bucket."""
    moto_server = pytest.importorskip("moto.server")
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        import s3fs

        s3fs.S3FileSystem(endpoint_url=endpoint, key="test", secret="test").mkdir(BUCKET)
        yield endpoint
    finally:
        server.stop()


@pytest.fixture(scope="module")
def estate(estate_of) -> Path:
    """A 150-person estate (the wave tests' own, generated once per test run): what this file
    proves (where files land, what each worker keeps) holds at any size, and every stage's
    bucket traffic (moto's server in this process) grows with the rows it carries."""
    return estate_of(150, 5)


@pytest.fixture
def shared(tmp_path, s3_endpoint, monkeypatch):
    """What every worker shares: the bucket (a fresh prefix per test) and the core database."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, key="test", secret="test")
    if fs.exists(f"{BUCKET}/{PREFIX}"):
        fs.rm(f"{BUCKET}/{PREFIX}", recursive=True)
    database = tmp_path / "database"  # stands in for the core's database server
    database.mkdir()
    monkeypatch.setenv("VARDFLYTT_PSEUDONYM_KEY", "a-shared-secret-key-for-every-worker")
    monkeypatch.setenv("VARDFLYTT_STORAGE_ROOT", ROOT)
    options = {"endpoint_url": s3_endpoint, "key": "test", "secret": "test"}
    monkeypatch.setenv("VARDFLYTT_STORAGE_OPTIONS", json.dumps(options))
    monkeypatch.setenv("VARDFLYTT_CORE_URL", f"sqlite:///{database / 'core.sqlite'}")
    return fs, database


def _worker(tmp_path: Path, name: str, estate: Path, database: Path, monkeypatch) -> Settings:
    """A worker of its own: its own home and working directory; nothing local is shared."""
    home = tmp_path / "workers" / name
    home.mkdir(parents=True)
    monkeypatch.setenv("VARDFLYTT_HOME", str(home))
    monkeypatch.setenv("VARDFLYTT_ESTATE_DIR", str(estate))
    monkeypatch.setenv("VARDFLYTT_ALLOWED_STORAGE_ROOTS", f"{ROOT},{home},{estate},{database}")
    monkeypatch.chdir(home)
    return Settings()


def _local_files(home: Path) -> list[str]:
    return sorted(p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file())


def test_a_migration_on_s3_lands_every_file_in_the_bucket_and_reconciles(
    estate, shared, tmp_path, monkeypatch
):
    fs, database = shared
    settings = _worker(tmp_path, "worker-1", estate, database, monkeypatch)

    reports = {
        system: pipeline.run_system(system, f"{system}-s3", AS_OF, settings=settings)
        for system in SYSTEMS
    }

    for report in reports.values():
        assert report.is_reconciled
        assert all(row.residue == 0 for row in report.accounting)
    keys = {path.removeprefix(f"{BUCKET}/{PREFIX}/") for path in fs.find(f"{BUCKET}/{PREFIX}")}
    for system in SYSTEMS:
        batch = f"landing/{system}-s3/{system}"
        assert f"{batch}/landed/_manifest.json" in keys
        assert any(k.startswith(f"{batch}/landed/") and k.endswith(".parquet") for k in keys)
        assert any(k.startswith(f"{batch}/transformed/") for k in keys)
        assert any(k.startswith(f"{batch}/validated/") for k in keys)
        assert f"reports/validation/batches/{system}-s3/summary.html" in keys
    # The worker's home keeps nothing: every task's scratch copy was removed when it ended.
    assert _local_files(settings.home) == []


def test_each_stage_runs_on_a_worker_that_never_saw_its_upstream(
    estate, shared, tmp_path, monkeypatch
):
    """Every task on a fresh worker (its own home and working directory): the only things the
    stages share are the bucket and the core database, and the XCom-like values they pass."""
    fs, database = shared
    system, batch = "melior", "melior-hop"
    workers = iter(range(100))

    def fresh() -> Settings:
        return _worker(tmp_path, f"worker-{next(workers)}", estate, database, monkeypatch)

    extracted = pipeline.extract(system, batch, AS_OF.isoformat(), fresh())
    entities = list(pipeline.catalog(fresh()).system(system).entities)
    for entity in entities:
        pipeline.transform(system, entity, batch, fresh())
    for entity in entities:
        pipeline.validate(system, entity, batch, fresh())
    pipeline.gate(system, batch, settings=fresh())
    loaded = pipeline.load(system, batch, settings=fresh())
    reconciled = pipeline.reconcile(json.loads(json.dumps(loaded, default=str)))
    reported = pipeline.report(system, batch, fresh())

    assert reconciled["is_reconciled"] is True
    assert reconciled["rows"] == sum(extracted["rows"].values()) > 0
    # XCom carries keys under the storage root, never a worker's path.
    assert reported["summary"] == f"reports/validation/batches/{batch}/summary.html"
    assert fs.exists(f"{BUCKET}/{PREFIX}/{reported['summary']}")
    assert fs.exists(f"{BUCKET}/{PREFIX}/{reported['data_docs']}")
    manifest = json.loads(
        fs.cat(f"{BUCKET}/{PREFIX}/landing/{batch}/{system}/landed/_manifest.json")
    )
    assert all(not os.path.isabs(d["path"]) for d in manifest["datasets"].values())
    for home in (tmp_path / "workers").iterdir():
        assert _local_files(home) == [], home.name

    # The cutover's measurement reads the source again on yet another worker: its scratch batch
    # never reaches the bucket, and the core it compares with is the one the stages loaded.
    checked = reconcile_system(pipeline.catalog(fresh()), system, fresh(), AS_OF, label="s3")
    assert checked and all(result.is_reconciled for result in checked)
    assert not fs.exists(f"{BUCKET}/{PREFIX}/landing/reconcile__{system}__s3")

    # A steward's note is screened against the batch's landed patients on the dashboard's host:
    # it brings that one landed file from the bucket, not the rest of the batch.
    from etl.steward import screening

    steward_host = fresh()
    patients = screening.load_batch_patients(steward_host, [(system, batch)], "steward")
    assert patients.names and patients.identities
    copied = steward_host.home / "mirror" / "landing" / batch / system / "landed"
    assert len([p for p in copied.iterdir() if p.suffix == ".parquet"]) == 1


def test_tasks_of_one_batch_running_at_once_on_two_workers_keep_each_others_files(
    estate, shared, tmp_path, monkeypatch
):
    """Both workers copy the batch before either uploads (what two Celery workers transforming
    entities of one system at once do): each uploads only what it wrote, so neither removes or
    overwrites the other's file with its stale copy."""
    from etl.transform.stage import transform_entity

    fs, database = shared
    system, batch = "melior", "melior-parallel"
    one = _worker(tmp_path, "worker-1", estate, database, monkeypatch)
    two = _worker(tmp_path, "worker-2", estate, database, monkeypatch)
    pipeline.extract(system, batch, AS_OF.isoformat(), one)
    catalog = pipeline.catalog(one)
    entities = list(catalog.system(system).entities)
    first, second = entities[0], entities[1]

    with (
        pipeline.on_storage(one, system, batch) as local_one,
        pipeline.on_storage(two, system, batch) as local_two,
    ):
        transform_entity(catalog, system, first, batch, local_one)
        transform_entity(catalog, system, second, batch, local_two)

    folder = f"{BUCKET}/{PREFIX}/landing/{batch}/{system}/transformed"
    assert fs.exists(f"{folder}/{first}.parquet") and fs.exists(f"{folder}/{second}.parquet")
    for entity in entities[2:]:
        pipeline.transform(system, entity, batch, two)
    for entity in entities:
        pipeline.validate(system, entity, batch, one)
    pipeline.gate(system, batch, settings=two)
    loaded = pipeline.load(system, batch, settings=one)
    assert pipeline.reconcile(loaded)["is_reconciled"] is True


def test_a_re_extract_supersedes_the_abandoned_batch_in_the_bucket(
    estate, shared, tmp_path, monkeypatch
):
    fs, database = shared
    settings = _worker(tmp_path, "worker-a", estate, database, monkeypatch)
    pipeline.extract("melior", "melior-abandoned", AS_OF.isoformat(), settings)
    pipeline.release_system("melior", "melior-abandoned", settings)
    assert fs.exists(f"{BUCKET}/{PREFIX}/landing/melior-abandoned/melior/landed/_manifest.json")

    other = _worker(tmp_path, "worker-b", estate, database, monkeypatch)
    pipeline.extract("melior", "melior-next", AS_OF.isoformat(), other)

    assert not fs.exists(f"{BUCKET}/{PREFIX}/landing/melior-abandoned/melior")
    assert fs.exists(f"{BUCKET}/{PREFIX}/landing/melior-next/melior/landed/_manifest.json")


def test_an_evidence_pack_is_uploaded_under_the_root(estate, shared, tmp_path, monkeypatch):
    from etl.cutover.airflow_hitl import run_label
    from etl.cutover.evidence import pack_key, write_pack

    fs, database = shared
    settings = _worker(tmp_path, "worker-e", estate, database, monkeypatch)
    label = run_label("load", "manual__s3")

    pack = write_pack(settings, "w1_skaraborg", label)

    key = pack_key("w1_skaraborg", label)
    for name in ("evidence.json", "evidence.md", "SHA256SUMS"):
        remote = fs.cat(f"{BUCKET}/{PREFIX}/{key}/{name}")
        assert remote == (pack / name).read_bytes(), name
    assert fs.cat(f"{BUCKET}/{PREFIX}/{key}.zip") == pack.with_name(f"{pack.name}.zip").read_bytes()

    # The dashboard on another host reads the bucket's packs (its copy, brought up to date).
    from etl.core import storage

    dashboard_host = _worker(tmp_path, "api-server", estate, database, monkeypatch)
    seen = storage.readable(dashboard_host, "evidence")
    assert (seen / "w1_skaraborg" / label / "evidence.json").read_bytes() == (
        pack / "evidence.json"
    ).read_bytes()
    assert (seen / "w1_skaraborg" / f"{label}.zip").is_file()
    fs.rm_file(f"{BUCKET}/{PREFIX}/{key}.zip")
    fs.pipe_file(f"{BUCKET}/{PREFIX}/{key}/evidence.md", b"# replaced\n")
    seen = storage.readable(dashboard_host, "evidence")
    assert not (seen / "w1_skaraborg" / f"{label}.zip").exists()
    assert (seen / "w1_skaraborg" / label / "evidence.md").read_bytes() == b"# replaced\n"
