"""The demo's wave path at a small size: `make demo PATIENTS=300` must take every wave of the
real mappings/waves.yaml to its go/no-go.

The demo generates the estate with seed 42 and takes each wave through rehearsal, initial load,
freeze, final delta and verify, judged as of the estate's extract date; the demo approvers
approve w1_skaraborg and w2_hospital_care, and w3_primary_care is left verified for a person.
At a few hundred people the satellites are small, so both the estate's planting and the waves'
criteria must scale with size (issue 10, part 12). The same path through Airflow is `make demo`;
here it runs through etl.cutover.waves, which the cutover DAG's tasks call. A second demo in the
same home starts over (etl.demo_home resets it), so the wave that the first cut over rehearses
again (issue 12).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from etl.cutover import ledger, rehearsal, waves
from etl.demo_home import prepare_demo_home
from etl.estate.base import EXTRACT_DATE

# Nothing here reads a batch's validation report (the go/no-go reads the core and the evidence
# packs): each wave's run_system skips it (tests/conftest.py).
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("without_batch_reports")]

WAVE = "w1_skaraborg"
DEMO_SEED = 42  # etl.cli demo's default


@pytest.mark.parametrize("patients", [300])
def test_the_demo_wave_reaches_go_at_a_small_size(tmp_path, settings_for, estate_of, patients):
    estate = estate_of(patients, DEMO_SEED)  # outside the home: the demo's reset leaves it
    home = tmp_path / "home"  # settings_for's home; the demo keeps its core and landing there
    settings = settings_for(
        estate, f"sqlite:///{home / 'core' / 'core.sqlite'}", landing_dir=home / "landing"
    )
    assert prepare_demo_home(settings).action == "fresh"
    as_of = dt.date.fromisoformat(str(EXTRACT_DATE))

    rehearsed = rehearsal.rehearse(settings, WAVE, as_of, actor="demo-engineer")
    assert rehearsed["criteria_passed"], rehearsed
    assert not rehearsed["failures"]

    loaded = waves.load_wave(settings, WAVE, "initial", as_of, actor="demo-engineer")
    assert not loaded["failures"], loaded["failures"]
    waves.freeze(settings, WAVE, actor="demo-engineer")
    waves.load_wave(settings, WAVE, "final", as_of, actor="demo-engineer")
    results = waves.verify(settings, WAVE, as_of, actor="demo-engineer")
    by_name = {c.name: c for c in results}
    assert all(c.passed for c in results), [c.as_dict() for c in results if not c.passed]
    rate = next(c for name, c in by_name.items() if name.startswith("quarantine rate"))
    assert "every system within the limit" in rate.detail

    # Two roles, two distinct demo people (mappings/waves.yaml); one alone cannot cut over.
    waves.approve(settings, WAVE, "demo-lead", "project_lead", "approve")
    with pytest.raises(ledger.LedgerError, match="no current approval from medical_safety"):
        waves.cut_over(settings, WAVE, actor="demo-engineer")
    waves.approve(settings, WAVE, "demo-cmio", "medical_safety_officer", "approve")
    waves.cut_over(settings, WAVE, actor="demo-engineer")
    from etl.core.database import core_engine

    with core_engine(settings.resolved_core_url).connect() as connection:
        assert ledger.wave_state(connection, WAVE) == ledger.CUT_OVER

    # `make demo` again in the same home: without the reset the wave refuses to rehearse.
    with pytest.raises(ledger.LedgerError, match="rehearsal"):
        rehearsal.rehearse(settings, WAVE, as_of, actor="demo-engineer")
    assert prepare_demo_home(settings).action == "reset"
    # A second `make demo` is a new process; this one must forget the deleted core's engine.
    core_engine(settings.resolved_core_url).dispose()
    core_engine.cache_clear()
    again = rehearsal.rehearse(settings, WAVE, as_of, actor="demo-engineer")
    assert again["criteria_passed"], again


def _demo_settings(tmp_path, settings_for, estate_of, patients: int):
    estate = estate_of(patients, DEMO_SEED)  # the demo's estate, generated once per test run
    home = tmp_path / "home"
    settings = settings_for(
        estate, f"sqlite:///{home / 'core' / 'core.sqlite'}", landing_dir=home / "landing"
    )
    prepare_demo_home(settings)
    return settings


def test_the_demo_data_meets_the_hospital_waves_criteria(tmp_path, settings_for, estate_of):
    """w2 (Melior, ELVIS, Orbit, Obstetrix and 24 satellites) passes every criterion of its plan
    in its rehearsal: quarantine within the limit per system, DQ gate, accounting, reconciliation.
    The planted defects are all there (about 0.5% of rows per class), none hidden."""
    from etl.cutover.waves import evidence_json

    settings = _demo_settings(tmp_path, settings_for, estate_of, 300)
    as_of = dt.date.fromisoformat(str(EXTRACT_DATE))

    rehearsed = rehearsal.rehearse(settings, "w2_hospital_care", as_of, actor="demo-engineer")

    assert not rehearsed["failures"], rehearsed["failures"]
    criteria = evidence_json(Path(rehearsed["pack"]))["criteria"]
    assert [c for c in criteria if not c["passed"]] == []
    rate = next(c for c in criteria if c["criterion"].startswith("quarantine rate"))
    assert rate["detail"] == "every system within the limit"
    assert rehearsed["criteria_passed"]


def test_the_last_wave_is_left_verified_at_its_go_no_go(tmp_path, settings_for, estate_of):
    """w3 goes as the demo takes it: rehearsal and initial load (its cutover DAG), then the final
    phase up to the go/no-go (etl.cli._demo_final_to_go_no_go); it waits for demo-lead, and the
    answer the demo prints (approve as project_lead, then commit) cuts it over."""
    from etl import cli
    from etl.demo_waves import describe, wave_outcomes

    wave = "w3_primary_care"
    settings = _demo_settings(tmp_path, settings_for, estate_of, 300)
    as_of = dt.date.fromisoformat(str(EXTRACT_DATE))

    rehearsed = rehearsal.rehearse(settings, wave, as_of, actor="demo-engineer")
    assert rehearsed["criteria_passed"], rehearsed
    waves.load_wave(settings, wave, "initial", as_of, actor="demo-engineer")
    cli._demo_final_to_go_no_go(settings, wave, as_of)

    (outcome,) = wave_outcomes(settings, [wave])
    assert outcome.state == ledger.VERIFIED
    assert outcome.waiting == {"project_lead": ["demo-lead"]}
    lines = describe(outcome, settings)
    assert "cutover approve w3_primary_care --role project_lead --user demo-lead" in lines[2]

    # What `vardflytt cutover approve` records once Airflow signed demo-lead in, then `commit`.
    waves.approve(settings, wave, "demo-lead", "project_lead", "approve", channel="cli")
    waves.cut_over(settings, wave, actor="demo-engineer")
    (outcome,) = wave_outcomes(settings, [wave])
    assert outcome.state == ledger.CUT_OVER
