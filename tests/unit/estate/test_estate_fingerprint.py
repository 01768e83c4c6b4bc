"""The synthetic estate, byte for byte: small estates (with and without canaries) and a week of
legacy activity on one of them, every file's digest against ``estate_fingerprint.json``.

The generators draw from seeded random streams, so a change that reorders one draw changes
every value after it, and the planted defects that tests count with them. Splitting a generator
into steps, or any refactor of etl/estate, must leave this test passing; a deliberate change to
the estate shows up here for the reviewer. Regenerate after one with:
VARDFLYTT_UPDATE_SNAPSHOT=1 make test
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import pytest

from etl.estate import generate_estate
from etl.estate.activity import simulate_activity

pytestmark = pytest.mark.unit

FINGERPRINT = Path(__file__).with_name("estate_fingerprint.json")
# (seed, people, canaries): the canaries' planting is a branch of its own.
ESTATES = ((3, 150, False), (7, 120, True))
ACTIVITY_SEED = 11


def _digest(path: Path) -> str:
    """A file's SHA-256; of a SQLite database, of its SQL dump (the rows, not the pages)."""
    if path.suffix in (".sqlite", ".db"):
        connection = sqlite3.connect(path)
        try:
            dump = "\n".join(connection.iterdump())
        finally:
            connection.close()
        return hashlib.sha256(dump.encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fingerprint(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): _digest(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _estates(base: Path) -> dict[str, dict[str, str]]:
    found = {}
    for seed, people, canaries in ESTATES:
        name = f"seed{seed}_people{people}" + ("_canaries" if canaries else "")
        folder = base / name
        generate_estate(folder, people, seed=seed, canaries=canaries)
        found[name] = _fingerprint(folder)
        simulate_activity(folder, seed=ACTIVITY_SEED, days=7)
        found[f"{name}_after_activity"] = _fingerprint(folder)
    return found


def test_the_estate_is_generated_byte_for_byte_as_recorded(tmp_path):
    found = _estates(tmp_path)
    if os.environ.get("VARDFLYTT_UPDATE_SNAPSHOT") == "1":
        FINGERPRINT.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    recorded = json.loads(FINGERPRINT.read_text())
    changed = sorted(
        f"{estate}/{file}"
        for estate in recorded.keys() | found.keys()
        for file in recorded.get(estate, {}).keys() | found.get(estate, {}).keys()
        if recorded.get(estate, {}).get(file) != found.get(estate, {}).get(file)
    )
    assert changed == [], f"files the generators now write differently: {changed[:20]}"


def test_the_fingerprint_sees_one_changed_value(tmp_path):
    """The digest is of the content: one changed row of ELVIS's database, or one byte of a flat
    file, gives another fingerprint."""
    seed, people, canaries = ESTATES[0]
    generate_estate(tmp_path, people, seed=seed, canaries=canaries)
    before = _fingerprint(tmp_path)
    database = next(tmp_path.rglob("*.sqlite"))
    connection = sqlite3.connect(database)
    table = connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name LIMIT 1"
    ).fetchone()[0]
    connection.execute(f'DELETE FROM "{table}" WHERE rowid = (SELECT MIN(rowid) FROM "{table}")')
    connection.commit()
    connection.close()
    flat = next(p for p in sorted(tmp_path.rglob("*")) if p.is_file() and p.suffix != ".sqlite")
    flat.write_bytes(flat.read_bytes() + b"\n")
    after = _fingerprint(tmp_path)
    assert {name for name in before if before[name] != after[name]} == {
        database.relative_to(tmp_path).as_posix(),
        flat.relative_to(tmp_path).as_posix(),
    }
