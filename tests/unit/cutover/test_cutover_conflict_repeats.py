"""A row changed again after go-live has one conflict per change: the listing shows how many
open conflicts each row has, and resolving one says when others of the row remain
(etl/cutover/slices.py, ``vardflytt cutover conflicts``)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from etl.core.tables import cutover_conflict
from etl.cutover.slices import _conflict, conflicts_of, conflicts_per_wave

pytestmark = pytest.mark.unit

DETECTED = dt.datetime(2027, 1, 20, tzinfo=dt.UTC)


def _change(batch_id: str, content: str, row_id: str, minutes: int) -> dict:
    found = _conflict(
        "w1_skaraborg", "w2_rest", batch_id, "melior", "encounter", row_id, "K1", "changed", content
    )
    return {**found, "detected_at": DETECTED + dt.timedelta(minutes=minutes)}


@pytest.fixture
def core(settings_for, tmp_path):
    url = f"sqlite:///{tmp_path / 'core.sqlite'}"
    settings_for(core_url=url)
    engine = sa.create_engine(url)
    cutover_conflict.create(engine)
    with engine.begin() as connection:
        connection.execute(
            cutover_conflict.insert(),
            [
                _change("w2_delta_1", "hash-b", "row-1", 0),
                _change("w2_delta_2", "hash-c", "row-1", 1),  # the same row changed again
                _change("w2_delta_2", "hash-x", "row-2", 2),
            ],
        )
    yield engine
    engine.dispose()


def test_each_conflict_shows_how_many_open_conflicts_its_row_has(core, cli):
    engine = core
    with engine.connect() as connection:
        listed = conflicts_of(connection)
    assert [(c["row_id"], c["changes"]) for c in listed] == [
        ("row-1", 2),
        ("row-1", 2),
        ("row-2", 1),
    ]
    shown = json.loads(cli("cutover", "conflicts", "--json").stdout)
    assert [(c["row_id"], c["changes"]) for c in shown["conflicts"]] == [
        ("row-1", 2),
        ("row-1", 2),
        ("row-2", 1),
    ]
    assert shown["per_wave"] == {"w1_skaraborg": 3}  # still a count of open conflicts
    table = cli("cutover", "conflicts").stdout
    assert "changes" in table


def test_resolving_one_change_says_the_rows_other_changes_remain(core, cli):
    engine = core
    with engine.connect() as connection:
        first, second, other = (c["conflict_id"] for c in conflicts_of(connection))
    out = cli("cutover", "conflicts", "--resolve", first, "--note", "fixed in the core").stdout
    assert "1 other open conflict" in out
    with engine.connect() as connection:
        left = conflicts_of(connection)
        assert [(c["conflict_id"], c["changes"]) for c in left] == [(second, 1), (other, 1)]
        assert conflicts_per_wave(connection) == {"w1_skaraborg": 2}
        everything = {c["conflict_id"]: c["changes"] for c in conflicts_of(connection, state=None)}
    assert everything[first] == 1  # a resolved conflict's row: its open ones
    out = cli("cutover", "conflicts", "--resolve", second, "--note", "fixed as well").stdout
    assert "other open conflict" not in out
    out = cli("cutover", "conflicts", "--resolve", other, "--note", "legacy was wrong").stdout
    assert "other open conflict" not in out
