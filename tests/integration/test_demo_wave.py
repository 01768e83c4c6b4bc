"""The demo's wave path at a small size: `make demo PATIENTS=300` must reach its go/no-go.

The demo generates the estate with seed 42 and cuts wave w1_skaraborg of the real
mappings/waves.yaml over: rehearsal, initial load, freeze, final delta, verify. At a few hundred
people the satellites are small, so both the estate's planting and the wave's criteria must scale
with size (issue 10, part 12). The same path through Airflow is `make demo`; here it runs through
etl.cutover.waves, which the cutover DAG's tasks call. A second demo in the same home starts
over (etl.demo_home resets it), so the wave that the first cut over rehearses again (issue 12).
"""

from __future__ import annotations

import datetime as dt

import pytest

from etl.cutover import ledger, waves
from etl.demo_home import prepare_demo_home
from etl.estate import generate_estate
from etl.estate.base import EXTRACT_DATE

pytestmark = pytest.mark.integration

WAVE = "w1_skaraborg"
DEMO_SEED = 42  # etl.cli demo's default


@pytest.mark.parametrize("patients", [300])
def test_the_demo_wave_reaches_go_at_a_small_size(tmp_path, settings_for, patients):
    estate = tmp_path / "estate"
    generate_estate(estate, patients=patients, seed=DEMO_SEED)
    home = tmp_path / "home"  # settings_for's home; the demo keeps its core and landing there
    settings = settings_for(
        estate, f"sqlite:///{home / 'core' / 'core.sqlite'}", landing_dir=home / "landing"
    )
    assert prepare_demo_home(settings).action == "fresh"
    as_of = dt.date.fromisoformat(str(EXTRACT_DATE))

    rehearsal = waves.rehearse(settings, WAVE, as_of, actor="demo-engineer")
    assert rehearsal["criteria_passed"], rehearsal
    assert not rehearsal["failures"]

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
        waves.rehearse(settings, WAVE, as_of, actor="demo-engineer")
    assert prepare_demo_home(settings).action == "reset"
    # A second `make demo` is a new process; this one must forget the deleted core's engine.
    core_engine(settings.resolved_core_url).dispose()
    core_engine.cache_clear()
    again = waves.rehearse(settings, WAVE, as_of, actor="demo-engineer")
    assert again["criteria_passed"], again
