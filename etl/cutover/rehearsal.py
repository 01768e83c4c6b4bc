"""Rehearsing a wave: its load run on a separate core and landing zone (``rehearsal_settings``),
its criteria measured there, the evidence packed and the reviewed plan fingerprinted
(etl/cutover/waves.py runs the wave itself)."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from etl.batch import utc_now
from etl.core import storage
from etl.core.lease import current_actor
from etl.cutover import fingerprint, ledger
from etl.cutover.plan import WavePlan
from etl.cutover.waves import (
    _engine,
    _load_in_workers,
    _load_one_by_one,
    _record_fingerprint,
    _stamp,
    _version,
    _WaveLoad,
    batch_id_for,
    evaluate_criteria,
    plan_fingerprint,
    plan_of,
    reconcile_wave,
)
from etl.settings import Settings


def rehearsal_settings(settings: Settings, name: str, number: int) -> Settings:
    """A separate core (its own SQLite file, or its own PostgreSQL schema) and landing zone."""
    from etl.core import files, residency

    folder = Path(settings.home) / "rehearsals" / name / f"{number:03d}"
    residency.check_storage(folder, "the rehearsal folder (under VARDFLYTT_HOME)", settings)
    if folder.exists():
        shutil.rmtree(folder)
    files.private_dir(folder)
    residency.check_database_url(settings.resolved_core_url, "the core database", settings)
    url = sa.make_url(settings.resolved_core_url)
    if url.get_backend_name() == "postgresql":
        options = url.query.get("options", "")
        if not isinstance(options, str):  # the key given more than once in the URL
            options = " ".join(options)
        base_schema = (
            options.split("search_path=", 1)[1].split(",")[0] if "search_path=" in options else ""
        )
        prefix = f"{base_schema}_" if base_schema else ""
        schema = f"{prefix}rehearsal_{name}_{number:03d}"[:63]
        previous = f"{prefix}rehearsal_{name}_{number - 1:03d}"[:63]
        base = url.set(query={k: v for k, v in url.query.items() if k != "options"})
        engine = sa.create_engine(base)
        with engine.begin() as connection:
            # One schema per rehearsal; the one before is no longer needed (its pack is kept).
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{previous}" CASCADE')
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        engine.dispose()
        core_url = base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    else:
        core_url = f"sqlite:///{folder / 'core.sqlite'}"
    values = settings.model_dump()
    # The rehearsal's reads of patient data are logged in the region's log, not in its core.
    values.update(
        core_url=core_url, landing_dir=folder / "landing", audit_url=settings.resolved_audit_url
    )
    return Settings(**values)


def _rehearsal_runs(plan: WavePlan, name: str) -> list[tuple[str, str]]:
    """The (wave, system) runs of the rehearsal: the wave's systems, after those of the patients
    wave when the wave is by care unit."""
    runs = [(name, system) for system in plan.systems_of(name)]
    patients_first = plan.patients in {w.wave for w in plan.waves} and plan.patients != name
    if plan.wave(name).is_by_unit and patients_first:
        # The rehearsal core starts empty: the patients wave's rows go first, as in the core.
        runs = [(plan.patients, s) for s in plan.systems_of(plan.patients)] + runs
    return runs


def _rehearsal_criteria(rehearsal: Settings, name: str) -> list[dict[str, Any]]:
    """The wave's criteria measured on the rehearsal core, without the "at least" ones."""
    return [
        c.as_dict() for c in evaluate_criteria(rehearsal, name) if not c.name.startswith("at least")
    ]


def _reviewed_plan(
    settings: Settings, reviewed: fingerprint.Fingerprint, number: int, actor: str | None
) -> dict[str, Any]:
    """The plan this rehearsal reviews, as its evidence pack shows it."""
    return {
        "fingerprint": reviewed.digest,
        "recorded_at": str(utc_now()),
        "recorded_by": actor or current_actor(),
        "recorded_event": f"rehearsal {number}",
        "mapping_version": reviewed.mapping_version,
        "files": reviewed.files,
        "working_copy": reviewed.digest,
        "matches": True,
        "uncommitted": fingerprint.uncommitted_files(settings),
        "changes": [],
    }


def _rehearsal_evidence(
    settings: Settings,
    name: str,
    number: int,
    pack: Path,
    criteria: list[dict[str, Any]],
    failures: dict[str, Any],
    reviewed: fingerprint.Fingerprint,
) -> dict[str, Any]:
    """The rehearsal's evidence for the ledger: its pack, whether its criteria passed, and its
    pack compared with the last rehearsal's."""
    from etl.cutover.evidence import compare_packs

    previous = storage.readable(settings, f"evidence/{name}/rehearsal-{number - 1:03d}")
    comparison = compare_packs(previous, pack) if number > 1 else None
    return {
        "rehearsal": number,
        "pack": str(pack),
        "criteria_passed": all(c["passed"] for c in criteria) and not failures,
        "failures": failures,
        "comparison": comparison,
        "plan": reviewed.digest,
    }


def _record_rehearsal(
    engine: sa.Engine,
    settings: Settings,
    name: str,
    reviewed: fingerprint.Fingerprint,
    evidence: dict[str, Any],
    actor: str | None,
    run_id: str | None,
) -> dict[str, Any] | None:
    """In one transaction: record the ``rehearsal`` transition and the reviewed plan's
    fingerprint. Returns what the fingerprint record found."""
    with engine.begin() as connection:
        step = ledger.transition(
            connection, name, ledger.REHEARSAL, actor, run_id, _version(settings), evidence
        )
        recorded = _record_fingerprint(
            connection, name, reviewed, ledger.REHEARSAL, step["actor"], None, run_id
        )
    return recorded


def rehearse(
    settings: Settings,
    name: str,
    as_of_date: dt.date,
    actor: str | None = None,
    run_id: str | None = None,
    on_system: Callable[[str], None] | None = None,
    jobs: int | None = None,
) -> dict[str, Any]:
    """Run the wave into a separate core, build its evidence pack, compare with the last one.
    ``jobs`` as for ``load_wave``: the systems side by side in worker processes (a wave by unit's
    patients wave first, then the wave)."""
    from etl.cutover.evidence import write_pack

    plan = plan_of(settings)
    engine = _engine(settings)
    with engine.connect() as connection:
        state = ledger.wave_state(connection, name)
        number = ledger.count_transitions(connection, name, ledger.REHEARSAL) + 1
    ledger.check_transition(name, state, ledger.REHEARSAL)
    with ledger.wave_lock(engine, name, run_id):
        # The rehearsal is the review point: the plan it ran is the plan verify holds to.
        reviewed = plan_fingerprint(settings, name)
        rehearsal = rehearsal_settings(settings, name, number)
        failures = {}
        stamp = _stamp()
        runs = _rehearsal_runs(plan, name)
        jobs = jobs or settings.jobs or 1
        load = _load_in_workers if jobs > 1 else _load_one_by_one
        for run_wave in dict.fromkeys(w for w, _system in runs):  # the patients wave first
            wave_runs = [
                (system, batch_id_for(system, run_wave, "rehearsal", stamp))
                for w, system in runs
                if w == run_wave
            ]
            loading = _WaveLoad(run_wave, "rehearsal", "full", as_of_date, run_id)
            _loaded_batches, failed = load(rehearsal, plan, loading, wave_runs, on_system, jobs)
            for system, failure in failed.items():
                key = system if run_wave == name else f"{system} ({run_wave})"
                failures[key] = failure["error"]
        # The rehearsal core started empty and each system's rehearsal batch has just read its
        # whole source: the hash aggregates its promotion kept (from the validated files it
        # loaded) are what the system's rows there must add up to, so reconciliation compares
        # those first, as in the freeze window, and reads the source again only where they
        # differ. A system whose run failed or was held back (no such promoted batch), or that
        # is split by care unit, is read again in full (etl/cutover/reconcile.py).
        rehearsed = {s: batch_id_for(s, w, "rehearsal", stamp) for w, s in runs if w == name}
        reconcile_wave(rehearsal, name, as_of_date, run_id, rehearsed)
        criteria = _rehearsal_criteria(rehearsal, name)
        pack = write_pack(
            rehearsal,
            name,
            f"rehearsal-{number:03d}",
            extra={
                "criteria": criteria,
                "failures": failures,
                "rehearsal": number,
                # The rehearsal core has no ledger: the pack shows the plan this rehearsal reviews.
                "plan": _reviewed_plan(settings, reviewed, number, actor),
            },
        )
        evidence = _rehearsal_evidence(settings, name, number, pack, criteria, failures, reviewed)
        recorded = _record_rehearsal(engine, settings, name, reviewed, evidence, actor, run_id)
        evidence["plan_changes"] = recorded["changes"] if recorded else None
    return evidence
