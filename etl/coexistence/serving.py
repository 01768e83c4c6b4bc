"""Which legacy systems still serve a patient, and which are cut over: the plan and the ledger.

Today a wave holds whole systems, so a system is *live* while any wave that holds it is not cut
over, and it serves a patient when it is live and has rows of that patient. With care-unit scope
(issue 16, parts 1-2) a system spans several waves and a patient's rows fall into some of them:
:func:`serves` is the one place that question is asked, so it can then look at the waves of the
patient's rows instead of the system's.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import sqlalchemy as sa

from etl.cutover import ledger
from etl.cutover.plan import WavePlan


@dataclass(frozen=True)
class Coexistence:
    """Per system of the plan: the waves that hold it and their states in the ledger."""

    waves_of_system: dict[str, tuple[str, ...]]
    states: dict[str, str]

    @classmethod
    def read(cls, connection: sa.Connection, plan: WavePlan) -> Coexistence:
        waves_of_system: dict[str, list[str]] = {}
        for wave in plan.waves:
            # A system split by care unit is held by every wave that moves a slice of it.
            for system in plan.systems_of(wave.wave):
                waves_of_system.setdefault(system, []).append(wave.wave)
        states = {wave.wave: ledger.wave_state(connection, wave.wave) for wave in plan.waves}
        return cls({s: tuple(w) for s, w in waves_of_system.items()}, states)

    def is_cut_over(self, system: str) -> bool:
        """Every wave holding the system is cut over: the core is its system of record."""
        waves = self.waves_of_system.get(system, ())
        return bool(waves) and all(self.states[w] == ledger.CUT_OVER for w in waves)

    def has_cut_over_part(self, system: str) -> bool:
        """Some wave holding the system is cut over: the core serves part of it."""
        return any(self.states[w] == ledger.CUT_OVER for w in self.waves_of_system.get(system, ()))

    def is_live(self, system: str) -> bool:
        """Some wave holding the system is not cut over: it still serves units."""
        waves = self.waves_of_system.get(system, ())
        return any(self.states[w] != ledger.CUT_OVER for w in waves)

    def live_systems(self) -> list[str]:
        return sorted(s for s in self.waves_of_system if self.is_live(s))

    def last_waves(self, system: str) -> str:
        """The system's waves and states, for a stop's reason (names only)."""
        return ", ".join(f"{w} {self.states[w]}" for w in self.waves_of_system.get(system, ()))


def serves(coexistence: Coexistence, system: str, patient_ids: Collection[str]) -> bool:
    """Does ``system`` still serve the patient whose rows in it are ``patient_ids`` (core patient
    ids of that system)? Whole-system waves: it has rows of the patient and is live."""
    return bool(patient_ids) and coexistence.is_live(system)


def is_core_owned(coexistence: Coexistence, system: str) -> bool:
    """Rows of ``system`` the core now owns (whole-system waves: its waves are all cut over), so
    the new core system changes them and their changes are what the feed sends."""
    return coexistence.is_cut_over(system)
