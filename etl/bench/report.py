"""The results as Rich tables (estate, stages per run, memory, load, DAG parsing)."""

from __future__ import annotations

from typing import Any

# --------------------------------------------------------------------------- report
from etl.bench.figures import STAGES, percent, shown


def result_tables(results: dict[str, Any]) -> list[Any]:
    """Rich tables of the results (estate, stages per run, memory, DAG parsing)."""
    tables = []
    if results.get("generation"):
        tables.append(_estate_table(results["parameters"], results["generation"]))
    tables += _run_tables(results["runs"])
    tables += [_cutover_table(run) for run in results["runs"] if run.get("cutover")]
    if results.get("dashboard") and not results["dashboard"].get("error"):
        from etl.dashboard.bench import dashboard_table

        tables.append(dashboard_table(results["dashboard"]))
    dag_parse = results.get("dag_parse")
    if dag_parse and not dag_parse.get("error"):
        tables.append(_dag_parse_table(dag_parse))
    if results.get("startup") and not results["startup"].get("error"):
        tables.append(_startup_table(results["startup"]))
    if results.get("goals"):
        tables.append(goals_table(results["goals"]))
    return tables


def _startup_table(startup: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(
        title=f"start-up cost (fresh interpreter each; median of {startup['repeats']}); "
        "in process these imports are paid once"
    )
    for column in ("command", "wall s", "CPU s"):
        table.add_column(column, justify="left" if column == "command" else "right")
    for name, figures in startup["commands"].items():
        table.add_row(name, shown(figures["wall_seconds"]), shown(figures["cpu_seconds"]))
    return table


def goals_table(goals: list[dict[str, Any]], title: str = "issue 15 goals") -> Any:
    from rich.table import Table

    table = Table(title=title)
    for column in ("goal", "measured", "target", "status"):
        table.add_column(column, justify="left" if column in {"goal", "status"} else "right")
    colours = {"PASS": "green", "MISS": "red"}
    for row in goals:
        colour = colours.get(row["status"], "yellow")
        table.add_row(
            row["description"],
            shown(row["measured"], 3),
            f"{row['comparison']} {row['threshold']:g}",
            f"[{colour}]{row['status']}[/{colour}]",
        )
    return table


def _estate_table(parameters: dict[str, Any], generation: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"estate: {parameters['patients']} patients, seed {parameters['seed']}")
    for column in ("system", "source rows", "generation s", "rows/s", "peak RSS MiB (child)"):
        table.add_column(column, justify="left" if column == "system" else "right")
    for system, rows in generation["source_rows"].items():
        table.add_row(system, f"{rows:,}", "", "", "")
    table.add_row(
        "[b]all[/b]",
        f"{generation['total_rows']:,}",
        shown(generation["seconds"]),
        shown(generation["rows_per_second"], 0),
        shown(generation["peak_rss_mib"], 1),
    )
    return table


def _run_tables(runs: list[dict[str, Any]]) -> list[Any]:
    """The stage table and the memory table, a section per run (one row for a failed run)."""
    from rich.table import Table

    stage_table = Table(
        title="migration per stage (rows/s = source rows extracted / stage seconds)"
    )
    for column in (
        "run",
        "chunk",
        "system",
        "stage",
        "seconds",
        "CPU s",
        "rows/s",
        "% of e2e",
        "peak RSS MiB",
    ):
        stage_table.add_column(
            column, justify="left" if column in {"run", "system", "stage"} else "right"
        )
    memory_table = Table(
        title="memory in MiB (at start and sampled peak: psutil; VmHWM, ru_maxrss: exact "
        "process peaks; a child's ru_maxrss includes its parent's)"
    )
    for column in (
        "run",
        "process",
        "chunk rows",
        "RSS at start",
        "sampled peak",
        "VmHWM",
        "ru_maxrss",
        "validation share",
        "e2e s",
        "reconciled",
    ):
        memory_table.add_column(column, justify="left" if column in {"run", "process"} else "right")
    for run in runs:
        if run.get("error"):
            _add_failed_run(stage_table, memory_table, run)
        else:
            _add_stage_rows(stage_table, run)
            _add_memory_row(memory_table, run)
    return [stage_table, memory_table]


def _add_failed_run(stage_table: Any, memory_table: Any, run: dict[str, Any]) -> None:
    stage_table.add_row(
        run["label"],
        str(run.get("chunk_rows", "")),
        "",
        "[red]failed[/red]",
        "",
        "",
        "",
        "",
        "",
    )
    memory_table.add_row(
        run["label"],
        run.get("process", ""),
        str(run.get("chunk_rows", "")),
        "",
        "",
        "",
        "",
        "",
        "",
        "[red]failed[/red]",
    )


def _add_stage_rows(stage_table: Any, run: dict[str, Any]) -> None:
    """Each system's stages and end to end, then the run's total. A stage a system never
    reached (its quality gate stopped it, say) is a row saying so; the error is among the run's
    problems."""
    groups = [*run["systems"].items(), ("[b]total[/b]", run["total"])]
    for system, figures in groups:
        for stage in STAGES:
            stage_figures = figures["stages"].get(stage)
            if stage_figures is None:
                stage_table.add_row(
                    run["label"],
                    f"{run['chunk_rows']:,}",
                    system,
                    stage,
                    "[red]not reached[/red]",
                    *[""] * 4,
                )
                continue
            stage_table.add_row(
                run["label"],
                f"{run['chunk_rows']:,}",
                system,
                stage,
                shown(stage_figures["seconds"]),
                shown(stage_figures.get("cpu_seconds")),
                shown(stage_figures["rows_per_second"], 0),
                percent(stage_figures["share_of_end_to_end"]),
                shown(stage_figures["peak_rss_mib"], 1),
            )
        e2e = figures["end_to_end"]
        stage_table.add_row(
            run["label"],
            f"{run['chunk_rows']:,}",
            system,
            "[b]end to end[/b]",
            shown(e2e["seconds"]),
            shown(e2e.get("cpu_seconds")),
            shown(e2e["rows_per_second"], 0),
            "100.0%",
            shown(e2e["peak_rss_mib"], 1),
            end_section=system.startswith("[b]"),
        )


def _add_memory_row(memory_table: Any, run: dict[str, Any]) -> None:
    memory_table.add_row(
        run["label"],
        run.get("process", ""),
        f"{run['chunk_rows']:,}",
        shown(run["baseline_rss_mib"], 1),
        shown(run["total"]["end_to_end"]["peak_rss_mib"], 1),
        shown(run["vm_hwm_mib"], 1),
        shown(run["ru_maxrss_mib"], 1),
        percent(run["total"]["validation_share"]),
        shown(run["total"]["end_to_end"]["seconds"]),
        "[green]yes[/green]" if run["reconciled"] else "[red]NO[/red]",
    )


def _cutover_table(run: dict[str, Any]) -> Any:
    """PostgreSQL: the pipeline's load against a plain COPY, and rollback against load."""
    from rich.table import Table

    cutover = run["cutover"]
    table = Table(
        title=f"{run['label']}: pipeline load (staging by reference + promotion: COPY of new rows) "
        "vs plain COPY of the same rows, and rollback vs load"
    )
    for column in ("system", "rows", "load s", "plain COPY s", "to_sql s", "rollback s"):
        table.add_column(column, justify="left" if column == "system" else "right")
    for system, figures in cutover["per_system"].items():
        table.add_row(
            system,
            f"{figures['rows']:,}",
            shown(figures["load_seconds"]),
            shown(figures["plain_copy_seconds"]),
            shown(figures.get("to_sql_seconds")),
            shown(figures["rollback_seconds"]),
        )
    table.add_row(
        "[b]total[/b]",
        f"{cutover['rows']:,}",
        f"{shown(cutover['load_rows_per_second'], 0)} rows/s",
        f"{shown(cutover['plain_copy_rows_per_second'], 0)} rows/s",
        f"{shown(cutover.get('to_sql_rows_per_second'), 0)} rows/s",
        f"{shown(cutover['rollback_to_load_ratio'], 3)} x load",
    )
    table.add_row(
        "[b]load / plain COPY throughput[/b]",
        shown(cutover["load_to_plain_copy_ratio"], 3),
        "",
        "",
        "",
        "",
    )
    return table


def _dag_parse_table(dag_parse: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(
        title=f"parsing dags/ ({len(dag_parse['dag_ids'])} DAGs; median of "
        f"{dag_parse['samples_in_median']} fresh interpreters; Airflow re-parses every 30 s)"
    )
    for column in ("measure", "seconds", "cold first"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    cold = dag_parse["cold_first"]
    for key, text in (
        ("import_airflow_seconds", "import airflow"),
        ("dagbag_total_seconds", "import airflow + DagBag(dags/)"),
        ("parse_seconds", "DagBag(dags/) minus import airflow"),
        ("file_parse_seconds", "DagBag's own per-file parse time (sum)"),
        ("warm_reparse_seconds", "second DagBag in the same interpreter"),
    ):
        table.add_row(text, shown(dag_parse[key], 3), shown(cold.get(key), 3))
    return table
