"""Which legacy systems still serve a patient (etl.coexistence.serving), from wave states."""

from __future__ import annotations

import pytest

from etl.coexistence.serving import Coexistence, is_core_owned, serves
from etl.cutover import ledger

pytestmark = pytest.mark.unit


def _coexistence(**states: str) -> Coexistence:
    # lab_x is in two waves: how a system looks once waves are scoped by care unit.
    waves = {"akut_x": ("w1",), "elvis": ("w2",), "lab_x": ("w1", "w2")}
    return Coexistence(waves, {"w1": ledger.PLANNED, "w2": ledger.PLANNED, **states})


def test_before_any_go_live_every_system_is_live_and_the_core_owns_nothing():
    coexistence = _coexistence()
    assert coexistence.live_systems() == ["akut_x", "elvis", "lab_x"]
    assert not any(is_core_owned(coexistence, s) for s in ("akut_x", "elvis", "lab_x"))


@pytest.mark.parametrize(
    ("states", "live", "owned"),
    [
        pytest.param({"w1": ledger.CUT_OVER}, ["elvis", "lab_x"], ["akut_x"], id="w1-cut-over"),
        pytest.param({"w1": ledger.VERIFIED}, ["akut_x", "elvis", "lab_x"], [], id="verified"),
        pytest.param(
            {"w1": ledger.CUT_OVER, "w2": ledger.CUT_OVER},
            [],
            ["akut_x", "elvis", "lab_x"],
            id="all-cut-over",
        ),
        pytest.param(
            {"w1": ledger.ROLLED_BACK}, ["akut_x", "elvis", "lab_x"], [], id="rolled-back"
        ),
    ],
)
def test_a_system_is_live_while_any_of_its_waves_is_not_cut_over(states, live, owned):
    coexistence = _coexistence(**states)
    assert coexistence.live_systems() == live
    assert [s for s in ("akut_x", "elvis", "lab_x") if is_core_owned(coexistence, s)] == owned


def test_a_system_serves_a_patient_only_when_live_and_holding_rows_of_them():
    coexistence = _coexistence(w1=ledger.CUT_OVER)
    assert serves(coexistence, "elvis", ["p1"])
    assert not serves(coexistence, "elvis", [])
    assert not serves(coexistence, "akut_x", ["p2"])
    assert not serves(coexistence, "not_in_the_plan", ["p3"])


def test_a_stop_names_the_waves_and_their_states():
    coexistence = _coexistence(w1=ledger.CUT_OVER, w2=ledger.CUT_OVER)
    assert coexistence.last_waves("lab_x") == "w1 cut_over, w2 cut_over"
