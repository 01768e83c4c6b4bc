"""``airflow standalone`` for one machine, without the log servers (``make airflow``).

Airflow 3.3's scheduler and triggerer each start a log server (``airflow serve-logs``) that
listens on every interface, with no setting for its address (airflow/utils/serve_logs/core.py
binds ``host=""``). On one machine the api-server reads task logs from the local log folder, so
the log servers only open ports: they are skipped here with the components' own
``--skip-serve-logs`` flag, which ``airflow standalone`` does not pass. Everything else is
Airflow's own standalone command. This can go when Airflow lets the log servers' address be
configured (then set it to loopback in etl/airflow_env.py).

Once the metadata database is ready, and before any component starts, the project's pools and
priorities are synced into it (etl/airflow_pools.py): a task in a missing pool is never queued.

Then the task execution API is asked once for its health as soon as the api-server answers
(``warm_execution_api``). The execution API is a Cadwyn app, which generates the routes and
models of all its versions at its first request (~3.3 CPU s), inside the api-server's event loop:
left to the first task's start, that request held every other one, the operator's pages too,
6-10 s on a busy two-core machine, and the first task with them. The api-server still serves
every version (remote workers may speak any); only the moment of the work changes.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable

WITHOUT_LOG_SERVER = ("scheduler", "triggerer")
WARM_UP_SECONDS = 600.0  # the api-server's start on a busy machine, with room to spare
WARM_UP_POLL_SECONDS = 0.25


def standalone_command(command: list[str]) -> list[str]:
    """A standalone component's arguments, with ``--skip-serve-logs`` where it has a log server."""
    if command and command[0] in WITHOUT_LOG_SERVER and "--skip-serve-logs" not in command:
        return [*command, "--skip-serve-logs"]
    return list(command)


def component_command(command: list[str]) -> list[str]:
    """How a standalone component starts: as the project starts any ``airflow`` command
    (etl/airflow_main.py), not through the ``airflow`` script found on the PATH."""
    from etl.airflow_main import AIRFLOW_COMMAND

    return [*AIRFLOW_COMMAND, *command]


def with_pools(print_output) -> None:
    """Sync the pools into this process's Airflow (its environment is the project's)."""
    import os

    from etl.airflow_pools import sync

    sync(dict(os.environ), echo=lambda message: print_output("standalone", message))


def warm_execution_api(
    server_url: str,
    echo: Callable[[str], None],
    seconds: float = WARM_UP_SECONDS,
    poll_seconds: float = WARM_UP_POLL_SECONDS,
) -> bool:
    """Until the execution API at ``server_url`` (``.../execution/``) answers its health check:
    its first answer comes once its routes are generated (a probe may wait up to a minute for
    it). True if it answered in time."""
    from etl.airflow_env import NotReadyError, wait_until_ready

    url = f"{server_url.rstrip('/')}/health"
    try:
        wait_until_ready(
            url,
            timeout_seconds=seconds,
            poll_seconds=poll_seconds,
            probe_timeout_seconds=max(poll_seconds, 60),
            what="execution API",
        )
    except NotReadyError:
        echo(f"execution API did not answer at {url} within {seconds:.0f} s")
        return False
    echo("execution API ready for the first task")
    return True


def start_warming_execution_api(print_output) -> threading.Thread:
    """``warm_execution_api`` in a daemon thread, at the URL the executor gives its tasks."""
    from airflow.executors.base_executor import get_execution_api_server_url

    thread = threading.Thread(
        target=warm_execution_api,
        args=(get_execution_api_server_url(), lambda line: print_output("standalone", line)),
        name="warm-execution-api",
        daemon=True,
    )
    thread.start()
    return thread


def main() -> None:
    from airflow.__main__ import main as airflow_main
    from airflow.cli.commands import standalone_command as standalone

    class SubCommandWithoutLogServer(standalone.SubCommand):
        def __init__(self, parent, name: str, command: list[str], env: dict[str, str]):
            super().__init__(parent, name, standalone_command(command), env)

        def run(self) -> None:
            """Airflow's ``SubCommand.run`` with the project's ``airflow`` (``AIRFLOW_COMMAND``)
            in place of the ``airflow`` script: its collector settings, and a scheduler that
            imports the task modules once before it forks its LocalExecutor workers."""
            self.process = subprocess.Popen(
                component_command(self.command),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
            assert self.process.stdout is not None  # a pipe, as asked
            for line in self.process.stdout:
                self.parent.output_queue.append((self.name, line))

    class StandaloneWithPools(standalone.StandaloneCommand):
        def initialize_database(self) -> None:
            super().initialize_database()
            with_pools(self.print_output)
            start_warming_execution_api(self.print_output)

    # the standalone command builds its sub-commands from this class
    standalone.SubCommand = SubCommandWithoutLogServer  # type: ignore[misc]
    standalone.StandaloneCommand = StandaloneWithPools  # type: ignore[misc]
    sys.argv = ["airflow", "standalone", *sys.argv[1:]]
    airflow_main()


if __name__ == "__main__":
    main()
