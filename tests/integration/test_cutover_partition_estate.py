"""The partition over real estates: each system's rows as extract and transform make them, under
generated plans by unit (hypothesis). Every row is in exactly one wave, the patient registers
of the split systems only in the patients wave, and a row's wave follows its unit."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.catalog import load_catalog
from etl.cutover.plan import FIRST_WAVE, load_plan, load_register
from etl.cutover.scope import (
    IN_NO_WAVE,
    PATIENT_WAVE,
    assign,
    is_patient_level,
    scratch_tables,
    system_report,
)
from etl.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

SITES = ["SU", "NÄL", "SkaS", "SÄS", "Kungälv", "Alingsås"]
SPLIT = ["elvis", "melior", "orbit", "lab_skas", "lab_su"]
CRITERIA = {
    "max_quarantine_rate": 0.05,
    "dq_gate": "pass",
    "reconciliation": "exact",
    "accounting": "exact",
    "approvers": {"project_lead": {"airflow_users": ["lena"]}},
}


@pytest.fixture(scope="module", params=[(120, 3), (200, 11)], ids=["120p-seed3", "200p-seed11"])
def estate_tables(request, estate_of, tmp_path_factory):
    """The split systems' transformed tables of one small estate, and a mappings folder."""
    patients, seed = request.param
    estate = estate_of(patients, seed)
    home = tmp_path_factory.mktemp("partition")
    mappings = home / "mappings"
    shutil.copytree(PROJECT_ROOT / "mappings", mappings)
    from etl.settings import Settings

    local = Settings(home=home / "home", mappings_dir=mappings, estate_dir=estate)
    catalog = load_catalog(mappings)
    tables = {
        system.name: (system, frames)
        for system, frames in scratch_tables(catalog, local, dt.date(2026, 7, 1), SPLIT)
    }
    assert not (local.scratch_dir).exists() or not any(local.scratch_dir.iterdir())
    return mappings, catalog, tables


def _plan(mappings, catalog, site_wave, waves, patients, unscoped):
    entries = [] if patients == FIRST_WAVE else [{"wave": "w0", "title": "patients"}]
    for number in range(1, waves + 1):
        sites = [s for s, chosen in zip(SITES, site_wave, strict=True) if chosen == number]
        entry: dict = {"wave": f"w{number}", "title": str(number), "systems": []}
        if sites:
            entry |= {"by_unit": SPLIT, "scope": {"sites": sites}}
        if number == unscoped:
            entry["unscoped"] = SPLIT
        if not sites and number != unscoped:
            entry["systems"] = [["ambulans", "elevhalsa", "ris_su", "icu_su"][number - 1]]
        entries.append(entry)
    for entry in entries:
        entry |= {"window": {"start": "2027-01-01", "end": "2027-01-14"}, "criteria": CRITERIA}
    content = {"version": 1, "patients": patients, "waves": entries}
    (mappings / "generated.yaml").write_text(yaml.safe_dump(content, allow_unicode=True), "utf-8")
    return load_plan(mappings, "generated.yaml", catalog)


plans = st.integers(min_value=1, max_value=4).flatmap(
    lambda waves: st.tuples(
        st.just(waves),
        st.lists(st.integers(1, waves), min_size=len(SITES), max_size=len(SITES)),
        st.sampled_from(["w0", FIRST_WAVE]),
        st.integers(1, waves),
    )
)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(example=plans)
def test_every_row_of_the_estate_is_in_exactly_one_wave(estate_tables, example):
    mappings, catalog, tables = estate_tables
    waves, site_wave, patients, unscoped = example
    plan = _plan(mappings, catalog, site_wave, waves, patients, unscoped)
    register = load_register(mappings)
    site_of = {unit.hsa_id: unit.site for unit in register.care_units}
    wave_of_site = {site: f"w{w}" for site, w in zip(SITES, site_wave, strict=True)}

    for name, (system, frames) in tables.items():
        counts, problems = system_report(plan, system, frames)
        assert problems == [], name
        assert sum(c.rows for c in counts) == sum(len(f) for f in frames.values())
        assigned = assign(plan, system, frames)
        for entity, rows in assigned.items():
            assert (rows["waves"] == 1).all(), (name, entity)
            if (
                is_patient_level(system, entity)
                and patients == "w0"
                and (
                    entity in ("patient", "patient_identifier")
                    or system.entities[entity].care_unit.follows == "patient"
                )
            ):
                assert set(rows["reason"]) == {PATIENT_WAVE}, (name, entity)
        # A row with its own unit column is in the wave of its unit's site.
        for entity, mapping in system.entities.items():
            declared = mapping.care_unit
            if declared.column and not declared.is_reference and entity in frames:
                units = frames[entity][declared.column]
                known = units.isin(list(site_of))
                expected = units[known].map(site_of).map(wave_of_site)
                assert (assigned[entity]["wave"][known] == expected).all(), (name, entity)
                assert (assigned[entity]["wave"][~known] == f"w{unscoped}").all()


def test_without_an_unscoped_wave_the_estates_rows_without_a_unit_are_orphans(estate_tables):
    mappings, catalog, tables = estate_tables
    plan = _plan(mappings, catalog, [1, 2, 1, 2, 2, 2], 2, "w0", 2)
    plan.wave("w2").unscoped.remove("melior")
    system, frames = tables["melior"]

    _, problems = system_report(plan, system, frames)

    orphaned = {p.entity: p for p in problems}
    assert orphaned and {p.problem for p in problems} == {IN_NO_WAVE}
    # Melior's diagnoses and notes documented outside any care contact have no unit.
    assert set(orphaned) <= {
        "diagnosis",
        "clinical_note",
        "encounter",
        "procedure",
        "medication",
        "observation",
    }
    assert all(p.keys for p in problems)
