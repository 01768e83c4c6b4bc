"""Cutover DAGs generated from the wave plan, ``mappings/waves.yaml``.

- ``vardflytt_cutover_<wave>``: one per wave; the Params form picks the phase.
  rehearsal: rehearse into a separate core, with its evidence pack and comparison.
  initial / delta: load the wave, reconcile it, write the evidence pack.
  final: freeze, final delta, verify (the run fails with the failing criteria), a go/no-go per
  approving role in Airflow (human-in-the-loop, assigned to the role's users in the plan), record
  every answer in the ledger and, if every role approved, cut over; evidence pack; the wave's
  FHIR R4 export (``export_fhir``, nothing when the go/no-go rejected).
- ``vardflytt_rollback``: roll back a wave, or one batch; evidence pack.

Every run takes the wave's lease in its first task and gives it back in its last, a setup and
teardown pair: two runs of one wave never interleave, and the lease is released whatever failed
in between (a teardown runs once everything before it is done, like ``all_done``), while a failed
task still fails the run (a plain ``all_done`` leaf would mark it successful).

The tasks that bulk-write a core (rehearse, load_wave, rollback) run in the core write pool
(etl/airflow_pools.py). A wave's tasks read several legacy sources, one system after another
under each system's lease, so they take no single source's pool: the lease bounds those reads.

Thin by design: each task is one call into ``etl.cutover``; nothing heavy is imported at module
level. XCom carries counts, ids, criteria and packs' keys under the storage root, never patient
data nor a worker's path.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import TYPE_CHECKING, NamedTuple

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import DAG, Param, XComArg, dag, get_current_context, task
from airflow.sdk.execution_time.hitl import HITLUser

from etl.airflow_lineage import with_column_lineage
from etl.cutover.airflow_hitl import APPROVE, REJECT, approval_task_id
from etl.cutover.plan import PLAN_FILE, Wave, load_plan
from etl.dag_names import (
    CORE_WRITE_POOL,
    MAPPINGS_DIR,
    ROLLBACK_DAG_ID,
    core_asset,
    cutover_dag_id,
)

if TYPE_CHECKING:
    from airflow.sdk.bases.decorator import Task

# The plan the waves run (etl.settings.Settings.wave_plan; the tasks read the same variable).
PLAN_NAME = os.environ.get("VARDFLYTT_WAVE_PLAN") or PLAN_FILE
# A mappings folder without a plan has no waves; a malformed plan is an import error to fix.
PLAN = load_plan(MAPPINGS_DIR, PLAN_NAME) if (MAPPINGS_DIR / PLAN_NAME).exists() else None
WAVES = PLAN.waves if PLAN else []
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
PHASES = ["rehearsal", "initial", "delta", "final"]
# Every task of a phase's path, in order: choose_phase follows the run's phase and skips the
# others. Each of these tasks hangs off choose_phase, not only a path's first: the paths not taken
# are skipped in one step. Skipped at their first task only, the rest of a path was skipped one
# scheduling pass per task, so the wave's lease (released once every path is done) waited for the
# final path's seven tasks to be skipped in turn after an initial load (a second a pass in
# ``airflow dags test``, a scheduler loop each under the scheduler).
LOAD_PATH = ["load_wave", "reconcile_wave", "load_evidence"]


def phase_paths(roles: list[str]) -> dict[str, list[str]]:
    """The tasks of each phase's path in a wave's DAG whose go/no-go asks ``roles``."""
    final = ["freeze", "load_final_delta", "verify", *(approval_task_id(r) for r in roles)]
    return {
        "rehearsal": ["rehearse"],
        "initial": LOAD_PATH,
        "delta": LOAD_PATH,
        "final": [*final, "record_decision", "cutover_evidence", "export_fhir"],
    }


# Shorter than the wave lease (etl.cutover.ledger.LOCK_LEASE, 12 h): an unanswered go/no-go fails
# the run and releases the wave rather than outliving the lease it was verified under.
RESPONSE_TIMEOUT = dt.timedelta(hours=11)

CUTOVER_PARAMS = {
    "phase": Param(
        "rehearsal",
        type="string",
        enum=PHASES,
        title="Phase",
        description=(
            "rehearsal: into a separate core. initial: full load. delta: changes since the last "
            "load. final: freeze, final delta, verify, go/no-go approval, cut over."
        ),
    ),
    # Nullable, so the form lets it be empty (a type without "null" is required in Airflow 3).
    "as_of_date": Param(
        None,
        type=["null", "string"],
        format="date",
        title="As-of date",
        description="Reference date for date rules (YYYY-MM-DD); empty means the run's date.",
    ),
}


def _run(wave: str) -> dict:
    """This run's wave, phase, as-of date, Airflow run id and who triggered it."""
    from etl.core.audit import triggering_user  # the person, or airflow:<run type>; never "airflow"

    context = get_current_context()
    params, dag_run = context["params"], context["dag_run"]
    return {
        "wave": wave,
        "phase": params.get("phase"),
        "as_of_date": params.get("as_of_date") or dag_run.run_after.date().isoformat(),
        "run_id": dag_run.run_id,
        "actor": triggering_user(dag_run),
    }


def _load_summary(evidence: dict) -> dict:
    batches = evidence["batches"].values()
    return {
        "phase": evidence["phase"],
        "batch_ids": {system: b["batch_id"] for system, b in evidence["batches"].items()},
        "extracted": sum(b["extracted"] for b in batches),
        "loaded": sum(b["loaded"] for b in batches),
        "quarantined": sum(b["quarantined"] for b in batches),
    }


@task
def take_wave_lock(wave: str | None = None) -> dict:
    """The run's first task: hold the wave (from the argument, or the Params form)."""
    from etl.core.database import core_engine
    from etl.cutover import ledger
    from etl.settings import get_settings

    run = _run(wave or get_current_context()["params"]["wave"])
    engine = core_engine(get_settings().resolved_core_url)
    _holder, taken = ledger.acquire_lock(engine, run["wave"], run["run_id"])
    return run | {"lock_taken": taken}


@task
def release_wave_lock(run: dict) -> dict:
    from etl.core.database import core_engine
    from etl.cutover import ledger
    from etl.settings import get_settings

    engine = core_engine(get_settings().resolved_core_url)
    released = ledger.release_lock(engine, run["wave"], run_id=run["run_id"])
    return {"wave": run["wave"], "released": released}


@task
def evidence_pack(run: dict, label: str, outcome: dict | None = None) -> dict:
    from etl.cutover import evidence, waves
    from etl.cutover.airflow_hitl import run_label
    from etl.settings import get_settings

    settings = get_settings()
    criteria = [c.as_dict() for c in waves.evaluate_criteria(settings, run["wave"])]
    pack = evidence.write_pack(
        settings,
        run["wave"],
        run_label(label, run["run_id"]),
        extra={"criteria": criteria, "run_id": run["run_id"], "outcome": outcome},
    )
    return {"wave": run["wave"], "pack": evidence.pack_key(run["wave"], pack.name)}


# A rehearsal's core is its own SQLite file, or its own schema on the core's server.
@task(pool=CORE_WRITE_POOL)
def rehearse(run: dict) -> dict:
    from etl.cutover import rehearsal
    from etl.settings import get_settings

    evidence = rehearsal.rehearse(
        get_settings(),
        run["wave"],
        dt.date.fromisoformat(run["as_of_date"]),
        run["actor"],
        run["run_id"],
    )
    return {
        "rehearsal": evidence["rehearsal"],
        "pack": evidence["pack"],
        "criteria_passed": evidence["criteria_passed"],
        "failed_systems": sorted(evidence["failures"]),
        "changes_since_previous": (evidence["comparison"] or {}).get("changes"),
    }


@task
def reconcile_wave(run: dict, loaded: dict) -> dict:
    from etl.cutover import waves
    from etl.settings import get_settings

    # Each system's batch has just read its whole source: the hash aggregates its promotion
    # kept are compared with the core first, and the source read again only where they
    # differ (a system split by care unit, or whose batch is not its latest promoted one,
    # is read again in full: etl/cutover/reconcile.py).
    results = waves.reconcile_wave(
        get_settings(),
        run["wave"],
        dt.date.fromisoformat(run["as_of_date"]),
        run["run_id"],
        loaded.get("batch_ids") or None,
    )
    return {
        "pairs": len(results),
        "reconciled": sum(r["is_reconciled"] for r in results),
        "mismatched": [
            f"{r['source_system']}/{r['entity']}" for r in results if not r["is_reconciled"]
        ],
    }


@task
def freeze(run: dict) -> dict:
    from etl.cutover.airflow_hitl import freeze_unless_frozen
    from etl.settings import get_settings

    return freeze_unless_frozen(get_settings(), run["wave"], run["actor"], run["run_id"])


@task
def verify(run: dict, loaded: dict) -> dict:
    from etl.cutover.airflow_hitl import verify_for_approval
    from etl.settings import get_settings

    return verify_for_approval(
        get_settings(),
        run["wave"],
        dt.date.fromisoformat(run["as_of_date"]),
        run["actor"],
        run["run_id"],
    )


@task
def record_decision(run: dict, responses: dict) -> dict:
    from etl.cutover.airflow_hitl import record_decision
    from etl.settings import get_settings

    return record_decision(get_settings(), run["wave"], responses, run["run_id"])


# The wave's rows as FHIR R4 NDJSON once it is cut over (etl/export/after_cutover.py).
@task
def export_fhir(run: dict, decided: dict) -> dict:
    from etl.export.after_cutover import export_cut_over_wave
    from etl.settings import get_settings

    return export_cut_over_wave(get_settings(), run["wave"], decided)


def build_cutover_dag(wave: Wave) -> DAG:
    paths = phase_paths(list(wave.criteria.approvers))

    @task.branch
    def choose_phase(run: dict) -> list[str]:
        return paths[run["phase"]]

    # Loads update the core assets, so identity resolution (vardflytt_identity.py) follows.
    @task(outlets=[core_asset(system) for system in wave.systems], pool=CORE_WRITE_POOL)
    def load_wave(run: dict, phase: str | None = None) -> dict:
        from etl.cutover import waves
        from etl.settings import get_settings

        evidence = waves.load_wave(
            get_settings(),
            run["wave"],
            phase or run["phase"],
            dt.date.fromisoformat(run["as_of_date"]),
            run["actor"],
            run["run_id"],
        )
        return _load_summary(evidence)

    @dag(
        dag_id=cutover_dag_id(wave.wave),
        description=f"Cutover of wave {wave.wave}: {wave.title}",
        schedule=None,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        tags=["vardflytt", "cutover", wave.wave],
        params=CUTOVER_PARAMS,
        doc_md=_cutover_doc(wave),
    )
    def cutover() -> None:
        run = take_wave_lock(wave.wave)
        branch = choose_phase(run)

        rehearsed = rehearse(run)

        loaded = with_column_lineage(load_wave(run), wave.systems)
        reconciled = reconcile_wave(run, loaded)
        load_evidence = evidence_pack.override(task_id="load_evidence")(run, "load", reconciled)

        final = _final_path(wave, run, load_wave)

        branch >> [
            rehearsed,
            loaded,
            reconciled,
            load_evidence,
            final.frozen,
            final.final_delta,
            final.verified,
        ]
        branch >> [*final.go_no_go.values(), final.decided, final.cutover_evidence, final.exported]
        released = release_wave_lock(run)
        [rehearsed, load_evidence, final.exported] >> released.as_teardown(setups=run)

    return cutover()


def _cutover_doc(wave: Wave) -> str:
    """The page of a wave's cutover DAG: its systems and window, how to run its phases, and who
    answers its go/no-go."""
    return (
        f"Cutover of **{wave.wave}** ({wave.title}): systems {', '.join(wave.systems)}; planned "
        f"{wave.window.start} to {wave.window.end}. Run the phases in order: rehearsal, "
        "initial, delta (as often as needed), final. The final run waits for a go/no-go "
        f"from each of {', '.join(wave.criteria.approvers)}, answered by the users the plan lists "
        f"(Required Actions, or `vardflytt cutover approve {wave.wave} --role ROLE --user "
        "USER`)."
    )


class _FinalPath(NamedTuple):
    """The tasks of the final phase's path, in the order they are made."""

    frozen: XComArg
    final_delta: XComArg
    verified: XComArg
    go_no_go: dict[str, HITLOperator]
    decided: XComArg
    cutover_evidence: XComArg
    exported: XComArg


def _final_path(wave: Wave, run: XComArg, load_wave: Task[..., dict]) -> _FinalPath:
    """Make the final phase's tasks, inside the wave's DAG: freeze, the final delta, verify,
    one go/no-go per approving role, the decision, its evidence pack and the FHIR export."""
    frozen = freeze(run)
    final_delta = with_column_lineage(
        load_wave.override(task_id="load_final_delta")(run, "final"), wave.systems
    )
    frozen >> final_delta
    verified = verify(run, final_delta)
    go_no_go = _go_no_go_approvals(wave)
    verified >> list(go_no_go.values())
    decided = record_decision(run, {role: approval.output for role, approval in go_no_go.items()})
    cutover_evidence = evidence_pack.override(task_id="cutover_evidence")(run, "cutover", decided)
    exported = export_fhir(run, decided)
    cutover_evidence >> exported
    return _FinalPath(frozen, final_delta, verified, go_no_go, decided, cutover_evidence, exported)


def _go_no_go_approvals(wave: Wave) -> dict[str, HITLOperator]:
    """One go/no-go per approving role, made inside the wave's DAG and assigned to that role's
    Airflow users: Airflow refuses anyone else's answer."""
    return {
        role: HITLOperator(
            task_id=approval_task_id(role),
            subject=f"Go/no-go as {role}: cut over wave {wave.wave} ({wave.title})?",
            body="{{ ti.xcom_pull(task_ids='verify')['body'] }}",
            options=[APPROVE, REJECT],
            params={
                "note": Param(
                    None,
                    type=["null", "string"],
                    title="Note",
                    description="Why: recorded with the decision in the cutover ledger.",
                ),
            },
            assigned_users=[HITLUser(id=user, name=user) for user in accounts.airflow_users],
            response_timeout=RESPONSE_TIMEOUT,
        )
        for role, accounts in wave.criteria.approvers.items()
    }


def build_rollback_dag(wave_names: list[str]):
    params = {
        "wave": Param(
            wave_names[0],
            type="string",
            enum=wave_names,
            title="Wave",
            description="The wave to roll back (all its promoted batches, newest first).",
        ),
        "batch_id": Param(
            None,
            type=["null", "string"],
            title="Batch id",
            description="Leave empty to roll back the whole wave; give one to undo only it.",
        ),
        "cascade": Param(
            False,
            type="boolean",
            title="Cascade",
            description="Also roll back later batches that changed the same rows, newest first.",
        ),
    }

    @task(pool=CORE_WRITE_POOL)
    def rollback(run: dict) -> dict:
        from etl.cutover import wave_rollback
        from etl.settings import get_settings

        params = get_current_context()["params"]
        settings, cascade = get_settings(), bool(params["cascade"])
        if params["batch_id"]:
            undone = wave_rollback.rollback_one_batch(
                settings, params["batch_id"], cascade, run["run_id"], run["actor"]
            )
            return {"batch_id": params["batch_id"], "rolled_back_batches": undone}
        evidence = wave_rollback.rollback_wave(
            settings, run["wave"], run["actor"], run["run_id"], cascade
        )
        return {
            "rolled_back_batches": evidence["rolled_back_batches"],
            "checksum_equal_to_before_wave": evidence["checksum_equal_to_before_wave"],
        }

    @dag(
        dag_id=ROLLBACK_DAG_ID,
        description="Roll back a wave or one batch; the core returns to its state before it",
        schedule=None,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        tags=["vardflytt", "cutover", "rollback"],
        params=params,
        doc_md=(
            "Undo a wave (every promoted batch, newest first, checked by checksums against the "
            "core before the wave) or one batch. Later batches that changed the same rows are "
            "refused unless **cascade** is set. Legacy sources are never written to."
        ),
    )
    def roll_back():
        run = take_wave_lock()
        undone = rollback(run)
        written = evidence_pack.override(task_id="rollback_evidence")(run, "rollback", undone)
        released = release_wave_lock(run)
        written >> released.as_teardown(setups=run)

    return roll_back()


for _wave in WAVES:
    globals()[cutover_dag_id(_wave.wave)] = build_cutover_dag(_wave)
if WAVES:
    vardflytt_rollback = build_rollback_dag([w.wave for w in WAVES])
