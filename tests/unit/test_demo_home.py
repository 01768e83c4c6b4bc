"""The demo's home reset (etl/demo_home.py): a second demo starts from what the first did,
nothing outside the home is touched, and a home no demo marked is refused."""

from __future__ import annotations

import pytest

from etl.demo_home import MARKER, DemoHomeError, prepare_demo_home

pytestmark = pytest.mark.unit


def _fill_like_a_demo(home):
    for folder in ("estate", "landing/b1", "core", "logs", "reports/validation", "evidence/w1"):
        (home / folder).mkdir(parents=True, exist_ok=True)
        (home / folder / "state.txt").write_text("x")
    (home / "core" / "core.sqlite").write_text("wave w1 cut over")
    (home / "airflow").mkdir()
    (home / "airflow" / "airflow.db").write_text("dag runs")
    (home / "airflow" / "logs").mkdir()
    (home / "airflow" / "simple_auth_manager_passwords.json").write_text('{"admin": "pw"}')
    (home / "secrets").mkdir()
    (home / "secrets" / "pseudonym.key").write_text("key")


def test_a_fresh_home_is_marked_and_a_second_run_resets_it(settings_for, tmp_path):
    settings = settings_for()
    home = settings.home

    first = prepare_demo_home(settings)
    assert first.action == "fresh"
    assert (home / MARKER).exists()
    assert "fresh" in first.describe()

    _fill_like_a_demo(home)
    (home / "fuzz").mkdir()  # not the demo's: `make fuzz` findings stay
    second = prepare_demo_home(settings)

    assert second.action == "reset"
    assert "reset" in second.describe()
    for gone in ("estate", "landing", "core", "logs", "reports", "evidence"):
        assert not (home / gone).exists(), gone
    assert sorted(p.name for p in (home / "airflow").iterdir()) == [
        "simple_auth_manager_passwords.json"
    ]
    assert (home / "secrets" / "pseudonym.key").read_text() == "key"
    assert (home / "fuzz").exists()
    assert (home / MARKER).exists()


def test_a_home_with_data_but_no_marker_is_refused_and_left_alone(settings_for):
    settings = settings_for()
    home = settings.home
    _fill_like_a_demo(home)

    with pytest.raises(DemoHomeError, match="no demo wrote it"):
        prepare_demo_home(settings)

    assert (home / "core" / "core.sqlite").read_text() == "wave w1 cut over"
    assert not (home / MARKER).exists()


def test_a_home_with_only_airflow_settings_is_fresh(settings_for):
    """`make airflow` before the first demo leaves an Airflow home and secrets, no data."""
    settings = settings_for()
    (settings.home / "airflow").mkdir(parents=True)
    (settings.home / "airflow" / "airflow.db").write_text("")

    assert prepare_demo_home(settings).action == "fresh"
    assert (settings.home / "airflow" / "airflow.db").exists()


def test_links_are_unlinked_never_followed(settings_for, tmp_path):
    settings = settings_for()
    home = settings.home
    prepare_demo_home(settings)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("keep")
    (home / "reports").symlink_to(elsewhere, target_is_directory=True)

    prepare_demo_home(settings)

    assert not (home / "reports").exists()
    assert (elsewhere / "precious.txt").read_text() == "keep"


@pytest.mark.parametrize(
    "outside",
    [
        pytest.param({"core_url": "postgresql+psycopg://demo@127.0.0.1/core"}, id="server-core"),
        pytest.param({"landing_dir": "LANDING"}, id="landing-outside"),
    ],
)
def test_state_outside_the_home_is_never_reset(settings_for, tmp_path, outside):
    overrides = {
        name: str(tmp_path / "landing") if value == "LANDING" else value
        for name, value in outside.items()
    }
    settings = settings_for(**overrides)
    prepare_demo_home(settings)
    (settings.home / "logs").mkdir()

    with pytest.raises(DemoHomeError, match="deletes nothing outside its home"):
        prepare_demo_home(settings)
    assert (settings.home / "logs").exists()


def test_the_demo_command_refuses_a_home_no_demo_wrote(settings_for):
    from typer.testing import CliRunner

    from etl import cli

    settings = settings_for()
    _fill_like_a_demo(settings.home)

    result = CliRunner().invoke(cli.app, ["demo", "--patients", "5"])

    assert result.exit_code == 2, result.output
    assert "no demo wrote it" in " ".join(result.output.split())
    assert not (settings.home / "estate" / "defects.csv").exists()
