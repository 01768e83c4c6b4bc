"""A rehearsal's reconciliation through the hash aggregates its batches kept (SQLite).

The rehearsal core starts empty and each system's rehearsal batch reads its whole source, so the
aggregates its promotion kept are what the system's rows there must add up to: reconciliation
compares those and reads the source again only where they differ. A rehearsal core row changed
behind the pipeline's back (here: between ELVIS's run and Melior's) must still be caught,
narrowed to its bucket and then to the row by the full comparison.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest
import sqlalchemy as sa
import yaml

from etl.core.database import core_engine
from etl.core.model import ENTITIES
from etl.core.tables import ENTITY_TABLES, wave_reconciliation
from etl.cutover import rehearsal
from etl.cutover.plan import one_wave_plan
from etl.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

AS_OF = dt.date(2026, 7, 1)
SYSTEMS = ["elvis", "melior"]
VICTIM_ENTITY = "encounter"


@pytest.fixture
def settings(sqlite_core, small_estate, settings_for, tmp_path):
    mappings = tmp_path / "mappings"
    shutil.copytree(PROJECT_ROOT / "mappings", mappings)
    plan = one_wave_plan("t1", SYSTEMS, {"project_lead": {"airflow_users": ["anna"]}}, site="SU")
    (mappings / "waves.yaml").write_text(yaml.safe_dump(plan), encoding="utf-8")
    return settings_for(small_estate, sqlite_core(tmp_path), mappings_dir=mappings)


def test_a_rehearsal_reconciles_through_its_batches_aggregates_and_still_catches_a_change(
    settings,
):
    rehearsal_core = f"sqlite:///{settings.home / 'rehearsals' / 't1' / '001' / 'core.sqlite'}"
    table = ENTITY_TABLES[VICTIM_ENTITY]
    key = table.c[ENTITIES[VICTIM_ENTITY].id_field()]
    victims = []

    def change_elvis_behind_the_pipelines_back(system: str) -> None:
        if system != "melior":  # ELVIS runs first: its rows are in the rehearsal core now
            return
        with core_engine(rehearsal_core).begin() as connection:
            victim = connection.execute(
                sa.select(key).where(table.c.source_system == "elvis").order_by(key).limit(1)
            ).scalar_one()
            connection.execute(
                table.update().where(key == victim).values(content_hash="0123456789abcdef")
            )
        victims.append(victim)

    result = rehearsal.rehearse(
        settings, "t1", AS_OF, actor="rita", on_system=change_elvis_behind_the_pipelines_back
    )
    assert len(victims) == 1 and not result["failures"]
    assert not result["criteria_passed"]

    with core_engine(rehearsal_core).connect() as connection:
        rows = {
            (r.source_system, r.entity): r
            for r in connection.execute(sa.select(wave_reconciliation)).all()
        }
    evidence = {pair: json.loads(row.aggregates) for pair, row in rows.items()}
    assert {system for system, _ in rows} == set(SYSTEMS)
    # Nothing of Melior differed: its rows were checked on the aggregates alone.
    melior = [pair for pair in rows if pair[0] == "melior"]
    assert melior and all(rows[pair].is_reconciled for pair in melior)
    assert {evidence[pair]["method"] for pair in melior} == {"hash aggregates"}
    assert all(rows[pair].expected_rows == rows[pair].core_rows for pair in melior)
    # ELVIS's changed row moved its bucket: the source was read again and the rows compared,
    # which finds that one row and nothing else of ELVIS.
    changed = rows[("elvis", VICTIM_ENTITY)]
    assert not changed.is_reconciled and changed.content_mismatches == 1
    assert changed.missing_in_core == changed.unexpected_in_core == 0
    others = [pair for pair in rows if pair[0] == "elvis" and pair[1] != VICTIM_ENTITY]
    assert others and all(rows[pair].is_reconciled for pair in others)
    assert evidence[("elvis", VICTIM_ENTITY)]["method"] == "full re-read"
    assert evidence[("elvis", VICTIM_ENTITY)]["differing_buckets"] == [victims[0][:2]]
    pack = json.loads(
        (settings.home / "evidence" / "t1" / "rehearsal-001" / "evidence.json").read_text("utf-8")
    )
    listed = next(
        r
        for r in pack["reconciliation"]
        if (r["source_system"], r["entity"]) == ("elvis", VICTIM_ENTITY)
    )
    assert not listed["is_reconciled"]
