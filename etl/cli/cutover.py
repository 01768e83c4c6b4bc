"""``vardflytt cutover``: staged, reversible cutovers by wave."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.table import Table

from etl.cli.common import console, expected_stop, runs_stages_here
from etl.settings import get_settings

cutover_app = typer.Typer(
    help="Staged, reversible cutovers by wave (plan in mappings/waves.yaml).", no_args_is_help=True
)
AsOf = Annotated[str | None, typer.Option(help="As-of date YYYY-MM-DD (default: today).")]
WavePlanFile = Annotated[
    str | None,
    typer.Option(
        "--plan",
        help="The plan the waves run, a file in the mappings folder (default: "
        "$VARDFLYTT_WAVE_PLAN, else waves.yaml; e.g. waves_by_unit.yaml).",
    ),
]


def _settings(plan: str | None = None):
    """The settings, running the plan ``--plan`` names (a file of the mappings folder)."""
    from pathlib import Path

    settings = get_settings()
    if not plan:
        return settings
    path = Path(plan)
    elsewhere = path.resolve().parent != settings.mappings_dir.resolve()
    if len(path.parts) > 1 and path.exists() and elsewhere:
        console.print(f"[red]--plan {plan}: a plan lives in {settings.mappings_dir}[/red]")
        raise typer.Exit(2)
    return settings.model_copy(update={"wave_plan": path.name})


def _actor() -> str:
    """Who runs a cutover command: the signed-in OS user (etl.core.audit), never a typed name.
    Approvals are the decisions and are signed in to Airflow (``cutover approve``)."""
    from etl.core.audit import current_user

    return current_user()


def _as_of(value: str | None) -> dt.date:
    return dt.date.fromisoformat(value) if value else dt.date.today()


def _cutover_call(function, *args, **kwargs):
    from etl.cutover.ledger import LedgerError, WaveLockedError
    from etl.cutover.plan import PlanError
    from etl.load.promote import PromotionError
    from etl.validate.gate import DataQualityGateError

    try:
        return function(*args, **kwargs)
    except (LedgerError, WaveLockedError, PlanError, PromotionError, DataQualityGateError) as error:
        console.print(f"[red]{error}[/red]")
        stop = expected_stop(error)
        raise typer.Exit(stop[0] if stop else 1) from error


@cutover_app.command("status")
def cutover_status(
    wave: Annotated[str | None, typer.Argument()] = None, plan_file: WavePlanFile = None
) -> None:
    """Every wave's state, window, batches and lock; with a wave, its ledger and criteria."""
    from etl.core.database import core_engine
    from etl.cutover import ledger, waves

    settings = _settings(plan_file)
    rows = _cutover_call(waves.wave_status, settings)
    table = Table(title="cutover waves")
    for column in ("wave", "state", "systems", "planned", "first load", "batches", "plan", "lock"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["wave"],
            row["state"],
            str(row["systems"]),
            row["planned"],
            row["first_load"] or "-",
            str(row["promoted_batches"]),
            row["plan"],
            row["lock"] or "-",
        )
    console.print(table)
    if not wave:
        return
    with core_engine(settings.resolved_core_url).connect() as connection:
        history = ledger.transitions(connection, wave)
        approvals = ledger.approvals(connection, wave)
        plan = _cutover_call(waves.reviewed_plan_status, connection, settings, wave)
    _print_reviewed_plan(wave, plan)
    ledger_table = Table(title=f"{wave}: ledger")
    for column in ("at", "from", "to", "by", "run", "mappings"):
        ledger_table.add_column(column)
    for t in history:
        ledger_table.add_row(
            str(t["at"])[:19],
            t["from_state"],
            t["to_state"],
            t["actor"],
            t["run_id"] or "-",
            t["mapping_version"] or "-",
        )
    console.print(ledger_table)
    for a in approvals:
        current = "" if a["is_current"] else " (superseded)"
        console.print(
            f"approval: {a['role']} {a['decision']} by {a['approver']} via {a['channel']}{current}"
        )
    criteria = Table(title=f"{wave}: go/no-go criteria")
    for column in ("criterion", "result", "detail"):
        criteria.add_column(column)
    for c in waves.evaluate_criteria(settings, wave):
        criteria.add_row(c.name, "[green]pass[/green]" if c.passed else "[red]fail[/red]", c.detail)
    console.print(criteria)


def _print_reviewed_plan(wave: str, plan: dict) -> None:
    if plan["fingerprint"]:
        console.print(
            f"{wave}: reviewed plan {plan['fingerprint'][:12]} ({len(plan['files'])} files), "
            f"recorded at {plan['recorded_event']} on {plan['recorded_at'][:16]} by "
            f"{plan['recorded_by']} (mappings {plan['mapping_version'] or '-'})"
        )
    else:
        console.print(
            f"[red]{wave}: no reviewed plan recorded[/red] (taken at the first rehearsal or load; "
            f"`vardflytt cutover replan {wave} --reason ...` records one)"
        )
    if plan["matches"]:
        console.print("working copy: the reviewed plan")
    elif plan["difference"]:
        changed = "; ".join(f"{k}: {', '.join(v)}" for k, v in plan["difference"].items() if v)
        console.print(f"[red]working copy differs from the reviewed plan[/red]: {changed}")
    if plan["uncommitted"]:
        console.print(f"[red]uncommitted[/red]: {', '.join(plan['uncommitted'])}")
    changes = Table(title=f"{wave}: plan changes")
    for column in ("at", "event", "by", "fingerprint", "reason", "files"):
        changes.add_column(column)
    for change in plan["changes"]:
        files = "; ".join(f"{k}: {', '.join(v)}" for k, v in (change["files"] or {}).items() if v)
        changes.add_row(
            change["at"][:19],
            change["event"],
            change["by"],
            change["fingerprint"][:12],
            change["reason"] or "-",
            files or "-",
        )
    console.print(changes)


@cutover_app.command("plan")
def cutover_plan(
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Prove the plan partitions the estate's rows: each row of every system in "
            "exactly one wave (extract and transform into a scratch folder, nothing loaded).",
        ),
    ] = False,
    plan_file: Annotated[
        str, typer.Option("--plan", help="The plan file in the mappings folder.")
    ] = "waves.yaml",
    system: Annotated[
        list[str] | None, typer.Option("--system", help="Check only these systems.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The report as JSON on stdout.")] = False,
    as_of: AsOf = None,
) -> None:
    """The wave plan: its waves, what each moves whole or by unit; --check proves the partition
    (counts per wave, system and entity; exit 1 with the rows in no wave or in several)."""
    import json

    from etl.cli.common import checked_catalog
    from etl.cutover.plan import load_plan

    settings = get_settings()
    plan = _cutover_call(load_plan, settings.mappings_dir, plan_file)
    if not check:
        _print_plan(plan, plan_file, as_json)
        return
    from etl.cutover.scope import check_partition

    catalog = checked_catalog(settings)
    unknown = [name for name in system or [] if name not in catalog.systems]
    if unknown:
        console.print(f"[red]no system {unknown} in the mappings[/red]")
        raise typer.Exit(2)
    progress = (lambda name: None) if as_json else (lambda name: console.print(f"checking {name}"))
    report = check_partition(
        plan, catalog, settings, _as_of(as_of), system or None, progress, plan_file
    )
    if as_json:
        typer.echo(json.dumps(report.model_dump() | {"is_partition": report.is_partition}))
    else:
        _print_partition(report)
    if not report.is_partition:
        raise typer.Exit(1)


def _print_plan(plan, plan_file: str, as_json: bool) -> None:
    import json

    waves = [
        {
            "wave": wave.wave,
            "systems": wave.systems,
            "by_unit": wave.by_unit,
            "care_units": len(wave.units),
            "unscoped": wave.unscoped,
            "window": f"{wave.window.start} - {wave.window.end}",
        }
        for wave in plan.waves
    ]
    if as_json:
        typer.echo(json.dumps({"plan_file": plan_file, "patients": plan.patients, "waves": waves}))
        return
    table = Table(title=f"{plan_file} ({plan.digest}); patients: {plan.patients or '-'}")
    for column in ("wave", "whole systems", "by unit", "units", "unscoped", "window"):
        table.add_column(column)
    for wave in waves:
        table.add_row(
            wave["wave"],
            ", ".join(wave["systems"]) or "-",
            ", ".join(wave["by_unit"]) or "-",
            str(wave["care_units"] or "-"),
            ", ".join(wave["unscoped"]) or "-",
            wave["window"],
        )
    console.print(table)


def _print_partition(report) -> None:
    table = Table(title=f"{report.plan_file}: rows per wave, system and entity")
    for column in ("wave", "system", "entity", "rows", "why"):
        table.add_column(column)
    reasons: dict[tuple[str, str, str], list[str]] = {}
    for count in report.counts:
        reasons.setdefault((count.wave, count.system, count.entity), []).append(
            f"{count.reason} {count.rows}"
        )
    order = {name: index for index, name in enumerate(report.waves)}
    for (wave, system, entity), rows in sorted(
        report.rows_by().items(), key=lambda item: (order[item[0][0]], item[0][1:])
    ):
        table.add_row(wave, system, entity, str(rows), ", ".join(reasons[(wave, system, entity)]))
    console.print(table)
    totals = ", ".join(f"{wave} {rows}" for wave, rows in report.rows_per_wave().items())
    console.print(f"rows per wave: {totals}")
    if report.is_partition:
        console.print(
            f"[green]partition holds[/green]: every row of {len(report.systems)} system(s) is in "
            "exactly one wave"
        )
        return
    problems = Table(title="[red]rows in no wave or in several[/red]")
    for column in ("system", "entity", "problem", "rows", "waves", "first row keys"):
        problems.add_column(column)
    for problem in report.problems:
        problems.add_row(
            problem.system,
            problem.entity,
            problem.problem,
            str(problem.rows),
            ", ".join(problem.waves) or "-",
            ", ".join(problem.keys),
        )
    console.print(problems)


@cutover_app.command("replan")
def cutover_replan(
    wave: str,
    reason: Annotated[str, typer.Option(help="What changed in the plan and why.")],
) -> None:
    """Record a plan change: the committed working copy becomes the wave's reviewed plan.

    Names the files that changed, records who (the signed-in user) and why, and voids every
    earlier approval; verify and commit then hold to the new plan."""
    from etl.cutover import waves

    record = _cutover_call(waves.replan, get_settings(), wave, reason)
    files = "; ".join(f"{k}: {', '.join(v)}" for k, v in (record["changes"] or {}).items() if v)
    console.print(
        f"plan change recorded for {wave} by {record['actor']}: fingerprint "
        f"{record['digest'][:12]}" + (f" ({files})" if files else "")
    )
    if record["approvals_voided"]:
        console.print(f"{record['approvals_voided']} earlier approval(s) voided")
    console.print(f"verify the wave again: `vardflytt cutover verify {wave}`")


# `cutover load` and `cutover rehearse`: the wave's systems in worker processes.
Jobs = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Worker processes: the wave's systems, and each system's independent entities, "
        "at once (default VARDFLYTT_JOBS, else the CPUs, 1 on a SQLite core; 1: one system "
        "after another in this process).",
    ),
]


@cutover_app.command("rehearse")
def cutover_rehearse(
    wave: str, as_of: AsOf = None, plan_file: WavePlanFile = None, jobs: Jobs = None
) -> None:
    """Run the wave into a separate core; evidence pack; compare with the previous rehearsal."""
    from etl.cutover import rehearsal
    from etl.parallel import default_jobs

    settings = _settings(plan_file)
    jobs = jobs or default_jobs(settings)
    runs_stages_here(jobs)
    result = _cutover_call(
        rehearsal.rehearse,
        settings,
        wave,
        _as_of(as_of),
        _actor(),
        on_system=lambda s: console.print(f"rehearsing {s}"),
        jobs=jobs,
    )
    console.print(
        f"rehearsal {result['rehearsal']}: criteria "
        f"{'pass' if result['criteria_passed'] else 'FAIL'}; pack {result['pack']}"
    )
    if result["comparison"]:
        console.print(f"compared with the previous rehearsal: {result['comparison']}")


@cutover_app.command("load")
def cutover_load(
    wave: str,
    phase: Annotated[str, typer.Option(help="initial, delta or final.")] = "initial",
    as_of: AsOf = None,
    plan_file: WavePlanFile = None,
    jobs: Jobs = None,
) -> None:
    """Load the wave's systems into the core: initial (full), delta, or final delta (frozen).

    A wave by care unit loads only its slice of each split system; the other waves' rows are
    accounted as wave_scope, changes to a cut-over wave's rows become conflicts."""
    from etl.cutover import waves
    from etl.parallel import default_jobs

    settings = _settings(plan_file)
    jobs = jobs or default_jobs(settings)
    runs_stages_here(jobs)
    evidence = _cutover_call(
        waves.load_wave,
        settings,
        wave,
        phase,
        _as_of(as_of),
        _actor(),
        on_system=lambda s: console.print(f"loading {s} ({phase})"),
        jobs=jobs,
    )
    for system, batch in evidence["batches"].items():
        console.print(
            f"{system}: batch {batch['batch_id']}, extracted {batch['extracted']}, "
            f"loaded {batch['loaded']}, quarantined {batch['quarantined']}"
            + (f", other waves' rows {batch['wave_scope']}" if batch.get("wave_scope") else "")
            + (f", conflicts {batch['conflicted']}" if batch.get("conflicted") else "")
        )


@cutover_app.command("freeze")
def cutover_freeze(wave: str, plan_file: WavePlanFile = None) -> None:
    """Record that the wave's legacy systems are read-only from now (before the final delta)."""
    from etl.cutover import waves

    _cutover_call(waves.freeze, _settings(plan_file), wave, _actor())
    console.print(f"wave {wave} frozen")


@cutover_app.command("verify")
def cutover_verify(wave: str, as_of: AsOf = None, plan_file: WavePlanFile = None) -> None:
    """Reconcile source against core and evaluate the go/no-go criteria."""
    from etl.cutover import waves

    results = _cutover_call(waves.verify, _settings(plan_file), wave, _as_of(as_of), _actor())
    for c in results:
        console.print(f"pass  {c.name}: {c.detail}")
    console.print(f"wave {wave} verified; each approving role may now approve it")


@cutover_app.command("approve")
def cutover_approve(
    wave: str,
    role: Annotated[str, typer.Option(help="The approving role you answer for.")],
    user: Annotated[
        str, typer.Option(help="Your Airflow user name (listed for the role in waves.yaml).")
    ],
    reject: Annotated[bool, typer.Option(help="Record a rejection instead.")] = False,
    note: Annotated[str | None, typer.Option(help="Why.")] = None,
    plan_file: WavePlanFile = None,
) -> None:
    """Answer a role's go (or no-go) for a verified wave, signed in to Airflow as yourself.

    Signs in to Airflow's api-server ($VARDFLYTT_AIRFLOW_URL) with your password (prompted, or
    $VARDFLYTT_AIRFLOW_PASSWORD for automation) and answers the role's go/no-go task of the
    wave's waiting cutover run with your own token: Airflow refuses a user not assigned to it.
    If no run waits, the decision is recorded in the ledger for the user Airflow signed in."""
    import os

    from etl.cutover import airflow_hitl, waves

    settings = _settings(plan_file)
    decision = "reject" if reject else "approve"
    password = os.environ.get("VARDFLYTT_AIRFLOW_PASSWORD") or typer.prompt(
        f"Airflow password for {user}", hide_input=True
    )
    answered = _cutover_call(
        airflow_hitl.respond_to_waiting_run, settings, wave, decision, role, user, password, note
    )
    if answered["waiting"]:
        console.print(
            f"answered the {role} go/no-go of Airflow run {answered['run_id']} "
            f"({answered['dag_id']}): {decision} by {answered['responded_by']}; the run records "
            "it in the ledger"
            + (" and cuts the wave over once every role approved" if decision == "approve" else "")
        )
        return
    record = _cutover_call(
        waves.approve, settings, wave, answered["user"], role, decision, "cli", None, note
    )
    console.print(
        f"{record['role']} {record['decision']} recorded for {wave} by {record['approver']} "
        "(signed in to Airflow)"
    )


@cutover_app.command("commit")
def cutover_commit(wave: str, plan_file: WavePlanFile = None) -> None:
    """Cut over: the wave goes live (needs a verified wave and every approver's approval)."""
    from etl.cutover import waves

    _cutover_call(waves.cut_over, _settings(plan_file), wave, _actor())
    console.print(f"wave {wave} is cut over")


@cutover_app.command("data-docs")
def cutover_data_docs(
    wave: str,
    force: Annotated[
        bool, typer.Option(help="Build them again also where they were built.")
    ] = False,
    plan_file: WavePlanFile = None,
) -> None:
    """Build the Data Docs of the wave's final deltas: they are left out of the freeze window and
    built after the go/no-go decision (commit, rejection or rollback); this builds those still
    missing, e.g. after that build failed (its error is in the log)."""
    from etl.cutover import waves

    settings = _settings(plan_file)
    _cutover_call(waves.wave_of, settings, wave)  # a name not in the plan is an error, not "none"
    outcome = _cutover_call(waves.build_final_data_docs, settings, wave, force)
    for batch_id, result in outcome.items():
        console.print(f"{batch_id}: {result}")
    if not outcome:
        console.print(f"wave {wave} has no final delta: no Data Docs wait for a decision")
    if "failed" in outcome.values():
        console.print("[red]some Data Docs could not be built: see the log above[/red]")
        raise typer.Exit(1)


@cutover_app.command("rollback")
def cutover_rollback(
    wave: Annotated[str | None, typer.Argument(help="Roll back the whole wave.")] = None,
    batch: Annotated[str | None, typer.Option(help="Roll back one batch instead.")] = None,
    cascade: Annotated[
        bool,
        typer.Option(
            help="Also roll back first, newest first, what depends on it: later batches that "
            "changed the same rows and, for the patients wave (or one of its batches), the unit "
            "waves whose rows point at its patients. One transaction: all or nothing."
        ),
    ] = False,
    plan_file: WavePlanFile = None,
) -> None:
    """Undo a wave (every promoted batch, newest first) or one batch; checksums prove it (for a
    wave by care unit: its slice, and every row outside it; for a batch: every row it did not
    write) and the ledger records who undid what."""
    from etl.cutover import wave_rollback

    settings = _settings(plan_file)
    if bool(wave) == bool(batch):
        console.print("[red]give either a wave or --batch[/red]")
        raise typer.Exit(2)
    if batch:
        done = _cutover_call(wave_rollback.rollback_batch, settings, batch, cascade, None, _actor())
        undone = done["rolled_back_batches"]
        console.print(f"rolled back: {', '.join(undone) or 'nothing (already rolled back)'}")
        _print_cascaded(done)
        if "outside_unchanged" in done:
            console.print(
                f"wave {done['wave']}: rows the batch did not write unchanged: "
                f"{done['outside_unchanged']} (recorded in the ledger)"
            )
        return
    evidence = _cutover_call(wave_rollback.rollback_wave, settings, wave, _actor(), None, cascade)
    _print_cascaded(evidence)
    console.print(
        f"rolled back {len(evidence['rolled_back_batches'])} batches of {wave}; core "
        f"rows equal to before the wave: {evidence['checksum_equal_to_before_wave']}"
        + (
            f"; rows outside its slice unchanged: {evidence['outside_unchanged']}"
            if "outside_unchanged" in evidence
            else ""
        )
    )


def _print_cascaded(evidence: dict) -> None:
    for step in evidence.get("cascaded_waves", []):
        console.print(
            f"cascade: rolled back wave {step['wave']} (was {step.get('from_state')}; "
            f"{len(step['rolled_back_batches'])} batches, proved and recorded)"
        )


@cutover_app.command("evidence")
def cutover_evidence(
    wave: str,
    label: Annotated[str | None, typer.Option()] = None,
    plan_file: WavePlanFile = None,
) -> None:
    """Write the wave's evidence pack (JSON, Markdown, checksums, zip) for sign-off."""
    from etl.cutover import evidence, waves

    settings = _settings(plan_file)
    criteria = [c.as_dict() for c in _cutover_call(waves.evaluate_criteria, settings, wave)]
    pack = evidence.write_pack(
        settings,
        wave,
        label or dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S"),
        extra={"criteria": criteria},
    )
    console.print(f"evidence pack: {pack} (and {pack}.zip)")


@cutover_app.command("unlock")
def cutover_unlock(wave: str) -> None:
    """Release a dead run's lock on a wave (recorded in the ledger's lock history)."""
    from etl.core.database import core_engine
    from etl.cutover import ledger

    engine = core_engine(get_settings().resolved_core_url)
    holder = ledger.lock_holder(engine, wave)
    if holder is None:
        console.print(f"wave {wave} is not locked")
        return
    ledger.release_lock(engine, wave)
    console.print(f"released {wave}, held by {holder.holder}, by {_actor()}")


@cutover_app.command("conflicts")
def cutover_conflicts(
    wave: Annotated[str | None, typer.Option(help="Only this cut-over wave's conflicts.")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Resolved ones too.")] = False,
    resolve: Annotated[str | None, typer.Option(help="Resolve this conflict id.")] = None,
    note: Annotated[str | None, typer.Option(help="What was done (with --resolve).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Legacy changes to rows of cut-over waves, held for the stewards (never applied).

    Lists row ids, source keys and the wave that carried the change, never values; with
    --resolve ID --note "...", a steward closes one."""
    import json

    from etl.core.database import core_engine
    from etl.cutover import slices

    settings = get_settings()
    if resolve:
        done = _cutover_call(slices.resolve_conflict, settings, resolve, _actor(), note or "")
        console.print(f"conflict {done['conflict_id']} resolved by {done['resolved_by']}")
        if done["others_open"]:
            console.print(
                f"the same row has {done['others_open']} other open conflict(s) (later changes "
                "after go-live); see `vardflytt cutover conflicts`"
            )
        return
    found = slices.list_conflicts(settings, wave, None if show_all else slices.OPEN)
    with core_engine(settings.resolved_core_url).connect() as connection:
        per_wave = slices.conflicts_per_wave(connection)
    if wave:
        per_wave = {w: n for w, n in per_wave.items() if w == wave}
    if as_json:
        fields = [
            *("conflict_id", "wave", "detected_in_wave", "batch_id", "source_system"),
            *("entity", "row_id", "source_key", "change", "state", "detected_at"),
        ]
        rows = [
            {
                **{f: str(c[f]) if c[f] is not None else None for f in fields},
                "changes": int(c["changes"]),
            }
            for c in found
        ]
        typer.echo(json.dumps({"per_wave": per_wave, "conflicts": rows}))
        return
    table = Table(title="conflicts: legacy changes to cut-over waves' rows")
    columns = ("id", "wave", "found in", "system", "entity", "row id", "change", "changes", "state")
    for column in columns:
        table.add_column(column)
    for c in found:
        table.add_row(
            c["conflict_id"][:12],
            c["wave"],
            c["detected_in_wave"] or "-",
            c["source_system"],
            c["entity"],
            c["row_id"][:16],
            c["change"],
            str(c["changes"]),
            c["state"],
        )
    console.print(table)
    console.print('"changes": the open conflicts of the same row (one per change after go-live)')
    console.print(f"open per wave: {per_wave or 'none'}")
