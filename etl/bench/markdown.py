"""``results.md`` beside ``results.json``: the short table of a bench run (stages per system with
wall and CPU seconds, rows/s and peak RSS; the same final rows through the pipeline, plain COPY
and to_sql; start-up cost; the goals with PASS/MISS). Pure: a results dict in, text out."""

from __future__ import annotations

from typing import Any

from etl.bench.figures import STAGES, percent, shown
from etl.bench.goals import goals_markdown


def stage_lines(run: dict[str, Any]) -> list[str]:
    """A row per system and stage (and end to end), then the run's total."""
    lines = [
        "| system | stage | wall s | CPU s | rows/s | share | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for system, figures in [*run["systems"].items(), ("**total**", run["total"])]:
        for stage in (*STAGES, "end_to_end"):
            row = figures["end_to_end"] if stage == "end_to_end" else figures["stages"].get(stage)
            if row is None:
                continue
            part = "100%" if stage == "end_to_end" else percent(row.get("share_of_end_to_end"))
            lines.append(
                f"| {system} | {stage.replace('_', ' ')} | {shown(row['seconds'])} | "
                f"{shown(row.get('cpu_seconds'))} | {shown(row['rows_per_second'], 0)} | "
                f"{part} | {shown(row.get('peak_rss_mib'), 1)} |"
            )
    validate = run["total"]["stages"].get("validate") or {}
    if validate.get("task_seconds") is not None:
        lines += [
            "",
            "Stages overlap in worker processes: a stage's share is its tasks' seconds over all "
            f"tasks' seconds ({shown(validate['task_seconds'])} s of validation). Its wall s is "
            "the time any of its tasks ran: for validation "
            f"{percent(validate.get('wall_coverage'))} of the run's wall clock.",
        ]
    return lines


def throughput_lines(rates: dict[str, Any]) -> list[str]:
    """The same final rows four ways (rows/s)."""
    return [
        f"Same {rates['final_rows']:,} final rows on PostgreSQL (rows/s):",
        "",
        "| pipeline end to end | load alone (stage + promote + verify) | plain COPY | to_sql |",
        "|---:|---:|---:|---:|",
        f"| {shown(rates['end_to_end'], 0)} | {shown(rates['load'], 0)} | "
        f"{shown(rates['plain_copy'], 0)} | {shown(rates['to_sql'], 0)} |",
    ]


def repeat_lines(repeats: dict[str, Any]) -> list[str]:
    """Each repeat of the PostgreSQL migration with its plain COPY, and which one is shown."""
    lines = [
        f"Repeats: {repeats['count']} migrations on fresh schemas, each with its plain COPY of "
        f"the same rows beside it; shown above and judged below: repeat {repeats['chosen']}, the "
        "median by end to end / COPY (to_sql timed in repeat "
        f"{repeats['to_sql_timed_in']} only).",
        "",
        "| repeat | end to end s | plain COPY s | end to end / COPY | load / COPY |",
        "|---:|---:|---:|---:|---:|",
    ]
    for run in repeats["runs"]:
        lines.append(
            f"| {run['repeat']} | {shown(run['end_to_end_seconds'])} | "
            f"{shown(run['plain_copy_seconds'])} | {shown(run['e2e_vs_plain_copy'], 3)} | "
            f"{shown(run['load_vs_plain_copy'], 3)} |"
        )
    return lines


def startup_lines(startup: dict[str, Any]) -> list[str]:
    lines = [
        f"Start-up cost (fresh interpreter each, median of {startup['repeats']}):",
        "",
        "| command | wall s | CPU s |",
        "|---|---:|---:|",
    ]
    for name, figures in startup["commands"].items():
        lines.append(
            f"| {name} | {shown(figures['wall_seconds'])} | {shown(figures['cpu_seconds'])} |"
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
        parts += ["", f"VmHWM {shown(run.get('vm_hwm_mib'), 1)} MiB (exact process peak)."]
        if run.get("repeats"):
            parts += ["", *repeat_lines(run["repeats"])]
    if results.get("throughput"):
        parts += ["", *throughput_lines(results["throughput"])]
    if results.get("export"):
        from etl.bench.export import export_lines

        parts += ["", *export_lines(results["export"])]
    if results.get("identity"):
        from etl.bench.identity_scale import identity_lines

        parts += ["", *identity_lines(results["identity"])]
    if results.get("startup") and not results["startup"].get("error"):
        parts += ["", *startup_lines(results["startup"])]
        dag_parse = results.get("dag_parse") or {}
        if dag_parse.get("dagbag_total_seconds") is not None:
            parts.append(
                f"| import airflow + DagBag(dags/) (what a task process parses first; "
                f"median of {dag_parse['samples_in_median']}) | "
                f"{shown(dag_parse['dagbag_total_seconds'])} | - |"
            )
    if results.get("freeze_window"):
        from etl.bench.freeze import freeze_lines

        parts += ["", *freeze_lines(results["freeze_window"])]
    if results.get("goals"):
        parts += ["", "## Goals (issue 15)", "", goals_markdown(results["goals"]).rstrip()]
    return "\n".join(parts) + "\n"


def peers_markdown(peers: dict[str, Any]) -> str:
    """ELVIS through vardflytt (in process, command line) and dlt, with the peer goals."""
    in_process, cli, dlt = peers["vardflytt_in_process"], peers["vardflytt_cli"], peers["dlt"]
    lines = [
        f"# ELVIS, {peers['patients']:,} people ({peers['source_rows']:,} source rows), "
        f"chunk {peers['chunk_rows']:,}, same PostgreSQL server",
        "",
        "| tool | rows | wall s | CPU s | rows/s | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|",
        f"| vardflytt in process (extract -> verify) | {in_process['rows']:,} | "
        f"{shown(in_process['seconds'])} | {shown(in_process['cpu_seconds'])} | "
        f"{shown(in_process['rows_per_second'], 0)} | {shown(in_process['peak_rss_mib'], 1)} |",
        *_in_workers_row(peers.get("vardflytt_in_workers")),
        f"| vardflytt command line (`vardflytt run elvis`) | {cli['rows']:,} | "
        f"{shown(cli['wall_seconds'])} | {shown(cli['cpu_seconds'])} | "
        f"{shown(cli['rows_per_second'], 0)} | - |",
        f"| dlt {dlt['dlt_version']} in process (pipeline.run) | {dlt['rows']:,} | "
        f"{shown(dlt['seconds'])} | {shown(dlt['cpu_seconds'])} | "
        f"{shown(dlt['rows_per_second'], 0)} | {shown(dlt['peak_rss_mib'], 1)} |",
        f"| dlt whole process (imports included) | {dlt['rows']:,} | "
        f"{shown(dlt['process_wall_seconds'])} | {shown(dlt['process_cpu_seconds'])} | "
        f"{shown(dlt['process_rows_per_second'], 0)} | {shown(dlt['peak_rss_mib'], 1)} |",
        "",
        *_core_schema_line(in_process),
        *_peer_repeat_lines(peers.get("repeats")),
        goals_markdown(peers["goals"]).rstrip(),
    ]
    return "\n".join(lines) + "\n"


def _peer_repeat_lines(repeats: dict[str, Any] | None) -> list[str]:
    """The rounds of a repeated peer comparison (etl/bench/peers.py ``median_round``)."""
    if not repeats:
        return []

    def listed(key: str, digits: int = 3) -> str:
        return ", ".join(shown(value, digits) for value in repeats[key])

    return [
        f"{repeats['count']} rounds in turns (vardflytt in process, in worker processes, dlt; "
        "each on fresh schemas; the command line in the first only): in process / dlt rows/s "
        f"{listed('in_process_vs_dlt')}; in worker processes / dlt "
        f"{listed('in_workers_vs_dlt')}; seconds in process {listed('in_process_seconds', 2)}, "
        f"in workers {listed('in_workers_seconds', 2)}, dlt {listed('dlt_seconds', 2)}. "
        f"Shown and judged: round {repeats['chosen']}, the median by in process / dlt (of an "
        "even number the lower middle one); vardflytt's in-process peak RSS is the first "
        "round's (this process's high-water mark, which a later round cannot lower).",
        "",
    ]


def _in_workers_row(run: dict[str, Any] | None) -> list[str]:
    """The worker-process run's row (results from before it was measured have none)."""
    if not run:
        return []
    return [
        f"| vardflytt in process, tasks in {run['jobs']} worker processes | {run['rows']:,} | "
        f"{shown(run['seconds'])} | {shown(run['cpu_seconds'])} | "
        f"{shown(run['rows_per_second'], 0)} | {shown(run['peak_rss_mib'], 1)} (tree) |"
    ]


def _core_schema_line(in_process: dict[str, Any]) -> list[str]:
    seconds = in_process.get("core_schema_seconds")
    if seconds is None:
        return []
    return [
        f"vardflytt's fresh core schema was brought to head before each run's clock started "
        f"({seconds:.2f} s; a production core is migrated once, as in `make bench`).",
        "",
    ]


def scale_markdown(scale: dict[str, Any]) -> str:
    """Two sizes side by side: seconds per stage, time and cost-per-row ratios, RSS ratio."""
    if scale["backend"] is None:  # identity resolution alone (bench --identity --no-sqlite)
        from etl.bench.identity_scale import identity_scale_lines

        lines = [
            f"# Scale: {scale['small_patients']:,} vs {scale['large_patients']:,} people "
            "(identity resolution only, no migration run)",
            "",
            *identity_scale_lines(scale["identity"]),
        ]
        return "\n".join([*lines, "", goals_markdown(scale["goals"]).rstrip()]) + "\n"
    lines = [
        f"# Scale: {scale['small_patients']:,} vs {scale['large_patients']:,} people "
        f"({scale['backend']}, chunk {scale['chunk_rows']:,})",
        "",
        f"Source rows {scale['small_rows']:,} -> {scale['large_rows']:,} "
        f"(x{shown(scale['rows_ratio'], 2)}); peak RSS {shown(scale['small_peak_rss_mib'], 1)} -> "
        f"{shown(scale['large_peak_rss_mib'], 1)} MiB (x{shown(scale['rss_ratio'], 3)}).",
        "",
        "| stage | small s | large s | time ratio | cost per row ratio | CPU cost per row ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for stage, ratios in scale["stages"].items():
        lines.append(
            f"| {stage.replace('_', ' ')} | {shown(scale['small_seconds'][stage])} | "
            f"{shown(scale['large_seconds'][stage])} | {shown(ratios['time_ratio'], 2)} | "
            f"{shown(ratios['cost_per_row_ratio'], 3)} | "
            f"{shown(ratios.get('cpu_cost_per_row_ratio'), 3)} |"
        )
    for system, figures in scale.get("systems", {}).items():
        costs = ", ".join(
            f"{stage.replace('_', ' ')} {shown(value, 3)}"
            for stage, value in figures["cost_per_row_ratio"].items()
        )
        lines += [
            "",
            f"{system}: rows x{shown(figures['rows_ratio'], 2)}; cost per row ratio: {costs}.",
        ]
    if "identity" in scale:
        from etl.bench.identity_scale import identity_scale_lines

        lines += ["", *identity_scale_lines(scale["identity"])]
    return "\n".join([*lines, "", goals_markdown(scale["goals"]).rstrip()]) + "\n"
