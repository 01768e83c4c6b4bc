"""A wave's final delta leaves its batches' GX Data Docs out of the freeze window (issue 15).

One wave of ELVIS and Melior on a copy of the small estate (SQLite), four final deltas:

1. rolled back: before the decision each final batch has its validation summary, saying its
   Data Docs come after the go/no-go decision, and no Data Docs (the dashboard says so too, no
   broken link); the wave's rollback builds them;
2. rejected at the go/no-go: the rejection builds them;
3. committed: ``cut_over`` builds them; one that fails is logged, the commit stands, and
   ``vardflytt cutover data-docs`` builds it again;
4. one batch of it undone: that batch gets its Data Docs, the others wait for the decision.

Initial loads keep writing their Data Docs in the batch as before.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from etl import pipeline
from etl.cli import app
from etl.core.database import core_engine
from etl.cutover import ledger, wave_rollback, waves
from etl.cutover.plan import one_wave_plan
from etl.dashboard.app import create_app
from etl.dashboard.auth import DashboardUser, Role, TokenAuthenticator, token_digest
from etl.report.validation import batch_report_folder
from etl.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.integration

WAVE = "t1"
SYSTEMS = ["elvis", "melior"]
AS_OF = dt.date(2026, 7, 1)
LEAD_TOKEN = "lead-token-0123456789abcdef"
DEFERRED = "built after the go/no-go decision"


def _plan() -> dict:
    return one_wave_plan(
        WAVE,
        SYSTEMS,
        {"project_lead": {"airflow_users": ["anna"]}},
        title="final data docs",
        site="SU",
        min_rehearsals=0,
    )


@pytest.fixture(scope="module")
def settings(small_estate, tmp_path_factory):
    root = tmp_path_factory.mktemp("final-data-docs")
    estate = root / "estate"
    shutil.copytree(small_estate, estate)
    mappings = root / "mappings"
    shutil.copytree(PROJECT_ROOT / "mappings", mappings)
    (mappings / "waves.yaml").write_text(yaml.safe_dump(_plan()), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VARDFLYTT_HOME", str(root / "home"))
        patch.setenv("VARDFLYTT_ESTATE_DIR", str(estate))
        patch.setenv("VARDFLYTT_CORE_URL", f"sqlite:///{root / 'core.db'}")
        patch.setenv("VARDFLYTT_MAPPINGS_DIR", str(mappings))
        for name in ("VARDFLYTT_LANDING_DIR", "VARDFLYTT_SOURCE_ELVIS_URL"):
            patch.delenv(name, raising=False)
        yield Settings()


def _final_batches(settings: Settings) -> dict[str, str]:
    with core_engine(settings.resolved_core_url).connect() as connection:
        return waves.final_delta_batches(connection, WAVE)


def _folder(settings: Settings, batch_id: str) -> Path:
    return batch_report_folder(settings, batch_id)


def _has_data_docs(settings: Settings, batch_id: str) -> bool:
    folder = _folder(settings, batch_id)
    written = json.loads((folder / "summary.json").read_text("utf-8"))
    on_disk = (folder / "data_docs" / "index.html").is_file()
    assert bool(written["data_docs"]) == on_disk, "the summary must link what is there"
    return on_disk


def _assert_deferred(settings: Settings, batch_id: str) -> None:
    folder = _folder(settings, batch_id)
    assert (folder / "summary.html").is_file() and (folder / "summary.md").is_file()
    assert not _has_data_docs(settings, batch_id)
    written = json.loads((folder / "summary.json").read_text("utf-8"))
    assert DEFERRED in written["data_docs_note"]
    page = (folder / "summary.html").read_text("utf-8")
    assert DEFERRED in page and 'href="None"' not in page and 'href=""' not in page
    assert DEFERRED in (folder / "summary.md").read_text("utf-8")


def _to_final(settings: Settings, run_id: str) -> dict[str, str]:
    """The wave loaded, frozen and its final delta loaded; its final batches."""
    waves.load_wave(settings, WAVE, "initial", AS_OF, actor="ivar")
    waves.freeze(settings, WAVE, actor="ivar")
    waves.load_wave(settings, WAVE, "final", AS_OF, actor="ivar", run_id=run_id)
    finals = _final_batches(settings)
    assert sorted(finals) == SYSTEMS
    return finals


def _dashboard(settings: Settings) -> TestClient:
    def authenticator(_settings: Settings) -> TokenAuthenticator:
        users = [DashboardUser("lena", Role.LEAD, token_digest(LEAD_TOKEN))]
        return TokenAuthenticator(users, b"a test secret of enough length")

    return TestClient(create_app(settings, authenticator=authenticator))


def test_a_rolled_back_final_delta_gets_its_data_docs_after_the_rollback(settings):
    finals = _to_final(settings, "final-one")
    with core_engine(settings.resolved_core_url).connect() as connection:
        initial = [
            t for t in ledger.transitions(connection, WAVE) if t["to_state"] == ledger.INITIAL_LOAD
        ][-1]["evidence"]["batches"]
    for batch in initial.values():  # the initial load is unchanged: Data Docs in the batch
        assert _has_data_docs(settings, batch["batch_id"])
    for batch_id in finals.values():
        _assert_deferred(settings, batch_id)

    # Before the decision the dashboard's pages work and say when the Data Docs come.
    client = _dashboard(settings)
    headers = {"Authorization": f"Bearer {LEAD_TOKEN}"}
    for path in ("/reports", "/runs/final-one"):
        page = client.get(path, headers=headers)
        assert page.status_code == 200, path
        assert DEFERRED in page.text, path
        for batch_id in finals.values():
            assert f"batches/{batch_id}/data_docs/index.html" not in page.text

    wave_rollback.rollback_wave(settings, WAVE, actor="ivar")
    for batch_id in finals.values():
        assert _has_data_docs(settings, batch_id)
        assert DEFERRED not in (_folder(settings, batch_id) / "summary.html").read_text("utf-8")


def test_a_rejected_final_delta_gets_its_data_docs_after_the_rejection(settings):
    finals = _to_final(settings, "final-two")
    for batch_id in finals.values():
        _assert_deferred(settings, batch_id)
    waves.verify(settings, WAVE, AS_OF, actor="ivar")
    for batch_id in finals.values():  # verification is in the window: still none
        assert not _has_data_docs(settings, batch_id)
    waves.approve(settings, WAVE, "anna", "project_lead", decision="reject")
    for batch_id in finals.values():
        assert _has_data_docs(settings, batch_id)


def test_a_committed_final_delta_gets_its_data_docs_and_a_failed_build_can_be_rerun(
    settings, monkeypatch, caplog
):
    # A new final delta of the verified (rejected) wave, then the go and the commit.
    waves.load_wave(settings, WAVE, "final", AS_OF, actor="ivar", run_id="final-three")
    finals = _final_batches(settings)
    for batch_id in finals.values():
        _assert_deferred(settings, batch_id)
    waves.verify(settings, WAVE, AS_OF, actor="ivar")
    waves.approve(settings, WAVE, "anna", "project_lead")

    build = pipeline.deferred_data_docs

    def melior_fails(system, batch_id, settings, force=False):
        if system == "melior":
            raise OSError("the storage root is full")
        return build(system, batch_id, settings, force)

    monkeypatch.setattr(pipeline, "deferred_data_docs", melior_fails)
    with caplog.at_level(logging.ERROR, logger="etl.cutover.waves"):
        waves.cut_over(settings, WAVE, actor="anna")  # the build's failure does not undo it
    with core_engine(settings.resolved_core_url).connect() as connection:
        assert ledger.wave_state(connection, WAVE) == ledger.CUT_OVER
    assert _has_data_docs(settings, finals["elvis"])
    _assert_deferred(settings, finals["melior"])
    assert f"vardflytt cutover data-docs {WAVE}" in caplog.text
    assert finals["melior"] in caplog.text

    # Still failing: the command says so and exits non-zero.
    result = CliRunner().invoke(app, ["cutover", "data-docs", WAVE])
    assert result.exit_code == 1, result.output
    monkeypatch.setattr(pipeline, "deferred_data_docs", build)
    result = CliRunner().invoke(app, ["cutover", "data-docs", WAVE])
    assert result.exit_code == 0, result.output
    assert f"{finals['melior']}: built" in result.output
    assert f"{finals['elvis']}: already built" in result.output
    for batch_id in finals.values():
        assert _has_data_docs(settings, batch_id)

    # A wave name the plan does not have (a typo) is refused, not answered with "none waiting".
    result = CliRunner().invoke(app, ["cutover", "data-docs", f"{WAVE}x"])
    assert result.exit_code != 0 and f"no wave '{WAVE}x'" in result.output, result.output


def test_an_undone_final_batch_gets_its_data_docs_and_the_others_wait_for_the_decision(settings):
    wave_rollback.rollback_wave(
        settings, WAVE, actor="ivar"
    )  # the committed wave: its docs were built
    finals = _to_final(settings, "final-four")
    wave_rollback.rollback_batch(settings, finals["elvis"], actor="ivar")
    assert _has_data_docs(settings, finals["elvis"])  # no decision will come for it
    _assert_deferred(settings, finals["melior"])  # still in the freeze window's wave
    wave_rollback.rollback_wave(settings, WAVE, actor="ivar")
    assert _has_data_docs(settings, finals["melior"])
