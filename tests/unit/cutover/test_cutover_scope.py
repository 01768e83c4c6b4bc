"""Each row's wave (etl/cutover/scope.py): one test per way a row belongs to a unit, and property
tests over generated plans and tables that the assignment is a partition (every row in exactly
one wave, the one a row-by-row reference gives) and that the check names an injected overlap
and an injected orphan by their row keys."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.catalog import load_catalog
from etl.core.model import ENTITIES
from etl.cutover.plan import FIRST_WAVE, load_plan, load_register
from etl.cutover.scope import (
    FIXED_UNIT,
    IN_NO_WAVE,
    IN_SEVERAL_WAVES,
    OWN_UNIT,
    PATIENT_FOLLOWS,
    PATIENT_WAVE,
    UNSCOPED_NO_UNIT,
    UNSCOPED_OTHER_UNIT,
    WHOLE_SYSTEM,
    assign,
    first_waves_of,
    is_patient_level,
    memberships,
    needed_columns,
    row_units,
    system_report,
)
from etl.settings import PROJECT_ROOT

pytestmark = pytest.mark.unit

MAPPINGS = PROJECT_ROOT / "mappings"
SITES = ["SU", "NÄL", "SkaS", "SÄS", "Kungälv", "Alingsås"]
SPLIT = ["elvis", "melior", "orbit", "lab_skas"]
WHOLE = ["ambulans", "elevhalsa", "dosdispensering", "vaccinationsregister"]
UNKNOWN_UNIT = "SE2321000131-E999999999999"  # in no register: its rows are unscoped
CRITERIA = {
    "max_quarantine_rate": 0.05,
    "dq_gate": "pass",
    "reconciliation": "exact",
    "accounting": "exact",
    "approvers": {"project_lead": {"airflow_users": ["lena"]}},
}


@pytest.fixture(scope="module")
def mappings(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scope") / "mappings"
    shutil.copytree(MAPPINGS, folder)
    return folder


@pytest.fixture(scope="module")
def catalog(mappings):
    return load_catalog(mappings)


@pytest.fixture(scope="module")
def register(mappings):
    return load_register(mappings)


def plan_of(mappings, catalog, site_wave: list[int], waves: int, patients: str, unscoped: int):
    """A plan: wave w0 (patients) and w1..w<waves>; site i goes live in w<site_wave[i]>; the
    split systems' unscoped rows go to w<unscoped>; each wave also moves one system whole."""
    entries = [{"wave": "w0", "title": "patients"}]
    for number in range(1, waves + 1):
        sites = [site for site, chosen in zip(SITES, site_wave, strict=True) if chosen == number]
        entry: dict = {"wave": f"w{number}", "title": f"wave {number}"}
        if sites:
            entry |= {"by_unit": SPLIT, "scope": {"sites": sites}}
        if number == unscoped:
            entry["unscoped"] = SPLIT
        entry["systems"] = [WHOLE[number - 1]]  # so that no wave moves nothing
        entries.append(entry)
    for entry in entries:
        entry |= {"window": {"start": "2027-01-01", "end": "2027-01-14"}, "criteria": CRITERIA}
    if patients == FIRST_WAVE:
        entries = entries[1:]
    plan = {"version": 1, "patients": patients, "waves": entries}
    name = "generated.yaml"
    (mappings / name).write_text(yaml.safe_dump(plan, allow_unicode=True), encoding="utf-8")
    return load_plan(mappings, name, catalog)


# --- generated tables: each entity's declared unit columns, drawn from the register -----------


def tables_of(system, register, draw_index, rows: int) -> dict[str, pd.DataFrame]:
    """Transformed-table stand-ins for ``system``: ids, patient ids and unit columns as declared;
    units from the register, plus blanks and a unit no register knows. ``draw_index(n, size)``
    draws indices (hypothesis-controlled)."""
    known = sorted(register.hsa_ids)
    # A few of the register's units (so that several rows share one) and, as often, a blank,
    # an empty and an unknown unit.
    pool = [known[i] for i in draw_index(len(known), 6)] + [None, "", UNKNOWN_UNIT]
    patients = [f"p{i}" for i in range(max(1, rows // 2))]
    tables: dict[str, pd.DataFrame] = {}
    order = sorted(system.entities, key=lambda e: _depth(system, e))
    for entity in [*order, "patient_identifier"]:
        columns = needed_columns(system, entity)
        size = len(patients) if entity == "patient" else rows
        ids = patients if entity == "patient" else [f"{entity[:3]}{i}" for i in range(size)]
        frame = pd.DataFrame(
            {"source_key": [f"{entity}-{i}" for i in range(size)], ENTITIES[entity].id_field(): ids}
        )
        if entity != "patient" and "patient_id" in columns:
            frame["patient_id"] = [patients[i] for i in draw_index(len(patients), size)]
        for column in columns:
            if column in frame.columns:
                continue
            if column.endswith("hsa_id"):
                frame[column] = [pool[i] for i in draw_index(len(pool), size)]
            elif column.endswith("care_unit_id"):
                units = [*tables["care_unit"]["care_unit_id"], None, "cu-missing"]
                frame[column] = [units[i] for i in draw_index(len(units), size)]
            elif column.endswith("_id"):
                target = column.removesuffix("_id")
                ids = [*tables[target][ENTITIES[target].id_field()], None, f"{target}-gone"]
                frame[column] = [ids[i] for i in draw_index(len(ids), size)]
        tables[entity] = frame
    return tables


def _depth(system, entity: str) -> int:
    """Entities others point at first (care units, encounters), patients first of all."""
    unit = system.entities[entity].care_unit
    if entity in ("patient", "care_unit"):
        return 0
    if unit is not None and unit.is_reference:
        return 1
    return 3 if unit is not None and unit.via else 2


def reference_assignment(plan, system, tables, register) -> dict[str, list[str]]:
    """Row by row, in plain Python, the wave each row must get: the specification."""
    owner = {unit: w.wave for w in plan.waves if system.name in w.by_unit for unit in w.units}
    unscoped = plan.unscoped_wave(system.name)
    order = [w.wave for w in plan.waves]
    hsa_of_care_unit = (
        dict(zip(tables["care_unit"]["care_unit_id"], tables["care_unit"]["hsa_id"], strict=True))
        if "care_unit" in tables
        else {}
    )

    def unit(entity: str, row: pd.Series):
        declared = system.entities[entity].care_unit
        if declared.fixed:
            return declared.fixed
        if declared.column:
            value = row[declared.column]
            if declared.is_reference:
                value = hsa_of_care_unit.get(value)
            return value
        target = declared.via_entity
        table = tables[target]
        match = table[table[ENTITIES[target].id_field()] == row[declared.via]]
        return unit(target, match.iloc[0]) if len(match) else None

    expected: dict[str, list[str]] = {}
    first: dict[str, int] = {}
    for entity, table in tables.items():
        if is_patient_level(system, entity):
            continue
        waves = []
        for _, row in table.iterrows():
            value = unit(entity, row)
            value = value.strip() if isinstance(value, str) else value
            wave = owner.get(value, unscoped) if value else unscoped
            waves.append(wave)
            if "patient_id" in row and isinstance(row["patient_id"], str):
                at = order.index(wave)
                first[row["patient_id"]] = min(first.get(row["patient_id"], at), at)
        expected[entity] = waves
    for entity, table in tables.items():
        if not is_patient_level(system, entity):
            continue
        declared = system.entities[entity].care_unit if entity in system.entities else None
        follows_care = declared is not None and declared.follows == "patient_care"
        if plan.patients != FIRST_WAVE and not follows_care:
            expected[entity] = [plan.patients] * len(table)
        else:
            expected[entity] = [
                order[first[p]] if p in first else unscoped for p in table["patient_id"]
            ]
    return expected


# --- one test per declaration kind ------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_plan(catalog):
    return load_plan(MAPPINGS, "waves_by_unit.yaml", catalog)


def units_of(register, site: str) -> list[str]:
    return register.units_of_site(site)


def test_own_hsa_id_column(catalog, register, demo_plan):
    melior = catalog.system("melior")
    skas, su = units_of(register, "SkaS")[0], units_of(register, "SU")[0]
    tables = {
        "encounter": pd.DataFrame(
            {
                "source_key": ["k1", "k2", "k3", "k4", "k5"],
                "encounter_id": ["e1", "e2", "e3", "e4", "e5"],
                "patient_id": ["p1"] * 5,
                "care_unit_hsa_id": [skas, su, None, UNKNOWN_UNIT, " "],
            }
        )
    }

    rows = assign(demo_plan, melior, tables)["encounter"]

    assert rows["wave"].tolist() == [
        "w1_skaraborg",
        "w2_goteborg",
        "w3_hospitals",
        "w3_hospitals",
        "w3_hospitals",
    ]
    assert rows["reason"].tolist() == [
        OWN_UNIT,
        OWN_UNIT,
        UNSCOPED_NO_UNIT,
        UNSCOPED_OTHER_UNIT,
        UNSCOPED_NO_UNIT,
    ]
    assert (rows["waves"] == 1).all()


def test_own_care_unit_reference_through_the_systems_care_units(catalog, register, demo_plan):
    elvis = catalog.system("elvis")
    skas, su = units_of(register, "SkaS")[0], units_of(register, "SU")[0]
    tables = {
        "care_unit": pd.DataFrame(
            {"source_key": ["1", "2"], "care_unit_id": ["c1", "c2"], "hsa_id": [skas, su]}
        ),
        "appointment": pd.DataFrame(
            {
                "source_key": ["a1", "a2", "a3", "a4"],
                "appointment_id": ["x1", "x2", "x3", "x4"],
                "patient_id": ["p1"] * 4,
                "care_unit_id": ["c2", "c1", "c-unknown", None],
            }
        ),
    }

    rows = assign(demo_plan, elvis, tables)

    assert rows["appointment"]["wave"].tolist() == [
        "w2_goteborg",
        "w1_skaraborg",
        "w3_hospitals",
        "w3_hospitals",
    ]
    assert rows["appointment"]["reason"].tolist()[:3] == [OWN_UNIT, OWN_UNIT, UNSCOPED_NO_UNIT]
    assert rows["care_unit"]["wave"].tolist() == ["w1_skaraborg", "w2_goteborg"]


def test_via_the_encounter(catalog, register, demo_plan):
    melior = catalog.system("melior")
    skas = units_of(register, "SkaS")[1]
    tables = {
        "encounter": pd.DataFrame(
            {
                "source_key": ["k1", "k2"],
                "encounter_id": ["e1", "e2"],
                "patient_id": ["p1", "p1"],
                "care_unit_hsa_id": [skas, None],
            }
        ),
        "diagnosis": pd.DataFrame(
            {
                "source_key": ["d1", "d2", "d3", "d4"],
                "diagnosis_id": ["x1", "x2", "x3", "x4"],
                "patient_id": ["p1"] * 4,
                "encounter_id": ["e1", "e2", "e-not-in-batch", None],
            }
        ),
    }

    rows = assign(demo_plan, melior, tables)["diagnosis"]

    assert rows["wave"].tolist() == ["w1_skaraborg"] + ["w3_hospitals"] * 3
    assert rows["reason"].tolist() == ["via_encounter"] + [UNSCOPED_NO_UNIT] * 3


def test_a_unit_is_trimmed_and_a_pointer_to_a_repeated_id_takes_its_first_row(
    catalog, register, demo_plan
):
    """A unit padded with blanks is that unit, one of blanks only is none; a row pointing at an
    id two rows carry takes the unit of the first (etl/cutover/scope.py, ``_looked_up``)."""
    melior = catalog.system("melior")
    skas, su = units_of(register, "SkaS")[0], units_of(register, "SU")[0]
    tables = {
        "encounter": pd.DataFrame(
            {
                "source_key": ["k1", "k2", "k3", "k4"],
                "encounter_id": ["e1", "e1", "e2", "e3"],
                "patient_id": ["p1"] * 4,
                "care_unit_hsa_id": [f" {skas}\t", su, "   ", su],
            }
        ),
        "diagnosis": pd.DataFrame(
            {
                "source_key": ["d1", "d2", "d3"],
                "diagnosis_id": ["x1", "x2", "x3"],
                "patient_id": ["p1"] * 3,
                "encounter_id": ["e1", "e2", "e3"],
            }
        ),
    }

    rows = assign(demo_plan, melior, tables)
    units = row_units(melior, tables)

    assert units["encounter"][0].tolist() == [skas, su, pd.NA, su]
    assert units["diagnosis"][0].tolist() == [skas, pd.NA, su]
    assert rows["encounter"]["reason"].tolist() == [OWN_UNIT, OWN_UNIT, UNSCOPED_NO_UNIT, OWN_UNIT]
    assert rows["diagnosis"]["wave"].tolist() == ["w1_skaraborg", "w3_hospitals", "w2_goteborg"]
    assert rows["diagnosis"]["reason"].tolist() == [
        "via_encounter",
        UNSCOPED_NO_UNIT,
        "via_encounter",
    ]


def test_a_fixed_unit(catalog, demo_plan):
    tables = {
        "observation": pd.DataFrame(
            {"source_key": ["o1"], "observation_id": ["x1"], "patient_id": ["p1"]}
        )
    }

    rows = assign(demo_plan, catalog.system("lab_skas"), tables)["observation"]

    assert rows[["wave", "reason"]].values.tolist() == [["w1_skaraborg", FIXED_UNIT]]


def test_patient_level_rows_go_to_the_patients_wave(catalog, demo_plan):
    tables = {
        "patient": pd.DataFrame({"source_key": ["1", "2"], "patient_id": ["p1", "p2"]}),
        "patient_identifier": pd.DataFrame(
            {"source_key": ["1#0"], "patient_identifier_id": ["i1"], "patient_id": ["p1"]}
        ),
        "alert": pd.DataFrame({"source_key": ["a"], "alert_id": ["a1"], "patient_id": ["p2"]}),
    }

    rows = assign(demo_plan, catalog.system("melior"), tables)

    for entity in tables:
        assert set(rows[entity]["wave"]) == {"w0_patients"}
        assert set(rows[entity]["reason"]) == {PATIENT_WAVE}


def test_a_medication_list_moves_with_the_patients_first_wave_even_with_a_patients_wave(
    catalog, register, demo_plan
):
    skas, su = units_of(register, "SkaS")[0], units_of(register, "SU")[0]
    tables = {
        "encounter": pd.DataFrame(
            {
                "source_key": ["k1", "k2", "k3"],
                "encounter_id": ["e1", "e2", "e3"],
                "patient_id": ["p1", "p1", "p2"],
                "care_unit_hsa_id": [su, skas, su],
            }
        ),
        "medication": pd.DataFrame(
            {
                "source_key": ["m1", "m2", "m3"],
                "medication_id": ["x1", "x2", "x3"],
                "patient_id": ["p1", "p2", "p3"],
            }
        ),
        "patient": pd.DataFrame({"source_key": ["1"], "patient_id": ["p1"]}),
    }

    rows = assign(demo_plan, catalog.system("melior"), tables)

    # p1 in w1 (SkaS) before w2 (SU); p2 only in w2; p3 has no row with a unit: unscoped (w3).
    assert rows["medication"]["wave"].tolist() == ["w1_skaraborg", "w2_goteborg", "w3_hospitals"]
    assert set(rows["medication"]["reason"]) == {PATIENT_FOLLOWS}
    assert rows["patient"]["wave"].tolist() == ["w0_patients"]  # the register: wave 0


def test_with_first_wave_a_patient_moves_with_the_first_wave_that_needs_it(
    mappings, catalog, register
):
    plan = plan_of(mappings, catalog, [2, 3, 1, 3, 3, 3], 3, FIRST_WAVE, 3)
    skas, su = units_of(register, "SkaS")[0], units_of(register, "SU")[0]
    tables = {
        "patient": pd.DataFrame({"source_key": ["1", "2", "3"], "patient_id": ["p1", "p2", "p3"]}),
        "encounter": pd.DataFrame(
            {
                "source_key": ["k1", "k2", "k3"],
                "encounter_id": ["e1", "e2", "e3"],
                "patient_id": ["p1", "p1", "p2"],
                "care_unit_hsa_id": [su, skas, su],
            }
        ),
        "alert": pd.DataFrame(
            {"source_key": ["a1", "a3"], "alert_id": ["x1", "x3"], "patient_id": ["p1", "p3"]}
        ),
    }

    rows = assign(plan, catalog.system("melior"), tables)

    # p1 has rows in w2 (SU) and w1 (SkaS): it moves in w1; p2 in w2; p3 has none: unscoped (w3).
    assert rows["patient"]["wave"].tolist() == ["w1", "w2", "w3"]
    assert rows["alert"]["wave"].tolist() == ["w1", "w3"]
    assert set(rows["patient"]["reason"]) == {PATIENT_FOLLOWS}


def test_a_system_moved_whole(catalog, demo_plan):
    tables = {
        "encounter": pd.DataFrame(
            {"source_key": ["1"], "encounter_id": ["e"], "patient_id": ["p"]}
        ),
        "patient": pd.DataFrame({"source_key": ["1"], "patient_id": ["p"]}),
    }

    rows = assign(demo_plan, catalog.system("asynjavisph"), tables)

    for entity in tables:
        assert rows[entity][["wave", "reason"]].values.tolist() == [
            ["w4_primary_care", WHOLE_SYSTEM]
        ]


def test_a_system_in_no_wave_is_all_orphans(catalog, demo_plan):
    plan = copy.deepcopy(demo_plan)
    plan.wave("w4_primary_care").systems.remove("asynjavisph")
    tables = {"patient": pd.DataFrame({"source_key": ["k1", "k2"], "patient_id": ["p1", "p2"]})}

    _, problems = system_report(plan, catalog.system("asynjavisph"), tables)

    assert [(p.entity, p.problem, p.rows, p.keys) for p in problems] == [
        ("patient", IN_NO_WAVE, 2, ["k1", "k2"])
    ]


# --- properties over generated plans and tables ---------------------------------------------


def plans_of(systems: list[str]):
    return st.tuples(
        st.integers(min_value=1, max_value=4).flatmap(
            lambda waves: st.tuples(
                st.just(waves),
                st.lists(
                    st.integers(min_value=1, max_value=waves),
                    min_size=len(SITES),
                    max_size=len(SITES),
                ),
                st.integers(min_value=1, max_value=waves),
            )
        ),
        st.sampled_from(["w0", FIRST_WAVE]),
        st.sampled_from(systems),
        st.integers(min_value=1, max_value=40),
        st.randoms(use_true_random=False),
    )


plans = plans_of(SPLIT)
# Plans for injected faults: systems whose rows carry a unit column (a laboratory's rows all
# have its fixed unit, so removing its unscoped wave orphans nothing).
column_plans = plans_of(["elvis", "melior", "orbit"])


def _generated(mappings, catalog, register, example):
    (waves, site_wave, unscoped), patients, name, rows, random = example
    plan = plan_of(mappings, catalog, site_wave, waves, patients, unscoped)
    system = catalog.system(name)

    def draw_index(n: int, size: int) -> list[int]:
        return [random.randrange(n) for _ in range(size)]

    return plan, system, tables_of(system, register, draw_index, rows)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(example=plans)
def test_every_row_is_in_exactly_one_wave_the_one_the_specification_gives(
    mappings, catalog, register, example
):
    plan, system, tables = _generated(mappings, catalog, register, example)

    assigned = assign(plan, system, tables)
    counts, problems = system_report(plan, system, tables)

    assert problems == []
    assert set(assigned) == set(tables)
    expected = reference_assignment(plan, system, tables, register)
    for entity, rows in assigned.items():
        assert (rows["waves"] == 1).all(), entity
        assert rows["wave"].tolist() == expected[entity], entity
        assert rows["source_key"].tolist() == tables[entity]["source_key"].tolist()
    assert sum(c.rows for c in counts) == sum(len(t) for t in tables.values())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(example=plans)
def test_one_entitys_rows_alone_get_the_waves_the_whole_tables_give(
    mappings, catalog, register, example
):
    """What the assignment of the core's rows in chunks does (etl/cutover/slice_core.py,
    ``core_assignment``): one entity's rows with only ``entities=[it]`` computed, the units
    of the rows they point at and the patients' first waves given instead of their tables."""
    plan, system, tables = _generated(mappings, catalog, register, example)
    whole = assign(plan, system, tables)
    found = memberships(plan, system, tables)
    first = first_waves_of(plan, system, tables, found)
    known = {
        entity: pd.Series(
            units.to_numpy(),
            index=tables[entity][ENTITIES[entity].id_field()].to_numpy(),
            dtype="string",
        )
        for entity, (units, _) in row_units(system, tables).items()
    }

    for entity, table in tables.items():
        alone = {entity: table} | (
            {"care_unit": tables["care_unit"]}
            if entity != "care_unit" and "care_unit" in tables
            else {}
        )
        found = memberships(plan, system, alone, known, first, entities=[entity])
        rows = assign(plan, system, alone, found=found)

        assert list(found) == [entity]
        pd.testing.assert_frame_equal(rows[entity], whole[entity], obj=entity)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(example=column_plans, pick=st.integers(min_value=0, max_value=10_000))
def test_the_check_names_the_rows_of_an_injected_overlap(
    mappings, catalog, register, example, pick
):
    plan, system, tables = _generated(mappings, catalog, register, example)
    split = [w for w in plan.waves if system.name in w.by_unit]
    other = next((w for w in plan.waves if w.wave not in {s.wave for s in split[:1]}), None)
    if not split or other is None:
        return
    # One unit of the first split wave is also in another wave's scope (as a hand-edited plan
    # that bypassed loading could have it); every row of that unit is then in two waves.
    unit = sorted(split[0].units)[pick % len(split[0].units)]
    other._units = other.units | {unit}
    if system.name not in other.by_unit:
        other.by_unit.append(system.name)
    injected = _inject_row(system, tables, unit)

    _, problems = system_report(plan, system, tables)

    several = [p for p in problems if p.problem == IN_SEVERAL_WAVES]
    assert several, problems
    assert not [p for p in problems if p.problem == IN_NO_WAVE]
    assert any(injected in p.keys or p.rows > len(p.keys) for p in several)
    for problem in several:
        assert set(problem.waves) == {split[0].wave, other.wave}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(example=column_plans)
def test_the_check_names_the_rows_of_an_injected_orphan(mappings, catalog, register, example):
    plan, system, tables = _generated(mappings, catalog, register, example)
    # The plan loses the wave for the system's rows without a unit (as a hand-edited plan that
    # bypassed loading could), and a row without a unit arrives.
    plan.wave(plan.unscoped_wave(system.name)).unscoped.remove(system.name)
    injected = _inject_row(system, tables, None)

    assigned = assign(plan, system, tables)
    _, problems = system_report(plan, system, tables)

    orphans = [p for p in problems if p.problem == IN_NO_WAVE]
    assert orphans
    assert not [p for p in problems if p.problem == IN_SEVERAL_WAVES]
    reported = {key for p in orphans for key in p.keys}
    assert injected in reported or sum(p.rows for p in orphans) > len(reported)
    for entity, rows in assigned.items():
        unplaced = rows[rows["waves"] == 0]
        assert (unplaced["reason"] == IN_NO_WAVE).all()
        assert (unplaced["wave"].isna()).all()
        assert sum(p.rows for p in orphans if p.entity == entity) == len(unplaced)


def _inject_row(system, tables, unit: str | None) -> str:
    """A row with this unit (None: no unit) in an entity with a unit of its own; its key."""
    for entity, mapping in system.entities.items():
        declared = mapping.care_unit
        if declared is None or not declared.column or declared.is_reference:
            continue
        table = tables[entity]
        key = f"{entity}-injected"
        row = {column: None for column in table.columns}
        row |= {"source_key": key, ENTITIES[entity].id_field(): f"{entity}-injected"}
        if declared.column:
            row[declared.column] = unit
        tables[entity] = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
        return key
    raise AssertionError(f"{system.name} has no entity with a unit column")


def test_the_assignment_is_vectorised_for_a_large_table(catalog, register, demo_plan):
    """Half a million encounters in well under the time a loop per row would take."""
    import time

    units = np.array([*sorted(register.hsa_ids), None], dtype=object)
    size = 500_000
    tables = {
        "encounter": pd.DataFrame(
            {
                "source_key": np.arange(size).astype(str),
                "encounter_id": np.arange(size).astype(str),
                "patient_id": (np.arange(size) % 1000).astype(str),
                "care_unit_hsa_id": units[np.arange(size) % len(units)],
            }
        )
    }
    started = time.perf_counter()
    rows = assign(demo_plan, catalog.system("melior"), tables)["encounter"]
    elapsed = time.perf_counter() - started

    assert (rows["waves"] == 1).all()
    assert elapsed < 10
