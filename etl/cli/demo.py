"""``vardflytt demo``: a demo estate, migrated and cut over in waves, with Airflow."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from etl.airflow_main import AIRFLOW_COMMAND
from etl.cli.common import console
from etl.cli.cutover import _actor, _cutover_call
from etl.cli.dq import dq_report
from etl.cli.estate import estate_generate
from etl.cli.pipeline import status
from etl.cli.reports import docs
from etl.core.redact import redact
from etl.settings import Settings, get_settings


def demo(
    patients: Annotated[int, typer.Option(help="Synthetic people in the demo estate.")] = 3000,
    seed: Annotated[int, typer.Option()] = 42,
    systems: Annotated[
        str, typer.Option(help="Comma-separated source systems, or 'all' for every system.")
    ] = "all",
    cutover: Annotated[
        bool,
        typer.Option(
            help="With --systems all: every wave of mappings/waves.yaml goes through its cutover "
            "DAG in plan order (rehearsal, initial load, final delta, verify); each role's demo "
            "approver, signed in to Airflow's api-server, approves the go/no-go of every wave "
            "but the last, which is left verified, waiting for you. --no-cutover: every system "
            "through vardflytt_migrate instead."
        ),
    ] = True,
    approve_last_wave: Annotated[
        bool,
        typer.Option(help="Have the demo approvers answer the last wave's go/no-go too."),
    ] = False,
    plan_file: Annotated[
        str | None,
        typer.Option(
            "--plan",
            help="The cutover plan, a file of the mappings folder (default: $VARDFLYTT_WAVE_PLAN, "
            "else waves.yaml). A plan by care unit (waves_by_unit.yaml): the patients wave is "
            "loaded, the first unit wave cut over, and the other waves loaded and left "
            "flowing, as a region between go-lives.",
        ),
    ] = None,
) -> None:
    """Generate the estate, migrate it through Airflow, resolve identities, print the accounting.

    Run again, it first resets the previous demo's state under VARDFLYTT_HOME (etl.demo_home),
    so every run starts from the same empty home; it refuses a home no demo wrote."""
    import os

    from etl.demo_home import DemoHomeError, prepare_demo_home

    if plan_file:
        # Here and in every Airflow task the demo starts (airflow_environment copies it).
        os.environ["VARDFLYTT_WAVE_PLAN"] = Path(plan_file).name
    settings = get_settings()
    chosen, plan_waves = _demo_selection(settings, systems, cutover)
    try:
        preparation = prepare_demo_home(settings)
    except DemoHomeError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from error
    console.print(preparation.describe())
    estate_generate(patients=patients, seed=seed, out=None, elvis_url=None)
    _run_through_airflow(settings, chosen, plan_waves, approve_last_wave)
    console.rule("result")
    docs(out=None)
    dq_report(run_id=None, out=None, batch=None)
    status(batch=None, check=True)
    _check_wave_exports(settings, plan_waves)
    _print_demo_next_steps(settings, plan_waves)


def _run_through_airflow(
    settings: Settings, chosen: list[str], plan_waves: list[str], approve_last_wave: bool
) -> None:
    """Airflow's metadata database and pools, then ``vardflytt_migrate`` over ``chosen``, each
    wave of ``plan_waves`` through its cutover DAG, and identity resolution: each a DAG run of
    ``airflow dags test``, its output in the home's logs folder."""
    import json

    from etl import airflow_pools
    from etl.airflow_env import airflow_environment

    environment = airflow_environment(settings)
    airflow_bin = AIRFLOW_COMMAND  # etl/airflow_main.py
    logs = settings.home / "logs"
    console.print(f"Airflow home: {settings.airflow_home}")
    _checked([*airflow_bin, "db", "migrate"], environment, "airflow db migrate")
    airflow_pools.sync(environment, settings, console.print)
    if chosen:  # systems in no wave (every one, with --no-cutover or --systems)
        console.rule(f"airflow dags test vardflytt_migrate ({len(chosen)} systems)")
        conf = json.dumps({"systems": chosen})
        _checked(
            [*airflow_bin, "dags", "test", "vardflytt_migrate", "--conf", conf],
            environment,
            "the vardflytt_migrate DAG run",
            log=logs / "demo_migrate.log",
        )
    if plan_waves:
        _demo_waves(plan_waves, environment, airflow_bin, logs, approve_last_wave)
    console.rule("airflow dags test identity_resolution")
    _checked(
        [*airflow_bin, "dags", "test", "identity_resolution"],
        environment,
        "the identity_resolution DAG run",
        log=logs / "demo_identity.log",
    )


def _demo_selection(settings: Settings, systems: str, cutover: bool) -> tuple[list[str], list[str]]:
    """The systems the demo migrates through ``vardflytt_migrate`` (those in no wave of the plan,
    with ``cutover``) and the plan's waves in order (none without ``cutover`` or with a chosen
    list of systems); an unknown system ends the command (exit 2)."""
    from etl.layout import list_system_entities

    known = list(list_system_entities(settings.mappings_dir))
    chosen = known if systems == "all" else [s.strip() for s in systems.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        console.print(f"[red]unknown systems {unknown}; known: {', '.join(known)}[/red]")
        raise typer.Exit(2)
    if not (cutover and systems == "all"):
        return chosen, []
    from etl.cutover.plan import load_plan

    plan = load_plan(settings.mappings_dir, settings.wave_plan)
    in_waves = {system for wave in plan.waves for system in plan.systems_of(wave.wave)}
    return [s for s in chosen if s not in in_waves], [wave.wave for wave in plan.waves]


def _check_wave_exports(settings, waves: list[str]) -> None:
    """The cut-over waves' FHIR exports (the cutover DAG's last task), validated as a receiving
    system would read them; the demo fails if one does not validate."""
    from etl.export.after_cutover import export_folder
    from etl.export.check import check_export

    exported = [w for w in waves if (export_folder(settings, w) / "manifest.json").exists()]
    if not exported:
        return
    console.rule("FHIR R4 export of the cut-over waves")
    failed = False
    for wave in exported:
        folder = export_folder(settings, wave)
        result = check_export(folder)
        console.print(f"{wave}: {folder}: {result.describe()}", highlight=False, soft_wrap=True)
        failed = failed or not result.ok
    if failed:
        console.print("[red]an export does not validate: `vardflytt export check DIR`[/red]")
        raise typer.Exit(1)


def _print_demo_next_steps(settings, waves: list[str]) -> None:
    """Where to look next, with the exact commands (run from the project folder): each wave's
    state as the ledger has it and, for a wave at its go/no-go, how to answer it."""
    from etl.airflow_env import ADMIN_USER, passwords_file
    from etl.demo_waves import describe, wave_outcomes

    console.rule("where to look next")
    if waves:
        console.print(f"cutover waves (mappings/{settings.wave_plan}), as the ledger has them:")
        for outcome in wave_outcomes(settings, waves):
            for line in describe(outcome, settings):
                console.print(line, highlight=False, soft_wrap=True)
    console.print(f"core database: {redact(settings.resolved_core_url)}")
    console.print(
        "dashboard: .venv/bin/vardflytt dashboard, then http://127.0.0.1:8765/ and sign in "
        "with the 'lead' or 'steward' token it prints (kept in "
        f"{settings.home / 'secrets' / 'dashboard-users.json'})"
    )
    console.print(
        f"Airflow UI: make airflow, then {settings.airflow_url}/ as '{ADMIN_USER}' with the "
        f"password in {passwords_file(settings)} (the approvers' are there too); DAGs start "
        "paused: unpause one before you trigger it"
    )
    console.print(
        f"reports: validation {settings.home / 'reports' / 'validation'}, mapping "
        f"documentation {settings.home / 'docs' / 'index.html'}"
    )
    console.print(
        "accounting: .venv/bin/vardflytt status; identities: .venv/bin/vardflytt identity summary"
    )
    if waves:
        console.print(
            f"cutover: .venv/bin/vardflytt cutover status [WAVE]; evidence packs: "
            f"{settings.home / 'evidence'}/<wave>"
        )
    console.print("run the demo again: make demo (it resets this demo's state first)")


def _demo_waves(
    waves: list[str],
    environment: dict,
    airflow_bin: tuple[str, ...],
    logs: Path,
    approve_last: bool,
) -> None:
    """Every wave through its cutover DAG, in plan order, up to its go/no-go.

    The estate is a snapshot taken on ``EXTRACT_DATE``; the runs judge it as of that date, so the
    demo's outcome does not depend on the day it runs. One api-server on loopback (a free port)
    serves the approvers' sign-ins for every wave."""
    from etl.airflow_env import api_server
    from etl.cutover.plan import load_plan
    from etl.estate.base import EXTRACT_DATE

    settings = get_settings()
    plan = load_plan(settings.mappings_dir, settings.wave_plan)
    with api_server(environment, logs / "demo_api_server.log") as url:
        console.print(f"Airflow api-server for the go/no-go: {url} (loopback only)")
        if plan.split_systems:
            _demo_waves_by_unit(plan, environment, airflow_bin, logs, url, EXTRACT_DATE)
            return
        for number, wave in enumerate(waves, start=1):
            _demo_cutover(
                wave,
                environment,
                airflow_bin,
                logs,
                url,
                EXTRACT_DATE,
                approve=approve_last or number < len(waves),
            )


def _demo_waves_by_unit(
    plan, environment: dict, airflow_bin: tuple[str, ...], logs: Path, url: str, as_of_date: dt.date
) -> None:
    """A plan by care unit, the way a region lives between go-lives: the patients wave loads
    the patient registers region-wide and keeps flowing; the first unit wave (its units' rows
    of ELVIS, Melior, Orbit and the laboratories, and its satellites) is rehearsed, loaded and
    cut over with the demo approvers' go; every later wave is rehearsed and initially loaded,
    and after the go-live one delta of the next wave shows the legacy systems still serving
    the other units (a change to a cut-over unit's row would be a conflict, never applied)."""

    settings = get_settings()
    unit_waves = [w.wave for w in plan.waves if w.is_by_unit and w.wave != plan.patients]
    first = unit_waves[0] if unit_waves else None
    for wave in plan.waves:
        if wave.wave == first:
            _demo_cutover(wave.wave, environment, airflow_bin, logs, url, as_of_date, approve=True)
            continue
        phases = ("initial",) if wave.wave == plan.patients else ("rehearsal", "initial")
        for phase in phases:
            _cutover_phase(
                wave.wave, phase, "still flowing", environment, airflow_bin, logs, as_of_date
            )
    later = [w for w in unit_waves if w != first]
    if later:
        from etl.cutover import slices
        from etl.cutover import waves as wave_runs
        from etl.estate.activity import simulate_activity

        # Two weeks of legacy use in every unit after the go-live, then the waves still flowing
        # take their deltas: the patients wave first (new patients), then the next unit wave.
        delta_as_of = as_of_date + dt.timedelta(days=14)
        simulate_activity(settings.resolved_estate_dir, seed=11)
        for name in (plan.patients, later[0]):
            if name not in {w.wave for w in plan.waves}:
                continue
            console.rule(f"{name}: a delta after {first}'s go-live (the legacy still serves it)")
            delta = _cutover_call(
                wave_runs.load_wave, settings, name, "delta", delta_as_of, _actor()
            )
            for system, batch in delta["batches"].items():
                if not batch["extracted"]:
                    continue  # nothing changed in this system since the wave's last load
                console.print(
                    f"{system}: {batch['loaded']} changed rows of {name} loaded, "
                    f"{batch['wave_scope']} of other waves deferred to them, "
                    f"{batch['conflicted']} changes to {first}'s rows held as conflicts"
                )
        held = len(slices.list_conflicts(settings, wave=first))
        console.print(
            f"{first} is live: {held} legacy changes to its rows wait for the stewards "
            f"(.venv/bin/vardflytt cutover conflicts --wave {first}; the dashboard's waves page)"
        )


def _demo_cutover(
    wave: str,
    environment: dict,
    airflow_bin: tuple[str, ...],
    logs: Path,
    url: str,
    as_of_date: dt.date,
    approve: bool,
) -> None:
    """The wave through its cutover DAG: rehearsal, initial load, then the final phase.

    With ``approve``, the final phase runs in the DAG and each role's demo approver signs in to
    the api-server at ``url`` with their own generated password and approves. Without, the final
    phase's freeze, final delta and verify (with the go/no-go evidence pack) run here, through
    the functions its tasks call, and the wave is left verified for a person to answer: an
    ``airflow dags test`` run would wait at the go/no-go, blocking the demo."""

    from etl.cutover.plan import load_plan
    from etl.dag_names import cutover_dag_id

    settings = get_settings()
    dag_id = cutover_dag_id(wave)
    systems = load_plan(settings.mappings_dir, settings.wave_plan).systems_of(wave)
    for phase in ("rehearsal", "initial"):
        _cutover_phase(
            wave, phase, f"{len(systems)} systems", environment, airflow_bin, logs, as_of_date
        )
    if approve:
        console.rule(f"airflow dags test {dag_id} (phase final, with the go/no-go)")
        _demo_final_approved(wave, environment, airflow_bin, logs, url, as_of_date)
    else:
        console.rule(f"{wave}: freeze, final delta and verify, up to the go/no-go")
        _demo_final_to_go_no_go(settings, wave, as_of_date)
    from etl.demo_waves import describe, wave_outcomes

    for line in describe(wave_outcomes(settings, [wave])[0], settings)[:1]:
        console.print(line, highlight=False, soft_wrap=True)


def _demo_final_to_go_no_go(settings, wave: str, as_of_date: dt.date) -> None:
    """The final phase as the DAG's tasks run it (``vardflytt cutover freeze``, ``load --phase
    final``, ``verify``), stopping where the DAG would ask each role for the go/no-go."""
    from etl.cutover import airflow_hitl, waves

    actor = _actor()
    _cutover_call(airflow_hitl.freeze_unless_frozen, settings, wave, actor)
    _cutover_call(waves.load_wave, settings, wave, "final", as_of_date, actor)
    request = _cutover_call(airflow_hitl.verify_for_approval, settings, wave, as_of_date, actor)
    console.print(
        f"{wave} verified: {request['criteria_passed']} of {request['criteria_total']} criteria "
        f"pass; go/no-go evidence pack {request['pack']}"
    )


def _demo_final_approved(
    wave: str,
    environment: dict,
    airflow_bin: tuple[str, ...],
    logs: Path,
    url: str,
    as_of_date: dt.date,
) -> None:
    """The final phase in the DAG; each role's first listed account (demo-lead, demo-cmio)
    answers its go/no-go through the api-server at ``url`` as soon as the run asks."""
    import json
    import time

    from etl.airflow_env import airflow_password
    from etl.cutover import airflow_hitl
    from etl.cutover.ledger import LedgerError
    from etl.cutover.plan import load_plan
    from etl.dag_names import cutover_dag_id

    settings = get_settings()
    dag_id = cutover_dag_id(wave)
    approvers = {
        role: accounts.airflow_users[0]
        for role, accounts in load_plan(settings.mappings_dir, settings.wave_plan)
        .wave(wave)
        .criteria.approvers.items()
    }
    signed_in = settings.model_copy(update={"airflow_url": url})
    log = logs / f"demo_cutover_{wave}_final.log"
    conf = {"phase": "final", "as_of_date": as_of_date.isoformat()}
    with log.open("w", encoding="utf-8") as handle:
        run = subprocess.Popen(
            [*airflow_bin, "dags", "test", dag_id, "--conf", json.dumps(conf)],
            env=environment,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        waiting = dict(approvers)
        while run.poll() is None and waiting:
            time.sleep(3)
            for role, user in list(waiting.items()):
                try:
                    answered = airflow_hitl.respond_to_waiting_run(
                        signed_in,
                        wave,
                        "approve",
                        role,
                        user,
                        airflow_password(settings, user),
                        "demo: criteria reviewed in the evidence pack",
                    )
                except LedgerError:
                    continue  # running, not asking this role yet
                if answered["waiting"]:
                    console.print(
                        f"go/no-go as {role}: approved by {answered['responded_by']} "
                        "(signed in to Airflow with their own password)"
                    )
                    del waiting[role]
        if run.wait() != 0:
            console.print(f"[red]the {dag_id} final run failed; see {log}[/red]")
            raise typer.Exit(1)


def _cutover_phase(
    wave: str,
    phase: str,
    note: str,
    environment: dict,
    airflow_bin: tuple[str, ...],
    logs: Path,
    as_of_date: dt.date,
) -> None:
    """One phase of a wave's cutover DAG through ``airflow dags test``, its log under ``logs``."""
    import json

    from etl.dag_names import cutover_dag_id

    dag_id = cutover_dag_id(wave)
    console.rule(f"airflow dags test {dag_id} (phase {phase}, {note})")
    conf = {"phase": phase, "as_of_date": as_of_date.isoformat()}
    _checked(
        [*airflow_bin, "dags", "test", dag_id, "--conf", json.dumps(conf)],
        environment,
        f"the {dag_id} {phase} run",
        log=logs / f"demo_cutover_{wave}_{phase}.log",
    )


def _checked(
    command: list[str], environment: dict[str, str], what: str, log: Path | None = None
) -> None:
    if log is None:
        completed = subprocess.run(
            command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as handle:
            # Bytes here, text above; stderr is read only when there is no log (the text branch).
            completed = subprocess.run(  # type: ignore[assignment]
                command, env=environment, stdout=handle, stderr=subprocess.STDOUT
            )
    if completed.returncode != 0:
        where = f"; see {log}" if log else f":\n{completed.stderr[-3000:]}"
        console.print(f"[red]{what} failed (exit {completed.returncode}){where}[/red]")
        raise typer.Exit(completed.returncode)
    console.print(f"{what}: ok" + (f" (log: {log})" if log else ""))
