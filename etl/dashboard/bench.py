"""Dashboard page times on a realistic history, for ``make bench`` (its dashboard section).

A synthetic history is written straight into a temporary core: every system of the wave plan
(49), each wave taken through the ledger's real state machine (``etl.cutover.ledger``) with a run
per rehearsal, initial load and delta, and per batch the accounting, check results, access log,
promotion and a few dozen quarantined rows, as the pipeline writes them. Each page is then
requested through the real application (authentication included) and timed; nothing is judged.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import statistics
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlalchemy as sa

    from etl.settings import Settings

ENTITIES = ("patient", "encounter", "diagnosis", "observation", "medication")
CHECKS_PER_ENTITY = 8
QUARANTINED_PER_BATCH = 40
# The states each wave goes through (the first completes its cutover; the last only rehearses).
WAVE_PATHS = (
    ["rehearsal"] * 4 + ["initial_load"] + ["delta_load"] * 6 + ["frozen", "final_delta"],
    ["rehearsal"] * 4 + ["initial_load"] + ["delta_load"] * 5,
    ["rehearsal"] * 4,
)
LOADING_STATES = {"rehearsal", "initial_load", "delta_load", "final_delta"}
TOKEN = "bench-dashboard-token-0123456789"


# One run's rows, per kind: batch, access, promotion, accounting, dq and quarantine.
_RunRows = dict[str, list[dict[str, Any]]]


def seed_history(settings: Settings, seed: int = 42) -> dict[str, int]:
    """Write the synthetic history into ``settings``' core; returns what was written."""
    from etl.core.database import core_engine
    from etl.dashboard.wave_ledger import load_wave_plan

    plan, problem = load_wave_plan(Path(settings.mappings_dir))
    if problem:
        raise RuntimeError(problem)
    seeding = _Seeding(
        engine=core_engine(settings.resolved_core_url),
        rng=random.Random(seed),
        start=dt.datetime(2026, 9, 1, 6, 0, tzinfo=dt.UTC),
        counts={"systems": 0, "waves": len(plan), "runs": 0, "batches": 0, "quarantined": 0},
    )
    for wave_index, (wave, spec) in enumerate(plan.items()):
        systems = spec["systems"]
        seeding.counts["systems"] += len(systems)
        _seed_wave_path(seeding, wave, wave_index, systems)
        _approve_and_reconcile_wave(seeding, wave, systems)
    return seeding.counts


@dataclasses.dataclass
class _Seeding:
    """What seeding carries from one wave to the next: the core, the random draws (one stream,
    drawn in a fixed order), the start of the history, the counts and the promotion sequence."""

    engine: sa.Engine
    rng: random.Random
    start: dt.datetime
    counts: dict[str, int]
    sequence: int = 0


def _seed_wave_path(seeding: _Seeding, wave: str, wave_index: int, systems: list[str]) -> None:
    """Take one wave through its path of states in the ledger; every loading state is a run
    with one batch per system of the wave (its rows, then each entity's), written in one
    transaction."""
    from etl.cutover.ledger import transition

    path = WAVE_PATHS[min(wave_index, len(WAVE_PATHS) - 1)]
    for step, state in enumerate(path):
        run_id = f"{state}__{wave}__{step:02d}"
        at = seeding.start + dt.timedelta(days=7 * wave_index + step, hours=wave_index)
        with seeding.engine.begin() as connection:
            transition(connection, wave, state, actor="lead.bench", run_id=run_id)
        if state not in LOADING_STATES:
            continue
        seeding.counts["runs"] += 1
        rows: _RunRows = {name: [] for name in ("batch", "accounting", "dq")}
        rows |= {"access": [], "promotion": [], "quarantine": []}
        for system in systems:
            seeding.sequence += 1
            batch = _draw_batch(seeding.rng, wave, state, system, run_id, at)
            _add_batch_rows(rows, batch, seeding.sequence)
            for entity in ENTITIES:
                _add_entity_rows(seeding.rng, rows, batch, entity)
        _write_run_rows(seeding.engine, rows)
        seeding.counts["batches"] += len(rows["batch"])
        seeding.counts["quarantined"] += len(rows["quarantine"])


@dataclasses.dataclass(frozen=True)
class _Batch:
    """One system's batch of a run, as drawn: what every row written for it shares."""

    wave: str
    system: str
    run_id: str
    batch_id: str
    is_delta: bool
    size: int
    began: dt.datetime
    ended: dt.datetime


def _draw_batch(
    rng: random.Random, wave: str, state: str, system: str, run_id: str, at: dt.datetime
) -> _Batch:
    """Draw one system's batch of a run: its size, when it began (read its source) and ended."""
    is_delta = state in {"delta_load", "final_delta"}
    size = rng.randint(2_000, 400_000) // (20 if is_delta else 1)
    began = at + dt.timedelta(minutes=rng.randint(0, 90))
    ended = began + dt.timedelta(seconds=size / rng.uniform(3_000, 12_000))
    return _Batch(wave, system, run_id, f"{system}__{run_id}", is_delta, size, began, ended)


def _add_batch_rows(rows: _RunRows, batch: _Batch, sequence: int) -> None:
    """Add a batch's own rows to ``rows``: the load batch, its read of the source (an access log
    entry) and its promotion, ``sequence``-th of the history."""
    rows["batch"].append(
        {
            "batch_id": batch.batch_id,
            "source_system": batch.system,
            "run_id": batch.run_id,
            "scope": "all",
            "mapping_version": "bench",
            "status": "loaded",
            "is_dry_run": False,
            "started_at": batch.ended - dt.timedelta(seconds=5),
            "finished_at": batch.ended,
        }
    )
    rows["access"].append(
        {
            "access_id": uuid.uuid4().hex,
            "accessed_at": batch.began,
            "user_name": "bench",
            "process": "vardflytt:read_source",
            "action": "read_source",
            "source_system": batch.system,
            "entity": None,
            "batch_id": batch.batch_id,
            "run_id": batch.run_id,
            "rows": batch.size,
        }
    )
    rows["promotion"].append(
        {
            "batch_id": batch.batch_id,
            "source_system": batch.system,
            "wave": batch.wave,
            "kind": "delta" if batch.is_delta else "full",
            "state": "promoted",
            "seq": sequence,
            "run_id": batch.run_id,
            "staged_at": batch.ended,
            "promoted_at": batch.ended,
            "rows_inserted": batch.size,
            "rows_updated": 0,
            "rows_deleted": 0,
        }
    )


def _add_entity_rows(rng: random.Random, rows: _RunRows, batch: _Batch, entity: str) -> None:
    """Add one entity's share of a batch to ``rows``: its accounting and its check results, then
    its quarantined rows."""
    extracted = batch.size // len(ENTITIES)
    quarantined = QUARANTINED_PER_BATCH // len(ENTITIES)
    excluded = rng.randint(0, 5)
    rows["accounting"].append(
        {
            "batch_id": batch.batch_id,
            "source_system": batch.system,
            "entity": entity,
            "dataset": entity,
            "extracted": extracted,
            "loaded": extracted - quarantined - excluded,
            "quarantined": quarantined,
            "excluded": excluded,
            "merged": 0,
            "residue": 0,
            "is_verified": True,
            "recorded_at": batch.ended,
        }
    )
    for check in range(CHECKS_PER_ENTITY):
        failed = rng.choice((0, 0, 0, 1, 3, quarantined))
        rows["dq"].append(
            {
                "batch_id": batch.batch_id,
                "source_system": batch.system,
                "entity": entity,
                "check_name": f"{entity}.field_{check}.rule",
                "run_id": batch.run_id,
                "dimension": "validity",
                "severity": "error",
                "rows_evaluated": extracted,
                "rows_failed": failed,
                "rows_waived": 0,
                "max_failure_rate": 0.05,
                "is_breached": False,
                "thresholds_digest": "bench",
                "mapping_version": "bench",
                "evaluated_at": batch.ended,
            }
        )
    _add_quarantined_rows(rng, rows, batch, entity, quarantined)


def _add_quarantined_rows(
    rng: random.Random, rows: _RunRows, batch: _Batch, entity: str, quarantined: int
) -> None:
    """Add ``quarantined`` rows of one entity of a batch to ``rows``, each with a drawn reason."""
    for number in range(quarantined):
        rows["quarantine"].append(
            {
                "quarantine_id": uuid.uuid4().hex,
                "batch_id": batch.batch_id,
                "run_id": batch.run_id,
                "source_system": batch.system,
                "dataset": entity,
                "entity": entity,
                "source_key": f"SYN-{batch.system}-{entity}-{number}",
                "row_number": number + 1,
                "check_name": "transform:parse_legacy_date",
                "severity": "error",
                "field": "date",
                "reason": rng.choice(("unparseable_date", "invalid_code")),
                "quarantined_at": batch.ended,
            }
        )


def _write_run_rows(engine: sa.Engine, rows: _RunRows) -> None:
    """Write one run's rows in one transaction; its reads of the sources go through the access
    log's chain, as every writer does."""
    from etl.core.audit import append_entry
    from etl.core.tables import batch_accounting, dq_result, load_batch, promotion, quarantine

    with engine.begin() as connection:
        for table, key in (
            (load_batch, "batch"),
            (promotion, "promotion"),
            (batch_accounting, "accounting"),
            (dq_result, "dq"),
            (quarantine, "quarantine"),
        ):
            connection.execute(table.insert(), rows[key])
        for entry in rows["access"]:  # through the chain, as every writer does
            append_entry(connection, entry)


def _approve_and_reconcile_wave(seeding: _Seeding, wave: str, systems: list[str]) -> None:
    """Record the project lead's approval of a wave and a reconciled pair for each of its
    systems' entities, in one transaction."""
    from etl.core.tables import wave_reconciliation
    from etl.cutover.ledger import record_approval

    with seeding.engine.begin() as connection:
        record_approval(connection, wave, "project_lead", "lead.bench", "approve", "cli")
        connection.execute(
            wave_reconciliation.insert(),
            [
                {
                    "reconciliation_id": uuid.uuid4().hex,
                    "wave": wave,
                    "source_system": system,
                    "entity": entity,
                    "batch_id": None,
                    "expected_rows": 1000,
                    "core_rows": 1000,
                    "missing_in_core": 0,
                    "unexpected_in_core": 0,
                    "content_mismatches": 0,
                    "aggregates": None,
                    "is_reconciled": True,
                    "checked_at": seeding.start,
                }
                for system in systems
                for entity in ENTITIES
            ],
        )


def measure_dashboard(work_dir: Path, repeats: int = 5, seed: int = 42) -> dict[str, Any]:
    """Seed the history into a fresh SQLite core under ``work_dir`` and time every page."""
    from fastapi.testclient import TestClient

    from etl.dashboard.app import create_app
    from etl.dashboard.auth import DashboardUser, Role, TokenAuthenticator, token_digest
    from etl.settings import Settings

    settings = Settings(home=work_dir, core_url=f"sqlite:///{work_dir / 'core.sqlite'}")
    started = time.perf_counter()
    history = seed_history(settings, seed)
    seed_seconds = time.perf_counter() - started
    users = [DashboardUser("bench", Role.STEWARD, token_digest(TOKEN))]
    app = create_app(settings, lambda _s: TokenAuthenticator(users, b"bench secret 0123456789"))
    client = TestClient(app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    first_wave = next(iter(seed_plan_names(settings)))
    longest_run = f"delta_load__{first_wave}__07"
    pages = {
        "waves (home)": "/",
        "wave": f"/waves/{first_wave}",
        "evidence pack": f"/waves/{first_wave}/evidence",
        "runs and trends": "/runs",
        "run": f"/runs/{longest_run}",
        "steward queue": "/steward",
        "steward, one system": "/steward?system=" + seed_plan_names(settings)[first_wave][0],
    }
    timings = {}
    for name, path in pages.items():
        response = client.get(path, headers=headers)  # warm: first query plans, templates
        if response.status_code != 200:
            raise RuntimeError(f"dashboard page {path} answered {response.status_code}")
        samples = []
        for _ in range(repeats):
            began = time.perf_counter()
            response = client.get(path, headers=headers)
            samples.append(time.perf_counter() - began)
        timings[name] = {
            "path": path,
            "median_seconds": round(statistics.median(samples), 4),
            "max_seconds": round(max(samples), 4),
            "bytes": len(response.content),
        }
    return {
        "history": history,
        "seed_seconds": round(seed_seconds, 2),
        "repeats": repeats,
        "backend": "sqlite",
        "pages": timings,
    }


def seed_plan_names(settings) -> dict[str, list[str]]:
    from etl.dashboard.wave_ledger import load_wave_plan

    return {
        name: spec["systems"]
        for name, spec in load_wave_plan(Path(settings.mappings_dir))[0].items()
    }


def dashboard_table(figures: dict[str, Any]):
    """A rich table of the page times (for ``vardflytt bench``)."""
    from rich.table import Table

    history = figures["history"]
    table = Table(
        title=f"dashboard pages on a synthetic history ({history['systems']} systems, "
        f"{history['waves']} waves, {history['runs']} runs, {history['batches']} batches; "
        f"median of {figures['repeats']} requests, SQLite)"
    )
    for column in ("page", "path", "median ms", "max ms", "KiB"):
        table.add_column(column, justify="left" if column in {"page", "path"} else "right")
    for name, page in figures["pages"].items():
        table.add_row(
            name,
            page["path"],
            f"{page['median_seconds'] * 1000:.0f}",
            f"{page['max_seconds'] * 1000:.0f}",
            f"{page['bytes'] / 1024:.0f}",
        )
    return table
