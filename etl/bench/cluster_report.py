"""The cluster bench's figures and report: one executor run summarised from the metadata
database's task instances, the runs side by side, the checks, and the same as Markdown and Rich
tables (the projection's table too). Pure: dictionaries in, dictionaries and text out."""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from typing import Any

from etl.bench.figures import rows_per_second, shown

CLUSTER_SCHEMA_VERSION = 1
CLUSTER_DEFINITIONS = {
    "run_seconds": "the DAG run's start to its end as the metadata database records them",
    "wall_seconds": "from the trigger command to the run seen finished (polled every 2 s)",
    "rows_per_second": "source rows of the migrated systems (as generated) / run_seconds",
    "overhead_seconds": "the run's start to its first task's start, plus its last task's end to "
    "the run's end: scheduling that no worker count shortens",
    "slots": "task slots: [core] parallelism for the LocalExecutor, workers x one slot each "
    "(VARDFLYTT_CLUSTER_WORKER_CONCURRENCY=1) for the Celery cluster",
    "busy_seconds": "sum of the task instances' durations on that worker",
    "task_overhead_seconds": "median duration of the open_batch tasks: the fixed cost of a task "
    "(process start, pipeline import, parameters) before any row",
    "net_rows_per_second": "source rows / (run_seconds - overhead_seconds - tasks x "
    "task_overhead_seconds / slots): the rate once per-task fixed costs are amortised, as they are "
    "at region scale; the projection uses it",
    "core_checksum": "SHA-256 over core_checksums (etl/load/promote.py): every core table's row "
    "count and digest of every column of every row in key order; the runs share one batch id, "
    "so identical estates must give identical cores",
    "verify": "etl.cutover.reconcile.reconcile_system over each migrated system in one "
    "process after the LocalExecutor run: source rows / seconds (what `cutover verify` reads)",
}


def _parse_time(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value))


def summarize_mode(
    label: str,
    executor: str,
    workers: int,
    slots: int,
    source_rows: int,
    dag_run: dict[str, Any],
    task_rows: list[dict[str, Any]],
    **extra: Any,
) -> dict[str, Any]:
    """One executor's run: its times, its rate, and the tasks each worker (hostname) ran.

    ``task_rows`` are the task instances of the run (hostname, state, duration, start_date,
    end_date); ``dag_run`` has the run's state, start_date and end_date."""
    started, ended = _parse_time(dag_run["start_date"]), _parse_time(dag_run["end_date"])
    run_seconds = (ended - started).total_seconds() if started and ended else None
    per_worker: dict[str, dict[str, Any]] = defaultdict(lambda: {"tasks": 0, "busy_seconds": 0.0})
    states: dict[str, int] = defaultdict(int)
    task_starts: list[dt.datetime] = []
    task_ends: list[dt.datetime] = []
    for row in task_rows:
        states[row["state"] or "none"] += 1
        if row["state"] != "success":
            continue
        worker = per_worker[row["hostname"] or "unknown"]
        worker["tasks"] += 1
        worker["busy_seconds"] += float(row["duration"] or 0)
        task_start, task_end = _parse_time(row["start_date"]), _parse_time(row["end_date"])
        if task_start is not None:
            task_starts.append(task_start)
        if task_end is not None:
            task_ends.append(task_end)
    overhead = None
    if started and ended and task_starts and task_ends:
        overhead = (min(task_starts) - started).total_seconds() + (
            ended - max(task_ends)
        ).total_seconds()
    task_overhead = task_overhead_seconds(task_rows)
    tasks = sum(figures["tasks"] for figures in per_worker.values())
    net = net_run_seconds(run_seconds, overhead, tasks, task_overhead, slots)
    return {
        "label": label,
        "executor": executor,
        "workers": workers,
        "slots": slots,
        "state": dag_run["state"],
        "source_rows": source_rows,
        "run_seconds": run_seconds,
        "rows_per_second": rows_per_second(source_rows, run_seconds) if run_seconds else None,
        "overhead_seconds": overhead,
        "tasks": tasks,
        "task_overhead_seconds": task_overhead,
        "net_run_seconds": net,
        "net_rows_per_second": rows_per_second(source_rows, net) if net else None,
        "task_states": dict(sorted(states.items())),
        "per_worker": {
            name: {"tasks": figures["tasks"], "busy_seconds": round(figures["busy_seconds"], 3)}
            for name, figures in sorted(per_worker.items())
        },
        **extra,
    }


def task_overhead_seconds(task_rows: list[dict[str, Any]]) -> float | None:
    """What every task pays before it touches a row: the median duration of ``open_batch``,
    which imports the pipeline, reads its parameters and returns (no data)."""
    durations = sorted(
        float(row["duration"])
        for row in task_rows
        if str(row.get("task_id", "")).endswith("open_batch")
        and row["state"] == "success"
        and row["duration"] is not None
    )
    return statistics.median(durations) if durations else None


def net_run_seconds(
    run_seconds: float | None,
    overhead: float | None,
    tasks: int,
    task_overhead: float | None,
    slots: int,
) -> float | None:
    """The run's seconds spent on rows: without the scheduling before and after, and without
    each task's fixed cost spread over the slots. Those stay per task as the estate grows, the
    rest grows with the rows; None when nothing is left (a run too small to tell)."""
    if run_seconds is None or overhead is None or task_overhead is None:
        return None
    net = run_seconds - overhead - tasks * task_overhead / slots
    return net if net > 0 else None


def cluster_checks(modes: list[dict[str, Any]]) -> dict[str, Any]:
    """What must hold: every run succeeded, residue 0, and one core checksum across the runs."""
    finished = [mode for mode in modes if not mode.get("error")]
    checksums = {mode["label"]: mode.get("core_checksum") for mode in finished}
    return {
        "all_runs_succeeded": len(finished) == len(modes)
        and all(mode["state"] == "success" for mode in finished),
        "residue_zero": bool(finished) and all(mode.get("residue") == 0 for mode in finished),
        "checksums_identical": len(finished) == len(modes)
        and len(modes) > 1
        and len(set(checksums.values())) == 1
        and None not in checksums.values(),
        "core_checksums": checksums,
    }


def side_by_side(modes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run: wall and run time, rows/s, its speedup over the first (LocalExecutor)
    and over one Celery worker, and the tasks each worker ran."""
    base = modes[0].get("rows_per_second") if modes else None
    one = next((m.get("rows_per_second") for m in modes if m["label"] == "celery_1"), None)
    rows = []
    for mode in modes:
        rate = mode.get("rows_per_second")
        rows.append(
            {
                "run": mode["label"],
                "executor": mode["executor"],
                "workers": mode["workers"],
                "slots": mode["slots"],
                "state": "error" if mode.get("error") else mode["state"],
                "run_seconds": mode.get("run_seconds"),
                "wall_seconds": mode.get("wall_seconds"),
                "startup_seconds": mode.get("startup_seconds"),
                "rows_per_second": rate,
                "net_rows_per_second": mode.get("net_rows_per_second"),
                "vs_local": rate / base if rate and base else None,
                "vs_one_worker": rate / one if rate and one and mode["workers"] else None,
                "tasks_per_worker": ", ".join(
                    f"{name} {figures['tasks']}"
                    for name, figures in mode.get("per_worker", {}).items()
                ),
                "core_checksum": (mode.get("core_checksum") or "")[:12],
            }
        )
    return rows


def build_cluster_results(
    *,
    parameters: dict[str, Any],
    machine: dict[str, Any],
    git: dict[str, Any],
    generation: dict[str, Any],
    modes: list[dict[str, Any]],
    verify: dict[str, Any] | None,
    started_at: str,
    wall_seconds: float,
    problems: list[str],
) -> dict[str, Any]:
    checks = cluster_checks(modes)
    problems = list(problems)
    for name in ("all_runs_succeeded", "residue_zero", "checksums_identical"):
        if not checks[name]:
            problems.append(f"cluster bench check failed: {name.replace('_', ' ')}")
    return {
        "schema_version": CLUSTER_SCHEMA_VERSION,
        "started_at": started_at,
        "wall_seconds": wall_seconds,
        "parameters": parameters,
        "machine": machine,
        "git": git,
        "generation": generation,
        "modes": modes,
        "side_by_side": side_by_side(modes),
        "verify": verify or {},
        "checks": checks,
        "problems": problems,
        "definitions": CLUSTER_DEFINITIONS,
    }


def cluster_markdown(results: dict[str, Any]) -> str:
    """The side-by-side table and the checks as Markdown (for the README and reviews)."""
    parameters = results["parameters"]
    lines = [
        f"{parameters['patients']:,} people, systems {', '.join(parameters['systems'])} "
        f"({_source_rows(results):,} source rows); {results['machine'].get('cpu_count')} CPUs",
        "",
        "| run | executor | workers | slots | run s | wall s | rows/s | net rows/s | vs local | "
        "vs 1 worker | tasks per worker | core checksum |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for row in results["side_by_side"]:
        lines.append(
            f"| {row['run']} | {row['executor']} | {row['workers']} | {row['slots']} | "
            f"{shown(row['run_seconds'], 1)} | {shown(row['wall_seconds'], 1)} | "
            f"{shown(row['rows_per_second'], 0)} | {shown(row['net_rows_per_second'], 0)} | "
            f"{shown(row['vs_local'], 2)} | "
            f"{shown(row['vs_one_worker'], 2)} | {row['tasks_per_worker']} | "
            f"`{row['core_checksum']}` |"
        )
    checks = results["checks"]
    lines += [
        "",
        "checks: "
        + ", ".join(
            f"{name.replace('_', ' ')} {'yes' if checks[name] else 'NO'}"
            for name in ("all_runs_succeeded", "residue_zero", "checksums_identical")
        ),
    ]
    return "\n".join(lines) + "\n"


def _source_rows(results: dict[str, Any]) -> int:
    generated = results["generation"]["source_rows"]
    return sum(generated.get(system, 0) for system in results["parameters"]["systems"])


def _duration(seconds: float) -> str:
    """Hours and minutes for a projection table (``3 h 05 min``, ``42 min``)."""
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def projection_markdown(projection: dict[str, Any]) -> str:
    """The projection's table and its assumptions as Markdown."""
    lines = [
        f"{projection['source_rows']:,.0f} source rows, {projection['delta_rows']:,.0f} in "
        "the final delta",
        "",
        "| workers | rows/s | bound by | initial load | final delta | verify | cutover window |",
        "|--:|--:|---|--:|--:|--:|--:|",
    ]
    for row in projection["rows"]:
        lines.append(
            f"| {row['workers']} | {row['rows_per_second']:,.0f} | {row['bound_by']} | "
            f"{_duration(row['initial_load_seconds'])} | {_duration(row['delta_seconds'])} | "
            f"{_duration(row['verify_seconds'])} | {_duration(row['window_seconds'])} |"
        )
    lines += ["", "Assumptions:", ""] + [f"- {line}" for line in projection["assumptions"]]
    return "\n".join(lines) + "\n"


def cluster_table(results: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(
        title=f"one estate, three executors ({_source_rows(results):,} source rows of "
        f"{', '.join(results['parameters']['systems'])})"
    )
    columns = ("run", "workers", "slots", "run s", "wall s", "start s", "rows/s", "net rows/s")
    for column in (*columns, "vs local", "vs 1 worker", "tasks per worker", "checksum"):
        table.add_column(
            column, justify="left" if column in {"run", "tasks per worker"} else "right"
        )
    for row in results["side_by_side"]:
        table.add_row(
            f"{row['run']} ({row['state']})",
            str(row["workers"]),
            str(row["slots"]),
            shown(row["run_seconds"], 1),
            shown(row["wall_seconds"], 1),
            shown(row["startup_seconds"], 1),
            shown(row["rows_per_second"], 0),
            shown(row["net_rows_per_second"], 0),
            shown(row["vs_local"], 2),
            shown(row["vs_one_worker"], 2),
            row["tasks_per_worker"],
            row["core_checksum"],
        )
    return table


def projection_table(projection: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(
        title=f"projection: {projection['source_rows']:,.0f} source rows "
        f"(final delta {projection['delta_rows']:,.0f})"
    )
    for column in ("workers", "rows/s", "bound by", "initial load", "delta", "verify", "window"):
        table.add_column(column, justify="left" if column == "bound by" else "right")
    for row in projection["rows"]:
        table.add_row(
            str(row["workers"]),
            f"{row['rows_per_second']:,.0f}",
            row["bound_by"],
            _duration(row["initial_load_seconds"]),
            _duration(row["delta_seconds"]),
            _duration(row["verify_seconds"]),
            _duration(row["window_seconds"]),
        )
    return table
