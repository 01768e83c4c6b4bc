"""Waves by care unit run their slice of ELVIS and Melior, on SQLite and PostgreSQL.

A plan splits both systems by unit after a region-wide patients wave: ``w0_patients`` loads the
patient registers, ``w1_skaraborg`` Skaraborg's units' rows, ``w2_rest`` every other unit's (and
the rows of no unit). Each batch loads only its wave's rows; the others are accounted as
``wave_scope``; each wave's quality gate judges its own rows, and its validation report shows
the rows left to each other wave; rolling back w1 with w2 promoted in between restores w1's
slice to the checksum and leaves w2's rows in the same tables untouched; after w1 is cut over, a
legacy change to a Skaraborg row arriving in w2's delta is a conflict for the stewards, never
applied, and every key a delta deletes ends in exactly one outcome.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from etl import pipeline
from etl.batch import BatchPaths
from etl.core.database import core_engine
from etl.core.tables import ENTITY_TABLES, batch_accounting, dq_result, quarantine
from etl.cutover import ledger, slice_core, slices, wave_rollback, waves
from etl.cutover.reconcile import accounting_residue
from etl.settings import PROJECT_ROOT, Settings
from tests.cores import BOTH_CORES

pytestmark = pytest.mark.integration

WAVES = ("w0_patients", "w1_skaraborg", "w2_rest")
AS_OF = dt.date(2026, 7, 1)
DELTA_AS_OF = dt.date(2026, 7, 15)
SYSTEMS = ["elvis", "melior"]
PLAN = "waves_test_units.yaml"
_REPORT = pipeline.report  # before any test replaces it (summaries_without_data_docs)
CRITERIA = {
    "max_quarantine_rate": 1.0,
    "dq_gate": "pass",
    "reconciliation": "exact",
    "accounting": "exact",
    "min_rehearsals": 0,
    "approvers": {"project_lead": {"airflow_users": ["anna"]}},
}


def _wave(name: str, **more) -> dict:
    window = {"start": "2027-01-01", "end": "2027-01-14"}
    return {"wave": name, "title": name, "window": window, "criteria": CRITERIA, **more}


def _write_plan(mappings) -> None:
    plan = {
        "version": 1,
        "patients": "w0_patients",
        "waves": [
            _wave("w0_patients"),
            _wave("w1_skaraborg", by_unit=SYSTEMS, scope={"site": "SkaS"}),
            _wave(
                "w2_rest",
                by_unit=SYSTEMS,
                unscoped=SYSTEMS,
                scope={"sites": ["SU", "NÄL", "SÄS", "Kungälv", "Alingsås"]},
            ),
        ],
    }
    (mappings / PLAN).write_text(yaml.safe_dump(plan, allow_unicode=True), encoding="utf-8")


@dataclass(frozen=True)
class Prepared:
    """The three waves' initial loads of one core, made once per test run (both modules of the
    plan start from them) in ``folder``: the core's rows (tests/core_snapshot.py), the state
    folder ``home`` and the ``mappings`` with the plan; and what the tests compare with."""

    folder: Path
    before: dict[str, dict[str, str]]  # each wave's slice checksums before any wave
    patients: int  # patient rows after w0
    w1_contacts: int  # encounter rows after w1 (all of them w1's)


def _environment(patch: pytest.MonkeyPatch, root: Path, estate: Path, core_url: str) -> None:
    patch.setenv("VARDFLYTT_HOME", str(root / "home"))
    patch.setenv("VARDFLYTT_ESTATE_DIR", str(estate))
    patch.setenv("VARDFLYTT_CORE_URL", core_url)
    patch.setenv("VARDFLYTT_MAPPINGS_DIR", str(root / "mappings"))
    patch.setenv("VARDFLYTT_WAVE_PLAN", PLAN)
    for name in ("VARDFLYTT_LANDING_DIR", "VARDFLYTT_SOURCE_ELVIS_URL"):
        patch.delenv(name, raising=False)


def prepared_waves(run_cache: Path, estate: Path, kind: str, core_of) -> Prepared:
    """w0, w1 and w2 loaded (initial) from ``estate`` (read only) into a ``kind`` core, once per
    test run and shared by the pytest-xdist workers like the estates (tests/commands.py)."""
    from tests.commands import _locked
    from tests.core_snapshot import save_core

    folder = run_cache / f"wave-slices-{kind}"
    with _locked(run_cache / f"wave-slices-{kind}.lock"):
        if not folder.exists():
            scratch = run_cache / f".wave-slices-{kind}.building"
            shutil.rmtree(scratch, ignore_errors=True)
            shutil.copytree(PROJECT_ROOT / "mappings", scratch / "mappings")
            _write_plan(scratch / "mappings")
            live = scratch / "live"
            live.mkdir()
            with core_of(kind, live) as core_url, pytest.MonkeyPatch.context() as patch:
                _environment(patch, scratch, estate, core_url)
                summaries_without_data_docs(patch)
                settings = Settings()
                before = {
                    w: waves.wave_checksums(settings, waves.wave_of(settings, w)) for w in WAVES
                }
                waves.load_wave(settings, "w0_patients", "initial", AS_OF, actor="ivar")
                patients = _count(settings, "patient")
                waves.load_wave(settings, "w1_skaraborg", "initial", AS_OF, actor="ivar")
                w1_contacts = _count(settings, "encounter")
                waves.load_wave(settings, "w2_rest", "initial", AS_OF, actor="ivar")
                save_core(core_url, scratch / "core")
                _engine(settings).dispose()
            shutil.rmtree(live)
            figures = {"before": before, "patients": patients, "w1_contacts": w1_contacts}
            (scratch / "figures.json").write_text(json.dumps(figures), "utf-8")
            os.replace(scratch, folder)  # whole or not at all
    figures = json.loads((folder / "figures.json").read_text("utf-8"))
    return Prepared(folder, **figures)


def summaries_without_data_docs(patch: pytest.MonkeyPatch) -> None:
    """Each batch's validation report without its GX Data Docs (what a wave's final delta
    writes in the freeze window): the summary, which these tests read, is written as ever;
    nothing here reads Data Docs, which have their own tests (tests/integration/
    test_batch_reports.py and others). The real ``report`` (taken when this module is
    imported), whatever a test's fixtures put in its place: the prepared waves, shared by
    modules, are built the same whoever builds them first."""

    def summary_only(system, batch_id, settings=None, raise_errors=True, data_docs=True):
        return _REPORT(system, batch_id, settings, raise_errors, data_docs=False)

    patch.setattr(pipeline, "report", summary_only)


@contextlib.contextmanager
def prepared_core(prepared: Prepared, kind: str, root: Path, estate: Path, core_of):
    """A copy of the prepared waves in ``root`` (core, state folder, mappings) reading
    ``estate``, with the environment pointing at it, as ``Settings``."""
    from tests.core_snapshot import restore_core

    for name in ("home", "mappings"):
        shutil.copytree(prepared.folder / name, root / name)
    with core_of(kind, root) as core_url, pytest.MonkeyPatch.context() as patch:
        restore_core(prepared.folder / "core", core_url)
        _environment(patch, root, estate, core_url)
        yield Settings()


@dataclass
class Loaded:
    """The three waves' initial loads of one core, and what the tests compare with."""

    settings: Settings
    estate: Path
    before_w1: dict[str, str]  # w1's slice checksums before any wave
    patients: int  # patient rows after w0
    w1_contacts: int  # encounter rows after w1 (all of them w1's)


@pytest.fixture(scope="module", params=BOTH_CORES)
def loaded(request, estate_of, tmp_path_factory, core_of, run_cache):
    prepared = prepared_waves(run_cache, estate_of(150, 5), request.param, core_of)
    root = tmp_path_factory.mktemp(f"slices-{request.param}")
    estate = root / "estate"
    shutil.copytree(estate_of(150, 5), estate)  # a test changes its legacy systems
    with (
        prepared_core(prepared, request.param, root, estate, core_of) as settings,
        pytest.MonkeyPatch.context() as patch,
    ):
        summaries_without_data_docs(patch)  # the delta and final loads' reports too
        before_w1 = prepared.before["w1_skaraborg"]
        yield Loaded(settings, estate, before_w1, prepared.patients, prepared.w1_contacts)


@pytest.fixture
def settings(settings_for, tmp_path, core_url):
    mappings = tmp_path / "mappings"
    shutil.copytree(PROJECT_ROOT / "mappings", mappings)
    _write_plan(mappings)
    return settings_for(None, core_url, mappings_dir=mappings, wave_plan=PLAN)


def _engine(settings):
    return core_engine(settings.resolved_core_url)


def _count(settings, entity: str, **where) -> int:
    table = ENTITY_TABLES[entity]
    query = sa.select(sa.func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column].in_(value if isinstance(value, list) else [value]))
    with _engine(settings).connect() as connection:
        return int(connection.execute(query).scalar_one())


def _batches(settings, wave: str) -> list[str]:
    with _engine(settings).connect() as connection:
        return [b["batch_id"] for b in waves.promoted_batches(connection, wave)]


def _accounting(settings, batch_ids: list[str]) -> list[dict]:
    with _engine(settings).connect() as connection:
        rows = connection.execute(
            sa.select(batch_accounting).where(batch_accounting.c.batch_id.in_(batch_ids))
        )
        return [dict(r._mapping) for r in rows]


def _dangling_patients(settings) -> int:
    """Core contacts whose patient is not in the core (what a later wave must never leave)."""
    encounter, patient = ENTITY_TABLES["encounter"], ENTITY_TABLES["patient"]
    with _engine(settings).connect() as connection:
        return int(
            connection.execute(
                sa.select(sa.func.count())
                .select_from(encounter)
                .where(
                    encounter.c.patient_id.is_not(None)
                    & ~encounter.c.patient_id.in_(sa.select(patient.c.patient_id))
                )
            ).scalar_one()
        )


def test_a_unit_wave_waits_for_its_patients_wave(settings):
    with pytest.raises(ledger.LedgerError, match="load w0_patients first"):
        waves.load_wave(settings, "w1_skaraborg", "initial", AS_OF, actor="ivar")
    assert _count(settings, "encounter") == 0


def test_patients_move_once_and_later_waves_find_them(loaded):
    settings = loaded.settings
    assert loaded.patients > 0 and loaded.w1_contacts > 0
    assert _count(settings, "patient") == loaded.patients  # referenced, never loaded again
    with _engine(settings).connect() as connection:
        patient_batches = connection.execute(
            sa.select(ENTITY_TABLES["patient"].c.batch_id).distinct()
        ).scalars()
        assert set(patient_batches) <= set(_batches(settings, "w0_patients"))
        # w0 moved patients only; its batches account every other row as another wave's.
        w0 = _accounting(settings, _batches(settings, "w0_patients"))
        assert sum(r["loaded"] for r in w0 if r["entity"] == "encounter") == 0
        assert sum(r["wave_scope"] for r in w0 if r["entity"] == "encounter") > 0
        # Validation of w1 and w2 found w0's patients in the core: the only contacts held
        # back for an unknown patient are the estate's planted orphans, each once, exactly as
        # the whole system's validation counted them.
        orphans = _checked(
            settings, connection, "w0_patients", "encounter.patient_id.references_patient"
        )
        held = connection.execute(
            sa.select(sa.func.count()).where(
                quarantine.c.batch_id.in_(
                    _batches(settings, "w1_skaraborg") + _batches(settings, "w2_rest")
                )
                & (quarantine.c.check_name == "encounter.patient_id.references_patient")
            )
        ).scalar_one()
    assert held == orphans
    assert _dangling_patients(settings) <= _flagged_for_quarantined_patient(settings)


def _checked(settings, connection, wave: str, check: str) -> int:
    """Rows failing ``check`` in the wave's batches, as the whole batch counted them (the gate
    of a slice stores the wave's own figure; its evidence keeps the whole batch's)."""
    from etl.validate.gate import GATE_EVIDENCE

    failed = 0
    for batch in waves.promoted_batches(connection, wave):
        folder = _validated(settings, batch["batch_id"], batch["source_system"])
        evidence = json.loads((folder / GATE_EVIDENCE).read_text("utf-8"))
        failed += sum(c["batch"]["rows_failed"] for c in evidence["checks"] if c["check"] == check)
    return failed


def _flagged_for_quarantined_patient(settings) -> int:
    """Contacts loaded and flagged because their patient waits in quarantine (by design)."""
    from etl.core.tables import dq_flag

    with _engine(settings).connect() as connection:
        return int(
            connection.execute(
                sa.select(sa.func.count(sa.distinct(dq_flag.c.source_key))).where(
                    (dq_flag.c.entity == "encounter")
                    & dq_flag.c.check_name.like("%patient_in_quarantine")
                )
            ).scalar_one()
        )


def test_every_row_is_accounted_in_exactly_one_slice(loaded):
    settings = loaded.settings
    every = [b for w in ("w0_patients", "w1_skaraborg", "w2_rest") for b in _batches(settings, w)]
    with _engine(settings).connect() as connection:
        assert accounting_residue(connection, every) == []
    rows = _accounting(settings, every)
    assert sum(r["wave_scope"] for r in rows) > 0 and sum(r["conflicted"] for r in rows) == 0
    for row in rows:
        parts = ("loaded", "quarantined", "excluded", "merged", "wave_scope", "conflicted")
        assert row["extracted"] == sum(row[p] for p in parts), row
    # A contact row is loaded by exactly one wave: w1's and w2's slices make up the system.
    loaded_by = {
        wave: sum(
            r["loaded"]
            for r in _accounting(settings, _batches(settings, wave))
            if r["entity"] == "encounter"
        )
        for wave in ("w1_skaraborg", "w2_rest")
    }
    assert loaded_by["w1_skaraborg"] == loaded.w1_contacts
    assert sum(loaded_by.values()) == _count(settings, "encounter")
    # A row quarantined (even while transforming, with no unit to read) is one wave's to hold:
    # never in two waves' quarantine, so no wave's quarantine rate counts another's rows.
    with _engine(settings).connect() as connection:
        held = connection.execute(
            sa.select(
                quarantine.c.source_system,
                quarantine.c.entity,
                quarantine.c.row_number,
                quarantine.c.check_name,
            ).where(quarantine.c.batch_id.in_(every))
        ).all()
    assert held and len(held) == len(set(held))
    assert _count(settings, "encounter", source_system="elvis") > 0


def _batch_of(settings, wave: str, system: str, phase: str = "initial") -> str:
    return next(b for b in _batches(settings, wave) if b.startswith(f"{system}__{wave}__{phase}"))


def _validated(settings, batch_id: str, system: str) -> Path:
    return BatchPaths.of(settings, batch_id, system).validated


def _gate_evidence(settings, wave: str, system: str) -> dict:
    from etl.validate.gate import GATE_EVIDENCE

    path = _validated(settings, _batch_of(settings, wave, system), system) / GATE_EVIDENCE
    return json.loads(path.read_text("utf-8"))


def test_each_waves_gate_judges_its_own_rows(loaded):
    """The gate of a wave's slice counts the wave's rows: the patients wave, which loads no
    contacts, evaluated none; the slices' failing rows add up to the whole batch's; and a check
    that only other units' rows fail neither stops the wave nor is hidden by them."""
    from etl.validate.checks import Defaults, thresholds_for
    from etl.validate.gate import SLICE, judge_checks

    settings = loaded.settings
    system = "melior"
    evidence = {wave: _gate_evidence(settings, wave, system) for wave in WAVES}
    # What was judged, and stored in dq_result, is each wave's slice.
    with _engine(settings).connect() as connection:
        w0_contacts = connection.execute(
            sa.select(dq_result.c.rows_evaluated, dq_result.c.check_name).where(
                (dq_result.c.batch_id == _batch_of(settings, "w0_patients", system))
                & (dq_result.c.entity == "encounter")
            )
        ).all()
    suite = [n for n, check in w0_contacts if not check.startswith("source.")]
    assert suite and set(suite) == {0}
    whole = {(c["entity"], c["check"]): c["batch"] for c in evidence["w0_patients"]["checks"]}
    assert whole[("encounter", "encounter.patient_id.references_patient")]["rows_evaluated"] > 0
    # Both figures are recorded; where every failing row has a certain wave, the slices' failing
    # rows make up the whole batch's exactly (each row judged by exactly one wave). Each wave's
    # batch is validated against the core as it was then (w1's care units resolve references
    # in w2's batch, not in w0's): compared where the three batches' whole figures agree.
    per_check: dict[tuple[str, str], list[dict]] = {}
    for wave in WAVES:
        for check in evidence[wave]["checks"]:
            per_check.setdefault((check["entity"], check["check"]), []).append(check)
    sliced = [
        checks
        for checks in per_check.values()
        if {c["basis"] for c in checks} == {SLICE}
        and len({json.dumps(c["batch"], sort_keys=True) for c in checks}) == 1
    ]
    assert sliced and any(checks[0]["batch"]["rows_failed"] for checks in sliced)
    for checks in sliced:
        assert len(checks) == len(WAVES)
        batch = checks[0]["batch"]
        assert sum(c["judged"]["rows_failed"] for c in checks) == batch["rows_failed"], checks
        assert sum(c["judged"]["rows_evaluated"] for c in checks) <= batch["rows_evaluated"]

    # Under a threshold of no failing row at all: a check only other units' rows fail stops the
    # whole batch but not w1, and one w1's rows fail more than the system's stops w1 although
    # the whole batch's rate would pass it.
    w1 = {(c["entity"], c["check"]): c for c in evidence["w1_skaraborg"]["checks"]}
    others_only = next(
        key
        for key, c in w1.items()
        if c["basis"] == SLICE and c["batch"]["rows_failed"] > 0 and c["judged"]["rows_failed"] == 0
    )

    def rate(figures: dict) -> float:
        return figures["rows_failed"] / figures["rows_evaluated"]

    masked = next(
        key
        for key, c in w1.items()
        if c["basis"] == SLICE
        and c["judged"]["rows_failed"] > 0
        and rate(c["judged"]) > rate(c["batch"])
    )
    between = (rate(w1[masked]["judged"]) + rate(w1[masked]["batch"])) / 2
    reviewed = thresholds_for(settings.expectations_dir)
    strict = reviewed.model_copy(
        update={
            "defaults": Defaults(max_failure_rate=0.0, tolerated_failed_rows=0),
            "systems": {
                system: {
                    others_only[1]: {"max_failure_rate": 0.0, "max_failed_rows": None},
                    masked[1]: {"max_failure_rate": between, "max_failed_rows": None},
                }
            },
        }
    )
    batch_id = _batch_of(settings, "w1_skaraborg", system)
    paths = BatchPaths.of(settings, batch_id, system)
    catalog = _catalog(settings)
    judged, whole_batch, basis = judge_checks(
        catalog, system, batch_id, paths, strict, "w1_skaraborg"
    )
    as_slice = {(r.entity, r.check_name): r for r in judged}
    as_batch = {(r.entity, r.check_name): r for r in whole_batch}
    assert basis[others_only[0]] == SLICE
    assert as_batch[others_only].is_breached and not as_slice[others_only].is_breached
    assert as_slice[masked].is_breached and not as_batch[masked].is_breached
    unsliced, _, _ = judge_checks(catalog, system, batch_id, paths, strict)
    assert {(r.entity, r.check_name): r.is_breached for r in unsliced}[others_only]


def test_the_validation_report_shows_the_rows_of_other_waves(loaded):
    """A wave's batch report shows, beside loaded and quarantined, how many rows it left to each
    other wave ("belongs to wave X"), matching the record accounting."""
    from etl.report.validation import batch_report_folder

    settings = loaded.settings
    batch_id = _batch_of(settings, "w1_skaraborg", "melior")
    page = (batch_report_folder(settings, batch_id) / "summary.html").read_text("utf-8")
    accounted = {
        r["entity"]: r for r in _accounting(settings, [batch_id]) if r["source_system"] == "melior"
    }
    encounter = accounted["encounter"]
    assert encounter["wave_scope"] >= 5  # shown as a number, not masked
    row = re.search(r"<tr><td><code>encounter</code></td>(.*?)</tr>", page, re.S)
    assert row, "the accounting names the encounter rows"

    def number(value: int) -> str:
        return f"{value:,}".replace(",", " ")

    assert f'data-field="wave_scope">{number(encounter["wave_scope"])}<' in row.group(1)
    per_wave = dict(
        re.findall(r'<span data-wave="([^"]+)"><code>[^<]+</code> ([0-9 ]+)</span>', row.group(1))
    )
    assert set(per_wave) == {"w2_rest"}  # w0 moves no contacts; w1's own rows are not another's
    assert int(per_wave["w2_rest"].replace(" ", "")) == encounter["wave_scope"]
    assert "belongs to wave" in page


def test_the_gates_figures_are_in_the_waves_ledger_and_evidence_pack(loaded):
    """Each load of a slice records its gate's figures in the wave's ledger evidence (the
    wave's and the whole batch's per entity and check, and the basis), and the evidence pack
    shows them: counts only."""
    from etl.cutover.evidence import write_pack

    settings = loaded.settings
    wave = "w1_skaraborg"
    with _engine(settings).connect() as connection:
        load = next(
            t for t in ledger.transitions(connection, wave) if t["to_state"] == "initial_load"
        )
    recorded = load["evidence"]["batches"]["melior"]["gate"]
    on_disk = _gate_evidence(settings, wave, "melior")
    assert [(c["entity"], c["check"], c["basis"]) for c in recorded["checks"]] == [
        (c["entity"], c["check"], c["basis"]) for c in on_disk["checks"]
    ]
    for mine, found in zip(recorded["checks"], on_disk["checks"], strict=True):
        assert mine["wave"]["rows_failed"] == found["judged"]["rows_failed"]
        assert mine["batch"]["rows_failed"] == found["batch"]["rows_failed"]
        assert mine["batch"]["rows_evaluated"] == found["batch"]["rows_evaluated"]
        assert set(mine) == {
            *("entity", "check", "basis", "wave", "wave_is_breached"),
            *("batch", "batch_is_breached"),
        }
    # The wave's figures are its slice's, not the whole batch's.
    assert any(
        c["wave"]["rows_evaluated"] < c["batch"]["rows_evaluated"] for c in recorded["checks"]
    )
    pack = write_pack(settings, wave, "gate-test", out_root=settings.home / "gate-test-packs")
    content = json.loads((pack / "evidence.json").read_text("utf-8"))
    shown = {(r["source_system"], r["entity"], r["check"]): r for r in content["slice_gate"]}
    assert {s for s, _, _ in shown} == set(SYSTEMS)
    for check in recorded["checks"]:
        row = shown["melior", check["entity"], check["check"]]
        assert (row["wave_failed"], row["batch_failed"]) == (
            check["wave"]["rows_failed"],
            check["batch"]["rows_failed"],
        )
        assert all(isinstance(row[f], int) for f in ("wave_evaluated", "batch_evaluated"))
    markdown = (pack / "evidence.md").read_text("utf-8")
    assert "## Data-quality gate of the wave's slice" in markdown
    failing = next(c for c in recorded["checks"] if c["batch"]["rows_failed"])
    assert (
        f"{failing['wave']['rows_failed']} of {failing['wave']['rows_evaluated']} | "
        f"{failing['batch']['rows_failed']} of {failing['batch']['rows_evaluated']}"
    ) in markdown


@pytest.mark.parametrize("chunk", [97, 20_000])
def test_the_assignment_of_the_cores_rows_read_in_chunks_is_the_whole_tables(loaded, chunk):
    """The rollback's slice assignment reads the core a chunk at a time (a row's unit may come
    from its encounter or referral, a patient's wave from the first of its rows): per split
    system and entity, every core row gets the wave the assignment over the whole tables gives,
    whatever the chunk size, and the slices' ids are the same."""
    from etl.pipeline import catalog

    settings = loaded.settings
    plan = waves.plan_of(settings)
    systems = catalog(settings)
    with _engine(settings).connect() as connection:
        # The assignment over the whole tables, per system: the reference of both comparisons
        # below (the core does not change in this test), computed once.
        reference = {
            name: slices.wave_of_rows(
                plan,
                systems.system(name),
                slice_core._core_tables(connection, systems.system(name)),
            )
            for name in plan.split_systems
        }
        for name in SYSTEMS:
            system = systems.system(name)
            whole = {entity: by_id for entity, (by_id, _) in reference[name].items()}
            parts: dict[str, list[pd.Series]] = {}
            for entity, found in slice_core.core_assignment(connection, plan, system, chunk):
                assert len(found) <= chunk or entity == "care_unit"
                parts.setdefault(entity, []).append(found)
            chunked = {entity: pd.concat(found) for entity, found in parts.items()}
            for entity, by_id in whole.items():
                if by_id.empty:
                    assert chunked.get(entity, pd.Series(dtype="string")).empty
                    continue
                assert entity in chunked, f"{name} {entity}"
                left = by_id.sort_index().fillna("(none)")
                right = chunked[entity].astype("string").sort_index().fillna("(none)")
                assert left.index.tolist() == right.index.tolist(), f"{name} {entity}"
                assert left.tolist() == right.tolist(), f"{name} {entity}"
            assert set(chunked) <= set(whole)
            # Each wave takes some of the rows, and rows with a unit via another row too.
            assert {w for by_id in whole.values() for w in by_id.dropna()} == set(WAVES)
        catalog_of = systems
        for wave in WAVES:
            old: dict[str, set[str]] = {}
            for name in plan.systems_of(wave):
                if name not in plan.split_systems:
                    continue
                for entity, (by_id, _) in reference[name].items():
                    old.setdefault(entity, set()).update(by_id.index[(by_id == wave).fillna(False)])
            new = slice_core.slice_ids(connection, plan, wave, catalog_of, chunk)
            assert {e: ids for e, ids in new.items() if ids} == {
                e: ids for e, ids in old.items() if ids
            }, wave


def test_identity_resolution_links_every_patient_once_across_the_waves(loaded):
    """Patients moved once, with w0, and the unit waves only point at them: resolution over the
    core the three waves built links every patient row once, merges the rows that share an
    identity number across ELVIS and Melior, never merges two true people (the estate's ground
    truth), and a second run after the waves changes nothing."""
    from etl.identity import runs
    from tests.integration.test_identity_estate import _groups, _identity_keys, _links

    settings = loaded.settings
    try:
        summary = runs.resolve("waves-identity-1", settings)
        links = _links(settings)
        assert len(links) == summary.counts["patients"] == loaded.patients
        truth = pd.read_csv(loaded.estate / "identity_truth.csv", dtype=str, keep_default_na=False)
        links = links.merge(
            truth,
            left_on=["source_system", "source_key"],
            right_on=["system", "source_key"],
            how="left",
            validate="one_to_one",
        ).set_index("patient_id")
        assert links["person_key"].notna().all(), "every core patient is in the ground truth"
        assert (links.groupby("person_id")["person_key"].nunique() == 1).all()

        links["group"] = _groups(links.index.to_series(), _identity_keys(settings))
        joined = links[links.groupby("group")["source_key"].transform("size") > 1]
        clean = joined[joined["injected_conflict"] == ""]
        assert (clean.groupby("group")["person_id"].nunique() == 1).all(), "true matches are merged"
        spans = clean.groupby("group")["source_system"].nunique()
        assert summary.counts["persons_in_several_systems"] == int((spans > 1).sum()) > 0

        again = runs.resolve("waves-identity-2", settings)
        assert again.counts["links_created"] == again.counts["links_ended"] == 0
    finally:
        # Rolling a wave back refuses while a later identity run points at its rows: undone
        # newest first, as an operator would, for the module's later tests.
        for run_id in ("waves-identity-2", "waves-identity-1"):
            with contextlib.suppress(runs.IdentityError):  # a run a failure left unstarted
                runs.undo_run(run_id, settings)


def test_a_legacy_change_after_cutover_is_a_conflict(loaded, cli):
    from etl.estate.activity import simulate_activity

    settings = loaded.settings
    waves.freeze(settings, "w1_skaraborg", actor="ivar")
    waves.load_wave(settings, "w1_skaraborg", "final", AS_OF, actor="ivar")
    results = waves.verify(settings, "w1_skaraborg", AS_OF, actor="ivar")
    assert all(c.passed for c in results), [c.as_dict() for c in results if not c.passed]
    waves.approve(settings, "w1_skaraborg", "anna", "project_lead", "approve")
    waves.cut_over(settings, "w1_skaraborg", actor="ivar")
    w1 = waves.wave_of(settings, "w1_skaraborg")
    w1_sum = waves.wave_checksums(settings, w1)

    simulate_activity(loaded.estate, seed=11)  # legacy use goes on, in every unit
    w2 = waves.load_wave(settings, "w2_rest", "delta", DELTA_AS_OF, actor="ivar")
    assert not w2["failures"]

    # Skaraborg's rows are closed: their changes are conflicts, its core slice is unchanged.
    assert waves.wave_checksums(settings, w1) == w1_sum
    conflicts = slices.list_conflicts(settings, wave="w1_skaraborg")
    assert conflicts, "the activity changed Skaraborg rows; they must be raised"
    assert {c["detected_in_wave"] for c in conflicts} == {"w2_rest"}
    assert {c["state"] for c in conflicts} == {"open"}
    delta_batches = [b["batch_id"] for b in w2["batches"].values()]
    with _engine(settings).connect() as connection:
        assert accounting_residue(connection, delta_batches) == []
    rows = _accounting(settings, delta_batches)
    row_conflicts = [c for c in conflicts if c["change"] != "deleted"]
    assert sum(r["conflicted"] for r in rows) == len(row_conflicts)
    assert sum(r["loaded"] for r in rows) > 0  # w2's own changes did load

    # The patients wave's delta sees the same legacy changes: held again, raised once.
    w0 = waves.load_wave(settings, "w0_patients", "delta", DELTA_AS_OF, actor="ivar")
    w0_rows = _accounting(settings, [b["batch_id"] for b in w0["batches"].values()])
    assert sum(r["conflicted"] for r in w0_rows) == len(row_conflicts)
    assert len(slices.list_conflicts(settings, wave="w1_skaraborg")) == len(conflicts)

    # Every key a delta deletes ends in exactly one outcome, none silently dropped: a row another
    # wave loaded is left to it, and its own delta deletes it; one already gone is absent.
    w2_deleted = _deletion_outcomes(settings, w2)
    w0_deleted = _deletion_outcomes(settings, w0)
    assert len(w2_deleted) and len(w0_deleted)
    left = w2_deleted[w2_deleted["outcome"] == slices.WAVE_SCOPE]
    assert len(left) and set(left["wave"]) == {"w0_patients"}  # a registration deleted in error
    after = w0_deleted.set_index(["entity", "row_id"])["outcome"]
    assert set(after.loc[list(zip(left["entity"], left["row_id"], strict=True))]) == {
        slices.APPLIED
    }
    applied = w2_deleted[w2_deleted["outcome"] == slices.APPLIED]
    assert len(applied)  # a purged booking of another unit
    gone = after.reindex(list(zip(applied["entity"], applied["row_id"], strict=True)))
    assert set(gone) <= {slices.ABSENT}
    held = w2_deleted[w2_deleted["outcome"] == "slice_conflict"]
    assert len(held) == len([c for c in conflicts if c["change"] == "deleted"])

    # Listed for the stewards by the command line (ids and keys only), resolved with a note.
    listed = json.loads(cli("cutover", "conflicts", "--wave", "w1_skaraborg", "--json").stdout)
    assert len(listed["conflicts"]) == len(conflicts)
    assert listed["per_wave"] == {"w1_skaraborg": len(conflicts)}
    first = conflicts[0]["conflict_id"]
    cli("cutover", "conflicts", "--resolve", first, "--note", "fixed in the new record")
    assert len(slices.list_conflicts(settings, wave="w1_skaraborg")) == len(conflicts) - 1
    status = {row["wave"]: row for row in waves.wave_status(settings)}
    assert status["w1_skaraborg"]["open_conflicts"] == len(conflicts) - 1
    assert status["w2_rest"]["open_conflicts"] == 0

    # The dashboard's waves table shows them per wave; the wave's page says they wait.
    page = _dashboard(settings, "/")
    row = re.search(r'<tr data-wave="w1_skaraborg">(.*?)</tr>', page, re.S)
    assert row and re.search(rf'data-field="conflicts">{len(conflicts) - 1}<', row.group(1))
    other = re.search(r'<tr data-wave="w2_rest">(.*?)</tr>', page, re.S)
    assert other and 'data-field="conflicts">0<' in other.group(1)
    assert 'id="conflicts"' in _dashboard(settings, "/waves/w1_skaraborg")


def _deletion_outcomes(settings, run: dict) -> pd.DataFrame:
    """Each deleted key of a wave's delta batches with its outcome; checks each batch's counts
    close (listed = applied + conflicted + other waves + absent) and only applied keys stay."""
    import pyarrow.parquet as pq

    from etl.report.validation import batch_report_folder

    frames = [pd.DataFrame(columns=["entity", "row_id", "outcome", "wave"])]
    for system, batch in run["batches"].items():
        folder = _validated(settings, batch["batch_id"], system)
        counts = json.loads((folder / slices.MARKER).read_text("utf-8"))["deletions"]
        parts = ("kept", "conflicted", "other_waves", "absent")
        assert counts["listed"] == sum(counts[p] for p in parts), counts
        if not counts["listed"]:
            continue
        # The batch's validation report says where the deleted keys went.
        report = batch_report_folder(settings, batch["batch_id"]) / "summary.html"
        page = report.read_text("utf-8")
        listed = "<5" if counts["listed"] < 5 else f"{counts['listed']:,}".replace(",", " ")
        assert f"Keys deleted in the legacy system: {html.escape(listed)}," in page
        table = pd.read_parquet(folder / slices.DELETION_OUTCOMES)
        assert len(table) == counts["listed"]
        assert table["outcome"].notna().all()
        assert not table.duplicated(["entity", "row_id"]).any()
        kept = pq.read_table(folder / "deletions.parquet").num_rows
        assert int((table["outcome"] == slices.APPLIED).sum()) == counts["kept"] == kept
        frames.append(table)
    return pd.concat(frames, ignore_index=True).astype("string")


def _dashboard(settings, path: str) -> str:
    from fastapi.testclient import TestClient

    from etl.dashboard.app import create_app
    from etl.dashboard.auth import DashboardUser, Role, TokenAuthenticator, token_digest

    token = "lead-token-0123456789abcdef"

    def authenticator(_settings):
        user = DashboardUser("lena", Role.LEAD, token_digest(token))
        return TokenAuthenticator([user], b"a test secret of enough length")

    client = TestClient(create_app(settings, authenticator=authenticator))
    response = client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text[:500]
    return response.text


def test_rolling_back_w1_restores_its_slice_and_leaves_the_rest(loaded):
    """After the test above: w1 is cut over and w2's delta was promoted after it."""
    settings = loaded.settings
    plan = waves.plan_of(settings)
    with _engine(settings).connect() as connection:
        # The rows the rollback may touch: w1's slice and what its batches wrote.
        scope = slice_core.wave_row_ids(connection, plan, "w1_skaraborg", _catalog(settings))
        middle = slice_core.slice_checksums(
            connection, plan, "w1_skaraborg", _catalog(settings), scope
        )
    assert middle["slice"] != loaded.before_w1
    w1_rows = int(middle["slice"]["encounter"].split(":")[0])
    contacts = _count(settings, "encounter")
    patients = _count(settings, "patient")

    evidence = wave_rollback.rollback_wave(settings, "w1_skaraborg", actor="ivar")

    assert evidence["checksum_equal_to_before_wave"] is True
    assert evidence["outside_unchanged"] is True
    with _engine(settings).connect() as connection:
        after = slice_core.slice_checksums(
            connection, plan, "w1_skaraborg", _catalog(settings), scope
        )
    assert after["slice"] == loaded.before_w1  # exactly w1's rows undone...
    assert after["outside"] == middle["outside"]  # ...and w2's, in the same tables, untouched
    assert _count(settings, "encounter") == contacts - w1_rows > 0
    assert _count(settings, "patient") == patients  # w0's patients stay
    # The patients wave cannot go while a unit wave points at its patients.
    with pytest.raises(ledger.LedgerError, match="w2_rest are loaded"):
        wave_rollback.rollback_wave(settings, "w0_patients", actor="ivar")


def _catalog(settings):
    from etl.pipeline import catalog

    return catalog(settings)
