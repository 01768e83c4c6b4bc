"""``vardflytt``: the command line for migration engineers (the same jobs as the DAGs)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from etl.core import residency
from etl.core.files import restrict_umask
from etl.core.redact import RedactingConsole, redact
from etl.settings import get_settings


class _Cli(typer.Typer):
    """The root command: a data residency refusal is printed as its message (exit 2), and no
    exception it ends with shows a password (tracebacks print the exception's text, and a bad
    URL's text holds the URL)."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except residency.ResidencyError as error:
            # A refusal is an answer, not a crash: its message says what to change.
            typer.echo(redact(error), err=True)
            raise SystemExit(2) from None
        except Exception as error:
            cause: BaseException | None = error
            seen: set[int] = set()
            while cause is not None and id(cause) not in seen:
                seen.add(id(cause))
                cause.args = tuple(redact(a) if isinstance(a, str) else a for a in cause.args)
                cause = cause.__cause__ or cause.__context__
            raise


app = _Cli(
    help="vardflytt: migrate legacy health records into the core system.", no_args_is_help=True
)


@app.callback()
def _owner_only_files() -> None:
    """Everything a command writes (and the Airflow it starts) is owner-only (umask 077)."""
    restrict_umask()


estate_app = typer.Typer(
    help="The synthetic legacy estate (test and demo data only).", no_args_is_help=True
)
app.add_typer(estate_app, name="estate")
# Wide enough for the accounting table when output goes to a file or CI log.
console = RedactingConsole(width=None if sys.stdout.isatty() else 160)


@estate_app.command("generate")
def estate_generate(
    patients: Annotated[int, typer.Option(help="Number of synthetic people.")] = 3000,
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives the same estate.")
    ] = 42,
    out: Annotated[
        Path | None,
        typer.Option(help="Output folder (default: VARDFLYTT_ESTATE_DIR or var/estate)."),
    ] = None,
    elvis_url: Annotated[
        str | None, typer.Option(help="Put ELVIS in this database instead of SQLite.")
    ] = None,
) -> None:
    """Generate every legacy system of the estate, messy, with recorded defects."""
    from etl.estate import generate_estate

    target = out or get_settings().resolved_estate_dir
    with console.status(f"generating {patients} synthetic patients into {target}"):
        manifest = generate_estate(target, patients=patients, seed=seed, elvis_url=elvis_url)
    console.print(
        f"estate written to {target} ({manifest.defect_rows} injected defect rows "
        f"recorded in {target / 'defects.csv'})"
    )


@estate_app.command("activity")
def estate_activity(
    seed: Annotated[int, typer.Option(help="Random seed of this round of activity.")] = 42,
    estate: Annotated[
        Path | None,
        typer.Option(help="Estate folder (default: VARDFLYTT_ESTATE_DIR or var/estate)."),
    ] = None,
    elvis_url: Annotated[
        str | None,
        typer.Option(help="ELVIS database, when not the estate's SQLite file.", show_default=False),
    ] = None,
) -> None:
    """Change ELVIS and Melior in place as legacy use would before the cutover (for deltas)."""
    import os

    from etl.estate.activity import ACTIVITY_FILE, simulate_activity

    target = estate or get_settings().resolved_estate_dir
    url = elvis_url or os.environ.get("VARDFLYTT_SOURCE_ELVIS_URL")
    report = simulate_activity(target, seed=seed, elvis_url=url)
    counts = ", ".join(f"{name} {number}" for name, number in report.counts().items())
    console.print(f"legacy activity in {target}: {counts}; recorded in {target / ACTIVITY_FILE}")


@app.command("check-mappings")
def check_mappings() -> None:
    """Parse and check every mapping file; errors name the file and the field."""
    from etl.catalog import MappingError, load_catalog

    settings = get_settings()
    try:
        catalog = load_catalog(settings.mappings_dir)
    except MappingError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    for name, system in catalog.systems.items():
        console.print(
            f"{name}: {len(system.spec.datasets)} datasets, entities {', '.join(system.entities)}"
        )
    console.print(f"crosswalks: {', '.join(catalog.crosswalks) or 'none'}")
    from etl.cutover.plan import PLAN_FILE, PlanError, load_plan

    if not (settings.mappings_dir / PLAN_FILE).exists():
        return
    try:
        plan = load_plan(settings.mappings_dir)
    except PlanError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    for wave in plan.waves:
        roles = "; ".join(
            f"{role}: {', '.join(dict.fromkeys(accounts.airflow_users + accounts.dashboard_users))}"
            for role, accounts in wave.criteria.approvers.items()
        )
        console.print(f"wave {wave.wave}: {len(wave.systems)} systems, approvers {roles}")


@app.command("run")
def run(
    system: Annotated[str, typer.Argument(help="Source system, as named under mappings/.")],
    batch_id: Annotated[
        str | None, typer.Option(help="Batch id; re-use one to re-run that batch.")
    ] = None,
    as_of_date: Annotated[
        str | None, typer.Option(help="Reference date YYYY-MM-DD (default today).")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Write nothing to the core.")] = False,
) -> None:
    """Run one source system's migration in this process, without Airflow."""
    from etl import pipeline
    from etl.batch import new_batch_id

    settings = get_settings()
    entities = pipeline.catalog(settings).system(system).entities
    as_of = dt.date.fromisoformat(as_of_date) if as_of_date else dt.date.today()
    batch = batch_id or new_batch_id(system, "cli")
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"{system}: starting", total=2 * len(entities) + 3)

        def on_stage(name: str) -> None:
            progress.update(
                task, description=f"{system}: {name}", advance=0 if name == "extract" else 1
            )

        try:
            report = pipeline.run_system(
                system, batch, as_of, dry_run, settings=settings, on_stage=on_stage
            )
        except pipeline.ReconciliationError as error:
            console.print(f"[red]{error}[/red]")
            raise typer.Exit(1) from error
        progress.update(task, completed=2 * len(entities) + 3)
    print_accounting(
        [row.model_dump() for row in report.accounting], title=f"{system} batch {batch}"
    )
    from etl.report.validation import batch_report_folder

    summary = batch_report_folder(settings, batch) / "summary.html"
    if summary.is_file():
        console.print(f"validation report: {summary}")


def print_accounting(rows: list[dict], title: str) -> bool:
    table = Table(title=title)
    for column in (
        "system",
        "entity",
        "dataset",
        "extracted",
        "loaded",
        "quarantined",
        "excluded",
        "merged",
        "residue",
        "accounted",
    ):
        table.add_column(
            column, justify="right" if column not in {"system", "entity", "dataset"} else "left"
        )
    all_verified = True
    for row in rows:
        all_verified &= bool(row["is_verified"])
        table.add_row(
            row["source_system"],
            row["entity"],
            row["dataset"],
            str(row["extracted"]),
            str(row["loaded"]),
            str(row["quarantined"]),
            str(row["excluded"]),
            str(row["merged"]),
            str(row["residue"]),
            "[green]yes[/green]" if row["is_verified"] else "[red]NO[/red]",
        )
    console.print(table)
    return all_verified


@app.command("status")
def status(
    batch: Annotated[
        str | None, typer.Option(help="A batch id (default: each system's latest batch).")
    ] = None,
    check: Annotated[
        bool, typer.Option(help="Exit non-zero unless every row is accounted for.")
    ] = False,
) -> None:
    """Record accounting per system and entity, with quarantine counts by reason."""
    from etl.status import accounting_rows, quarantine_reasons, source_counts

    settings = get_settings()
    rows = accounting_rows(settings, batch)
    if not rows:
        console.print("no loaded batches yet: run `make demo` or `vardflytt run <system>`")
        raise typer.Exit(1 if check else 0)
    is_reconciled = print_accounting(
        rows, title="record accounting (extracted = loaded + quarantined + excluded + merged)"
    )
    sources = source_counts(settings, {(row["batch_id"], row["source_system"]) for row in rows})
    if sources:
        table = Table(title="source records: independent physical count = records read")
        for column in sources[0]:
            table.add_column(
                column.replace("_", " "),
                justify="left" if column in {"system", "dataset", "source"} else "right",
            )
        for source in sources:
            table.add_row(*(str(value) for value in source.values()))
        console.print(table)
    reasons = quarantine_reasons(settings, sorted({row["batch_id"] for row in rows}))
    if reasons:
        table = Table(title="quarantined rows by reason (review with the data stewards)")
        for column in ("system", "entity", "reason", "rows"):
            table.add_column(column, justify="right" if column == "rows" else "left")
        for reason in reasons:
            table.add_row(
                reason["source_system"], reason["entity"], reason["reason"], str(reason["rows"])
            )
        console.print(table)
    print_unpromoted(settings)
    console.print(
        "[green]every source row is accounted for[/green]"
        if is_reconciled
        else "[red]NOT every source row is accounted for[/red]"
    )
    if check and not is_reconciled:
        raise typer.Exit(1)


@app.command("airflow", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def airflow(context: typer.Context) -> None:
    """Run any ``airflow`` command against the project-local Airflow (e.g. ``standalone``).

    ``standalone`` runs sized for this machine, on loopback, without log servers
    (etl/airflow_env.py, etl/airflow_standalone.py)."""
    from etl.airflow_env import ADMIN_USER, airflow_environment, passwords_file

    settings = get_settings()
    environment = airflow_environment(settings)
    if context.args[:1] == ["standalone"]:
        address = (
            f"http://{environment['AIRFLOW__API__HOST']}:"
            f"{environment.get('AIRFLOW__API__PORT', '8080')}/"
        )
        console.print(
            f"Airflow UI: {address} once ready; sign in as '{ADMIN_USER}' with the password in "
            f"{passwords_file(settings)}. DAGs start paused: switch one on before triggering it."
        )
        command = [sys.executable, "-m", "etl.airflow_standalone", *context.args[1:]]
    else:
        command = [str(Path(sys.executable).with_name("airflow")), *context.args]
    raise typer.Exit(subprocess.call(command, env=environment))


@app.command("demo")
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
) -> None:
    """Generate the estate, migrate it through Airflow, resolve identities, print the accounting.

    Run again, it first resets the previous demo's state under VARDFLYTT_HOME (etl.demo_home),
    so every run starts from the same empty home; it refuses a home no demo wrote."""
    import json

    from etl.airflow_env import airflow_environment
    from etl.demo_home import DemoHomeError, prepare_demo_home
    from etl.layout import list_system_entities

    settings = get_settings()
    known = list(list_system_entities(settings.mappings_dir))
    chosen = known if systems == "all" else [s.strip() for s in systems.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        console.print(f"[red]unknown systems {unknown}; known: {', '.join(known)}[/red]")
        raise typer.Exit(2)
    plan_waves: list[str] = []
    if cutover and systems == "all":
        from etl.cutover.plan import load_plan

        plan = load_plan(settings.mappings_dir)
        plan_waves = [wave.wave for wave in plan.waves]
        in_waves = {system for wave in plan.waves for system in wave.systems}
        chosen = [system for system in chosen if system not in in_waves]
    try:
        preparation = prepare_demo_home(settings)
    except DemoHomeError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from error
    console.print(preparation.describe())
    estate_generate(patients=patients, seed=seed, out=None, elvis_url=None)
    environment = airflow_environment(settings)
    airflow_bin = str(Path(sys.executable).with_name("airflow"))
    logs = settings.home / "logs"
    console.print(f"Airflow home: {settings.airflow_home}")
    _checked([airflow_bin, "db", "migrate"], environment, "airflow db migrate")
    if chosen:  # systems in no wave (every one, with --no-cutover or --systems)
        console.rule(f"airflow dags test vardflytt_migrate ({len(chosen)} systems)")
        conf = json.dumps({"systems": chosen})
        _checked(
            [airflow_bin, "dags", "test", "vardflytt_migrate", "--conf", conf],
            environment,
            "the vardflytt_migrate DAG run",
            log=logs / "demo_migrate.log",
        )
    if plan_waves:
        _demo_waves(plan_waves, environment, airflow_bin, logs, approve_last_wave)
    console.rule("airflow dags test identity_resolution")
    _checked(
        [airflow_bin, "dags", "test", "identity_resolution"],
        environment,
        "the identity_resolution DAG run",
        log=logs / "demo_identity.log",
    )
    console.rule("result")
    docs(out=None)
    dq_report(run_id=None, out=None, batch=None)
    status(batch=None, check=True)
    _print_demo_next_steps(settings, plan_waves)


def _print_demo_next_steps(settings, waves: list[str]) -> None:
    """Where to look next, with the exact commands (run from the project folder): each wave's
    state as the ledger has it and, for a wave at its go/no-go, how to answer it."""
    from etl.airflow_env import ADMIN_USER, passwords_file
    from etl.demo_waves import describe, wave_outcomes

    console.rule("where to look next")
    if waves:
        console.print("cutover waves (mappings/waves.yaml), as the ledger has them:")
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
    waves: list[str], environment: dict, airflow_bin: str, logs: Path, approve_last: bool
) -> None:
    """Every wave through its cutover DAG, in plan order, up to its go/no-go.

    The estate is a snapshot taken on ``EXTRACT_DATE``; the runs judge it as of that date, so the
    demo's outcome does not depend on the day it runs. One api-server on loopback (a free port)
    serves the approvers' sign-ins for every wave."""
    from etl.airflow_env import api_server
    from etl.estate.base import EXTRACT_DATE

    with api_server(environment, logs / "demo_api_server.log") as url:
        console.print(f"Airflow api-server for the go/no-go: {url} (loopback only)")
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


def _demo_cutover(
    wave: str,
    environment: dict,
    airflow_bin: str,
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
    import json

    from etl.cutover import airflow_hitl
    from etl.cutover.plan import load_plan

    settings = get_settings()
    dag_id = airflow_hitl.cutover_dag_id(wave)
    systems = load_plan(settings.mappings_dir).wave(wave).systems
    for phase in ("rehearsal", "initial"):
        console.rule(f"airflow dags test {dag_id} (phase {phase}, {len(systems)} systems)")
        conf = {"phase": phase, "as_of_date": as_of_date.isoformat()}
        _checked(
            [airflow_bin, "dags", "test", dag_id, "--conf", json.dumps(conf)],
            environment,
            f"the {dag_id} {phase} run",
            log=logs / f"demo_cutover_{wave}_{phase}.log",
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
    wave: str, environment: dict, airflow_bin: str, logs: Path, url: str, as_of_date: dt.date
) -> None:
    """The final phase in the DAG; each role's first listed account (demo-lead, demo-cmio)
    answers its go/no-go through the api-server at ``url`` as soon as the run asks."""
    import json
    import time

    from etl.airflow_env import airflow_password
    from etl.cutover import airflow_hitl
    from etl.cutover.ledger import LedgerError
    from etl.cutover.plan import load_plan

    settings = get_settings()
    dag_id = airflow_hitl.cutover_dag_id(wave)
    approvers = {
        role: accounts.airflow_users[0]
        for role, accounts in load_plan(settings.mappings_dir).wave(wave).criteria.approvers.items()
    }
    signed_in = settings.model_copy(update={"airflow_url": url})
    log = logs / f"demo_cutover_{wave}_final.log"
    conf = {"phase": "final", "as_of_date": as_of_date.isoformat()}
    with log.open("w", encoding="utf-8") as handle:
        run = subprocess.Popen(
            [airflow_bin, "dags", "test", dag_id, "--conf", json.dumps(conf)],
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
            completed = subprocess.run(
                command, env=environment, stdout=handle, stderr=subprocess.STDOUT
            )
    if completed.returncode != 0:
        where = f"; see {log}" if log else f":\n{completed.stderr[-3000:]}"
        console.print(f"[red]{what} failed (exit {completed.returncode}){where}[/red]")
        raise typer.Exit(completed.returncode)
    console.print(f"{what}: ok" + (f" (log: {log})" if log else ""))


@app.command("bench")
def bench(
    patients: Annotated[
        int, typer.Option(help="Synthetic people in the benchmark estate (fixed seed).")
    ] = 20000,
    chunk_rows: Annotated[
        int | None, typer.Option(help="Rows per chunk (default: VARDFLYTT_CHUNK_ROWS).")
    ] = None,
    work_dir: Annotated[
        Path | None, typer.Option(help="Folder for the run and results.json (default: var/bench).")
    ] = None,
    postgres_url: Annotated[
        str | None,
        typer.Option(
            envvar="VARDFLYTT_BENCH_POSTGRES_URL",
            help="Also load into a fresh schema on this PostgreSQL server (dropped after).",
        ),
    ] = None,
    compare_chunks: Annotated[
        bool,
        typer.Option(
            help="Also migrate with small, default and large chunks, each in a new process."
        ),
    ] = False,
    dag_parse_repeats: Annotated[
        int, typer.Option(help="Fresh interpreters timing the parse of dags/ (0: skip).")
    ] = 3,
    keep_files: Annotated[
        bool, typer.Option(help="Keep the run's estate, landing zone and core database.")
    ] = False,
) -> None:
    """Time and size the migration: generation, each stage per system, peak memory, DAG parse."""
    from etl.bench import RESULTS_FILE, result_tables, run_benchmark

    results = run_benchmark(
        patients,
        chunk_rows=chunk_rows,
        work_dir=work_dir,
        postgres_url=postgres_url,
        compare_chunks=compare_chunks,
        dag_parse_repeats=dag_parse_repeats,
        keep_files=keep_files,
        log=lambda message: console.log(message, highlight=False),
    )
    for table in result_tables(results):
        console.print(table)
    machine, git = results["machine"], results["git"]
    local_changes = " (with local changes)" if git["dirty"] else ""
    console.print(
        f"{machine['cpu_count']} CPUs, Python {machine['python']}, "
        f"{machine['platform']}; commit {git['commit'] or 'unknown'}{local_changes}; "
        f"bench wall time {results['wall_seconds']:.1f} s"
    )
    console.print(f"results: {Path(results['parameters']['work_dir']) / RESULTS_FILE}")
    for problem in results["problems"]:
        console.print(f"[red]{problem}[/red]")
    if results["problems"]:
        raise typer.Exit(1)


# --- reports for data stewards (counts, codes and masked shapes only) ---------------------------


@app.command("docs")
def docs(
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: var/docs under VARDFLYTT_HOME).")
    ] = None,
) -> None:
    """Generate the mapping documentation (HTML and Markdown) from mappings/ alone."""
    from etl.catalog import MappingError, load_catalog
    from etl.report.docs import write_docs

    settings = get_settings()
    try:
        catalog = load_catalog(settings.mappings_dir)
    except MappingError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    target = out or settings.home / "docs"
    written = write_docs(catalog, target)
    console.print(f"mapping documentation: {len(written)} files in {target} (open index.html)")


@app.command("profile")
def profile(
    system: Annotated[str, typer.Argument(help="Source system, as named under mappings/.")],
    batch: Annotated[str, typer.Option(help="Batch id whose landed Parquet to profile.")],
) -> None:
    """Profile a system's landed data: types, blanks, distinct counts, shapes (masked)."""
    from etl import pipeline
    from etl.catalog import MappingError
    from etl.report.profile import profile_system, profile_tables, write_profile

    settings = get_settings()
    try:
        result = profile_system(settings, pipeline.catalog(settings), system, batch)
    except (FileNotFoundError, MappingError) as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    for table in profile_tables(result):
        console.print(table)
    json_path, html_path = write_profile(settings, result)
    console.print(f"profile: {json_path} and {html_path}")


@app.command("coverage")
def coverage(
    batch: Annotated[
        list[str] | None,
        typer.Option(help="Batch id (repeatable; default: each system's latest loaded batch)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="JSON file (default: var/reports/coverage/coverage.json)."),
    ] = None,
) -> None:
    """Share of source columns mapped, and of rows hitting unmapped codes, per system."""
    from etl import pipeline
    from etl.report.coverage import coverage_path, coverage_report, coverage_tables, write_coverage

    settings = get_settings()
    report = coverage_report(settings, pipeline.catalog(settings), batch or None)
    for table in coverage_tables(report):
        console.print(table)
    for note in report.notes:
        console.print(f"[yellow]{note}[/yellow]")
    target = out or coverage_path(settings)
    residency.check_storage(target, "the coverage report (--out)", settings)
    path = write_coverage(report, target)
    console.print(f"coverage: {path}")


@app.command("dashboard")
def dashboard(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
) -> None:
    """Serve the cutover dashboard (waves, runs, trends, steward queue) from the core database."""
    import uvicorn

    from etl.dashboard.app import create_app
    from etl.dashboard.auth import DashboardSettings, demo_tokens

    settings = get_settings()
    if not DashboardSettings().users:
        tokens = demo_tokens(settings, create=True)
        console.print(
            "No VARDFLYTT_DASHBOARD_USERS set: local demo users (tokens in "
            f"{settings.home / 'secrets' / 'dashboard-users.json'}):"
        )
        for name, token in tokens.items():
            console.print(f"  {name}: {token}")
    console.print(f"core database: {redact(settings.resolved_core_url)}")
    console.print(f"dashboard: http://{host}:{port}/  (sign in with a token)")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


# --- identity: one person across all systems --------------------------------------------------

identity_app = typer.Typer(
    help="Identity resolution: one core person per human being, with a steward review queue.",
    no_args_is_help=True,
)
app.add_typer(identity_app, name="identity")


def _identity_run_id(prefix: str) -> str:
    return f"{prefix}__{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}"


def _print_identity_run(summary) -> None:
    table = Table(title=f"identity run {summary.run_id} ({summary.kind}, {summary.status})")
    table.add_column("count")
    table.add_column("value", justify="right")
    for name, value in summary.counts.items():
        table.add_row(name, str(value))
    console.print(table)


@identity_app.command("resolve")
def identity_resolve(
    run_id: Annotated[
        str | None,
        typer.Option(help="Run id (default: a new one); re-using a finished one is a no-op."),
    ] = None,
) -> None:
    """Link every core patient to a person; conflicts go to the review queue."""
    from etl.identity import runs

    _print_identity_run(runs.resolve(run_id or _identity_run_id("cli"), get_settings()))


@identity_app.command("review")
def identity_review() -> None:
    """Open reviews: ids, reasons, systems and patient row keys (never identities or names)."""
    from etl.identity import runs

    reviews = runs.list_open_reviews(get_settings())
    if not reviews:
        console.print("no open identity reviews")
        return
    table = Table(title=f"open identity reviews ({len(reviews)})")
    for column in ("review", "reasons", "systems", "patient rows", "opened by run"):
        table.add_column(column)
    for review in reviews:
        table.add_row(
            review.review_id,
            ", ".join(review.reasons),
            ", ".join(review.systems),
            "\n".join(review.patient_row_keys),
            review.opened_run_id,
        )
    console.print(table)


@identity_app.command("decide")
def identity_decide(
    review_id: Annotated[str, typer.Argument(help="Review id, from `vardflytt identity review`.")],
    merge: Annotated[
        bool | None,
        typer.Option("--merge/--keep-apart", help="One person, or keep the patients apart."),
    ] = None,
    note: Annotated[
        str | None, typer.Option(help="Why (recorded in the core, never printed).")
    ] = None,
) -> None:
    """Record a steward decision on an open review and apply it (undo with its run id).

    Recorded as decided by the signed-in OS user, never a name typed on the command line."""
    from etl.core.audit import current_user
    from etl.identity import runs

    if merge is None:
        console.print("[red]choose --merge or --keep-apart[/red]")
        raise typer.Exit(2)
    try:
        summary = runs.decide_review(
            review_id,
            "merge" if merge else "keep_apart",
            current_user(),
            note,
            _identity_run_id("decision"),
            get_settings(),
        )
    except runs.IdentityError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    _print_identity_run(summary)


@identity_app.command("undo")
def identity_undo(
    run_id: Annotated[str, typer.Argument(help="The newest identity run (resolve or decision).")],
) -> None:
    """Undo an identity run exactly: links, persons and reviews as they were before it."""
    from etl.identity import runs

    try:
        summary = runs.undo_run(run_id, get_settings())
    except runs.IdentityError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    _print_identity_run(summary)


@identity_app.command("summary")
def identity_summary() -> None:
    """Persons, patients, persons linked across N systems, open reviews by reason."""
    from etl.identity import runs

    result = runs.identity_summary(get_settings())
    table = Table(title="identity resolution")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("patients in the core", str(result.patients))
    table.add_row("patients linked to a person", str(result.linked_patients))
    table.add_row("persons", str(result.persons))
    for systems, persons in result.persons_by_system_count.items():
        table.add_row(f"persons in {systems} system(s)", str(persons))
    table.add_row("open reviews", str(result.open_reviews))
    for reason, count in result.open_reviews_by_reason.items():
        table.add_row(f"  open: {reason}", str(count))
    if result.latest_run is not None:
        run = result.latest_run
        table.add_row("latest run", f"{run.run_id} ({run.kind}, {run.status})")
    console.print(table)


dq_app = typer.Typer(
    help="Data-quality results, thresholds and reports (counts only, no patient data).",
    no_args_is_help=True,
)
app.add_typer(dq_app, name="dq")

# The steward's queue and decisions live in etl/steward/, shared with the web dashboard.
from etl.steward.cli import steward_app  # noqa: E402

app.add_typer(steward_app, name="steward")
from etl.extract.cli import landing_app  # noqa: E402

app.add_typer(landing_app, name="landing")
from etl.load.cli import batches_app, core_app, print_unpromoted  # noqa: E402

app.add_typer(batches_app, name="batches")
app.add_typer(core_app, name="core")
from etl.core.audit_cli import audit_app  # noqa: E402

app.add_typer(audit_app, name="audit")


def _print_check_results(rows: list[dict], title: str, only_failing: bool) -> None:
    table = Table(title=title)
    for column in ("system", "entity", "check", "severity", "failed", "of rows", "rate", "max"):
        table.add_column(column, justify="right" if column in {"failed", "of rows"} else "left")
    table.add_column("gate")
    for row in rows:
        if only_failing and not row["rows_failed"]:
            continue
        evaluated = row["rows_evaluated"]
        rate = row["rows_failed"] / evaluated if evaluated else 0.0
        table.add_row(
            row["source_system"],
            row["entity"],
            row["check_name"],
            row["severity"],
            str(row["rows_failed"]),
            str(evaluated),
            f"{rate:.2%}",
            f"{row['max_failure_rate']:.2%}",
            "[red]BREACH[/red]" if row["is_breached"] else "ok",
        )
    console.print(table)


@dq_app.command("results")
def dq_results(
    batch: Annotated[str | None, typer.Option(help="Only this batch.")] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Only this Airflow run.")] = None,
    all_checks: Annotated[bool, typer.Option("--all", help="Also checks with no failure.")] = False,
) -> None:
    """Stored check results: failures per system, entity and check against their thresholds."""
    from etl.validate.gate import stored_results

    rows = stored_results(get_settings(), batch, run_id)
    if not rows:
        console.print("no stored data-quality results match; run a migration first")
        raise typer.Exit(1)
    _print_check_results(rows, "data-quality results", only_failing=not all_checks)
    breaches = sum(1 for row in rows if row["is_breached"])
    console.print(f"{len(rows)} check results, {breaches} over threshold")


@dq_app.command("reevaluate")
def dq_reevaluate(
    thresholds: Annotated[Path, typer.Option(help="A thresholds file to judge stored results by.")],
    batch: Annotated[str | None, typer.Option(help="Only this batch.")] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Only this Airflow run.")] = None,
) -> None:
    """Judge stored results under another thresholds file, without re-running anything."""
    from etl.validate.checks import ThresholdsError
    from etl.validate.gate import reevaluate

    try:
        results = reevaluate(get_settings(), thresholds, batch, run_id)
    except ThresholdsError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from error
    rows = [r.model_dump() | {"check_name": r.check_name} for r in results]
    _print_check_results(rows, f"re-evaluated under {thresholds}", only_failing=True)
    breaches = [r for r in results if r.is_breached]
    console.print(f"{len(results)} stored results, {len(breaches)} would breach")
    raise typer.Exit(1 if breaches else 0)


@dq_app.command("recall")
def dq_recall(
    estate: Annotated[
        Path | None, typer.Option(help="Estate with defects.csv (default: the configured one).")
    ] = None,
    batch: Annotated[
        list[str] | None, typer.Option(help="A batch to measure (repeatable).")
    ] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="An Airflow run's batches.")] = None,
) -> None:
    """Planted defects caught per class (recall) and false-positive rate; counts only."""
    from etl.report.recall import NoBatchesError, recall_report, recall_table, summary_line

    try:
        report = recall_report(get_settings(), estate, batch or (), run_id)
    except (NoBatchesError, FileNotFoundError) as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    console.print(recall_table(report))
    console.print(summary_line(report))


@dq_app.command("report")
def dq_report(
    run_id: Annotated[
        str | None,
        typer.Option("--run", help="An Airflow run id (default: each system's latest batch)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Report folder (default: var/reports/validation/<run> under home)."),
    ] = None,
    batch: Annotated[
        str | None,
        typer.Option(
            help="One batch: its report again (var/reports/validation/batches/<batch>), as "
            "every run writes it."
        ),
    ] = None,
) -> None:
    """Validation report of a run: steward summary (HTML, Markdown, JSON) and GX Data Docs."""
    from etl.report.pseudonym import PseudonymKeyError
    from etl.report.validation import NoResultsError, write_validation_report

    settings = get_settings()
    if run_id and batch:
        console.print("[red]give --run or --batch, not both[/red]")
        raise typer.Exit(2)
    if out is not None:
        residency.check_storage(out, "the validation report folder (--out)", settings)
    try:
        paths = write_validation_report(settings, run_id, out, batch_id=batch)
    except (NoResultsError, PseudonymKeyError) as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    console.print(f"validation summary: {paths.summary_html} (and summary.md, summary.json)")
    console.print(f"Data Docs: {paths.data_docs_index}")


cutover_app = typer.Typer(
    help="Staged, reversible cutovers by wave (plan in mappings/waves.yaml).", no_args_is_help=True
)
app.add_typer(cutover_app, name="cutover")
from etl.cluster_commands import cluster_app  # noqa: E402  (its own module: etl/cluster.py)

app.add_typer(cluster_app, name="cluster")
AsOf = Annotated[str | None, typer.Option(help="As-of date YYYY-MM-DD (default: today).")]


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
    from etl.cutover.promote import PromotionError
    from etl.validate.gate import DataQualityGateError

    try:
        return function(*args, **kwargs)
    except (LedgerError, WaveLockedError, PlanError, PromotionError, DataQualityGateError) as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error


@cutover_app.command("status")
def cutover_status(wave: Annotated[str | None, typer.Argument()] = None) -> None:
    """Every wave's state, window, batches and lock; with a wave, its ledger and criteria."""
    from etl.core.database import core_engine
    from etl.cutover import ledger, waves

    settings = get_settings()
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


@cutover_app.command("rehearse")
def cutover_rehearse(wave: str, as_of: AsOf = None) -> None:
    """Run the wave into a separate core; evidence pack; compare with the previous rehearsal."""
    from etl.cutover import waves

    result = _cutover_call(
        waves.rehearse,
        get_settings(),
        wave,
        _as_of(as_of),
        _actor(),
        on_system=lambda s: console.print(f"rehearsing {s}"),
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
) -> None:
    """Load the wave's systems into the core: initial (full), delta, or final delta (frozen)."""
    from etl.cutover import waves

    evidence = _cutover_call(
        waves.load_wave,
        get_settings(),
        wave,
        phase,
        _as_of(as_of),
        _actor(),
        on_system=lambda s: console.print(f"loading {s} ({phase})"),
    )
    for system, batch in evidence["batches"].items():
        console.print(
            f"{system}: batch {batch['batch_id']}, extracted {batch['extracted']}, "
            f"loaded {batch['loaded']}, quarantined {batch['quarantined']}"
        )


@cutover_app.command("freeze")
def cutover_freeze(wave: str) -> None:
    """Record that the wave's legacy systems are read-only from now (before the final delta)."""
    from etl.cutover import waves

    _cutover_call(waves.freeze, get_settings(), wave, _actor())
    console.print(f"wave {wave} frozen")


@cutover_app.command("verify")
def cutover_verify(wave: str, as_of: AsOf = None) -> None:
    """Reconcile source against core and evaluate the go/no-go criteria."""
    from etl.cutover import waves

    results = _cutover_call(waves.verify, get_settings(), wave, _as_of(as_of), _actor())
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
) -> None:
    """Answer a role's go (or no-go) for a verified wave, signed in to Airflow as yourself.

    Signs in to Airflow's api-server ($VARDFLYTT_AIRFLOW_URL) with your password (prompted, or
    $VARDFLYTT_AIRFLOW_PASSWORD for automation) and answers the role's go/no-go task of the
    wave's waiting cutover run with your own token: Airflow refuses a user not assigned to it.
    If no run waits, the decision is recorded in the ledger for the user Airflow signed in."""
    import os

    from etl.cutover import airflow_hitl, waves

    settings = get_settings()
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
def cutover_commit(wave: str) -> None:
    """Cut over: the wave goes live (needs a verified wave and every approver's approval)."""
    from etl.cutover import waves

    _cutover_call(waves.cut_over, get_settings(), wave, _actor())
    console.print(f"wave {wave} is cut over")


@cutover_app.command("rollback")
def cutover_rollback(
    wave: Annotated[str | None, typer.Argument(help="Roll back the whole wave.")] = None,
    batch: Annotated[str | None, typer.Option(help="Roll back one batch instead.")] = None,
    cascade: Annotated[bool, typer.Option(help="Also roll back later batches first.")] = False,
) -> None:
    """Undo a wave (every promoted batch, newest first) or one batch; checksums prove it."""
    from etl.cutover import waves

    settings = get_settings()
    if bool(wave) == bool(batch):
        console.print("[red]give either a wave or --batch[/red]")
        raise typer.Exit(2)
    if batch:
        undone = _cutover_call(waves.rollback_one_batch, settings, batch, cascade)
        console.print(f"rolled back: {', '.join(undone) or 'nothing (already rolled back)'}")
        return
    evidence = _cutover_call(waves.rollback_wave, settings, wave, _actor(), None, cascade)
    console.print(
        f"rolled back {len(evidence['rolled_back_batches'])} batches of {wave}; core "
        f"rows equal to before the wave: {evidence['checksum_equal_to_before_wave']}"
    )


@cutover_app.command("evidence")
def cutover_evidence(wave: str, label: Annotated[str | None, typer.Option()] = None) -> None:
    """Write the wave's evidence pack (JSON, Markdown, checksums, zip) for sign-off."""
    from etl.cutover import evidence, waves

    settings = get_settings()
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


if __name__ == "__main__":
    app()
