"""Every public function of a command-line module is a registered command: a decorator lost in
an edit (as ``cutover rollback``'s was once, in a merge) leaves the function in place and the
command gone, and nothing else fails until someone types it."""

from __future__ import annotations

import inspect

import pytest
import typer

from etl.cli import app, cutover

pytestmark = pytest.mark.unit


def _registered(typer_app: typer.Typer) -> set:
    return {command.callback for command in typer_app.registered_commands}


def test_every_cutover_function_is_a_cutover_command():
    public = {
        function
        for name, function in inspect.getmembers(cutover, inspect.isfunction)
        if name.startswith("cutover_") and function.__module__ == cutover.__name__
    }
    missing = sorted(f.__name__ for f in public - _registered(cutover.cutover_app))
    assert not missing, f"not registered as `vardflytt cutover` commands: {missing}"
    assert len(public) >= 14


def test_the_cutover_group_is_on_the_command_line():
    groups = {group.name for group in app.registered_groups}
    assert "cutover" in groups
