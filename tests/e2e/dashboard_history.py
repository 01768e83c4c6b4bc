"""A small real history for the dashboard tests: two rehearsal runs through the real pipeline,
recorded in the real cutover ledger (transitions and an approval), with the second run's
validation report and the mapping documentation the dashboard links to."""

from __future__ import annotations

import datetime as dt

from etl import pipeline
from etl.core.database import core_engine
from etl.cutover.ledger import record_approval, transition
from etl.report.validation import write_validation_report
from etl.settings import Settings

AS_OF = dt.date(2026, 7, 1)
WAVE = "w2_hospital_care"
FIRST_RUN, SECOND_RUN = "rehearsal__20260701T0800", "rehearsal__20260702T0800"
STEWARD, LEAD = "steward.sara", "lead.lars"
# Pages whose every link is followed: all of the history's pages, the steward's filters.
LINKED_PAGES = ["/", "/runs", f"/runs/{SECOND_RUN}", f"/waves/{WAVE}", "/steward", "/reports"]


def seed_real_history(settings: Settings) -> None:
    """ELVIS and Melior in a first rehearsal, Melior again in a second; ledger entries for both."""
    engine = core_engine(settings.resolved_core_url)
    with engine.begin() as connection:
        transition(connection, WAVE, "rehearsal", actor=LEAD, run_id=FIRST_RUN)
    for system in ("elvis", "melior"):
        pipeline.run_system(
            system, f"{system}__{FIRST_RUN}", AS_OF, run_id=FIRST_RUN, settings=settings, wave=WAVE
        )
    with engine.begin() as connection:
        transition(connection, WAVE, "rehearsal", actor=LEAD, run_id=SECOND_RUN)
    pipeline.run_system(
        "melior", f"melior__{SECOND_RUN}", AS_OF, run_id=SECOND_RUN, settings=settings, wave=WAVE
    )
    with engine.begin() as connection:
        record_approval(connection, WAVE, "project_lead", LEAD, "reject", "cli", SECOND_RUN)
    write_validation_report(settings, SECOND_RUN)
