"""Rolling back a batch, and the patients wave, with the guarantees of a wave by care unit, on
SQLite and PostgreSQL.

The plan of tests/integration/test_wave_slices.py: ``w0_patients`` moves the patient registers
of ELVIS and Melior, ``w1_skaraborg`` and ``w2_rest`` their units' rows. Here:

- ``cutover rollback --batch`` of a unit wave's batch takes the wave's lock, undoes only that
  batch's rows (every other row's checksum is the same after), and the ledger records who undid
  which batch with the proof; a batch of the patients wave is refused while unit waves point at
  its patients; a frozen wave is never undone batch by batch;
- ``cutover rollback w0_patients --cascade`` rolls back the unit waves first, newest first, each
  proved and recorded, then the patients wave; a cascade that fails part-way leaves nothing
  undone (one transaction), and one that meets a held lock starts nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from etl.core.model import ENTITIES
from etl.core.tables import ENTITY_TABLES, promotion
from etl.cutover import ledger, wave_rollback, waves
from etl.load.promote import PromotionError
from etl.settings import Settings
from tests.core_fingerprint import core_fingerprint
from tests.cores import BOTH_CORES
from tests.integration.test_wave_slices import (
    AS_OF,
    _batches,
    _count,
    _dangling_patients,
    _engine,
    prepared_core,
    prepared_waves,
)

# Nothing here reads a batch's validation report: run_system skips it (tests/conftest.py); the
# prepared waves are built with their summaries whoever builds them (test_wave_slices.py).
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("without_batch_reports")]

W0, W1, W2 = "w0_patients", "w1_skaraborg", "w2_rest"
OTHER_RUN = "manual__someone-else"


@dataclass
class Loaded:
    settings: Settings
    before: dict[str, dict[str, str]]  # each wave's slice checksums before any wave


@pytest.fixture(scope="module", params=BOTH_CORES)
def loaded(request, estate_of, tmp_path_factory, core_of, run_cache):
    estate = estate_of(150, 5)
    prepared = prepared_waves(run_cache, estate, request.param, core_of)
    root = tmp_path_factory.mktemp(f"rollback-slices-{request.param}")
    with prepared_core(prepared, request.param, root, estate, core_of) as settings:
        yield Loaded(settings, prepared.before)


def _slice(settings, wave: str) -> dict[str, str]:
    return waves.wave_checksums(settings, waves.wave_of(settings, wave))


def _rows_of(settings, batch_id: str) -> int:
    with _engine(settings).connect() as connection:
        return sum(
            int(
                connection.execute(
                    sa.select(sa.func.count()).where(table.c.batch_id == batch_id)
                ).scalar_one()
            )
            for name, table in ENTITY_TABLES.items()
            if "batch_id" in table.c and name in ENTITIES
        )


def _state(settings, wave: str) -> str:
    with _engine(settings).connect() as connection:
        return ledger.wave_state(connection, wave)


def _history(settings, wave: str) -> list[dict]:
    with _engine(settings).connect() as connection:
        return ledger.transitions(connection, wave)


def _core(settings) -> dict[str, str]:
    with _engine(settings).connect() as connection:
        return core_fingerprint(connection)


def _batch_state(settings, batch_id: str) -> str:
    with _engine(settings).connect() as connection:
        return str(
            connection.execute(
                sa.select(promotion.c.state).where(promotion.c.batch_id == batch_id)
            ).scalar_one()
        )


def _elvis_batch(settings, wave: str) -> str:
    return next(b for b in _batches(settings, wave) if b.startswith("elvis__"))


def test_one_batch_of_a_unit_wave_undoes_only_its_rows_and_is_recorded(loaded, cli):
    settings = loaded.settings
    batch = _elvis_batch(settings, W1)
    melior = next(b for b in _batches(settings, W1) if b.startswith("melior__"))
    written, melior_rows = _rows_of(settings, batch), _rows_of(settings, melior)
    assert written > 0 and melior_rows > 0
    w0_sum, w2_sum = _slice(settings, W0), _slice(settings, W2)
    transitions, dangling = len(_history(settings, W1)), _dangling_patients(settings)

    # The wave's lock holds a batch rollback too: another run has w1, nothing is undone.
    ledger.acquire_lock(_engine(settings), W1, OTHER_RUN)
    try:
        with pytest.raises(ledger.WaveLockedError):
            wave_rollback.rollback_one_batch(settings, batch)
    finally:
        ledger.release_lock(_engine(settings), W1, run_id=OTHER_RUN)
    assert _rows_of(settings, batch) == written

    result = cli("cutover", "rollback", "--batch", batch)
    assert f"rolled back: {batch}" in result.stdout
    assert "rows the batch did not write unchanged: True" in result.stdout

    # Only that batch's rows went: w1's other system, w0's patients and w2's rows (in the same
    # tables) are as they were.
    assert _rows_of(settings, batch) == 0 and _batch_state(settings, batch) == "rolled_back"
    assert _rows_of(settings, melior) == melior_rows
    assert _slice(settings, W0) == w0_sum and _slice(settings, W2) == w2_sum
    assert _dangling_patients(settings) <= dangling  # it removed contacts, never patients
    # The ledger says who undid which batch, with the checksum proof; w1 stays where it was.
    history = _history(settings, W1)
    assert len(history) == transitions + 1
    step = history[-1]
    assert (step["from_state"], step["to_state"]) == (ledger.INITIAL_LOAD, ledger.INITIAL_LOAD)
    assert step["actor"] and batch in step["note"]
    evidence = step["evidence"]
    assert evidence["batch_id"] == batch and evidence["rolled_back_batches"] == [batch]
    assert evidence["outside_unchanged"] is True
    assert evidence["slice_before"] != evidence["slice_after"]
    assert sum(evidence["rows_in_scope"].values()) >= written


def test_a_patients_batch_waits_for_the_unit_waves_that_point_at_it(loaded):
    settings = loaded.settings
    batch = _elvis_batch(settings, W0)
    core, history = _core(settings), len(_history(settings, W0))
    with pytest.raises(ledger.LedgerError, match=f"waves {W2}, {W1} are loaded.*--cascade"):
        wave_rollback.rollback_one_batch(settings, batch)
    assert _core(settings) == core and len(_history(settings, W0)) == history
    assert _batch_state(settings, batch) == "promoted"


def test_a_frozen_wave_is_not_undone_batch_by_batch(loaded):
    settings = loaded.settings
    waves.freeze(settings, W2, actor="ivar")
    core = _core(settings)
    with pytest.raises(ledger.LedgerError, match=f"wave {W2} is frozen.*whole wave"):
        wave_rollback.rollback_one_batch(settings, _elvis_batch(settings, W2))
    assert _core(settings) == core and _state(settings, W2) == ledger.FROZEN


def test_a_cascade_is_all_or_nothing(loaded, monkeypatch):
    settings = loaded.settings
    core = _core(settings)
    states = {w: _state(settings, w) for w in (W0, W1, W2)}
    histories = {w: len(_history(settings, w)) for w in (W0, W1, W2)}

    def unchanged() -> None:
        assert _core(settings) == core
        assert {w: _state(settings, w) for w in (W0, W1, W2)} == states
        assert {w: len(_history(settings, w)) for w in (W0, W1, W2)} == histories

    # Without --cascade: refused as before.
    with pytest.raises(ledger.LedgerError, match=f"waves {W2}, {W1} are loaded"):
        wave_rollback.rollback_wave(settings, W0, actor="ivar")
    # A dependant wave held by another run: nothing starts.
    ledger.acquire_lock(_engine(settings), W2, OTHER_RUN)
    try:
        with pytest.raises(ledger.WaveLockedError):
            wave_rollback.rollback_wave(settings, W0, actor="ivar", cascade=True)
    finally:
        ledger.release_lock(_engine(settings), W2, run_id=OTHER_RUN)
    unchanged()
    # A failure after both unit waves were undone, at the patients wave: nothing stays undone.
    w0_batches = set(_batches(settings, W0))
    real = wave_rollback.rollback

    def failing(connection, batch_id, cascade=False):
        if batch_id in w0_batches:
            raise PromotionError(f"injected failure at {batch_id}")
        return real(connection, batch_id, cascade=cascade)

    monkeypatch.setattr(wave_rollback, "rollback", failing)
    with pytest.raises(PromotionError, match="injected failure"):
        wave_rollback.rollback_wave(settings, W0, actor="ivar", cascade=True)
    unchanged()


def test_the_patients_wave_cascades_to_its_unit_waves_newest_first(loaded, cli):
    settings = loaded.settings
    assert _count(settings, "patient") > 0 and _count(settings, "encounter") > 0
    result = cli("cutover", "rollback", W0, "--cascade")
    out = result.stdout
    assert out.index(f"cascade: rolled back wave {W2}") < out.index(
        f"cascade: rolled back wave {W1}"
    )
    assert "core rows equal to before the wave: True" in out
    assert f"cascade: rolled back wave {W2} (was frozen" in out

    # Every wave is rolled back, each with its own proof; the core is as before the waves.
    assert {w: _state(settings, w) for w in (W0, W1, W2)} == dict.fromkeys(
        (W0, W1, W2), ledger.ROLLED_BACK
    )
    assert _count(settings, "patient") == 0 and _count(settings, "encounter") == 0
    for wave in (W0, W1, W2):
        assert _slice(settings, wave) == loaded.before[wave], wave
    steps = {w: _history(settings, w)[-1] for w in (W0, W1, W2)}
    assert steps[W2]["from_state"] == ledger.FROZEN  # the ledger lets a frozen wave go back
    for wave in (W1, W2):
        evidence = steps[wave]["evidence"]
        assert evidence["checksum_equal_to_before_wave"] is True, wave
        assert evidence["outside_unchanged"] is True, wave
        assert W0 in evidence["cascaded_by"] and "cascade" in steps[wave]["note"]
        assert evidence["rolled_back_batches"], wave
    w0 = steps[W0]["evidence"]
    assert [c["wave"] for c in w0["cascaded_waves"]] == [W2, W1]  # newest first
    assert w0["checksum_equal_to_before_wave"] is True and w0["outside_unchanged"] is True
    assert steps[W2]["at"] <= steps[W1]["at"] <= steps[W0]["at"]


def test_a_patients_batch_cascades_to_the_unit_waves_then_goes_alone(loaded, cli):
    """After the cascade above: the patients wave and Skaraborg loaded again; undoing only
    w0's Melior batch with --cascade rolls back w1 first, then that batch (Elvis's patients
    stay), and w0 records the batch, the cascade and the proof."""
    settings = loaded.settings
    for wave in (W0, W1):
        waves.load_wave(settings, wave, "initial", AS_OF, actor="ivar")
    melior = next(b for b in _batches(settings, W0) if b.startswith("melior__"))
    elvis_patients = _count(settings, "patient", source_system="elvis")
    assert _count(settings, "patient", source_system="melior") > 0 and elvis_patients > 0
    assert _count(settings, "encounter") > 0

    out = cli("cutover", "rollback", "--batch", melior, "--cascade").stdout
    assert f"cascade: rolled back wave {W1}" in out and melior in out

    assert (
        _state(settings, W1) == ledger.ROLLED_BACK and _state(settings, W0) == ledger.INITIAL_LOAD
    )
    assert _batch_state(settings, melior) == "rolled_back"
    assert _count(settings, "patient", source_system="melior") == 0
    assert _count(settings, "patient", source_system="elvis") == elvis_patients
    assert _count(settings, "encounter") == 0 and _dangling_patients(settings) == 0
    w1 = _history(settings, W1)[-1]
    assert w1["evidence"]["outside_unchanged"] is True and melior in w1["evidence"]["cascaded_by"]
    w0 = _history(settings, W0)[-1]
    assert melior in w0["note"] and w0["evidence"]["outside_unchanged"] is True
    assert [c["wave"] for c in w0["evidence"]["cascaded_waves"]] == [W1]
    assert w0["evidence"]["wave_batches"] == [melior]
