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
"""

from __future__ import annotations

import sys

WITHOUT_LOG_SERVER = ("scheduler", "triggerer")


def standalone_command(command: list[str]) -> list[str]:
    """A standalone component's arguments, with ``--skip-serve-logs`` where it has a log server."""
    if command and command[0] in WITHOUT_LOG_SERVER and "--skip-serve-logs" not in command:
        return [*command, "--skip-serve-logs"]
    return list(command)


def with_pools(print_output) -> None:
    """Sync the pools into this process's Airflow (its environment is the project's)."""
    import os

    from etl.airflow_pools import sync

    sync(dict(os.environ), echo=lambda message: print_output("standalone", message))


def main() -> None:
    from airflow.__main__ import main as airflow_main
    from airflow.cli.commands import standalone_command as standalone

    class SubCommandWithoutLogServer(standalone.SubCommand):
        def __init__(self, parent, name: str, command: list[str], env: dict[str, str]):
            super().__init__(parent, name, standalone_command(command), env)

    class StandaloneWithPools(standalone.StandaloneCommand):
        def initialize_database(self) -> None:
            super().initialize_database()
            with_pools(self.print_output)

    # the standalone command builds its sub-commands from this class
    standalone.SubCommand = SubCommandWithoutLogServer  # type: ignore[misc]
    standalone.StandaloneCommand = StandaloneWithPools  # type: ignore[misc]
    sys.argv = ["airflow", "standalone", *sys.argv[1:]]
    airflow_main()


if __name__ == "__main__":
    main()
