"""Golden tables of the archetypes: given a landed legacy row, expect these core fields or this
problem (tests/unit/transform/golden/<archetype>.yaml).

One table per archetype in mappings/_archetypes/, cases per entity file. Each case runs through
:func:`etl.transform.engine.transform_chunk` under a system of the catalog that uses the archetype
(the first by name that does not override the entity file), through the helpers that
test_mapping_golden.py uses (tests/golden_helpers.py); the cases of an entity share one chunk.

A case is::

    - name: clean                          # the test id is <archetype>-<entity>-<name>
      given: {column: "landed text", ...}  # as the reader delivers it (null for a missing value;
                                           # an unreadable record: every field null, _read_error)
      references: {dataset: [keys]}        # optional, replaces the entity's default references
      expect: {core_field: value, ...}     # the row loads; dates ISO, timestamps with their zone;
                                           # {core_id: [entity, source key]} for a reference id
      flags: [{reason: ..., field: ...}]   # optional with expect: the flags it loads with
    - name: defect
      given: {...}
      expect_problem: {reason: ..., field: ..., outcome: quarantined}   # outcome by default;
                                           # optional detail: the outcome's detail
      xfail: why the code disagrees        # optional: pytest.mark.xfail(strict=True)

A case whose name starts with ``clean`` counts as clean, one with ``expect_problem`` as a defect.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path

import pandas as pd
import pytest
import yaml

from etl.catalog import load_catalog
from etl.core.ids import core_ids
from etl.core.model import ENTITIES
from etl.extract.landing import ROW_NUMBER, SOURCE_KEY
from etl.layout import ARCHETYPE_DIR, SYSTEM_FILE, archetype_of
from tests.golden_helpers import MAPPINGS, run

pytestmark = pytest.mark.unit

TABLES = Path(__file__).resolve().parent / "golden"
ARCHETYPES = MAPPINGS / ARCHETYPE_DIR


@cache
def archetype_entities() -> dict[str, list[str]]:
    return {
        directory.name: sorted(p.stem for p in directory.glob("*.yaml") if p.name != SYSTEM_FILE)
        for directory in sorted(ARCHETYPES.iterdir())
        if directory.is_dir()
    }


@cache
def load_table(archetype: str) -> dict:
    path = TABLES / f"{archetype}.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}


_SYSTEMS: dict[tuple[int, str, str], str | None] = {}
# Keys a system's own file may add to its archetype's without changing what the mapping makes
# (a wave's care unit of the rows: etl/cutover/scope.py).
_NOT_MAPPING_KEYS = {"extends", "care_unit", "description"}


def _takes_archetype_file(own: Path) -> bool:
    """No own file, or one that only extends the archetype's by keys that change no row."""
    if not own.exists():
        return True
    return set(yaml.safe_load(own.read_text(encoding="utf-8")) or {}) <= _NOT_MAPPING_KEYS


def system_of(catalog, archetype: str, entity: str) -> str:
    """The first system of the catalog by name, of the archetype, that takes the archetype's own
    entity file (a system's own file of that name would override or extend it)."""
    key = (id(catalog), archetype, entity)
    if key not in _SYSTEMS:
        _SYSTEMS[key] = next(
            (
                name
                for name, system in sorted(catalog.systems.items())
                if archetype_of(system.directory) == archetype
                and _takes_archetype_file(system.directory / f"{entity}.yaml")
            ),
            None,
        )
    assert _SYSTEMS[key], f"no system uses archetype {archetype}'s own {entity}.yaml"
    return _SYSTEMS[key]


def cases():
    for archetype in archetype_entities():
        table = load_table(archetype)
        for entity, spec in (table.get("entities") or {}).items():
            for case in spec.get("cases", []):
                marks = []
                if case.get("xfail"):
                    marks.append(pytest.mark.xfail(strict=True, reason=case["xfail"]))
                yield pytest.param(
                    archetype,
                    entity,
                    spec,
                    case,
                    id=f"{archetype}-{entity}-{case['name']}",
                    marks=marks,
                )


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(MAPPINGS)


def comparable(actual, expected, system: str):
    """``actual`` in the form the table writes, to compare with ``expected``."""
    if isinstance(expected, dict) and "core_id" in expected:
        entity, key = expected["core_id"]
        return actual, core_ids(system, entity, pd.Series([str(key)])).iloc[0]
    if expected is None:
        return (None if pd.isna(actual) else actual), None
    if pd.isna(actual):
        return None, expected
    if isinstance(actual, pd.Timestamp):
        wanted = pd.Timestamp(expected)
        assert wanted.tzinfo is not None, f"write the zone of the expected timestamp {expected}"
        return actual, wanted
    if isinstance(actual, dt.date):
        wanted = expected if isinstance(expected, dt.date) else dt.date.fromisoformat(expected)
        return actual, wanted
    if isinstance(expected, bool):
        return bool(actual), expected
    if isinstance(expected, float | int):
        return float(actual), float(expected)
    return str(actual), expected


@pytest.fixture(scope="module")
def result_of(catalog):
    """The transformed chunk a case is in, and the case's row number in it.

    The cases of an entity are landed as one chunk, as a batch lands them, and transformed once
    (six times faster than a chunk per case); rows are independent, so each case is judged by
    its row number alone. A case with its own ``references`` runs in a chunk of its own.
    """
    chunks = {}

    def result_of(archetype: str, entity: str, spec: dict, case: dict):
        system = system_of(catalog, archetype, entity)
        mapping = catalog.system(system).entities[entity]
        key = catalog.system(system).spec.datasets[mapping.dataset].key
        if "references" in case:
            return run(catalog, system, entity, [case["given"]], key, case["references"]), 1
        if (archetype, entity) not in chunks:
            shared = [c for c in spec["cases"] if "references" not in c]
            rows = [c["given"] for c in shared]
            result = run(catalog, system, entity, rows, key, spec.get("references"))
            chunks[archetype, entity] = result, [c["name"] for c in shared]
        result, names = chunks[archetype, entity]
        return result, names.index(case["name"]) + 1

    return result_of


@pytest.mark.parametrize(("archetype", "entity", "spec", "case"), list(cases()))
def test_archetype_golden_case(catalog, result_of, archetype, entity, spec, case):
    system = system_of(catalog, archetype, entity)
    mapping = catalog.system(system).entities[entity]
    key = catalog.system(system).spec.datasets[mapping.dataset].key
    chunk, row_number = result_of(archetype, entity, spec, case)
    rows = chunk.rows[chunk.rows[ROW_NUMBER] == row_number]
    outcomes = chunk.outcomes[chunk.outcomes[ROW_NUMBER] == row_number]
    given = case["given"]
    unreadable = any(given.get(column) is None for column in key)  # an unreadable record
    source_key = None if unreadable else "|".join(str(given[column]).strip() for column in key)

    if "expect_problem" in case:
        problem = case["expect_problem"]
        assert rows.empty, "the row loaded"
        assert not outcomes.empty, "the row has no outcome"
        outcome = outcomes.iloc[0]
        assert [
            outcome["outcome"],
            outcome["reason"],
            outcome["field"],
            None if pd.isna(outcome[SOURCE_KEY]) else outcome[SOURCE_KEY],
        ] == [
            problem.get("outcome", "quarantined"),
            problem["reason"],
            problem["field"],
            source_key,
        ]
        if "detail" in problem:
            assert outcome["detail"] == problem["detail"]
        return

    open_problems = outcomes[outcomes["outcome"] != "flagged"]
    assert open_problems.empty, open_problems[["reason", "field"]].values.tolist()
    flagged = outcomes[outcomes["outcome"] == "flagged"]
    wanted_flags = sorted([f["reason"], f["field"]] for f in case.get("flags", []))
    assert sorted(flagged[["reason", "field"]].values.tolist()) == wanted_flags
    assert len(rows) == 1
    row = rows.iloc[0]
    own_id = core_ids(system, entity, pd.Series([source_key])).iloc[0]
    assert row[ENTITIES[entity].id_field()] == own_id
    assert (row["source_system"], row["source_key"], row["batch_id"]) == (
        system,
        source_key,
        "batch-1",
    )
    for field, expected in case["expect"].items():
        actual, wanted = comparable(row[field], expected, system)
        assert actual == wanted, field


def test_every_archetype_entity_has_a_clean_and_a_defect_case():
    """A new archetype, or a new entity file of one, fails here until its table has cases."""
    missing = []
    for archetype, entities in archetype_entities().items():
        table = load_table(archetype)
        if not table:
            missing.append(f"{archetype}: no {TABLES.name}/{archetype}.yaml")
            continue
        assert table.get("archetype") == archetype, f"{archetype}.yaml names another archetype"
        tabled = table.get("entities") or {}
        assert set(tabled) <= set(entities), f"{archetype}: tables for no entity file"
        for entity in entities:
            checked = [c for c in (tabled.get(entity) or {}).get("cases", []) if not c.get("xfail")]
            if not any(c["name"].startswith("clean") and "expect" in c for c in checked):
                missing.append(f"{archetype}/{entity}: no clean case")
            if not any("expect_problem" in c for c in checked):
                missing.append(f"{archetype}/{entity}: no defect case")
    assert not missing, missing


def test_every_table_is_an_archetype():
    assert {p.stem for p in TABLES.glob("*.yaml")} <= set(archetype_entities())


def test_cases_are_well_formed(catalog):
    """Unique names, a given row, exactly one of expect and expect_problem, a system to run in."""
    for archetype in archetype_entities():
        for entity, spec in (load_table(archetype).get("entities") or {}).items():
            where = f"{archetype}/{entity}"
            system_of(catalog, archetype, entity)
            names = [c["name"] for c in spec.get("cases", [])]
            assert len(names) == len(set(names)), f"{where}: {names}"
            for case in spec["cases"]:
                assert isinstance(case.get("given"), dict), f"{where}/{case['name']}: no given"
                assert ("expect" in case) != ("expect_problem" in case), f"{where}/{case['name']}"
                assert not (case.get("flags") and "expect_problem" in case), case["name"]
