"""``vardflytt bench --peers``: ELVIS through vardflytt and through dlt, same source, same server.

* **vardflytt in process**: extract -> transform -> validate -> gate -> stage -> promote ->
  verify of ELVIS into a fresh PostgreSQL schema, timed per stage (as ``make bench`` does); its
  peak RSS is this process's ``VmHWM`` (only ELVIS runs in it).
* **vardflytt through the command line**: ``python -m etl.cli run elvis`` in a fresh interpreter
  into another fresh schema: the same work plus start-up, progress and the validation report.
  Wall and CPU seconds from ``os.wait4``.
* **dlt**: ``etl/bench/dlt_elvis.py`` run by the peers virtualenv's interpreter (dlt is not in the
  project's lock): ``sql_database`` (pyarrow backend) -> PostgreSQL (CSV, COPY) of ELVIS's
  tables, raw. The script reports its own timings and ``VmHWM``; ``os.wait4`` gives the child's
  wall and CPU seconds around it.

Rates are each tool's rows over its own seconds: vardflytt's source rows extracted, dlt's rows
loaded (the same tables). Every schema made here is dropped afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from etl.batch import write_json
from etl.bench.figures import (
    BENCH_SEED,
    bench_schema_name,
    median_position,
    redact_url,
    rows_per_second,
    summarize_run,
    to_mib,
    url_with_search_path,
)
from etl.bench.goals import as_dicts, peer_goals, ratio
from etl.bench.markdown import peers_markdown
from etl.bench.memory import RssSampler, process_peaks
from etl.bench.migration import (
    bench_settings,
    migrate,
    migrate_parallel,
    prepare_core,
    warm_imports,
)
from etl.settings import PROJECT_ROOT

PEERS_FILE = "peers.json"
PEERS_MARKDOWN = "peers.md"
DLT_SCRIPT = Path(__file__).with_name("dlt_elvis.py")
ELVIS_SQLITE = Path("elvis") / "elvis.sqlite"


def elvis_tables(mappings: Path = PROJECT_ROOT / "mappings") -> list[str]:
    """The tables ELVIS's mapping reads (``datasets.<name>.table`` of its system.yaml)."""
    import yaml

    system = yaml.safe_load((mappings / "elvis" / "system.yaml").read_text("utf-8"))
    return [dataset["table"] for dataset in system["datasets"].values()]


def dlt_destination(sqlalchemy_url: str) -> str:
    """The server as dlt's postgres destination takes it: a plain ``postgresql://`` URL with a
    password (dlt refuses credentials without one; a trust-authenticated server ignores it)."""
    import sqlalchemy as sa

    url = sa.make_url(sqlalchemy_url).set(drivername="postgresql")
    url = url.set(query={k: v for k, v in url.query.items() if k != "options"})
    if not url.password:
        url = url.set(password="unused")
    return url.render_as_string(hide_password=False)


def peer_environment() -> dict[str, str]:
    """This process's environment for a peer tool, without the project's own settings: no
    ``VARDFLYTT_*`` or ``PYTHON*`` variables, and Arrow's memory pool left to the peer's default
    unless the operator chose it (``import etl`` chooses jemalloc, etl/__init__.py)."""
    import etl

    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VARDFLYTT_", "PYTHON"))
        and not (k == "ARROW_DEFAULT_MEMORY_POOL" and etl.ARROW_POOL_CHOSEN_HERE)
    }


def timed_process(command: list[str], log_file: Path, env: dict[str, str] | None = None) -> dict:
    """Wall and CPU (user + system) seconds of a child process; fails with its log's tail."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as handle:
        started = time.perf_counter()
        child = subprocess.Popen(
            command, cwd=PROJECT_ROOT, stdout=handle, stderr=subprocess.STDOUT, env=env
        )
        _pid, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = log_file.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"`{' '.join(command[:3])} ...` exited with {code}; {log_file}:\n{tail}")
    return {"wall_seconds": wall, "cpu_seconds": usage.ru_utime + usage.ru_stime}


def _schema(admin: Any, log: Callable[[str], None]) -> str:
    schema = bench_schema_name()
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    log(f"peers: schema {schema} created")
    return schema


def _drop(admin: Any, schema: str, log: Callable[[str], None]) -> None:
    with admin.begin() as connection:
        connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    log(f"peers: schema {schema} dropped")


def _core_schema_seconds(settings: Any) -> float:
    """The fresh schema brought to head before the clock starts, as ``make bench`` does
    (``prepare_core``: a production core is migrated once, not by every run): its seconds are
    reported beside the run, not inside its extract."""
    started = time.perf_counter()
    prepare_core(settings)
    return round(time.perf_counter() - started, 3)


def _vardflytt_in_process(
    run_dir: Path, estate: Path, url: str, chunk_rows: int, as_of: dt.date, log: Callable
) -> dict[str, Any]:
    from etl.core.database import core_engine

    settings = bench_settings(run_dir / "in_process", estate, chunk_rows, url)
    try:
        core_schema_seconds = _core_schema_seconds(settings)
        with RssSampler() as sampler:
            timings = migrate(settings, "peers", as_of, sampler, systems=("elvis",), log=log)
    finally:
        core_engine(url).dispose()
    run = summarize_run("vardflytt_in_process", "postgresql", chunk_rows, timings, process_peaks())
    total = run["total"]
    return {
        "rows": total["source_rows"],
        "seconds": total["end_to_end"]["seconds"],
        "cpu_seconds": total["end_to_end"]["cpu_seconds"],
        "rows_per_second": total["end_to_end"]["rows_per_second"],
        "peak_rss_mib": run["vm_hwm_mib"] or run["ru_maxrss_mib"],
        "reconciled": run["reconciled"],
        "stages": total["stages"],
        "core_schema_seconds": core_schema_seconds,
    }


def _vardflytt_in_workers(
    run_dir: Path, estate: Path, url: str, chunk_rows: int, as_of: dt.date, log: Callable
) -> dict[str, Any]:
    """ELVIS as ``vardflytt run elvis`` runs it, without its start-up: the entities' tasks in
    worker processes, as many as the CPUs (etl/parallel.py); the workers are started before
    the clock. Peak RSS: the process tree's, summed (sampled)."""
    from etl.core.database import core_engine
    from etl.parallel import default_jobs

    settings = bench_settings(run_dir / "in_workers", estate, chunk_rows, url)
    jobs = default_jobs(settings)
    try:
        core_schema_seconds = _core_schema_seconds(settings)
        timings, whole, _walls, extra = migrate_parallel(
            settings, "peers", as_of, jobs, systems=("elvis",), log=log
        )
    finally:
        core_engine(url).dispose()
    rows = sum(t.source_rows for t in timings)
    return {
        "rows": rows,
        "jobs": jobs,
        "workers": extra["workers"],
        "seconds": whole.seconds,
        "cpu_seconds": whole.cpu_seconds,
        "rows_per_second": rows_per_second(rows, whole.seconds),
        "peak_rss_mib": to_mib(whole.peak_rss_bytes),
        "reconciled": all(t.reconciled for t in timings),
        "core_schema_seconds": core_schema_seconds,
    }


def _vardflytt_cli(
    run_dir: Path, estate: Path, url: str, chunk_rows: int, as_of: dt.date, rows: int
) -> dict[str, Any]:
    home = run_dir / "cli"
    env = {
        **os.environ,
        "VARDFLYTT_HOME": str(home),
        "VARDFLYTT_ESTATE_DIR": str(estate),
        "VARDFLYTT_LANDING_DIR": str(home / "landing"),
        "VARDFLYTT_CORE_URL": url,
        "VARDFLYTT_CHUNK_ROWS": str(chunk_rows),
    }
    env.pop("VARDFLYTT_STORAGE_ROOT", None)
    figures = timed_process(
        [sys.executable, "-m", "etl.cli", "run", "elvis", "--as-of-date", as_of.isoformat()],
        run_dir / "cli.log",
        env,
    )
    return {
        **figures,
        "rows": rows,
        "rows_per_second": rows_per_second(rows, figures["wall_seconds"]),
    }


def _dlt(
    peers_python: Path,
    run_dir: Path,
    estate: Path,
    destination: str,
    schema: str,
    chunk_rows: int,
    tables: list[str],
) -> dict[str, Any]:
    result_file = run_dir / "dlt.json"
    command = [
        str(peers_python),
        str(DLT_SCRIPT),
        "--source",
        f"sqlite:///{(estate / ELVIS_SQLITE).resolve()}",
        *[part for table in tables for part in ("--table", table)],
        "--destination",
        destination,
        "--dataset",
        schema,
        "--chunk-rows",
        str(chunk_rows),
        "--pipelines-dir",
        str(run_dir / "dlt_pipelines"),
        "--result",
        str(result_file),
    ]
    child = timed_process(command, run_dir / "dlt.log", peer_environment())
    inner = json.loads(result_file.read_text("utf-8"))
    return {
        "dlt_version": inner["dlt_version"],
        "rows": inner["rows"],
        "row_counts": inner["row_counts"],
        "seconds": inner["run_seconds"],
        "cpu_seconds": inner["run_cpu_seconds"],
        "rows_per_second": rows_per_second(inner["rows"], inner["run_seconds"]),
        "import_seconds": inner["import_seconds"],
        "step_seconds": inner["step_seconds"],
        "process_wall_seconds": child["wall_seconds"],
        "process_cpu_seconds": child["cpu_seconds"],
        "process_rows_per_second": rows_per_second(inner["rows"], child["wall_seconds"]),
        "peak_rss_mib": to_mib(inner["vm_hwm_bytes"]),
    }


def run_peers(
    patients: int,
    peers_python: Path,
    postgres_url: str,
    work_dir: Path,
    chunk_rows: int,
    log: Callable[[str], None] = lambda _m: None,
    repeats: int = 1,
) -> dict[str, Any]:
    """ELVIS of one estate through vardflytt (in process, in worker processes, the command
    line) and dlt. With ``repeats`` above 1 the three timed runs (vardflytt in process, in
    workers, dlt) are made that many times, in rounds, each on fresh schemas, and the round
    whose in-process rate / dlt's rate is the median is shown (``median_round``); the command
    line runs in the first round only."""
    import sqlalchemy as sa

    from etl.bench.run import _generate

    _refuse_before_running(repeats, peers_python)
    work_dir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="peers_", dir=work_dir))
    estate = run_dir / "estate"
    generation, as_of = _generate(run_dir, estate, patients, BENCH_SEED, log)
    import_seconds = warm_imports()
    tables = elvis_tables()
    admin = sa.create_engine(postgres_url)
    schemas: list[str] = []
    rounds: list[dict[str, Any]] = []
    cli: dict[str, Any] = {}

    def on_fresh_schema() -> str:
        schemas.append(_schema(admin, log))
        return url_with_search_path(postgres_url, schemas[-1])

    try:
        for index in range(repeats):
            round_dir = run_dir / f"round_{index + 1}"
            log(f"peers: round {index + 1} of {repeats}: vardflytt ELVIS in process")
            in_process = _vardflytt_in_process(
                round_dir, estate, on_fresh_schema(), chunk_rows, as_of, log
            )
            log("peers: vardflytt ELVIS in process, its tasks in worker processes")
            in_workers = _vardflytt_in_workers(
                round_dir, estate, on_fresh_schema(), chunk_rows, as_of, log
            )
            if index == 0:
                log("peers: vardflytt ELVIS through the command line (`python -m etl.cli run`)")
                cli = _vardflytt_cli(
                    round_dir, estate, on_fresh_schema(), chunk_rows, as_of, in_process["rows"]
                )
            schemas.append(bench_schema_name().replace("vardflytt_bench", "dlt_bench"))
            log(f"peers: dlt sql_database (pyarrow) -> postgres (csv) into {schemas[-1]}")
            dlt = _dlt(
                peers_python,
                round_dir,
                estate,
                dlt_destination(postgres_url),
                schemas[-1],
                chunk_rows,
                tables,
            )
            rounds.append({"in_process": in_process, "in_workers": in_workers, "dlt": dlt})
    finally:
        for schema in schemas:
            _drop(admin, schema, log)
        admin.dispose()
    results = {
        "patients": patients,
        "chunk_rows": chunk_rows,
        "postgres_url": redact_url(postgres_url),
        "source_rows": generation["source_rows"]["elvis"],
        "import_seconds": import_seconds,
        **_shown_round(rounds, cli),
        "run_dir": str(run_dir),
    }
    write_json(work_dir / PEERS_FILE, results)
    (work_dir / PEERS_MARKDOWN).write_text(peers_markdown(results), "utf-8")
    shutil.rmtree(run_dir, ignore_errors=True)
    return results


def _refuse_before_running(repeats: int, peers_python: Path) -> None:
    """No estate is generated for a run that cannot happen."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats}")
    if not Path(peers_python).exists():
        raise FileNotFoundError(
            f"{peers_python}: no peers virtualenv; `make bench-peers` creates it"
        )


def _shown_round(rounds: list[dict[str, Any]], cli: dict[str, Any]) -> dict[str, Any]:
    """The median round's runs (``median_round``), the command line's (first round), their goals
    and, of more than one round, every round's ratios (``repeats``)."""
    shown_round = median_round(rounds)
    shown = {
        "vardflytt_in_process": shown_round["in_process"],
        "vardflytt_in_workers": shown_round["in_workers"],
        "vardflytt_cli": cli,
        "dlt": shown_round["dlt"],
        "goals": as_dicts(
            peer_goals(shown_round["in_process"], shown_round["dlt"], shown_round["in_workers"])
        ),
    }
    if "repeats" in shown_round:
        shown["repeats"] = shown_round["repeats"]
    return shown


def _rate_ratio(run: dict[str, Any], dlt: dict[str, Any]) -> float | None:
    """A run's rows/s over dlt's (``goals.ratio``, as the goals compute it), to 4 decimals."""
    found = ratio(run.get("rows_per_second"), dlt.get("rows_per_second"))
    return None if found is None else round(found, 4)


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Of the peer rounds (``in_process``, ``in_workers``, ``dlt`` each), the one whose
    in-process rate / dlt's rate is the median (of an even number the lower middle one: the
    goal is a lower bound, so the less flattering one); its runs are shown and its goals
    judged, every round's ratios listed under ``repeats``. One round is returned as it is.

    Two figures are not the shown round's own: vardflytt's in-process peak RSS is the first
    round's (this process's high-water mark, which a later round cannot lower below an
    earlier one's), and ``reconciled`` is every round's (a round that lost a row is a problem
    whichever is shown)."""
    if len(rounds) == 1:
        return rounds[0]
    ratios = [_rate_ratio(r["in_process"], r["dlt"]) for r in rounds]
    chosen_index = median_position(
        [value if value is not None else float("-inf") for value in ratios], higher=False
    )
    chosen = {key: dict(run) for key, run in rounds[chosen_index].items()}
    chosen["in_process"]["peak_rss_mib"] = rounds[0]["in_process"]["peak_rss_mib"]
    for kind in ("in_process", "in_workers"):
        chosen[kind]["reconciled"] = all(r[kind].get("reconciled") for r in rounds)
    chosen["repeats"] = {
        "count": len(rounds),
        "chosen": chosen_index + 1,
        "in_process_vs_dlt": ratios,
        "in_workers_vs_dlt": [_rate_ratio(r["in_workers"], r["dlt"]) for r in rounds],
        "in_process_seconds": [r["in_process"]["seconds"] for r in rounds],
        "in_workers_seconds": [r["in_workers"]["seconds"] for r in rounds],
        "dlt_seconds": [r["dlt"]["seconds"] for r in rounds],
    }
    return chosen
