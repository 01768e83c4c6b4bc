"""``run_benchmark``: generate, migrate, measure; write and return the results."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl.batch import write_json
from etl.bench.dag_parse import measure_dag_parse
from etl.bench.environment import git_info, machine_info
from etl.bench.figures import (
    BENCH_SEED,
    RESULTS_FILE,
    RESULTS_MARKDOWN,
    SYSTEMS,
    build_results,
    compare_chunk_sizes,
    redact_url,
    rows_per_second,
    to_mib,
)
from etl.bench.goals import as_dicts, postgres_run, run_goals, throughput
from etl.bench.markdown import results_markdown
from etl.bench.memory import RssSampler, measure
from etl.bench.migration import _in_process_run, _run_child, bench_settings, warm_imports
from etl.bench.postgres import _postgres_run
from etl.bench.startup import measure_startup
from etl.settings import get_settings


@dataclass(frozen=True)
class _Plan:
    """What one bench run measures and where: ``run_benchmark``'s arguments, defaults resolved."""

    patients: int
    seed: int
    chunk_rows: int
    jobs: int
    work_dir: Path
    postgres_url: str | None
    repeats: int
    compare_chunks: bool
    dag_parse_repeats: int
    startup_repeats: int
    with_dashboard: bool
    with_sqlite: bool
    with_cutover: bool
    with_identity: bool
    keep_files: bool


def run_benchmark(
    patients: int,
    *,
    chunk_rows: int | None = None,
    work_dir: Path | None = None,
    postgres_url: str | None = None,
    compare_chunks: bool = False,
    dag_parse_repeats: int = 3,
    startup_repeats: int = 3,
    with_dashboard: bool = True,
    with_sqlite: bool = True,
    with_cutover: bool = True,
    with_identity: bool = False,
    seed: int = BENCH_SEED,
    keep_files: bool = False,
    jobs: int | None = None,
    repeats: int = 1,
    log: Callable[[str], None] = lambda _message: None,
) -> dict[str, Any]:
    """Generate, migrate (SQLite, then PostgreSQL if given: ``repeats`` times, each on a fresh
    schema with its plain COPY beside it, the median one reported), measure; write and return
    results."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    if patients < 1:
        raise ValueError("patients must be at least 1")
    settings = get_settings()
    from etl.parallel import default_jobs

    plan = _Plan(
        patients=patients,
        seed=seed,
        chunk_rows=chunk_rows or settings.chunk_rows,
        jobs=jobs or default_jobs(settings),
        work_dir=Path(work_dir or settings.home / "bench").resolve(),
        postgres_url=postgres_url,
        repeats=repeats,
        compare_chunks=compare_chunks,
        dag_parse_repeats=dag_parse_repeats,
        startup_repeats=startup_repeats,
        with_dashboard=with_dashboard,
        with_sqlite=with_sqlite,
        with_cutover=with_cutover,
        with_identity=with_identity,
        keep_files=keep_files,
    )
    return _run(plan, log)


def _run(plan: _Plan, log: Callable[[str], None]) -> dict[str, Any]:
    """The run ``plan`` describes, in a new folder of its work folder; writes the results."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    plan.work_dir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"run_{stamp}_", dir=plan.work_dir))
    estate = run_dir / "estate"
    started_at = dt.datetime.now(dt.UTC).isoformat()
    wall_started = time.perf_counter()
    problems: list[str] = []

    generation, as_of = _generate(run_dir, estate, plan.patients, plan.seed, log)
    log("importing the pipeline (timed apart)")
    import_seconds = warm_imports()
    measured = _measurements(plan, run_dir, estate, as_of, import_seconds, problems, log)
    results = build_results(
        parameters=_parameters(plan, run_dir, as_of, import_seconds, problems),
        machine=machine_info(),
        git=git_info(),
        generation=generation,
        runs=measured["runs"],
        dag_parse=measured["dag_parse"],
        started_at=started_at,
        finished_at=dt.datetime.now(dt.UTC).isoformat(),
        wall_seconds=time.perf_counter() - wall_started,
        problems=problems,
    )
    results["dashboard"] = measured["dashboard"]
    results["export"] = measured["export"]
    results["identity"] = measured["identity"]
    results["freeze_window"] = measured["freeze_window"]
    add_goals(results, measured["startup"])
    _write_results(results, plan.work_dir, run_dir, plan.keep_files or bool(problems))
    return results


def _measurements(
    plan: _Plan,
    run_dir: Path,
    estate: Path,
    as_of: dt.date,
    import_seconds: float,
    problems: list[str],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Every section the plan asks for, in order, by name (a failed one's error in its place)."""
    chunk_rows, postgres_url = plan.chunk_rows, plan.postgres_url
    with_sqlite, repeats = plan.with_sqlite, plan.repeats
    runs = _migration_runs(
        run_dir,
        estate,
        chunk_rows,
        as_of,
        postgres_url,
        import_seconds,
        problems,
        log,
        with_sqlite=with_sqlite,
        with_cutover=plan.with_cutover,
        jobs=plan.jobs,
        repeats=repeats,
    )
    freeze_window = (
        _freeze_windows(
            run_dir, estate, chunk_rows, as_of, postgres_url, with_sqlite, problems, log, repeats
        )
        if plan.with_cutover
        else None
    )
    if plan.compare_chunks:
        runs += _chunk_size_runs(run_dir, estate, chunk_rows, as_of, problems, log)
    dag_parse = (
        _dag_parse(run_dir, estate, chunk_rows, plan.dag_parse_repeats, problems, log)
        if plan.dag_parse_repeats > 0
        else None
    )
    dashboard = _dashboard(run_dir, problems, log) if plan.with_dashboard else None
    export = _export(run_dir, estate, chunk_rows, runs, problems, log)
    startup = _startup(plan.startup_repeats, problems, log) if plan.startup_repeats > 0 else None
    identity = (
        _identity(run_dir, estate, chunk_rows, as_of, plan.patients, problems, log)
        if plan.with_identity
        else None
    )
    return {
        "runs": runs,
        "freeze_window": freeze_window,
        "dag_parse": dag_parse,
        "dashboard": dashboard,
        "export": export,
        "startup": startup,
        "identity": identity,
    }


def _parameters(
    plan: _Plan, run_dir: Path, as_of: dt.date, import_seconds: float, problems: list[str]
) -> dict[str, Any]:
    """The ``parameters`` of ``results.json``: what was run, the server's URL redacted."""
    return {
        "patients": plan.patients,
        "seed": plan.seed,
        "chunk_rows": plan.chunk_rows,
        "systems": list(SYSTEMS),
        "as_of_date": as_of.isoformat(),
        "work_dir": str(plan.work_dir),
        "run_dir": str(run_dir),
        "postgres_url": redact_url(plan.postgres_url) if plan.postgres_url else None,
        "compare_chunks": plan.compare_chunks,
        "with_sqlite": plan.with_sqlite,
        "with_cutover": plan.with_cutover,
        "with_identity": plan.with_identity,
        "jobs": plan.jobs,
        "repeats": plan.repeats,
        "dag_parse_repeats": plan.dag_parse_repeats,
        "import_seconds": import_seconds,
        "files_kept": plan.keep_files or bool(problems),
        "rss_sampler": "psutil" if RssSampler().available else None,
    }


def _generate(
    run_dir: Path, estate: Path, patients: int, seed: int, log: Callable[[str], None]
) -> tuple[dict[str, Any], dt.date]:
    """The estate, generated in a child interpreter: its figures and its extract date."""
    log(f"generating {patients} patients (seed {seed}) into {estate} in a child interpreter")
    with measure(None) as generation_wall:
        generated = _run_child(
            ["generate", "--out", str(estate), "--patients", str(patients), "--seed", str(seed)],
            run_dir / "generate.json",
            run_dir / "generate.log",
        )
    generation = {
        "seconds": generated["seconds"],
        "child_wall_seconds": generation_wall.seconds,
        "row_counts": generated["row_counts"],
        "source_rows": {
            system: sum(counts.values()) for system, counts in generated["row_counts"].items()
        },
        "total_rows": sum(sum(counts.values()) for counts in generated["row_counts"].values()),
        "rows_per_second": rows_per_second(
            sum(sum(c.values()) for c in generated["row_counts"].values()), generated["seconds"]
        ),
        "defect_rows": generated["defect_rows"],
        "peak_rss_mib": to_mib(generated["vm_hwm_bytes"] or generated["ru_maxrss_bytes"]),
        "vm_hwm_mib": to_mib(generated["vm_hwm_bytes"]),
        "ru_maxrss_mib": to_mib(generated["ru_maxrss_bytes"]),
    }
    return generation, dt.date.fromisoformat(generated["extract_date"])


def _migration_runs(
    run_dir: Path,
    estate: Path,
    chunk_rows: int,
    as_of: dt.date,
    postgres_url: str | None,
    import_seconds: float,
    problems: list[str],
    log: Callable[[str], None],
    with_sqlite: bool = True,
    with_cutover: bool = True,
    jobs: int = 1,
    repeats: int = 1,
) -> list[dict[str, Any]]:
    """The migration in this process: on SQLite (unless left out), then on PostgreSQL when a
    server is given (with the COPY and to_sql peers unless ``with_cutover`` is false)."""
    targets: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        (
            "sqlite",
            lambda: _in_process_run(
                "sqlite",
                "sqlite",
                bench_settings(run_dir / "sqlite", estate, chunk_rows),
                as_of,
                log,
                jobs=jobs,
                import_seconds=import_seconds,
            ),
        ),
    ]
    if postgres_url:
        targets.append(
            (
                "postgresql",
                lambda: _postgres_run(
                    postgres_url,
                    run_dir,
                    estate,
                    chunk_rows,
                    as_of,
                    log,
                    with_cutover,
                    jobs,
                    repeats,
                ),
            )
        )
    if not with_sqlite:
        targets = [target for target in targets if target[0] != "sqlite"]
    runs = []
    for label, target in targets:
        try:
            run = target()
        except Exception as error:  # report and go on: the other figures are still worth having
            run = {
                "label": label,
                "backend": label,
                "chunk_rows": chunk_rows,
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(),
            }
            problems.append(f"{label} run failed: {type(error).__name__}: {error}")
            log(run["traceback"])
        else:
            if not run["reconciled"]:
                problems.append(f"{label} run: not every source row is accounted for")
        runs.append(run)
    return runs


def _freeze_windows(
    run_dir: Path,
    estate: Path,
    chunk_rows: int,
    as_of: dt.date,
    postgres_url: str | None,
    with_sqlite: bool,
    problems: list[str],
    log: Callable[[str], None],
    repeats: int = 1,
) -> dict[str, Any]:
    """A wave's freeze window (etl/bench/freeze.py) on SQLite and, with a server, PostgreSQL
    (in a fresh schema, dropped afterwards), each measured ``repeats`` times."""
    from etl.bench.freeze import freeze_window_figures
    from etl.bench.postgres import fresh_schema

    figures: dict[str, Any] = {}
    backends = (["sqlite"] if with_sqlite else []) + (["postgresql"] if postgres_url else [])
    for backend in backends:
        home = run_dir / f"freeze_{backend}"
        try:
            if backend == "sqlite":
                figures[backend] = freeze_window_figures(
                    home, estate, chunk_rows, as_of, None, log, repeats=repeats
                )
            else:
                assert postgres_url is not None
                with fresh_schema(postgres_url, log) as url:
                    figures[backend] = freeze_window_figures(
                        home, estate, chunk_rows, as_of, url, log, repeats=repeats
                    )
        except Exception as error:  # report and go on, as the migration runs do
            figures[backend] = {"error": f"{type(error).__name__}: {error}"}
            problems.append(f"{backend} freeze window failed: {type(error).__name__}: {error}")
            log(traceback.format_exc())
            continue
        for case in ("unchanged", "changed"):
            if not figures[backend][case]["verified"]:
                problems.append(f"{backend} freeze window ({case}): the wave was not verified")
    return figures


def _chunk_size_runs(
    run_dir: Path,
    estate: Path,
    chunk_rows: int,
    as_of: dt.date,
    problems: list[str],
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """``--compare-chunks``: the migration once per chunk size, each in a fresh child."""
    runs = []
    for size in compare_chunk_sizes(chunk_rows):
        label = f"sqlite_chunk_{size}"
        log(f"{label}: migrating in a fresh child interpreter")
        try:
            run = _run_child(
                [
                    "migrate",
                    "--home",
                    str(run_dir / label),
                    "--estate",
                    str(estate),
                    "--chunk-rows",
                    str(size),
                    "--label",
                    label,
                    "--as-of",
                    as_of.isoformat(),
                ],
                run_dir / f"{label}.json",
                run_dir / f"{label}.log",
            )
        except Exception as error:
            run = {
                "label": label,
                "backend": "sqlite",
                "chunk_rows": size,
                "process": "child interpreter",
                "error": f"{type(error).__name__}: {error}",
            }
            problems.append(f"{label} run failed: {error}")
        else:
            if not run["reconciled"]:
                problems.append(f"{label} run: not every source row is accounted for")
        runs.append(run)
    return runs


def _dag_parse(
    run_dir: Path,
    estate: Path,
    chunk_rows: int,
    repeats: int,
    problems: list[str],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The parse time of ``dags/`` in fresh interpreters (or the error that stopped it)."""
    log(f"timing the parse of dags/ ({repeats} + 1 fresh interpreters)")
    try:
        dag_parse = measure_dag_parse(
            bench_settings(run_dir / "dag_parse", estate, chunk_rows), repeats, run_dir
        )
        if dag_parse["import_errors"]:
            problems.append(f"DAG import errors: {dag_parse['import_errors']}")
    except Exception as error:
        dag_parse = {"error": f"{type(error).__name__}: {error}"}
        problems.append(f"DAG parse timing failed: {error}")
    return dag_parse


def _export(
    run_dir: Path,
    estate: Path,
    chunk_rows: int,
    runs: list[dict[str, Any]],
    problems: list[str],
    log: Callable[[str], None],
) -> dict[str, Any] | None:
    """The FHIR export of the SQLite run's core (None without a successful SQLite run)."""
    if not any(run["label"] == "sqlite" and not run.get("error") for run in runs):
        return None
    log("FHIR export of the SQLite core (--all): throughput and peak RSS")
    try:
        from etl.bench.export import measure_export

        core_url = bench_settings(run_dir / "sqlite", estate, chunk_rows).resolved_core_url
        return measure_export(core_url, run_dir / "export")
    except Exception as error:
        problems.append(f"FHIR export timing failed: {error}")
        return {"error": f"{type(error).__name__}: {error}"}


def _identity(
    run_dir: Path,
    estate: Path,
    chunk_rows: int,
    as_of: dt.date,
    patients: int,
    problems: list[str],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Identity resolution over every system of the same estate (etl/bench/identity_scale.py)."""
    try:
        from etl.bench.identity_scale import measure_identity

        return measure_identity(run_dir, estate, chunk_rows, as_of, patients, log)
    except Exception as error:
        problems.append(f"identity resolution timing failed: {error}")
        return {"people": patients, "error": f"{type(error).__name__}: {error}"}


def _dashboard(run_dir: Path, problems: list[str], log: Callable[[str], None]) -> dict[str, Any]:
    """The dashboard's page times over a synthetic history (or the error that stopped them)."""
    log("dashboard: a synthetic history of every planned system in a temporary core; page times")
    try:
        from etl.dashboard.bench import measure_dashboard

        return measure_dashboard(run_dir / "dashboard")
    except Exception as error:
        problems.append(f"dashboard page timing failed: {error}")
        return {"error": f"{type(error).__name__}: {error}"}


def add_goals(results: dict[str, Any], startup: dict[str, Any] | None) -> None:
    """Start-up cost, the same final rows four ways, and issue 15's goals with PASS/MISS."""
    results["startup"] = startup
    run = postgres_run(results)
    results["throughput"] = throughput(run) if run else None
    results["goals"] = as_dicts(run_goals(results))


def _startup(repeats: int, problems: list[str], log: Callable[[str], None]) -> dict[str, Any]:
    log(f"start-up cost: fresh interpreters ({repeats} each, after a warm-up)")
    try:
        return measure_startup(repeats)
    except Exception as error:
        problems.append(f"start-up timing failed: {error}")
        return {"error": f"{type(error).__name__}: {error}"}


def _write_results(results: dict[str, Any], work_dir: Path, run_dir: Path, is_kept: bool) -> None:
    """``results.json`` and ``results.md`` in the work folder; the run's files kept (with a
    copy) or removed."""
    write_json(work_dir / RESULTS_FILE, results)
    (work_dir / RESULTS_MARKDOWN).write_text(results_markdown(results), "utf-8")
    if is_kept:  # kept for inspection (always, when something failed)
        write_json(run_dir / RESULTS_FILE, results)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
