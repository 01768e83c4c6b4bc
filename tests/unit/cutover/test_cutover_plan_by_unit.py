"""Waves by care unit in the plan (etl/cutover/plan.py): scopes expand through the register, and
loading refuses a plan under which a row could be in two waves or in none."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml

from etl.cutover.plan import FIRST_WAVE, PlanError, load_plan, load_register
from etl.settings import PROJECT_ROOT

pytestmark = pytest.mark.unit

MAPPINGS = PROJECT_ROOT / "mappings"
CRITERIA = {
    "max_quarantine_rate": 0.05,
    "dq_gate": "pass",
    "reconciliation": "exact",
    "accounting": "exact",
    "approvers": {"project_lead": {"airflow_users": ["lena"]}},
}
SKAS_LAB = "SE2321000131-F000000764386"  # Laboratoriemedicin Skaraborg


def wave(name: str, **fields) -> dict:
    return {
        "wave": name,
        "title": name,
        "window": {"start": "2027-01-01", "end": "2027-01-14"},
        "criteria": CRITERIA,
        **fields,
    }


BASE = {
    "version": 1,
    "patients": "w0",
    "waves": [
        wave("w0"),
        wave("w1", by_unit=["melior", "lab_skas"], scope={"site": "SkaS"}),
        wave("w2", by_unit=["melior"], scope={"sites": ["SU", "NÄL"]}),
        wave("w3", systems=["lab_su"], unscoped=["melior", "lab_skas"]),
    ],
}


@pytest.fixture(scope="module")
def mappings(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("plan") / "mappings"
    shutil.copytree(MAPPINGS, folder)
    return folder


def load(mappings: Path, plan: dict, name: str = "test_plan.yaml"):
    (mappings / name).write_text(yaml.safe_dump(plan, allow_unicode=True), encoding="utf-8")
    return load_plan(mappings, name)


def changed(**waves) -> dict:
    """BASE with the named waves' fields replaced (None removes a field)."""
    plan = copy.deepcopy(BASE)
    for entry in plan["waves"]:
        for key, value in waves.get(entry["wave"], {}).items():
            if value is None:
                entry.pop(key, None)
            else:
                entry[key] = value
    return plan


def test_the_existing_plan_still_loads_and_splits_nothing():
    plan = load_plan(MAPPINGS)

    assert [w.wave for w in plan.waves] == ["w1_skaraborg", "w2_hospital_care", "w3_primary_care"]
    assert plan.split_systems == []
    assert all(not w.units for w in plan.waves)  # a whole-system wave's scope is a description


def test_a_site_expands_to_its_units_through_the_register(mappings):
    plan = load(mappings, BASE)
    register = load_register(mappings)

    assert plan.wave("w1").units == frozenset(register.units_of_site("SkaS"))
    assert SKAS_LAB in plan.wave("w1").units
    assert plan.wave("w2").units == frozenset(
        register.units_of_site("SU") + register.units_of_site("NÄL")
    )
    assert plan.split_systems == ["melior", "lab_skas"]
    assert plan.unscoped_wave("melior") == "w3"


def test_care_units_and_sites_add_up(mappings):
    register = load_register(mappings)
    extra = register.units_of_site("SÄS")[:2]
    plan = load(mappings, changed(w2={"scope": {"site": "SU", "care_units": extra}}))

    assert plan.wave("w2").units == frozenset(register.units_of_site("SU") + extra)


def test_the_demo_plan_splits_the_region_wide_systems_across_three_waves_by_unit():
    plan = load_plan(MAPPINGS, "waves_by_unit.yaml")

    for system in ("elvis", "melior", "orbit"):
        assert len([w for w in plan.waves if system in w.by_unit]) >= 3
    labs = [s for w in plan.waves for s in w.by_unit if s.startswith("lab_")]
    assert len({w.wave for w in plan.waves for s in w.by_unit if s in labs}) >= 3
    assert plan.patients == "w0_patients"
    register = load_register(MAPPINGS)
    assert set().union(*(w.units for w in plan.waves)) == register.hsa_ids


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        pytest.param(
            changed(w2={"scope": {"sites": ["SkaS"]}}),
            "is in the scope of waves 'w1' and 'w2'",
            id="overlapping-sites",
        ),
        pytest.param(
            changed(w2={"scope": {"site": "SU", "care_units": [SKAS_LAB]}}),
            f"care unit {SKAS_LAB} is in the scope of waves 'w1' and 'w2'",
            id="overlapping-unit",
        ),
        pytest.param(
            changed(w2={"scope": {"care_units": ["SE2321000131-E999999999999"]}}),
            "HSA-id(s) ['SE2321000131-E999999999999'], not in care_units.yaml",
            id="unknown-hsa-id",
        ),
        pytest.param(
            changed(w2={"scope": {"site": "Mölndal"}}),
            "site(s) ['Mölndal'], not in care_units.yaml",
            id="unknown-site",
        ),
        pytest.param(
            changed(w2={"scope": {}}),
            "splits ['melior'] by unit but its scope names no unit",
            id="no-units",
        ),
        pytest.param(
            changed(w3={"unscoped": ["lab_skas"]}),
            "system 'melior' is split by unit, so its rows with no unit or a unit in no wave "
            "need exactly one wave that lists it under 'unscoped'; no wave names it",
            id="no-unscoped-wave",
        ),
        pytest.param(
            changed(w2={"unscoped": ["melior"]}),
            "waves ['w2', 'w3'] name it",
            id="two-unscoped-waves",
        ),
        pytest.param(
            changed(w3={"systems": ["lab_su", "melior"]}),
            "system 'melior' is moved whole by wave 'w3' and split by unit by another",
            id="whole-and-split",
        ),
        pytest.param(
            changed(w3={"unscoped": ["melior", "lab_skas", "orbit"]}),
            "lists ['orbit'] under 'unscoped', but no wave splits them",
            id="unscoped-not-split",
        ),
        pytest.param(
            {**BASE, "patients": "", "waves": BASE["waves"][1:]},
            "'patients' must name the wave that moves the patient registers",
            id="no-patients-wave",
        ),
        pytest.param(
            {**BASE, "patients": "w9", "waves": BASE["waves"][1:]},
            "it is 'w9'",
            id="unknown-patients-wave",
        ),
        pytest.param(
            changed(
                w1={"by_unit": ["melior", "lab_skas", "ambulans"]},
                w3={"unscoped": ["melior", "lab_skas", "ambulans"]},
            ),
            "system 'ambulans' is split by unit, but its clinical_note mapping declares no "
            "care_unit",
            id="entity-without-unit",
        ),
        pytest.param(
            changed(w1={"by_unit": ["melior", "lab_skas", "lab_xyz"]}),
            "names system 'lab_xyz', which has no folder",
            id="unknown-system",
        ),
        pytest.param(
            {**BASE, "waves": [*BASE["waves"], wave("w9")]},
            "wave 'w9' moves nothing",
            id="empty-wave",
        ),
    ],
)
def test_a_plan_under_which_a_row_could_be_in_two_waves_or_none_is_refused(mappings, plan, message):
    with pytest.raises(PlanError) as raised:
        load(mappings, plan)

    assert message in str(raised.value)
    assert "test_plan.yaml" in str(raised.value)


def test_first_wave_is_a_patients_mode(mappings):
    plan = load(mappings, {**BASE, "patients": FIRST_WAVE, "waves": BASE["waves"][1:]})

    assert plan.patients == FIRST_WAVE


def test_a_fixed_unit_outside_the_register_is_refused(tmp_path):
    folder = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, folder)
    observation = folder / "lab_skas" / "observation.yaml"
    observation.write_text(
        "extends: lab_hl7\ncare_unit: {fixed: SE2321000131-L000000000001}\n", encoding="utf-8"
    )

    with pytest.raises(PlanError, match=r"care_unit\.fixed SE2321000131-L000000000001 is not in"):
        load(folder, BASE)


def test_a_mapping_changed_after_a_plan_loaded_is_checked_again(tmp_path):
    """The plan's check reuses the mappings it loaded while the folder's files are unchanged:
    an entity file changed in place afterwards is read again, and refused."""
    folder = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, folder)
    load(folder, BASE)
    load(folder, BASE)  # the mappings as checked before
    observation = folder / "lab_skas" / "observation.yaml"
    observation.write_text(
        "extends: lab_hl7\ncare_unit: {fixed: SE2321000131-L000000000001}\n", encoding="utf-8"
    )

    with pytest.raises(PlanError, match=r"care_unit\.fixed SE2321000131-L000000000001 is not in"):
        load(folder, BASE)


def test_a_plan_by_unit_needs_the_register(tmp_path):
    folder = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, folder)
    (folder / "care_units.yaml").unlink()

    with pytest.raises(PlanError, match=r"care_units\.yaml is missing"):
        load(folder, BASE)
    assert load_plan(folder).split_systems == []  # a plan of whole systems does not


def test_a_register_listing_a_unit_twice_is_refused(tmp_path):
    folder = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, folder)
    register = yaml.safe_load((folder / "care_units.yaml").read_text(encoding="utf-8"))
    register["care_units"].append(register["care_units"][0])
    (folder / "care_units.yaml").write_text(yaml.safe_dump(register), encoding="utf-8")

    with pytest.raises(PlanError, match="listed more than once"):
        load(folder, BASE)


def test_each_wave_runs_its_systems_and_a_unit_wave_waits_for_the_patients_wave(mappings, tmp_path):
    """The patients wave loads every split system's patients; a unit wave its own systems, and
    only once the patients wave has loaded (refused before any batch runs)."""
    import datetime as dt

    from etl.cutover import ledger, waves
    from etl.settings import Settings

    plan = load(mappings, BASE)
    assert plan.systems_of("w0") == ["melior", "lab_skas"]
    assert plan.systems_of("w1") == ["melior", "lab_skas"]
    assert plan.systems_of("w3") == ["lab_su", "melior", "lab_skas"]
    assert plan.is_sliced("w0") and plan.is_sliced("w2") and plan.is_sliced("w3")

    (mappings / "waves.yaml").write_text(yaml.safe_dump(BASE, allow_unicode=True), encoding="utf-8")
    settings = Settings(
        home=tmp_path / "home", mappings_dir=mappings, core_url=f"sqlite:///{tmp_path / 'c.db'}"
    )
    try:
        with pytest.raises(ledger.LedgerError, match="load w0 first"):
            waves.load_wave(settings, "w1", "initial", dt.date(2027, 1, 1))
        assert not (tmp_path / "home" / "landing").exists()  # refused before any batch
    finally:
        shutil.copyfile(MAPPINGS / "waves.yaml", mappings / "waves.yaml")


def test_the_fingerprint_of_a_wave_by_unit_covers_the_register_and_its_split_systems(mappings):
    from etl.cutover.fingerprint import plan_files
    from etl.settings import Settings

    plan = load(mappings, BASE)
    settings = Settings(home=mappings.parent / "home", mappings_dir=mappings)

    files = plan_files(settings, plan.wave("w1"))

    assert "mappings/care_units.yaml" in files
    assert "mappings/melior/diagnosis.yaml" in files
    assert "mappings/lab_skas/observation.yaml" in files
    assert "mappings/care_units.yaml" not in plan_files(settings, load_plan(MAPPINGS).waves[0])
