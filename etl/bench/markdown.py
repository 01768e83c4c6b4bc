"""``results.md`` beside ``results.json``: the short table of a bench run (stages per system with
wall and CPU seconds, rows/s and peak RSS; the same final rows through the pipeline, plain COPY
and to_sql; start-up cost; the goals with PASS/MISS). Pure: a results dict in, text out."""

from __future__ import annotations

from typing import Any

from etl.bench.figures import STAGES
from etl.bench.goals import goals_markdown


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def stage_lines(run: dict[str, Any]) -> list[str]:
    """A row per system and stage (and end to end), then the run's total."""
    lines = [
        "| system | stage | wall s | CPU s | rows/s | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for system, figures in [*run["systems"].items(), ("**total**", run["total"])]:
        for stage in (*STAGES, "end_to_end"):
            row = figures["end_to_end"] if stage == "end_to_end" else figures["stages"].get(stage)
            if row is None:
                continue
            lines.append(
                f"| {system} | {stage.replace('_', ' ')} | {_num(row['seconds'])} | "
                f"{_num(row.get('cpu_seconds'))} | {_num(row['rows_per_second'], 0)} | "
                f"{_num(row.get('peak_rss_mib'), 1)} |"
            )
    return lines


def throughput_lines(rates: dict[str, Any]) -> list[str]:
    """The same final rows four ways (rows/s)."""
    return [
        f"Same {rates['final_rows']:,} final rows on PostgreSQL (rows/s):",
        "",
        "| pipeline end to end | load alone (stage + promote + verify) | plain COPY | to_sql |",
        "|---:|---:|---:|---:|",
        f"| {_num(rates['end_to_end'], 0)} | {_num(rates['load'], 0)} | "
        f"{_num(rates['plain_copy'], 0)} | {_num(rates['to_sql'], 0)} |",
    ]


def startup_lines(startup: dict[str, Any]) -> list[str]:
    lines = [
        f"Start-up cost (fresh interpreter each, median of {startup['repeats']}):",
        "",
        "| command | wall s | CPU s |",
        "|---|---:|---:|",
    ]
    for name, figures in startup["commands"].items():
        lines.append(
            f"| {name} | {_num(figures['wall_seconds'])} | {_num(figures['cpu_seconds'])} |"
        )
    return lines


def results_markdown(results: dict[str, Any]) -> str:
    """The whole short report of one ``vardflytt bench`` run."""
    parameters = results["parameters"]
    parts = [
        f"# vardflytt bench: {parameters['patients']:,} people, chunk {parameters['chunk_rows']:,}",
        "",
        f"{results['started_at']}; commit {results['git'].get('commit') or 'unknown'}; "
        f"{results['machine'].get('cpu_count')} CPUs (shared: compare CPU s, not only wall s).",
    ]
    for run in results["runs"]:
        parts += ["", f"## {run['label']} ({run.get('process', '')})", ""]
        if run.get("error"):
            parts.append(f"failed: {run['error']}")
            continue
        parts += stage_lines(run)
        parts += ["", f"VmHWM {_num(run.get('vm_hwm_mib'), 1)} MiB (exact process peak)."]
    if results.get("throughput"):
        parts += ["", *throughput_lines(results["throughput"])]
    if results.get("startup") and not results["startup"].get("error"):
        parts += ["", *startup_lines(results["startup"])]
    if results.get("goals"):
        parts += ["", "## Goals (issue 15)", "", goals_markdown(results["goals"]).rstrip()]
    return "\n".join(parts) + "\n"
