"""The migration of one source system as importable stage functions.

DAG tasks and the command line call these; tests call them without Airflow. Arguments and
return values are plain data (ids, dates, counts) so they travel safely through XCom: no rows,
no identity numbers, no names.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol

from etl.batch import safe_batch_id
from etl.catalog import Catalog, load_catalog
from etl.core import lease, storage
from etl.core.audit import SCOPE_BATCH, record_access
from etl.core.database import core_engine
from etl.core.decisions import waived_keys
from etl.core.memo import Memo, folder_key
from etl.core.memory import release_unused
from etl.extract.landing import LandingManifest, extract_system
from etl.load.loader import (
    AccountingError,
    LoadReport,
    load_system,
    promote_system,
    supersede_abandoned,
)
from etl.settings import Settings, get_settings
from etl.transform.engine import shared_landed_inputs
from etl.transform.stage import transform_entity
from etl.validate.gate import gate_batch
from etl.validate.stage import validate_entity

# Some source rows are not accounted for: the batch is not promoted (the load raises it before
# promotion; ``reconcile`` checks a report again).
ReconciliationError = AccountingError
logger = logging.getLogger(__name__)


class Slicer(Protocol):
    """A wave's slice of a system split by care unit (etl.cutover.slices.WaveSlicer, given by
    the cutover, which knows the plan): ``assign`` writes each row's wave before the quality
    gate, so the gate judges the wave's rows; the call cuts the validated batch after it."""

    def assign(self, system: str, batch_id: str, settings: Settings, /) -> dict[str, Any]: ...

    def __call__(self, system: str, batch_id: str, settings: Settings, /) -> dict[str, Any]: ...


def hold_system(system: str, batch_id: str, settings: Settings) -> lease.Lease:
    """Take or renew the system's lease for this batch's run; refuse while another run holds it.

    The batch id is the run's identity: an Airflow run's tasks (same batch id) keep the lease
    taken by its extract, and so does a retried task; ``load``/``promote`` release it."""
    engine = core_engine(settings.resolved_core_url)
    held = lease.acquire(engine, lease.SYSTEM, system, batch_id)
    if held.replaced:
        logger.warning(held.replaced)
    return held


def release_system(system: str, batch_id: str, settings: Settings) -> bool:
    engine = core_engine(settings.resolved_core_url)
    return lease.release(engine, lease.SYSTEM, system, run_id=batch_id)


# The mappings read once per process and folder content: a long-lived process (the dashboard,
# a Celery worker, the api-server's plugin) sees a mapping changed in place at its next run.
_catalogs = Memo(4)


def _catalog(root: Path) -> Catalog:
    key = folder_key(root)
    found = _catalogs.get(key) if key is not None else None
    if found is None:
        found = load_catalog(root)
        if key is not None:
            _catalogs.put(key, found)
    return found


def catalog_seed(settings: Settings) -> tuple[tuple[str, str], Catalog] | None:
    """The catalog of ``settings``' mappings with its key (the folder and its files' digest),
    for a worker process to start with (``seed_catalog``) instead of parsing the same files."""
    key = folder_key(settings.mappings_dir)
    if key is None:
        return None
    return key, _catalog(settings.mappings_dir)


def seed_catalog(seed: tuple[tuple[str, str], Catalog] | None) -> None:
    """Hold a catalog another process parsed: used while the mappings' files keep that digest
    (``_catalog`` looks them up by it), parsed again as soon as one differs."""
    if seed is not None:
        _catalogs.put(*seed)


# The catalog a ``run_system`` read at its start: every stage of the run uses that one (a mapping
# edited while a run goes on changes the next run, not this one halfway through).
_run_catalog: ContextVar[tuple[Path, Catalog] | None] = ContextVar("run_catalog", default=None)


def catalog(settings: Settings | None = None) -> Catalog:
    root = (settings or get_settings()).mappings_dir
    pinned = _run_catalog.get()
    if pinned is not None and pinned[0] == root:
        return pinned[1]
    return _catalog(root)


@contextlib.contextmanager
def one_catalog(settings: Settings) -> Iterator[None]:
    """Every stage called inside uses the catalog of ``settings``' mappings as it is now, as
    ``run_system`` does for a run (the folder's digest is taken once, not by every stage)."""
    token = _run_catalog.set((settings.mappings_dir, catalog(settings)))
    try:
        yield
    finally:
        _run_catalog.reset(token)


def _log_batch(
    settings: Settings,
    action: str,
    system: str,
    batch_id: str,
    rows: int,
    entity: str | None = None,
    run_id: str | None = None,
) -> None:
    """A pipeline stage reads or writes every row of the batch: logged by scope, not by patient
    (``vardflytt audit patient`` lists these as bulk accesses of the patient's systems)."""
    record_access(
        settings,
        action,
        system,
        batch_id,
        rows,
        entity,
        run_id,
        subject_scope=SCOPE_BATCH,
        subject_count=rows,
    )


@contextlib.contextmanager
def on_storage(
    settings: Settings,
    system: str,
    batch_id: str,
    also: tuple[str, ...] = (),
    stand_ins: tuple[str, ...] = (),
) -> Iterator[Settings]:
    """A stage's view of the storage root (etl/core/storage.py): in place for a folder; for an
    URL, a private copy of the batch's folder (and of the folders ``also``) whose changes are
    uploaded when the stage succeeds. A task never needs its upstream's local disk."""
    keys = [storage.landing_key(batch_id, system)] if settings.landing_dir is None else []
    with storage.workspace(settings, [*keys, *also], stand_ins) as local:
        yield local


def _extract_storage(
    settings: Settings,
    system: str,
    batch_id: str,
    kind: str,
    clean_abandoned: bool,
    base_wave: str | None = None,
) -> contextlib.AbstractContextManager[Settings]:
    """An extract reads its delta's base batch and may remove the system's abandoned batches."""
    if not settings.is_remote_storage or settings.landing_dir is not None:
        return on_storage(settings, system, batch_id)
    from etl.extract.delta import base_batch

    base = base_batch(settings, system, batch_id, base_wave) if kind == "delta" else None
    also = (storage.landing_key(base, system),) if base else ()
    own = {storage.landing_key(batch_id, system), *also}
    others = [key for key in storage.system_batches(settings, system) if key not in own]
    return on_storage(settings, system, batch_id, also, tuple(others) if clean_abandoned else ())


def batch_id_for(system: str, run_id: str) -> str:
    """One batch per system per run; the id is safe as a folder name."""
    return safe_batch_id(f"{system}__{run_id}")


def extract(
    system: str,
    batch_id: str,
    as_of_date: dt.date | str,
    settings: Settings | None = None,
    kind: str = "full",
    clean_abandoned: bool = True,
    base_wave: str | None = None,
) -> dict:
    """Land the source; a ``delta`` also lists what changed since the last promoted batch (with
    ``base_wave``: the last that wave promoted, for a wave's slice of a split system).

    First takes the system's lease and supersedes what earlier, abandoned runs left staged."""
    settings = settings or get_settings()
    hold_system(system, batch_id, settings)
    try:
        with _extract_storage(
            settings, system, batch_id, kind, clean_abandoned, base_wave
        ) as local:
            manifest = _extract(
                system, batch_id, as_of_date, local, kind, clean_abandoned, base_wave
            )
    except Exception:
        release_system(system, batch_id, settings)  # nothing runs after a failed extract
        raise
    _log_batch(settings, "read_source", system, batch_id, manifest.total_rows)
    release_unused()
    return {
        "batch_id": batch_id,
        "kind": manifest.kind,
        "base_batch_id": manifest.base_batch_id,
        "rows": {name: d.extracted for name, d in manifest.datasets.items()},
    }


def _extract(
    system: str,
    batch_id: str,
    as_of_date: dt.date | str,
    settings: Settings,
    kind: str,
    clean_abandoned: bool,
    base_wave: str | None = None,
) -> LandingManifest:
    if clean_abandoned:
        for left in supersede_abandoned(settings, system, batch_id):
            logger.warning(
                "%s: batch %s (%s) superseded by %s", system, left.batch_id, left.was, batch_id
            )
    as_of = dt.date.fromisoformat(str(as_of_date))
    # Log first, then read: an extract killed half-way has read patient data, and its entry.
    record_access(
        settings,
        "extract_started",
        system,
        batch_id,
        0,
        subject_scope=SCOPE_BATCH,
        detail={"kind": kind, "as_of_date": as_of.isoformat()},
    )
    return extract_system(catalog(settings), system, batch_id, as_of, settings, kind, base_wave)


def transform(system: str, entity: str, batch_id: str, settings: Settings | None = None) -> dict:
    settings = settings or get_settings()
    hold_system(system, batch_id, settings)
    with on_storage(settings, system, batch_id) as local:
        report = transform_entity(catalog(settings), system, entity, batch_id, local)
    _log_batch(settings, "transform", system, batch_id, report.rows_in, entity)
    release_unused()
    return report.model_dump()


def validate(system: str, entity: str, batch_id: str, settings: Settings | None = None) -> dict:
    settings = settings or get_settings()
    hold_system(system, batch_id, settings)
    mappings = catalog(settings)
    dataset = mappings.system(system).entities[entity].dataset
    waivers = waived_keys(settings, system, dataset)
    with on_storage(settings, system, batch_id) as local:
        report = validate_entity(mappings, system, entity, batch_id, local, waivers)
    _log_batch(settings, "validate", system, batch_id, report.rows_in, entity)
    release_unused()
    return report.model_dump()


def gate(
    system: str,
    batch_id: str,
    run_id: str | None = None,
    settings: Settings | None = None,
    wave: str | None = None,
) -> dict:
    """Store the batch's check results; fail (not promoted) if any exceeds its threshold.

    With ``wave`` (a wave's slice of a split system, its rows assigned by ``assign_slice``) the
    gate judges the wave's rows; the result also carries the whole batch's failing rows."""
    settings = settings or get_settings()
    hold_system(system, batch_id, settings)
    try:
        with on_storage(settings, system, batch_id) as local:
            report = gate_batch(catalog(settings), system, batch_id, local, run_id, wave)
    except Exception:
        # A refused gate ends the run (every entity was validated before it): the system is free
        # for the re-run that follows the stewards' fixes. A retried task takes it again.
        release_system(system, batch_id, settings)
        raise
    return {
        "batch_id": batch_id,
        "checks": len(report.results),
        "rows_failing": sum(r.rows_failed for r in report.results),
        "thresholds": report.thresholds_digest,
        "deferred": report.deferred,  # entity -> rows quarantined as entity_deferred
        "wave": report.wave,
        "basis": report.basis,  # entity -> slice | stricter | whole (a wave's slice)
        "batch_rows_failing": sum(r.rows_failed for r in report.batch_results),
    }


def load(
    system: str,
    batch_id: str,
    run_id: str | None = None,
    dry_run: bool = False,
    settings: Settings | None = None,
    scope: str = "all",
    promote_now: bool = True,
    wave: str | None = None,
    kind: str | None = None,
) -> dict:
    """Stage the batch; promote it into the core too unless ``promote_now`` is false.

    ``kind`` (full or delta) defaults to what the batch was extracted as.
    """
    settings = settings or get_settings()
    hold_system(system, batch_id, settings)
    try:
        with on_storage(settings, system, batch_id) as local:
            report = load_system(
                catalog(settings),
                system,
                batch_id,
                local,
                run_id,
                dry_run,
                scope,
                promote_now=promote_now,
                wave=wave,
                kind=kind,
            )
    finally:
        release_system(system, batch_id, settings)  # the run ends with its load
    if not dry_run:
        written = sum(load.inserted + load.updated for load in report.entities)
        _log_batch(settings, "write_core", system, batch_id, written, run_id=run_id)
    release_unused()
    return report.model_dump()


def promote(
    system: str, batch_id: str, run_id: str | None = None, settings: Settings | None = None
) -> dict:
    """Promote a staged batch into the core tables (one transaction; idempotent)."""
    settings = settings or get_settings()
    hold_system(system, batch_id, settings)
    try:
        with on_storage(settings, system, batch_id) as local:
            report = promote_system(catalog(settings), system, batch_id, local, run_id)
    finally:
        release_system(system, batch_id, settings)
    written = sum(load.inserted + load.updated for load in report.entities)
    _log_batch(settings, "write_core", system, batch_id, written, run_id=run_id)
    release_unused()
    return report.model_dump()


def reconcile(report: dict) -> dict:
    """Fail unless every source row is loaded, quarantined, excluded or merged."""
    parsed = LoadReport.model_validate(report)
    if parsed.is_dry_run:
        return {"batch_id": parsed.batch_id, "is_reconciled": None, "dry_run": True}
    open_rows = [row for row in parsed.accounting if not row.is_verified]
    if open_rows:
        details = "; ".join(
            f"{row.entity} ({row.dataset}): residue {row.residue}" for row in open_rows
        )
        raise ReconciliationError(
            f"{parsed.system} batch {parsed.batch_id}: not every source row is accounted for: "
            f"{details}. See `vardflytt status --batch {parsed.batch_id}`."
        )
    return {
        "batch_id": parsed.batch_id,
        "is_reconciled": True,
        "rows": sum(row.extracted for row in parsed.accounting),
    }


def report(
    system: str,
    batch_id: str,
    settings: Settings | None = None,
    raise_errors: bool = True,
    data_docs: bool = True,
) -> dict:
    """Write the batch's validation report (summary and Data Docs, counts and pseudonyms only)
    under ``<storage root>/reports/validation/batches/<batch>/``, whatever became of the batch:
    one the quality gate stopped is the one stewards most need it for. Writing it again replaces
    it. It returns the report's keys relative to the storage root, never a local path. Without
    ``data_docs`` (a wave's final delta, in the freeze window) the summary is written alone and
    says its Data Docs are built after the go/no-go decision (:func:`deferred_data_docs`).

    A batch that stopped before its gate stored anything (a failed extract) has no results to
    report: nothing is written and the reason is logged. Without ``raise_errors`` a report that
    cannot be written is logged, never raised: a report must not make a loaded batch look
    failed, nor hide the reason a stopped batch stopped."""
    from etl.report.validation import NoResultsError, write_validation_report

    settings = settings or get_settings()
    folder = f"reports/validation/batches/{safe_batch_id(batch_id)}"
    try:
        # Only the report's own folder and the mapping docs it links to: not the landing zone.
        with storage.workspace(settings, [folder, "docs"]) as local:
            paths = write_validation_report(local, batch_id=batch_id, data_docs=data_docs)
            summary = storage.key_of(local, paths.summary_html)
            docs = paths.data_docs_index
            docs_key = storage.key_of(local, docs) if docs is not None else None
    except NoResultsError:
        logger.warning(
            "%s batch %s: no validation report, the batch stopped before its quality gate "
            "stored any result (see the error of the stage that stopped it)",
            system,
            batch_id,
        )
        return {"batch_id": batch_id, "summary": None, "data_docs": None}
    except Exception:
        if raise_errors:
            raise
        logger.exception(
            "%s batch %s: the validation report could not be written; write it again with "
            "`vardflytt dq report --batch %s`",
            system,
            batch_id,
            batch_id,
        )
        return {"batch_id": batch_id, "summary": None, "data_docs": None}
    # Keys relative to the storage root (the same on every worker), never a local path.
    return {"batch_id": batch_id, "summary": summary, "data_docs": docs_key}


def deferred_data_docs(
    system: str, batch_id: str, settings: Settings | None = None, force: bool = False
) -> str:
    """Build the Data Docs a batch's report left for after the go/no-go decision (``report``
    without ``data_docs``): the report is written again whole, its summary then linking them.
    Returns what happened: ``built``, ``already built`` (the summary has its Data Docs; with
    ``force`` they are built again) or ``no report`` (the batch wrote none: it stopped before
    its gate). Errors are raised (the caller logs them; the command re-runs it)."""
    from etl.report.validation import write_validation_report

    settings = settings or get_settings()
    folder = f"reports/validation/batches/{safe_batch_id(batch_id)}"
    with storage.workspace(settings, [folder, "docs"]) as local:
        summary_json = local.storage_dir / folder / "summary.json"
        if not summary_json.is_file():
            return "no report"
        written = json.loads(summary_json.read_text("utf-8"))
        if written.get("data_docs") and not force:
            return "already built"
        write_validation_report(local, batch_id=batch_id)
    return "built"


def transform_and_validate(
    system: str,
    batch_id: str,
    settings: Settings | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> None:
    """Every entity transformed before any is validated: suites join the batch's other
    transformed entities (etl/validate/context.py), so this order is part of the contract."""
    settings = settings or get_settings()
    step = on_stage or (lambda _name: None)
    entities = list(catalog(settings).system(system).entities)
    with shared_landed_inputs():  # the landed keys and lookups read once, not per entity
        for entity in entities:
            step(f"transform {entity}")
            transform(system, entity, batch_id, settings)
    for entity in entities:
        step(f"validate {entity}")
        validate(system, entity, batch_id, settings)


def assign_slice(
    system: str, batch_id: str, slicer: Slicer, settings: Settings | None = None
) -> dict:
    """Write each validated row's wave beside the batch (``slicer.assign``) for the gate."""
    settings = settings or get_settings()
    hold_system(system, batch_id, settings)
    with on_storage(settings, system, batch_id) as local:
        return slicer.assign(system, batch_id, local)


def slice_batch(
    system: str,
    batch_id: str,
    slicer: Callable[[str, str, Settings], dict[str, Any]],
    settings: Settings | None = None,
) -> dict:
    """Cut the validated batch down to one wave's slice (``slicer``: etl.cutover.slices, given
    by the cutover, which knows the plan) before it is staged; counts only come back."""
    settings = settings or get_settings()
    hold_system(system, batch_id, settings)
    with on_storage(settings, system, batch_id) as local:
        return slicer(system, batch_id, local)


def run_system(
    system: str,
    batch_id: str,
    as_of_date: dt.date,
    dry_run: bool = False,
    run_id: str | None = None,
    settings: Settings | None = None,
    on_stage: Callable[[str], None] | None = None,
    wave: str | None = None,
    kind: str = "full",
    slicer: Slicer | None = None,
    jobs: int = 1,
    data_docs: bool = True,
) -> LoadReport:
    """All stages of one system in this process (the command line's path; DAGs split it), then
    the batch's validation report, also when a stage stopped the batch. With ``slicer`` (a
    wave's slice of a system split by care unit), the gate judges the wave's rows, the validated
    batch is cut to them before it is loaded, and a delta compares with the wave's own last
    batch. ``jobs`` above 1 (no ``slicer``, no ``wave``): the system's independent entities
    are transformed and validated in that many worker processes (etl/parallel.py), with the
    same stages, files, accounting and errors. Without ``data_docs`` (a wave's final delta)
    the batch's report is its summary alone, its Data Docs built after the go/no-go decision."""
    settings = settings or get_settings()
    step = on_stage or (lambda _name: None)
    if jobs > 1 and slicer is None and wave is None:
        from etl.parallel import raise_first_error, run_systems

        (outcome,) = run_systems(
            [(system, batch_id)],
            as_of_date,
            settings=settings,
            jobs=jobs,
            dry_run=dry_run,
            run_id=run_id,
            kind=kind,
            on_event=lambda _system, message: step(message),
        )
        raise_first_error([outcome])
        assert outcome.report is not None  # a run without an error was loaded and reconciled
        return outcome.report
    with one_catalog(settings):
        return _run_stages(
            system,
            batch_id,
            as_of_date,
            dry_run,
            run_id,
            settings,
            step,
            wave,
            kind,
            slicer,
            data_docs,
        )


def _run_stages(
    system: str,
    batch_id: str,
    as_of_date: dt.date,
    dry_run: bool,
    run_id: str | None,
    settings: Settings,
    step: Callable[[str], None],
    wave: str | None,
    kind: str,
    slicer: Slicer | None,
    data_docs: bool,
) -> LoadReport:
    step("extract")
    try:
        extract(
            system,
            batch_id,
            as_of_date,
            settings,
            kind,
            clean_abandoned=not dry_run,
            base_wave=wave if slicer is not None else None,
        )
        transform_and_validate(system, batch_id, settings, step)
        if slicer is not None:
            step("wave assignment")
            assign_slice(system, batch_id, slicer, settings)
        step("quality gate")
        gate(system, batch_id, run_id, settings, wave if slicer is not None else None)
        if slicer is not None:
            step("wave slice")
            slice_batch(system, batch_id, slicer, settings)
        step("load")
        loaded = load(system, batch_id, run_id, dry_run, settings, wave=wave, kind=kind)
    except Exception:
        step("report")
        report(system, batch_id, settings, raise_errors=False, data_docs=data_docs)  # then why
        raise
    finally:
        release_system(system, batch_id, settings)  # a failed run must not keep the system
    step("report")
    report(system, batch_id, settings, raise_errors=False, data_docs=data_docs)
    reconcile(loaded)
    return LoadReport.model_validate(loaded)
