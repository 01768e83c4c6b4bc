"""Archetypes: systems of one kind share mapping files from ``mappings/_archetypes/<name>/``.

A satellite folder holding only its ``system.yaml`` (``archetype``, ``system``, ``title``; its
connection follows from its name) gets the archetype's datasets and entity mappings; a file of
its own replaces the archetype's file of the same name, or changes it key by key when it says
``extends: <archetype>``. Checked on a small folder in ``tmp_path`` and on the repository's own
mappings.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from etl.catalog import MappingError, extend_entity_mapping, load_catalog
from etl.layout import ARCHETYPE_DIR, archetype_of, list_system_entities

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"
SATELLITE_KEYS = {"archetype", "system", "title"}

ARCHETYPE_SYSTEM = """\
format: files
datasets:
  patient:
    file: PATIENT.TXT
    format: delimited
    encoding: cp850
    delimiter: "|"
    key: [PATNR]
    columns: [PATNR, PNR, KON]
  prov:
    file: PROV.TXT
    format: delimited
    encoding: cp850
    delimiter: "|"
    key: [PROVNR]
    columns: [PROVNR, PATNR, KOD, TID]
"""
ARCHETYPE_PATIENT = """\
dataset: patient
identifiers:
  - {source: PNR}
columns:
  - target: sex
    source: KON
    transform: map_values
    args: {values: {K: female, M: male}}
"""
ARCHETYPE_OBSERVATION = """\
dataset: prov
references:
  - {column: PATNR, dataset: patient}
columns:
  - {target: patient_id, source: PATNR, transform: reference_id, args: {entity: patient}}
  - {target: npu_code, source: KOD, transform: upper_text, source_system: npu}
  - {target: sampled_at, source: TID, transform: parse_legacy_timestamp}
"""
OVERRIDING_OBSERVATION = """\
dataset: prov
columns:
  - {target: patient_id, source: PATNR, transform: reference_id, args: {entity: patient}}
  - {target: npu_code, source: KOD, transform: upper_text, source_system: npu}
  - {target: source_analysis_code, source: KOD, transform: text}
"""


def satellite_yaml(system: str, archetype: str = "lab_demo") -> str:
    return f"archetype: {archetype}\nsystem: {system}\ntitle: {system} for archetype tests\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A mappings folder with one archetype and two satellites built on it."""
    archetype = tmp_path / ARCHETYPE_DIR / "lab_demo"
    archetype.mkdir(parents=True)
    (archetype / "system.yaml").write_text(ARCHETYPE_SYSTEM, encoding="utf-8")
    (archetype / "patient.yaml").write_text(ARCHETYPE_PATIENT, encoding="utf-8")
    (archetype / "observation.yaml").write_text(ARCHETYPE_OBSERVATION, encoding="utf-8")
    for system in ("lab_east", "lab_west"):
        (tmp_path / system).mkdir()
        (tmp_path / system / "system.yaml").write_text(satellite_yaml(system), encoding="utf-8")
    return tmp_path


def test_a_folder_with_only_system_yaml_gets_the_archetypes_datasets_and_entities(root):
    catalog = load_catalog(root)

    east = catalog.system("lab_east")
    assert set(east.spec.datasets) == {"patient", "prov"}
    assert east.spec.datasets["prov"].columns == ["PROVNR", "PATNR", "KOD", "TID"]
    assert east.spec.connection.path_env == "VARDFLYTT_SOURCE_LAB_EAST_PATH"
    assert set(east.entities) == {"patient", "observation"}
    assert east.entities["observation"].system == "lab_east"
    assert [c.target for c in east.entities["observation"].columns] == [
        "patient_id",
        "npu_code",
        "sampled_at",
    ]


def test_a_systems_own_file_overrides_the_archetypes_file_of_that_name(root):
    (root / "lab_west" / "observation.yaml").write_text(OVERRIDING_OBSERVATION, "utf-8")

    catalog = load_catalog(root)

    west = catalog.system("lab_west").entities["observation"]
    assert [c.target for c in west.columns] == ["patient_id", "npu_code", "source_analysis_code"]
    assert not west.references
    east = catalog.system("lab_east").entities["observation"]
    assert [c.target for c in east.columns][-1] == "sampled_at"  # the other system keeps it
    assert catalog.system("lab_west").entities["patient"].system == "lab_west"


def test_a_systems_own_keys_win_over_the_archetypes_in_system_yaml(root):
    (root / "lab_west" / "system.yaml").write_text(
        satellite_yaml("lab_west") + "datasets:\n  prov:\n    encoding: cp1252\n", "utf-8"
    )

    prov = load_catalog(root).system("lab_west").spec.datasets["prov"]

    assert prov.encoding == "cp1252"
    assert prov.columns == ["PROVNR", "PATNR", "KOD", "TID"]  # the rest merged from the archetype


def test_a_missing_archetype_is_a_mapping_error_naming_the_file(root):
    system_file = root / "lab_east" / "system.yaml"
    system_file.write_text(satellite_yaml("lab_east", archetype="lab_nowhere"), "utf-8")

    with pytest.raises(MappingError) as error:
        load_catalog(root)

    message = str(error.value)
    assert str(system_file) in message
    assert "archetype" in message and "lab_nowhere" in message


def test_the_archetype_folder_is_not_a_system(root):
    assert set(load_catalog(root).systems) == {"lab_east", "lab_west"}
    assert set(list_system_entities(root)) == {"lab_east", "lab_west"}


def test_layout_lists_the_same_entities_as_the_catalog(root):
    (root / "lab_west" / "alert.yaml").write_text(
        "dataset: prov\ncolumns:\n"
        "  - {target: patient_id, source: PATNR, transform: reference_id, "
        "args: {entity: patient}}\n",
        "utf-8",
    )
    catalog = load_catalog(root)

    assert list_system_entities(root) == {
        name: sorted(system.entities) for name, system in catalog.systems.items()
    }
    assert list_system_entities(root)["lab_west"] == ["alert", "observation", "patient"]


# --- the repository's own mappings ---------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(MAPPINGS)


def test_repository_layout_agrees_with_the_catalog(catalog):
    assert list_system_entities(MAPPINGS) == {
        name: sorted(system.entities) for name, system in catalog.systems.items()
    }


def _archetypes() -> dict[str, list[str]]:
    users: dict[str, list[str]] = {
        path.name: [] for path in sorted((MAPPINGS / ARCHETYPE_DIR).iterdir()) if path.is_dir()
    }
    for directory in sorted(MAPPINGS.iterdir()):
        if (directory / "system.yaml").exists() and archetype_of(directory):
            users.setdefault(archetype_of(directory), []).append(directory.name)
    return users


def test_there_are_at_least_eight_archetypes_each_shared_by_several_systems():
    users = _archetypes()
    assert len(users) >= 8
    for archetype, systems in users.items():
        assert len(systems) >= 2, f"archetype {archetype} is used by {systems}"


@pytest.mark.parametrize(
    "system",
    sorted(s for systems in _archetypes().values() for s in systems),
)
def test_a_satellite_folder_is_a_short_system_yaml(system):
    """Onboarding a satellite of a known kind is configuration: three keys, no mapping code."""
    directory = MAPPINGS / system
    content = yaml.safe_load((directory / "system.yaml").read_text(encoding="utf-8"))
    assert set(content) == SATELLITE_KEYS
    own = sorted(p.name for p in directory.iterdir() if p.name != "system.yaml")
    assert own in ([], ["observation.yaml"]), f"{system} overrides {own}"


def test_every_archetype_entity_file_is_a_valid_mapping_for_each_user(catalog):
    for archetype, systems in _archetypes().items():
        files = {p.stem for p in (MAPPINGS / ARCHETYPE_DIR / archetype).glob("*.yaml")}
        for system in systems:
            assert files - {"system"} <= set(catalog.system(system).entities), system


def test_an_archetype_based_system_can_be_copied_under_a_new_name(tmp_path):
    """What onboarding does: a copy of a satellite's folder under another name loads as is."""
    shutil.copytree(MAPPINGS / ARCHETYPE_DIR, tmp_path / ARCHETYPE_DIR)
    shutil.copytree(MAPPINGS / "crosswalks", tmp_path / "crosswalks")
    (tmp_path / "lab_new").mkdir()
    text = (MAPPINGS / "lab_kungalv" / "system.yaml").read_text(encoding="utf-8")
    (tmp_path / "lab_new" / "system.yaml").write_text(
        text.replace("lab_kungalv", "lab_new").replace("LAB_KUNGALV", "LAB_NEW"), "utf-8"
    )

    catalog = load_catalog(tmp_path)

    assert set(catalog.systems) == {"lab_new"}
    assert set(catalog.system("lab_new").entities) == {"patient", "observation"}


# --- extends: a system's entity file changes the archetype's key by key --------------------------


@pytest.mark.parametrize(
    ("base", "changes", "expected"),
    [
        ({"a": 1, "b": 2}, {"b": 3}, {"a": 1, "b": 3}),
        ({"a": {"x": 1, "y": 2}}, {"a": {"y": 3, "z": 4}}, {"a": {"x": 1, "y": 3, "z": 4}}),
        ({"a": [1, 2, 3]}, {"a": [4]}, {"a": [4]}),
        ({"a": {"x": 1}}, {"a": "flat"}, {"a": "flat"}),
        (
            {"columns": [{"target": "t1", "source": "A"}, {"target": "t2", "source": "B"}]},
            {"columns": [{"target": "t3", "source": "C"}]},
            {"columns": [{"target": "t3", "source": "C"}]},
        ),
        (
            {
                "columns": [
                    {"target": "t1", "source": "A", "args": {"p": 1, "q": 2}, "note": "n"},
                    {"target": "t2", "source": "B"},
                    {"target": "t3", "source": "C"},
                ]
            },
            {"columns": {"t1": {"args": {"q": 9}, "note": ""}, "t2": None, "t4": {"source": "D"}}},
            {
                "columns": [
                    {"target": "t1", "source": "A", "args": {"p": 1, "q": 9}, "note": ""},
                    {"target": "t3", "source": "C"},
                    {"target": "t4", "source": "D"},
                ]
            },
        ),
    ],
    ids=[
        "scalar-replaced",
        "mapping-merged-by-key",
        "list-replaced",
        "mapping-replaced-by-scalar",
        "columns-list-replaced",
        "columns-by-target-merge-drop-add",
    ],
)
def test_extend_entity_mapping_merges_by_key_and_replaces_lists(base, changes, expected):
    assert extend_entity_mapping(base, changes, Path("x.yaml")) == expected


EXTENDING_OBSERVATION = """\
extends: lab_demo
description: Results as text.
references: []
columns:
  npu_code: {transform: text, note: kept as written}
  sampled_at: null
  source_analysis_code: {source: KOD, transform: upper_text}
"""


def test_an_extending_file_changes_only_what_it_names(root):
    (root / "lab_west" / "observation.yaml").write_text(EXTENDING_OBSERVATION, "utf-8")

    catalog = load_catalog(root)

    west = catalog.system("lab_west").entities["observation"]
    east = catalog.system("lab_east").entities["observation"]
    assert west.description == "Results as text."
    assert west.references == []  # a list replaces the archetype's whole
    assert [c.target for c in west.columns] == ["patient_id", "npu_code", "source_analysis_code"]
    assert west.columns[0] == east.columns[0]  # untouched: the archetype's rule
    assert (west.columns[1].source, west.columns[1].transform) == ("KOD", "text")
    assert west.columns[1].note == "kept as written"
    assert west.dataset == east.dataset == "prov"
    assert [c.target for c in east.columns] == ["patient_id", "npu_code", "sampled_at"]


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ("extends: lab_other\ncolumns: {}\n", ["field 'extends'", "lab_other", "lab_demo"]),
        ("extends: lab_demo\ncolumns: {no_such: null}\n", ["field 'columns.no_such'", "drop"]),
        ("extends: lab_demo\ncolumns: {npu_code: upper_text}\n", ["field 'columns.npu_code'"]),
        (
            "extends: lab_demo\ncolumns: {npu_code: {target: unit}}\n",
            ["field 'columns.npu_code'"],
        ),
    ],
    ids=["another-archetype", "drop-unknown-column", "not-a-mapping", "renamed-target"],
)
def test_a_wrong_extending_file_is_a_mapping_error_naming_file_and_field(root, content, fragments):
    path = root / "lab_west" / "observation.yaml"
    path.write_text(content, "utf-8")

    with pytest.raises(MappingError) as error:
        load_catalog(root)

    assert str(path) in str(error.value)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_only_a_system_with_that_archetype_may_extend_its_file(root):
    (root / "lab_west" / "system.yaml").write_text(
        "system: lab_west\ntitle: no archetype\n" + ARCHETYPE_SYSTEM, "utf-8"
    )
    path = root / "lab_west" / "observation.yaml"
    path.write_text("extends: lab_demo\ncolumns: {}\n", "utf-8")

    with pytest.raises(MappingError, match=r"field 'extends'.*it names none"):
        load_catalog(root)


def test_the_microbiology_systems_extend_the_lab_observation_mapping(catalog):
    lab = catalog.system("lab_su").entities["observation"]
    for system in ("mikrobiologi_su", "mikrobiologi_skas"):
        text = (MAPPINGS / system / "observation.yaml").read_text(encoding="utf-8")
        assert text.startswith("extends: lab_hl7\n"), system
        micro = catalog.system(system).entities["observation"]
        assert micro.columns[0] == lab.columns[0]
        assert micro.columns[1].args == {
            "crosswalk": "microbiology_local_to_npu",
            "standard_pattern": "NPU[0-9]{5}",
        }
        assert "value_numeric" not in {c.target for c in micro.columns}
        assert micro.references == lab.references
