"""Numbers a lead can trust: over a core with several runs (a migration, a wave's initial load, a
delta with changes, a 0-row delta, a rolled-back batch and a final delta stopped at the quality
gate), the headline says what is in the core now (the core tables' own row count), every figure
it shows is the sum of the per-wave and per-system figures, a system listed as not in the core
has no rows there, the wave pages agree with the waves list, and runs carry their DAG and phase."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import re
import shutil

import pytest
import sqlalchemy as sa
import yaml
from fastapi.testclient import TestClient

from etl import pipeline
from etl.batch import new_batch_id
from etl.core.database import core_engine
from etl.core.tables import ENTITY_TABLES
from etl.cutover.ledger import transition
from etl.cutover.waves import batch_id_for as cutover_batch_id
from etl.dashboard import data
from etl.dashboard.app import create_app
from etl.dashboard.auth import DashboardUser, Role, TokenAuthenticator, token_digest
from etl.estate.activity import simulate_activity
from etl.load.promote import rollback
from etl.settings import PROJECT_ROOT, Settings
from etl.validate.gate import DataQualityGateError
from tests.cores import BOTH_CORES

pytestmark = pytest.mark.integration

FULL_AS_OF, DELTA_AS_OF = dt.date(2026, 7, 1), dt.date(2026, 7, 15)
WAVE = "w2_hospital_care"
MIGRATE_RUN = "manual__2026-07-01T08:00:00+00:00"
INITIAL_RUN = "manual__2026-07-02T08:00:00+00:00"
DELTA_RUN = "manual__2026-07-15T08:00:00+00:00"
EMPTY_DELTA_RUN = "manual__2026-07-15T09:00:00+00:00"
FINAL_RUN = "manual__2026-07-16T08:00:00+00:00"
LEAD, TOKEN = "lead.lena", "lead-token-for-the-numbers-test-0123"


@dataclasses.dataclass
class History:
    settings: Settings
    rolled_back: str  # the command-line batch rolled back
    core_rows_before_final: int
    delta_changes: dict[str, int]


def _core_rows(settings: Settings) -> dict[str, int]:
    """What the core tables hold per source system, counted in the tables themselves."""
    counts: dict[str, int] = {}
    with core_engine(settings.resolved_core_url).connect() as connection:
        for table in ENTITY_TABLES.values():
            for system, rows in connection.execute(
                sa.select(table.c.source_system, sa.func.count()).group_by(table.c.source_system)
            ):
                counts[system] = counts.get(system, 0) + int(rows)
    return counts


def _strict_expectations(root):
    folder = root / "expectations"
    shutil.copytree(PROJECT_ROOT / "expectations", folder)
    path = folder / "thresholds.yaml"
    content = yaml.safe_load(path.read_text("utf-8"))
    content["checks"]["source.unparseable_date"]["max_failure_rate"] = 0.001
    path.write_text(yaml.safe_dump(content, allow_unicode=True), encoding="utf-8")
    return folder


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")


@pytest.fixture(scope="module", params=BOTH_CORES)
def history(request, small_estate, tmp_path_factory, postgres_schema):
    root = tmp_path_factory.mktemp(f"numbers-{request.param}")
    if request.param == "sqlite":
        yield _seed_history(root, small_estate, None)
        return
    with postgres_schema() as core_url:
        yield _seed_history(root, small_estate, core_url)


def _seed_history(root, small_estate, core_url: str | None) -> History:
    estate = root / "estate"
    shutil.copytree(small_estate, estate)  # the activity below changes it
    settings = Settings(home=root / "home", estate_dir=estate, core_url=core_url)
    engine = core_engine(settings.resolved_core_url)

    def ledger(to_state: str, run_id: str, evidence: dict | None = None) -> None:
        with engine.begin() as connection:
            transition(connection, WAVE, to_state, actor=LEAD, run_id=run_id, evidence=evidence)

    # vardflytt_migrate: two systems outside any wave.
    for system in ("elvis", "melior"):
        batch = pipeline.batch_id_for(system, MIGRATE_RUN)
        pipeline.run_system(system, batch, FULL_AS_OF, run_id=MIGRATE_RUN, settings=settings)
    # The wave's cutover DAG: Melior's initial load (nothing new: it changes no row).
    # Criteria recorded before Melior's batches were promoted: the page must say they are old.
    stale = {
        "criteria": [{"criterion": "every system loaded", "passed": False, "detail": "melior"}]
    }
    ledger("initial_load", INITIAL_RUN, evidence=stale)
    pipeline.run_system(
        "melior",
        cutover_batch_id("melior", WAVE, "initial", _stamp()),
        FULL_AS_OF,
        run_id=INITIAL_RUN,
        settings=settings,
        wave=WAVE,
    )
    # The command line loads a satellite, then rolls it back: none of its rows stay.
    rolled_back = new_batch_id("lab_skas", "cli")
    pipeline.run_system("lab_skas", rolled_back, FULL_AS_OF, settings=settings)
    with engine.begin() as connection:
        rollback(connection, rolled_back)
    # A delta with changes, then one with none.
    simulate_activity(estate, seed=11)
    ledger("delta_load", DELTA_RUN)
    pipeline.run_system(
        "melior",
        cutover_batch_id("melior", WAVE, "delta", _stamp()),
        DELTA_AS_OF,
        run_id=DELTA_RUN,
        settings=settings,
        wave=WAVE,
        kind="delta",
    )
    ledger("delta_load", EMPTY_DELTA_RUN)
    pipeline.run_system(
        "melior",
        cutover_batch_id("melior", WAVE, "delta", _stamp()),
        DELTA_AS_OF,
        run_id=EMPTY_DELTA_RUN,
        settings=settings,
        wave=WAVE,
        kind="delta",
    )
    before_final = sum(_core_rows(settings).values())
    # The final load fails: the quality gate stops it (stricter thresholds), nothing promoted.
    ledger("frozen", FINAL_RUN)
    ledger("final_delta", FINAL_RUN)
    strict = Settings(
        home=root / "home",
        estate_dir=estate,
        core_url=core_url,
        expectations_dir=_strict_expectations(root),
    )
    with pytest.raises(DataQualityGateError):
        pipeline.run_system(
            "melior",
            cutover_batch_id("melior", WAVE, "final", _stamp()),
            DELTA_AS_OF,
            run_id=FINAL_RUN,
            settings=strict,
            wave=WAVE,
        )
    with engine.connect() as connection:
        changed = connection.execute(
            sa.text(
                "SELECT sum(rows_inserted), sum(rows_updated), sum(rows_deleted) FROM promotion "
                "WHERE run_id = :run"
            ),
            {"run": DELTA_RUN},
        ).one()
    return History(
        settings=settings,
        rolled_back=rolled_back,
        core_rows_before_final=before_final,
        delta_changes=dict(zip(("inserted", "updated", "deleted"), changed, strict=True)),
    )


@pytest.fixture
def client(history) -> TestClient:
    users = [DashboardUser(LEAD, Role.LEAD, token_digest(TOKEN))]

    def authenticator(_settings):
        return TokenAuthenticator(users, b"a test secret of enough length")

    return TestClient(create_app(history.settings, authenticator=authenticator))


def _get(client: TestClient, path: str) -> str:
    response = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, path
    return response.text


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment)).strip()


def _number(text: str) -> int:
    digits = re.sub(r"\D", "", text)
    assert digits, f"no number in {text!r}"
    return int(digits)


def _card(page: str, card_id: str) -> str:
    found = re.search(rf'id="{card_id}">(.*?)</div>', page, re.S)
    assert found, f"no card {card_id}"
    return _text(found.group(1))


def _table(page: str, table_id: str) -> dict[str, dict[str, str]]:
    """A table's rows by their data-system / data-wave key, cells by their data-field."""
    table = re.search(rf'<table id="{table_id}">(.*?)</table>', page, re.S)
    assert table, f"no table {table_id}"
    rows = {}
    for key, body in re.findall(
        r'<tr data-(?:system|wave)="([^"]+)"[^>]*>(.*?)</tr>', table.group(1), re.S
    ):
        rows[key] = {
            field: _text(cell)
            for field, cell in re.findall(r'data-field="([^"]+)">(.*?)</td>', body, re.S)
        }
    return rows


def test_the_headline_is_the_core_as_it_is_now_and_the_sum_of_its_parts(client, history):
    truth = _core_rows(history.settings)
    page = _get(client, "/")
    systems = _table(page, "core-systems")
    total = systems.pop("__total__")
    waves = _table(page, "waves")
    waves_total = waves.pop("__total__")

    # What the core tables hold: not the latest batches' row counts (the 0-row delta and the
    # failed final changed nothing, and neither does the headline).
    core_rows = _number(_card(page, "card-core-rows"))
    assert core_rows == sum(truth.values()) == history.core_rows_before_final > 0
    for system, cells in systems.items():
        assert _number(cells["rows_in_core"]) == truth.get(system, 0), system
    # Every headline figure is the sum of the per-system and of the per-wave figures.
    assert core_rows == sum(_number(c["rows_in_core"]) for c in systems.values())
    assert core_rows == _number(total["rows_in_core"]) == _number(waves_total["rows_in_core"])
    assert core_rows == sum(_number(w["rows_in_core"]) for w in waves.values())
    in_core = [s for s, c in systems.items() if c["in_core"] == "yes"]
    assert sorted(in_core) == ["elvis", "melior"]
    assert _card(page, "card-systems-in-core") == f"{len(in_core)} of {len(systems)}"
    assert waves_total["systems"] == f"{len(in_core)} of {len(systems)}"
    assert sum(int(w["systems"].split()[0]) for w in waves.values()) == len(in_core)
    for name in ("inserted", "updated", "deleted", "quarantined"):
        headline = _number(_card(page, f"card-run-{name}"))
        assert headline == sum(_number(c[name]) for c in systems.values()) == _number(total[name])

    # Not in the core means no rows there, and the other way round.
    for system, cells in systems.items():
        rows = _number(cells["rows_in_core"])
        if cells["in_core"] == "no":
            assert rows == 0 and _number(cells["promoted_batches"]) == 0, system
            assert cells["state"] in {
                "not loaded",
                "rolled back",
                "not promoted",
                "stopped at the quality gate",
            }, system
        else:
            assert rows > 0 and _number(cells["promoted_batches"]) > 0, system
            assert "not loaded" not in cells["state"], system
    assert systems["lab_skas"]["state"] == "rolled back"
    assert systems["lab_skas"]["rolled_back_batches"] == "1"
    assert systems["melior"]["state"] == "loaded by its wave"
    assert systems["elvis"]["state"] == "in the core, not yet loaded by its wave"


def test_the_latest_run_is_the_failed_final_and_says_it_changed_nothing(client, history):
    page = _get(client, "/")
    assert _text(re.search(r'id="latest-run-label"[^>]*>(.*?)</a>', page).group(1)) == (
        f"vardflytt_cutover_{WAVE} · final"
    )
    outcome = _text(re.search(r'id="latest-run-outcome">(.*?)</span>', page).group(1))
    assert outcome == "0 of 1 systems promoted, 1 stopped at the quality gate"
    for name in ("inserted", "updated", "deleted"):
        assert _number(_card(page, f"card-run-{name}")) == 0
    # The delta with changes is what the read model reports for its own run.
    with core_engine(history.settings.resolved_core_url).connect() as connection:
        delta = next(b for b in data.runs(connection) if b.run_id == DELTA_RUN)
    assert {
        name: sum(getattr(b, f"rows_{name}") for b in delta.batches)
        for name in ("inserted", "updated", "deleted")
    } == history.delta_changes
    assert all(history.delta_changes.values()), "the activity inserted, updated and deleted"


def test_wave_pages_and_the_waves_list_show_the_same_figures(client, history):
    index = _get(client, "/")
    systems = _table(index, "core-systems")
    waves = _table(index, "waves")
    for wave, cells in waves.items():
        if wave.startswith("__"):
            continue
        page = _get(client, f"/waves/{wave}")
        mine = _table(page, "wave-systems")
        mine_total = mine.pop("__total__", None)
        assert _number(cells["rows_in_core"]) == sum(
            _number(c["rows_in_core"]) for c in mine.values()
        )
        if mine_total:
            assert mine_total["rows_in_core"] == cells["rows_in_core"]
            assert mine_total["in_core"] == cells["systems"]
        summary = _text(re.search(r'<p id="wave-core">(.*?)</p>', page, re.S).group(1))
        assert summary.startswith(f"{cells['rows_in_core']} rows in the core"), wave
        for system, row in mine.items():
            for field in ("state", "in_core", "rows_in_core", "promoted_batches", "inserted"):
                assert row[field] == systems[system][field], (wave, system, field)
        # A system the page lists as not loaded has nothing in the core.
        for system, row in mine.items():
            if "not loaded" in row["state"] and "not yet loaded" not in row["state"]:
                assert _number(row["rows_in_core"]) == 0, (wave, system)
    wave_page = _get(client, f"/waves/{WAVE}")
    assert _table(wave_page, "wave-systems")["melior"]["state"] == "loaded by its wave"
    # The criteria the ledger recorded before Melior's promotions say when, and that they are old.
    as_of = _text(re.search(r'<p class="muted" id="criteria-as-of">(.*?)</p>', wave_page, re.S)[1])
    assert as_of.startswith("As recorded in the ledger when the wave went to initial_load at")
    outdated = re.search(r'<p class="notice" id="criteria-outdated">(.*?)</p>', wave_page, re.S)
    assert outdated and _text(outdated[1]).startswith("Out of date: melior had a batch promoted")


def test_runs_are_labelled_by_dag_and_phase(client, history):
    runs = _table_runs(_get(client, "/runs"))
    assert runs[MIGRATE_RUN] == "vardflytt_migrate"
    assert runs[INITIAL_RUN] == f"vardflytt_cutover_{WAVE} · initial"
    assert runs[DELTA_RUN] == runs[EMPTY_DELTA_RUN] == f"vardflytt_cutover_{WAVE} · delta"
    assert runs[FINAL_RUN] == f"vardflytt_cutover_{WAVE} · final"
    assert runs[history.rolled_back] == "command line"
    page = _get(client, f"/runs/{DELTA_RUN}")
    assert f"<h1>Run vardflytt_cutover_{WAVE} · delta</h1>" in html.unescape(page)
    # The ledger's transitions name their runs the same way.
    transitions = re.search(
        r'<table id="transitions">(.*?)</table>', _get(client, f"/waves/{WAVE}"), re.S
    )
    assert f"vardflytt_cutover_{WAVE} · final" in html.unescape(transitions.group(1))


def _table_runs(page: str) -> dict[str, str]:
    table = re.search(r'<table id="runs">(.*?)</table>', page, re.S).group(1)
    return {
        html.unescape(run_id): _text(cell)
        for run_id, cell in re.findall(
            r'<tr data-run="([^"]+)">\s*<td data-field="label">(.*?)</td>', table, re.S
        )
    }
