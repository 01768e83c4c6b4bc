"""A wave's systems loaded side by side in worker processes (``load_wave(jobs=2)``,
etl/parallel.py) give what one system after another gives (``jobs=1``), on PostgreSQL.

The by-unit plan of tests/integration/test_wave_slices.py: the patients wave, then Skaraborg's
units of ELVIS and Melior (both split by unit: each batch's rows assigned to waves before its
gate and cut to the wave's slice after it; Melior's contacts resolve ELVIS's care units by
HSA-id, so they are validated after ELVIS's load), the other units' wave, legacy activity
before and after it, then Skaraborg's freeze and final delta (compared with Skaraborg's own last
batches, not the systems' last, the other wave's). Two cores, one per way of loading: their
rows, quarantine, accounting and ledger evidence must be the same, batch for batch.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from etl import parallel
from etl.core.database import core_engine
from etl.core.tables import ENTITY_TABLES, batch_accounting
from etl.cutover import ledger, rehearsal, waves
from etl.estate.activity import simulate_activity
from etl.settings import PROJECT_ROOT, Settings
from tests.core_fingerprint import core_rows
from tests.integration.test_wave_slices import PLAN, _write_plan

pytestmark = pytest.mark.integration

AS_OF = dt.date(2026, 7, 1)
FINAL_AS_OF = dt.date(2026, 7, 9)
STAMP = re.compile(r"__\d{8}T\d{6}\d{6}$")  # a batch id's time stamp (etl.cutover.waves._stamp)


def _label(batch_id: str | None) -> str | None:
    """A batch id without its time stamp: system, wave and phase."""
    return STAMP.sub("", batch_id) if batch_id else batch_id


def _settings(root, estate, core_url: str) -> Settings:
    mappings = root / "mappings"
    shutil.copytree(PROJECT_ROOT / "mappings", mappings)
    _write_plan(mappings)
    return Settings(
        home=root / "home",
        estate_dir=estate,
        landing_dir=root / "home" / "landing",
        core_url=core_url,
        mappings_dir=mappings,
        wave_plan=PLAN,
    )


def _core(settings: Settings) -> dict[str, list[tuple]]:
    """Every core table's rows (key, content hash, batch without its stamp), the quarantine and
    the batches' accounting."""
    found: dict[str, list[tuple]] = {}
    with core_engine(settings.resolved_core_url).connect() as connection:
        for name, rows in core_rows(connection).items():
            found[name] = [(k, digest, _label(batch)) for k, digest, batch in rows]
        found["quarantine"] = sorted(
            (_label(row[0]), *row[1:])
            for row in connection.exec_driver_sql(
                "SELECT batch_id, source_system, dataset, row_number, reason, field FROM quarantine"
            ).all()
        )
        accounting = connection.execute(sa.select(batch_accounting)).mappings().all()
        found["accounting"] = sorted(
            tuple(
                sorted(
                    (k, _label(v) if k == "batch_id" else v)
                    for k, v in row.items()
                    if k != "recorded_at"
                )
            )
            for row in accounting
        )
    return found


def _evidence(result: dict) -> dict:
    """The ledger evidence of a load with the batch ids' stamps taken out, and of the slice's
    checksums before the wave their row counts only (they hash whole rows, batch ids included;
    ``_core`` compares the rows)."""
    batches = {}
    for system, batch in result["batches"].items():
        batch = dict(batch, batch_id=_label(batch["batch_id"]))
        if "gate" in batch:
            batch["gate"] = {k: v for k, v in batch["gate"].items() if "batch" not in k}
        batches[system] = batch
    before = {t: value.split(":")[0] for t, value in result.get("checksums_before", {}).items()}
    return {**result, "batches": batches, "checksums_before": before}


@pytest.fixture
def spied(monkeypatch) -> list[int]:
    """The ``jobs`` each run of the systems in worker processes was given."""
    given: list[int] = []
    real = parallel.run_systems

    def run_systems(*args, **kwargs):
        given.append(kwargs["jobs"])
        return real(*args, **kwargs)

    monkeypatch.setattr(parallel, "run_systems", run_systems)
    return given


def test_a_waves_systems_in_worker_processes_load_what_one_after_another_loads(
    estate_of, core_of, tmp_path, spied
):
    estate = tmp_path / "estate"
    shutil.copytree(estate_of(150, 5), estate)  # the activity below changes its legacy systems
    with (
        core_of("postgres", tmp_path / "a") as one_url,
        core_of("postgres", tmp_path / "b") as two_url,
    ):
        one = _settings(tmp_path / "a", estate, one_url)
        two = _settings(tmp_path / "b", estate, two_url)
        loads: dict[int, list[dict]] = {1: [], 2: []}

        def both(wave: str, phase: str, as_of: dt.date) -> None:
            for jobs, settings in ((1, one), (2, two)):
                if phase == "final":
                    waves.freeze(settings, wave, actor="ivar")
                loads[jobs].append(
                    waves.load_wave(settings, wave, phase, as_of, actor="ivar", jobs=jobs)
                )

        both("w0_patients", "initial", AS_OF)
        both("w1_skaraborg", "initial", AS_OF)
        assert spied == [2, 2]  # the loads one after another never started workers
        # Legacy use goes on between the waves' loads, in every unit: Skaraborg's final delta
        # holds changes from before the other wave's load and after it.
        simulate_activity(estate, seed=11)
        both("w2_rest", "initial", AS_OF)
        simulate_activity(estate, seed=12)
        both("w1_skaraborg", "final", FINAL_AS_OF)
        assert spied == [2, 2, 2, 2]

        assert [_evidence(load) for load in loads[2]] == [_evidence(load) for load in loads[1]]
        final = loads[2][-1]["batches"]
        assert set(final) == {"elvis", "melior"}
        assert sum(b["extracted"] for b in final.values()) > 0  # the activity reached the wave
        assert all("gate" in b for b in final.values())  # both systems were sliced
        assert _core(two) == _core(one)
        assert sum(len(rows) for name, rows in _core(two).items() if name in ENTITY_TABLES) > 0
        for settings in (one, two):
            with core_engine(settings.resolved_core_url).connect() as connection:
                assert ledger.wave_state(connection, "w1_skaraborg") == ledger.FINAL_DELTA
                assert ledger.lock_holder(connection.engine, "w1_skaraborg") is None
            # The final delta's reports: each batch's summary, its Data Docs left for the decision.
            for system in final:
                reports = settings.storage_dir / "reports" / "validation" / "batches"
                (folder,) = reports.glob(f"{system}__w1_skaraborg__final__*")
                assert (folder / "summary.json").is_file()
                assert not (folder / "data_docs").exists()


def _pack(result: dict) -> dict:
    """A rehearsal's evidence: its criteria and reconciliation rows, without times, random ids
    and the batch ids' stamps."""
    pack = json.loads((Path(result["pack"]) / "evidence.json").read_text("utf-8"))
    reconciliation = [
        {
            k: _label(v) if k == "batch_id" else v
            for k, v in row.items()
            if not k.endswith("_at") and k != "reconciliation_id"
        }
        for row in pack["reconciliation"]
    ]
    return {"criteria": pack["criteria"], "reconciliation": reconciliation}


def test_a_rehearsal_in_worker_processes_gives_the_same_evidence(
    estate_of, core_of, tmp_path, spied
):
    results = {}
    with (
        core_of("postgres", tmp_path / "a") as one_url,
        core_of("postgres", tmp_path / "b") as two_url,
    ):
        # (the fixture drops the rehearsal schemas derived from each core's)
        for jobs, root, url in ((1, tmp_path / "a", one_url), (2, tmp_path / "b", two_url)):
            settings = _settings(root, estate_of(150, 5), url)
            # A wave by unit in an empty rehearsal core: the patients wave's systems first.
            results[jobs] = rehearsal.rehearse(
                settings, "w1_skaraborg", AS_OF, actor="rita", jobs=jobs
            )
    assert spied == [2, 2]  # the patients wave, then the unit wave
    assert results[1]["failures"] == results[2]["failures"] == {}
    assert results[2]["criteria_passed"] == results[1]["criteria_passed"]
    assert _pack(results[2]) == _pack(results[1])
    assert _pack(results[2])["reconciliation"]  # the wave's systems were reconciled


def test_a_system_that_fails_in_its_worker_fails_alone_and_is_in_the_ledger(
    estate_of, core_of, tmp_path
):
    from etl.core import lease
    from etl.cutover.plan import one_wave_plan

    estate = tmp_path / "estate"
    shutil.copytree(estate_of(150, 5), estate)
    shutil.rmtree(estate / "melior")  # its export is gone: Melior's extract fails
    with core_of("postgres", tmp_path) as url:
        settings = _settings(tmp_path, estate, url)
        plan = one_wave_plan("t1", ["elvis", "melior"], {"project_lead": {"airflow_users": ["a"]}})
        (settings.mappings_dir / "one.yaml").write_text(yaml.safe_dump(plan), encoding="utf-8")
        settings = settings.model_copy(update={"wave_plan": "one.yaml"})

        with pytest.raises(ledger.LedgerError, match=r"1 of 2 systems failed.*melior"):
            waves.load_wave(settings, "t1", "initial", AS_OF, actor="ivar", jobs=2)

        engine = core_engine(url)
        with engine.connect() as connection:
            (step,) = ledger.transitions(connection, "t1")
            assert ledger.wave_state(connection, "t1") == ledger.INITIAL_LOAD
            loaded = connection.execute(
                sa.select(sa.func.count()).select_from(ENTITY_TABLES["encounter"])
            ).scalar_one()
        evidence = step["evidence"]
        assert set(evidence["batches"]) == {"elvis"} and evidence["batches"]["elvis"]["loaded"]
        assert set(evidence["failures"]) == {"melior"}
        assert evidence["failures"]["melior"]["batch_id"].startswith("melior__t1__initial__")
        assert loaded > 0  # ELVIS's rows went in beside the failure
        assert ledger.lock_holder(engine, "t1") is None
        assert all(lease.holder_of(engine, lease.SYSTEM, s) is None for s in ("elvis", "melior"))
