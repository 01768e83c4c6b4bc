"""Files and secrets: patient data on disk is owner-only, a failed stage leaves no temporary
files, landing data past its retention is purged and recorded, and no printed URL holds a
password."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from etl import pipeline
from etl.core.database import core_engine
from etl.core.tables import access_log, load_batch, promotion

AS_OF = dt.date(2026, 7, 1)
PASSWORD = "S3cret-in-url"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def wide_umask():
    """The usual 022 umask of a login shell: without the feature, files come out 0644."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _readable_by_others(root: Path) -> list[str]:
    found = []
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink() and path.stat().st_mode & 0o077:
            found.append(f"{oct(path.stat().st_mode & 0o777)} {path}")
    return found


@pytest.mark.integration
def test_landing_stage_core_and_evidence_files_are_owner_only_after_a_run(
    small_estate, settings_for, tmp_path, wide_umask
):
    from etl.cutover.evidence import write_pack

    settings = settings_for(small_estate, f"sqlite:///{tmp_path / 'home' / 'core' / 'core.sqlite'}")
    # A landing zone made earlier under the wide umask is narrowed too.
    settings.resolved_landing_dir.mkdir(parents=True)
    os.umask(0o022)
    report = pipeline.run_system("elvis", "elvis-files", AS_OF, settings=settings)
    assert report.is_reconciled
    os.umask(0o022)  # whatever the run set, the pack below is explicit about its modes
    pack = write_pack(settings, "w1_skaraborg", "owner-only")

    landing = settings.resolved_landing_dir
    assert list(landing.rglob("*.parquet")) and list(landing.rglob("_manifest.json"))
    assert list(landing.rglob("transformed/*.parquet")) and list(landing.rglob("validated/*"))
    assert _readable_by_others(landing) == []
    core_files = sorted((tmp_path / "home" / "core").glob("core.sqlite*"))
    assert core_files
    assert _readable_by_others(tmp_path / "home" / "core") == []
    assert _readable_by_others(pack) == []
    assert _readable_by_others(pack.with_name(f"{pack.name}.zip")) == []


@pytest.mark.integration
def test_a_failed_stage_leaves_no_temporary_files(
    small_estate, settings_for, tmp_path, monkeypatch
):
    from etl.transform import stage

    settings = settings_for(
        small_estate, f"sqlite:///{tmp_path / 'home' / 'core.sqlite'}", chunk_rows=40
    )
    pipeline.extract("elvis", "elvis-fails", AS_OF, settings)
    real = stage.transform_chunk
    calls = []

    def fails_half_way(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("the disk filled up")
        return real(*args, **kwargs)

    monkeypatch.setattr(stage, "transform_chunk", fails_half_way)
    with pytest.raises(RuntimeError, match="disk filled"):
        pipeline.transform("elvis", "patient", "elvis-fails", settings)
    assert len(calls) == 2  # one chunk was written to the temporary file before the failure
    landing = settings.resolved_landing_dir
    assert list(landing.rglob("*.tmp")) == []
    assert not (landing / "elvis-fails" / "elvis" / "transformed" / "patient.parquet").exists()
    pipeline.release_system("elvis", "elvis-fails", settings)


# --- landing retention ------------------------------------------------------------------------


def _copy_batch(settings, source: str, batch_id: str, extracted_at: dt.datetime) -> Path:
    root = settings.resolved_landing_dir
    folder = root / batch_id / "elvis"
    shutil.copytree(root / source / "elvis", folder)
    manifest = folder / "landed" / "_manifest.json"
    content = json.loads(manifest.read_text("utf-8"))
    content.update(batch_id=batch_id, extracted_at=extracted_at.isoformat())
    manifest.write_text(json.dumps(content), "utf-8")
    return folder


def _ledger_row(connection, batch_id: str, state: str, seq: int | None) -> None:
    now = dt.datetime.now(dt.UTC)
    connection.execute(
        load_batch.insert().values(
            batch_id=batch_id, source_system="elvis", status=state, started_at=now
        )
    )
    connection.execute(
        promotion.insert().values(
            batch_id=batch_id, source_system="elvis", kind="full", state=state, seq=seq
        )
    )


@pytest.mark.integration
def test_purge_removes_only_expired_finished_batches_and_records_each_file(
    small_estate, settings_for, tmp_path
):
    from etl.extract import retention

    settings = settings_for(
        small_estate, f"sqlite:///{tmp_path / 'home' / 'core.sqlite'}", landing_retention_days=30
    )
    pipeline.run_system("elvis", "elvis-old", AS_OF, settings=settings)
    old_manifest = settings.resolved_landing_dir / "elvis-old/elvis/landed/_manifest.json"
    extracted = dt.datetime.fromisoformat(json.loads(old_manifest.read_text())["extracted_at"])
    now = extracted + dt.timedelta(days=45)
    engine = core_engine(settings.resolved_core_url)
    with engine.begin() as connection:
        old_seq = connection.execute(
            sa.select(promotion.c.seq).where(promotion.c.batch_id == "elvis-old")
        ).scalar()
        for batch_id, state, seq, age_days in (
            ("elvis-new", "promoted", old_seq + 1, 40),  # the latest promoted: the delta base
            ("elvis-staged", "staged", None, 40),  # waits for promotion: never purged
            ("elvis-superseded", "superseded", None, 40),
            ("elvis-recent", "superseded", None, 3),  # within retention
        ):
            _copy_batch(settings, "elvis-old", batch_id, now - dt.timedelta(days=age_days))
            _ledger_row(connection, batch_id, state, seq)
    _copy_batch(settings, "elvis-old", "elvis-landed", now - dt.timedelta(days=40))  # no row
    catalog = pipeline.catalog(settings)
    landing = settings.resolved_landing_dir
    expected = {"elvis-old", "elvis-superseded"}

    planned = retention.purge(catalog, settings, now, dry_run=True)
    assert {b.batch_id for b in planned} == expected
    assert all((landing / name).exists() for name in expected)  # a dry run removes nothing

    # A system's own retention (system.yaml) wins over the global one.
    spec = catalog.systems["elvis"].spec.model_copy(update={"landing_retention_days": 365})
    longer = catalog.model_copy(
        update={"systems": {"elvis": catalog.systems["elvis"].model_copy(update={"spec": spec})}}
    )
    assert retention.purge(longer, settings, now, dry_run=True) == []

    files = {
        b.batch_id: {f.path: f.bytes for f in b.files}
        for b in retention.survey(catalog, settings, now)
    }
    purged = retention.purge(catalog, settings, now)
    assert {b.batch_id for b in purged} == expected
    for name in expected:
        assert not (landing / name).exists()
    for name in ("elvis-new", "elvis-staged", "elvis-recent", "elvis-landed"):
        assert (landing / name / "elvis" / "landed" / "_manifest.json").exists()

    with engine.connect() as connection:
        logged = connection.execute(
            sa.select(access_log.c.batch_id, access_log.c.entity, access_log.c.user_name).where(
                access_log.c.action == "purge_landing"
            )
        ).all()
    assert {(row.batch_id, row.entity) for row in logged} == {
        (name, path) for name in expected for path in files[name]
    }
    assert all(row.user_name for row in logged)
    entries = [
        json.loads(line)
        for line in (settings.home / "purges" / "landing.jsonl").read_text().splitlines()
    ]
    assert {(e["batch_id"], e["file"], e["bytes"]) for e in entries} == {
        (name, path, size) for name in expected for path, size in files[name].items()
    }
    assert all(e["user_name"] and e["purged_at"] for e in entries)
    assert retention.purge(catalog, settings, now) == []  # nothing left to purge

    from etl.cli import app

    shown = CliRunner().invoke(app, ["landing", "purge", "--dry-run", "--show-kept"])
    assert shown.exit_code == 0, shown.output
    assert "elvis-staged" in shown.output and "would purge 0 batch folder(s)" in shown.output


# --- no password in any printed URL -----------------------------------------------------------


def _with_password(url: str) -> str:
    return sa.make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


@pytest.mark.integration
@pytest.mark.postgres
def test_the_dashboard_does_not_print_the_core_password_at_start_up(
    postgres_url, settings_for, monkeypatch
):
    import uvicorn

    from etl.cli import app

    settings_for(core_url=_with_password(postgres_url))  # trust authentication ignores it
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    result = CliRunner().invoke(app, ["dashboard"])
    assert result.exit_code == 0, result.output
    assert "core database: postgresql+psycopg://postgres:***@127.0.0.1" in result.output
    assert PASSWORD not in result.output


@pytest.mark.integration
def test_a_refused_core_url_is_reported_without_its_password(tmp_path):
    environment = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        VARDFLYTT_HOME=str(tmp_path / "home"),
        VARDFLYTT_CORE_URL=f"postgresql+psycopg://migrator:{PASSWORD}@core.example.com/core",
    )
    done = subprocess.run(
        [sys.executable, "-m", "etl.cli", "core", "upgrade"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2  # a refusal with its message, not a traceback
    assert "Traceback" not in output
    assert "core.example.com" in output and "VARDFLYTT_ALLOWED_HOSTS" in output
    assert PASSWORD not in output


@pytest.mark.unit
def test_an_unparseable_url_in_an_exception_is_printed_without_its_password(tmp_path):
    """A SQLAlchemy error quoting the URL it could not parse ends the command, redacted."""
    environment = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        VARDFLYTT_HOME=str(tmp_path / "home"),
        VARDFLYTT_CORE_URL=f"postgresql://migrator:{PASSWORD}@localhost:port/core",
    )
    done = subprocess.run(
        [sys.executable, "-m", "etl.cli", "batches", "unlock", "elvis"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert PASSWORD not in done.stdout + done.stderr


@pytest.mark.unit
@pytest.mark.parametrize(
    "text",
    [
        f"postgresql+psycopg://u:{PASSWORD}@db:5432/x",
        f"could not reach mysql+pymysql://root:{PASSWORD}@127.0.0.1/test (timeout)",
        f"host=db port=5432 user=u password={PASSWORD} dbname=x",
        f"host=db password='{PASSWORD} with space' dbname=x",
        f"Driver=x;Server=db;UID=u;PWD={{{PASSWORD}}};",
        f'{{"conn_type": "postgres", "host": "db", "password": "{PASSWORD}"}}',
        f"s3://AKIA:{PASSWORD}@bucket/prefix",
        f"https://db/x?user=u&password={PASSWORD}&sslmode=require",
    ],
)
def test_one_helper_redacts_every_form_of_connection_text(text):
    from etl.core.redact import redact

    assert PASSWORD not in redact(text)
    assert "***" in redact(text)


@pytest.mark.unit
def test_redaction_keeps_what_is_not_a_secret():
    from etl.core.redact import redact

    for text in ("https://host:8080/path", "sqlite:////var/core.sqlite", "batch b1: 3 rows"):
        assert redact(text) == text
    assert redact(sa.make_url(f"postgresql://u:{PASSWORD}@db/x")) == "postgresql://u:***@db/x"


@pytest.mark.unit
def test_the_command_line_console_redacts_what_it_prints(capsys):
    from etl.core.redact import RedactingConsole

    console = RedactingConsole(width=200)
    console.print(f"core database: postgresql://migrator:{PASSWORD}@127.0.0.1/core")
    console.print(ValueError(f"cannot reach mysql://root:{PASSWORD}@127.0.0.1/elvis"))
    printed = capsys.readouterr().out
    assert PASSWORD not in printed
    assert "postgresql://migrator:***@127.0.0.1/core" in printed


@pytest.mark.unit
def test_reading_the_settings_makes_the_process_umask_owner_only(wide_umask):
    """Every command and Airflow task reads its settings first (etl.settings.get_settings)."""
    from etl.settings import get_settings

    get_settings()
    current = os.umask(0o022)
    assert current & 0o077 == 0o077
