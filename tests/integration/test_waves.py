"""A wave from plan to cutover and back, through etl.cutover.waves, on SQLite and PostgreSQL.

rehearse (separate core, evidence pack, comparison) -> initial load -> freeze -> final delta ->
verify (reconciliation + criteria) -> approval -> cut over -> rollback, where the rollback leaves
the wave's core rows identical by checksum to before the wave.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil

import pytest
import yaml

from etl.core.database import core_engine
from etl.cutover import ledger, rehearsal, wave_rollback, waves
from etl.cutover.plan import one_wave_plan
from etl.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

AS_OF = dt.date(2026, 7, 1)
SYSTEMS = ["elvis", "melior"]
IDENTITY_NUMBER = re.compile(r"(?<![0-9A-Za-z])(?:19|20)?\d{6}[-+]?\d{4}(?![0-9A-Za-z])")


@pytest.fixture
def settings(small_estate, settings_for, tmp_path, core_url):
    mappings = tmp_path / "mappings"
    shutil.copytree(PROJECT_ROOT / "mappings", mappings)
    plan = one_wave_plan(
        "t1",
        SYSTEMS,
        {"project_lead": {"airflow_users": ["anna", "lena"]}},
        site="SU",
        min_rehearsals=1,
    )
    (mappings / "waves.yaml").write_text(yaml.safe_dump(plan), encoding="utf-8")
    return settings_for(small_estate, core_url, mappings_dir=mappings)


def _state(settings) -> str:
    with core_engine(settings.resolved_core_url).connect() as connection:
        return ledger.wave_state(connection, "t1")


def test_a_wave_goes_from_plan_to_cutover_and_back(settings, small_estate):
    wave = waves.wave_of(settings, "t1")
    before = waves.wave_checksums(settings, wave)

    # Without a rehearsal the criteria cannot pass; a rehearsal does not touch the core.
    first = rehearsal.rehearse(settings, "t1", AS_OF, actor="rita")
    second = rehearsal.rehearse(settings, "t1", AS_OF, actor="rita")
    assert waves.wave_checksums(settings, wave) == before
    assert first["criteria_passed"] and second["criteria_passed"], first
    assert second["comparison"]["changes"] == 0
    pack = settings.home / "evidence" / "t1" / "rehearsal-002"
    assert {p.name for p in pack.iterdir()} >= {
        "evidence.json",
        "evidence.md",
        "SHA256SUMS",
        "comparison.json",
    }

    # A second runner is refused while the wave is held.
    engine = core_engine(settings.resolved_core_url)
    ledger.acquire_lock(engine, "t1", "someone-else")
    with pytest.raises(ledger.WaveLockedError, match="held by someone-else"):
        waves.load_wave(settings, "t1", "initial", AS_OF, actor="ivar")
    ledger.release_lock(engine, "t1", run_id="someone-else")

    loaded = waves.load_wave(settings, "t1", "initial", AS_OF, actor="ivar", run_id="run-1")
    assert set(loaded["batches"]) == set(SYSTEMS) and not loaded["failures"]
    assert _state(settings) == ledger.INITIAL_LOAD
    with pytest.raises(ledger.LedgerError, match="cannot go to verified"):
        waves.verify(settings, "t1", AS_OF)

    waves.freeze(settings, "t1", actor="ivar")
    waves.load_wave(settings, "t1", "final", AS_OF, actor="ivar")
    results = waves.verify(settings, "t1", AS_OF, actor="ivar")
    assert all(c.passed for c in results), [c.as_dict() for c in results]
    assert _state(settings) == ledger.VERIFIED

    with pytest.raises(ledger.LedgerError, match="no current approval from project_lead"):
        waves.cut_over(settings, "t1", actor="ivar")
    waves.approve(settings, "t1", "lena", "project_lead", "reject", note="wait for Monday")
    with pytest.raises(ledger.LedgerError, match="rejected by lena"):
        waves.cut_over(settings, "t1", actor="ivar")
    waves.approve(settings, "t1", "lena", "project_lead", "approve")
    waves.cut_over(settings, "t1", actor="ivar")
    assert _state(settings) == ledger.CUT_OVER

    from etl.cutover.evidence import write_pack

    signed = write_pack(settings, "t1", "signoff")
    content = json.loads((signed / "evidence.json").read_text("utf-8"))
    assert [t["to_state"] for t in content["transitions"]][-4:] == [
        "frozen",
        "final_delta",
        "verified",
        "cut_over",
    ]
    assert {a["decision"] for a in content["approvals"]} == {"approve", "reject"}
    assert all(r["is_reconciled"] for r in content["reconciliation"])
    for path in signed.iterdir():
        assert not IDENTITY_NUMBER.search(path.read_text("utf-8")), path.name

    evidence = wave_rollback.rollback_wave(settings, "t1", actor="ivar")
    assert evidence["checksum_equal_to_before_wave"] is True
    assert waves.wave_checksums(settings, wave) == before
    assert _state(settings) == ledger.ROLLED_BACK
    # Rolling back again has nothing to undo and is refused by the state machine.
    with pytest.raises(ledger.LedgerError, match="cannot go to rolled_back"):
        wave_rollback.rollback_wave(settings, "t1", actor="ivar")
