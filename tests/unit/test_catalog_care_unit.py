"""How a row belongs to a care unit (``care_unit:`` in an entity mapping, etl/catalog.py): each
declaration kind, and the errors a wrong one gives, naming the system's file and the key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from etl.catalog import MappingError, UnitFollows, load_catalog

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(MAPPINGS)


def test_each_declaration_kind_in_the_repository(catalog):
    elvis, melior = catalog.system("elvis").entities, catalog.system("melior").entities

    assert melior["encounter"].care_unit.column == "care_unit_hsa_id"  # own HSA-id
    assert not melior["encounter"].care_unit.is_reference
    assert elvis["encounter"].care_unit.column == "care_unit_id"  # own care unit reference
    assert elvis["encounter"].care_unit.is_reference
    assert elvis["referral"].care_unit.column == "to_care_unit_hsa_id"  # the receiving unit
    assert melior["diagnosis"].care_unit.via == "encounter_id"  # its encounter's unit
    assert melior["diagnosis"].care_unit.via_entity == "encounter"
    assert melior["alert"].care_unit.follows is UnitFollows.PATIENT  # patient-level
    assert melior["patient"].care_unit.is_patient_level


def test_a_system_extends_the_archetype_with_its_own_unit_key_by_key(catalog):
    """The lab archetype's observation mapping, with the laboratory's unit added per system."""
    skas, su = catalog.system("lab_skas"), catalog.system("lab_su")

    assert skas.entities["observation"].care_unit.fixed == "SE2321000131-F000000764386"
    assert su.entities["observation"].care_unit.fixed == "SE2321000131-F000000748548"
    assert skas.entities["observation"].columns == su.entities["observation"].columns
    assert skas.entities["patient"].care_unit.is_patient_level  # from the archetype


def test_systems_moved_whole_need_no_declaration(catalog):
    assert catalog.system("ambulans").entities["encounter"].care_unit is None


@pytest.fixture
def mappings(tmp_path) -> Path:
    folder = tmp_path / "mappings"
    for name in ("melior", "elvis", "lab_skas", "_archetypes", "crosswalks"):
        shutil.copytree(MAPPINGS / name, folder / name)
    return folder


def declare(mappings: Path, system: str, entity: str, care_unit) -> Path:
    path = mappings / system / f"{entity}.yaml"
    content = yaml.safe_load(path.read_text(encoding="utf-8"))
    content["care_unit"] = care_unit
    path.write_text(yaml.safe_dump(content, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("system", "entity", "care_unit", "expected"),
    [
        pytest.param(
            "melior",
            "encounter",
            {"column": "no_such_hsa_id"},
            [
                "melior/encounter.yaml",
                "field 'care_unit.column'",
                "has no column 'no_such_hsa_id'",
            ],
            id="unknown-column",
        ),
        pytest.param(
            "melior",
            "diagnosis",
            {"column": "practitioner_hsa_id", "via": "encounter_id"},
            ["melior/diagnosis.yaml", "field 'care_unit'", "exactly one of", "'column', 'via'"],
            id="two-kinds",
        ),
        pytest.param(
            "melior",
            "diagnosis",
            {"column": "icd10_code"},
            ["melior/diagnosis.yaml", "a unit column holds an HSA-id"],
            id="not-a-unit-column",
        ),
        pytest.param(
            "melior",
            "encounter",
            {"column": "care_unit_id"},
            ["melior/encounter.yaml", "maps no column 'care_unit_id'"],
            id="unmapped-column",
        ),
        pytest.param(
            "melior",
            "diagnosis",
            {"via": "referral_id"},
            ["melior/diagnosis.yaml", "field 'care_unit.via'", "has no column 'referral_id'"],
            id="via-column-missing",
        ),
        pytest.param(
            "melior",
            "diagnosis",
            {"via": "ward_id"},
            ["melior/diagnosis.yaml", "'via: ward_id'", "core entity"],
            id="via-unknown-entity",
        ),
        pytest.param(
            "melior",
            "diagnosis",
            {"via": "patient_id"},
            ["melior/diagnosis.yaml", "write 'follows: patient'"],
            id="via-patient",
        ),
        pytest.param(
            "melior",
            "patient",
            {"column": "care_unit_hsa_id"},
            ["melior/patient.yaml", "a patient is patient-level"],
            id="patient-with-a-unit",
        ),
        pytest.param(
            "melior",
            "diagnosis",
            {"fixed": "SE232100013-X"},
            ["melior/diagnosis.yaml", "field 'care_unit.fixed'"],
            id="fixed-not-an-hsa-id",
        ),
        pytest.param(
            "melior",
            "encounter",
            {"follows": "unit"},
            ["melior/encounter.yaml", "field 'care_unit.follows'"],
            id="follows-what",
        ),
        pytest.param(
            "melior",
            "diagnosis",
            {"column": "care_unit_hsa_id", "colour": "red"},
            ["melior/diagnosis.yaml", "field 'care_unit.colour'"],
            id="unknown-key",
        ),
    ],
)
def test_a_wrong_declaration_names_the_file_and_the_key(
    mappings, system, entity, care_unit, expected
):
    declare(mappings, system, entity, care_unit)

    with pytest.raises(MappingError) as raised:
        load_catalog(mappings)

    for part in expected:
        assert part in str(raised.value)


def test_via_an_entity_the_system_does_not_map(mappings):
    (mappings / "melior" / "encounter.yaml").unlink()

    with pytest.raises(MappingError) as raised:
        load_catalog(mappings)

    message = str(raised.value)
    assert "melior/clinical_note.yaml: field 'care_unit.via'" in message
    assert "melior maps no 'encounter' to take the unit from" in message


def test_via_a_patient_level_entity_is_refused(mappings):
    declare(mappings, "melior", "encounter", {"follows": "patient"})

    with pytest.raises(MappingError, match="'encounter' declares no care unit of its own"):
        load_catalog(mappings)


def test_a_care_unit_reference_needs_the_systems_care_units(mappings):
    (mappings / "elvis" / "care_unit.yaml").unlink()
    for entity in ("encounter", "appointment", "practitioner"):  # they reference care units
        path = mappings / "elvis" / f"{entity}.yaml"
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
        content["references"] = [
            r for r in content.get("references", []) if r["dataset"] != "vardenhet"
        ]
        path.write_text(yaml.safe_dump(content, allow_unicode=True), encoding="utf-8")

    with pytest.raises(MappingError) as raised:
        load_catalog(mappings)

    assert "elvis" in str(raised.value)
    assert "maps no care_unit with its hsa_id" in str(raised.value)


def test_an_extending_file_may_declare_the_unit_alone(mappings):
    (mappings / "lab_skas" / "observation.yaml").write_text(
        "extends: lab_hl7\ncare_unit: {fixed: SE2321000131-F000000000001}\n", encoding="utf-8"
    )

    observation = load_catalog(mappings).system("lab_skas").entities["observation"]

    assert observation.care_unit.fixed == "SE2321000131-F000000000001"
    assert {c.target for c in observation.columns} >= {"npu_code", "sampled_at"}
