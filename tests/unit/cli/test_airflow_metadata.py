"""`vardflytt airflow ...` migrates Airflow's metadata database itself, once per Airflow version."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl import cli
from etl.airflow_main import AIRFLOW_COMMAND
from etl.cli.airflow import metadata_url

pytestmark = pytest.mark.unit


@pytest.fixture
def calls(settings_for, monkeypatch):
    settings_for()
    recorded: list[list[str]] = []
    outcome = {"migrate": 0}

    def call(command, env, stdout=None):
        # Every airflow command is started the project's way (etl/airflow_main.py).
        assert tuple(command[: len(AIRFLOW_COMMAND)]) == AIRFLOW_COMMAND, command
        arguments = command[len(AIRFLOW_COMMAND) :]
        recorded.append(arguments)
        if arguments[:2] == ["db", "migrate"]:
            if outcome["migrate"] == 0:  # what a migration leaves: the metadata database
                url = metadata_url(env)
                if url.startswith("sqlite:///"):
                    Path(url.removeprefix("sqlite:///")).touch()
            return outcome["migrate"]
        return 0

    monkeypatch.setattr(cli.subprocess, "call", call)
    return recorded, outcome


def test_the_first_command_migrates_then_runs_and_later_ones_just_run(calls):
    recorded, _ = calls
    first = CliRunner().invoke(cli.app, ["airflow", "dags", "list"])
    assert first.exit_code == 0, first.output
    assert recorded == [["db", "migrate"], ["dags", "reserialize"], ["dags", "list"]]
    assert "not migrated yet" in first.output  # on standard error (CliRunner mixes them)
    recorded.clear()
    again = CliRunner().invoke(cli.app, ["airflow", "dags", "list"])
    assert again.exit_code == 0 and recorded == [["dags", "list"]]


def test_a_deleted_metadata_database_is_migrated_again(calls, settings_for):
    recorded, _ = calls
    CliRunner().invoke(cli.app, ["airflow", "dags", "list"])
    for database in (settings_for().home / "airflow").glob("*.db"):
        database.unlink()
    recorded.clear()
    CliRunner().invoke(cli.app, ["airflow", "tasks", "list", "vardflytt_migrate"])
    assert recorded == [
        ["db", "migrate"],
        ["dags", "reserialize"],
        ["tasks", "list", "vardflytt_migrate"],
    ]


def test_a_failed_migration_stops_before_the_command(calls):
    recorded, outcome = calls
    outcome["migrate"] = 3
    result = CliRunner().invoke(cli.app, ["airflow", "dags", "list"])
    assert result.exit_code == 3
    assert recorded == [["db", "migrate"]] and "nothing else was run" in result.output
    outcome["migrate"] = 0
    recorded.clear()
    CliRunner().invoke(cli.app, ["airflow", "dags", "list"])
    assert recorded == [
        ["db", "migrate"],
        ["dags", "reserialize"],
        ["dags", "list"],
    ]  # no stamp was left by the failure


@pytest.mark.parametrize("command", [["db", "check"], ["version"], ["config", "list"]])
def test_commands_that_need_no_metadata_database_run_as_they_are(calls, command):
    recorded, _ = calls
    CliRunner().invoke(cli.app, ["airflow", *command])
    assert recorded == [command]


def test_a_database_put_in_place_migrated_and_marked_is_not_migrated_again(
    calls, settings_for, tmp_path, monkeypatch
):
    """What the tests' copies of one migrated database rely on (tests/commands.py): a stamp for
    the home's default database; under another metadata URL it does not count."""
    from tests.commands import copy_migrated_airflow_db

    recorded, _ = calls
    template = tmp_path / "template.db"
    template.write_bytes(b"migrated")
    copy_migrated_airflow_db(template, settings_for().home / "airflow")
    CliRunner().invoke(cli.app, ["airflow", "dags", "list"])
    assert recorded == [["dags", "list"]]

    recorded.clear()
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", elsewhere)
    CliRunner().invoke(cli.app, ["airflow", "dags", "list"])
    assert recorded == [["db", "migrate"], ["dags", "reserialize"], ["dags", "list"]]
