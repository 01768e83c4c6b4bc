"""``vardflytt cluster up|status|down``: Airflow on Celery workers here (etl/cluster.py)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from etl.cli.common import console
from etl.settings import get_settings

cluster_app = typer.Typer(
    help="Airflow 3 on the CeleryExecutor on this machine: api-server, scheduler, dag-processor, "
    "triggerer and N Celery workers (Redis broker, PostgreSQL metadata), project-local.",
    no_args_is_help=True,
)


@cluster_app.command("up")
def cluster_up(
    workers: Annotated[int, typer.Option(min=1, help="Celery workers to start.")] = 2,
    port: Annotated[
        int | None, typer.Option(help="The api-server's port on 127.0.0.1 (default: a free one).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait until ready.")] = 240.0,
) -> None:
    """Start the cluster and wait until the api-server answers and every worker is online."""
    from etl import cluster
    from etl.airflow_env import ADMIN_USER, passwords_file

    settings = get_settings()
    try:
        state = cluster.up(settings, workers, port, timeout, echo=console.print)
    except cluster.ClusterError as error:
        console.print(f"[red]cluster not started[/red]: {error}")
        raise typer.Exit(1) from None
    names = ", ".join(p.name for p in state.processes)
    console.print(
        f"cluster up: {names}\nAirflow UI: {state.api_url}/ as '{ADMIN_USER}' with the password "
        f"in {passwords_file(settings)}; DAGs start paused.\nmetadata {state.database_url}, "
        f"broker {state.broker_url}; logs in {cluster.cluster_root(settings) / 'logs'}\n"
        "stop it with: vardflytt cluster down"
    )


@cluster_app.command("status")
def cluster_status() -> None:
    """Each process of the cluster: running, and for the workers whether they answer a ping.
    Exit code 1 when a process is down, 3 when no cluster was started."""
    from etl import cluster

    health = cluster.status(get_settings())
    if not health:
        console.print("no cluster: start one with `vardflytt cluster up`")
        raise typer.Exit(3)
    table = Table("process", "pid", "state", "detail")
    for item in health:
        state = "[green]running[/green]" if item.is_running else "[red]down[/red]"
        table.add_row(item.name, str(item.pid or ""), state, item.detail)
    console.print(table)
    if not all(item.is_running for item in health):
        raise typer.Exit(1)


@cluster_app.command("down")
def cluster_down(
    grace: Annotated[float, typer.Option(help="Seconds to wait after TERM before KILL.")] = 30.0,
) -> None:
    """Stop every process of the cluster (workers first)."""
    from etl import cluster

    stopped = cluster.down(get_settings(), grace, echo=console.print)
    console.print(f"cluster down ({', '.join(stopped) or 'nothing was running'})")


@cluster_app.command(
    "airflow", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def cluster_airflow(context: typer.Context) -> None:
    """Run any ``airflow`` command against the running cluster (e.g. ``dags trigger``)."""
    from etl import cluster

    try:
        result = cluster.airflow_call(get_settings(), *context.args)
    except cluster.ClusterError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(3) from None
    raise typer.Exit(result.returncode)
