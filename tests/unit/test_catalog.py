"""The mapping catalog (``etl.catalog``): the repository's own mappings, its conventions, and the
errors a wrong mapping file gives (each must name the file and the field or value at fault).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.catalog import MappingError, load_catalog
from etl.core.model import ENTITIES
from etl.core.safety import SAFETY_TARGETS
from etl.layout import list_system_entities
from etl.validate.suites import read_suite_definition

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"
EXPECTATIONS = ROOT / "expectations"
# Core entities that no mapping file targets: they are derived while mapping another entity.
DERIVED_ENTITIES = {"patient_identifier": "patient"}


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(MAPPINGS)


# --- the repository's own mappings ---------------------------------------------------------------


def test_repository_mappings_load(catalog):
    assert set(catalog.systems) >= {"elvis", "melior"}
    for name, system in catalog.systems.items():
        assert system.spec.system == name
        assert system.directory == MAPPINGS / name
        assert system.entities, f"{name} maps no entity"


def _mapped_entities() -> list[str]:
    mapped = {entity for entities in list_system_entities(MAPPINGS).values() for entity in entities}
    mapped |= {derived for derived, source in DERIVED_ENTITIES.items() if source in mapped}
    return sorted(mapped)


@pytest.mark.parametrize("entity", _mapped_entities())
def test_every_mapped_entity_has_an_expectation_suite(entity):
    assert (EXPECTATIONS / f"{entity}.json").is_file(), f"expectations/{entity}.json is missing"
    assert read_suite_definition(EXPECTATIONS, entity)["expectations"]


@pytest.mark.parametrize("entity", sorted(ENTITIES))
def test_every_core_entity_has_an_expectation_suite(entity):
    assert (EXPECTATIONS / f"{entity}.json").is_file(), f"expectations/{entity}.json is missing"


@pytest.mark.parametrize("suite", sorted(EXPECTATIONS.glob("*.json")), ids=lambda path: path.name)
def test_every_expectation_suite_belongs_to_a_core_entity(suite):
    assert suite.stem in ENTITIES, f"{suite.name} has no core entity in etl.core.model.ENTITIES"


def test_every_referenced_crosswalk_exists(catalog):
    referenced = {
        (f"{system.name}/{mapping.entity}.yaml", column.target, column.args["crosswalk"])
        for system in catalog.systems.values()
        for mapping in system.entities.values()
        for column in mapping.columns
        if "crosswalk" in column.args
    }
    assert referenced, "no mapping uses a crosswalk any more: drop this test or the crosswalks"
    missing = [
        (file, target, name)
        for file, target, name in sorted(referenced)
        if name not in catalog.crosswalks or not (MAPPINGS / "crosswalks" / f"{name}.csv").is_file()
    ]
    assert not missing
    unused = set(catalog.crosswalks) - {name for _, _, name in referenced}
    assert not unused, f"crosswalks no mapping uses: {sorted(unused)}"


def test_every_reference_points_at_an_entity_its_system_maps(catalog):
    dangling = [
        (f"{system.name}/{mapping.entity}.yaml", column.target, column.args["entity"])
        for system in catalog.systems.values()
        for mapping in system.entities.values()
        for column in mapping.columns
        if column.transform == "reference_id"
        and column.args["entity"]
        not in catalog.systems[column.args.get("system") or system.name].entities
    ]
    assert not dangling


def test_every_safety_critical_mapping_fails_closed(catalog):
    """Protection, spärr and death in every system declare how they fail closed (check-mappings
    refuses them otherwise); no transform default may turn a blank into "not protected"."""
    declared = [
        (system.name, mapping.entity, column)
        for system in catalog.systems.values()
        for mapping in system.entities.values()
        for column in mapping.columns
        if column.target in SAFETY_TARGETS
    ]
    assert {column.target for _, _, column in declared} == set(SAFETY_TARGETS)
    for system, entity, column in declared:
        where = f"{system}/{entity}.yaml {column.target}"
        assert column.safety is not None, where
        assert not {"default", "missing_is"} & set(column.args), where
        if column.target == "deceased_date":
            assert column.safety.on_uncertain == "quarantine", where


# --- a minimal mappings folder, copied into tmp_path and broken one way per test -----------------

PATIENT_FIELDS = """\
    fields:
      - {name: PATNR, width: 8}
      - {name: PNR, width: 10}
      - {name: EFTERNAMN, width: 30}
      - {name: FODD, width: 8}
"""
SYSTEM_YAML = f"""\
system: demo
title: A small source system for catalog tests
format: files
connection: {{path_env: DEMO_PATH, default_path: "{{estate_dir}}/demo"}}
datasets:
  patient:
    file: PATREG.DAT
    format: fixed_width
    encoding: cp1252
    key: [PATNR]
{PATIENT_FIELDS}\
  kontakt:
    file: KONTAKT.TXT
    format: delimited
    encoding: utf-8
    key: [KONTAKTNR]
    columns: [KONTAKTNR, PATNR, START]
  labsvar:
    file: LABSVAR.TXT
    format: delimited
    encoding: cp1252
    key: [SVARSNR]
    columns: [SVARSNR, PATNR, ANALYSKOD]
"""
PATIENT_YAML = """\
dataset: patient
identifiers:
  - {source: PNR}
columns:
  - {target: family_name, source: EFTERNAMN}
  - target: birth_date
    source: FODD
    transform: parse_legacy_date
    args: {formats: ["%Y%m%d"]}
"""
ENCOUNTER_YAML = """\
dataset: kontakt
columns:
  - {target: patient_id, source: PATNR, transform: reference_id, args: {entity: patient}}
  - {target: started_at, source: START, transform: parse_legacy_timestamp}
"""
OBSERVATION_YAML = """\
dataset: labsvar
columns:
  - {target: patient_id, source: PATNR, transform: reference_id, args: {entity: patient}}
  - target: npu_code
    source: ANALYSKOD
    transform: map_code
    args: {crosswalk: demo_lab_to_npu, standard_pattern: "NPU\\\\d{5}"}
    source_system: [npu, "local:analysis-code"]
"""
CROSSWALK_CSV = "source_code,target_code,note\nL-K,NPU03230,P-Kalium\n"
MINIMAL_FILES = {
    "demo/system.yaml": SYSTEM_YAML,
    "demo/patient.yaml": PATIENT_YAML,
    "demo/encounter.yaml": ENCOUNTER_YAML,
    "demo/observation.yaml": OBSERVATION_YAML,
    "crosswalks/demo_lab_to_npu.csv": CROSSWALK_CSV,
}


def write_mappings(root: Path, changes: dict[str, str | tuple[str, str] | None]) -> Path:
    """The minimal folder with ``changes``: new text, an ``(old, new)`` replacement, or None."""
    files = dict(MINIMAL_FILES)
    for path, change in changes.items():
        if change is None:
            del files[path]
        elif isinstance(change, tuple):
            old, new = change
            assert old in files[path], f"test setup: {old!r} not in {path}"
            files[path] = files[path].replace(old, new)
        else:
            files[path] = change
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    return root


def test_minimal_mappings_load(tmp_path):
    catalog = load_catalog(write_mappings(tmp_path, {}))
    assert set(catalog.systems) == {"demo"}
    assert set(catalog.system("demo").entities) == {"patient", "encounter", "observation"}
    assert catalog.crosswalks == {"demo_lab_to_npu": {"L-K": "NPU03230"}}
    birth_date = catalog.system("demo").entities["patient"].columns[1]
    assert birth_date.parsed_args().formats == ["%Y%m%d"]


ERROR_CASES = [
    pytest.param(
        {"demo/patient.yaml": ("transform: parse_legacy_date", "transform: parse_date")},
        "demo/patient.yaml",
        ["columns.1", "unknown transform 'parse_date'", "birth_date"],
        id="unknown-transform",
    ),
    pytest.param(
        {"demo/patient.yaml": ("target: family_name", "target: surname")},
        "demo/patient.yaml",
        ["['surname']", "core entity 'patient'"],
        id="target-not-on-core-entity",
    ),
    pytest.param(
        {"demo/encounter.yaml": ("target: patient_id", "target: care_unit_id")},
        "demo/encounter.yaml",
        ["required target", "['patient_id']"],
        id="required-target-not-mapped",
    ),
    pytest.param(
        {"demo/encounter.yaml": ("dataset: kontakt", "dataset: besok")},
        "demo/encounter.yaml",
        ["field 'dataset'", "'besok'"],
        id="dataset-not-in-system-yaml",
    ),
    pytest.param(
        {"demo/patient.yaml": ("source: EFTERNAMN", "source: ENAMN")},
        "demo/patient.yaml",
        ["['ENAMN']", "dataset 'patient'"],
        id="source-column-not-declared",
    ),
    pytest.param(
        {"demo/patient.yaml": ('args: {formats: ["%Y%m%d"]}', "args: {}")},
        "demo/patient.yaml",
        ["columns.1.formats", "Field required"],
        id="parse-legacy-date-without-formats",
    ),
    pytest.param(
        {"demo/patient.yaml": ("{formats:", "{format:")},
        "demo/patient.yaml",
        ["columns.1.format'", "columns.1.formats"],
        id="misspelt-transform-argument",
    ),
    pytest.param(
        {"demo/patient.yaml": PATIENT_YAML + "  - {target: given_name, source: FORNAMN\n"},
        "demo/patient.yaml",
        ["not valid YAML", "given_name"],
        id="invalid-yaml",
    ),
    pytest.param(
        {"demo/patient.yaml": "- a list, not a mapping\n"},
        "demo/patient.yaml",
        ["top level"],
        id="yaml-not-a-mapping",
    ),
    pytest.param(
        {"demo/visit.yaml": ENCOUNTER_YAML},
        "demo/visit.yaml",
        ["field 'entity'"],
        id="entity-file-named-after-non-entity",
    ),
    pytest.param(
        {"demo/patient_identifier.yaml": ENCOUNTER_YAML},
        "demo/patient_identifier.yaml",
        ["field 'entity'"],
        id="entity-file-for-derived-entity",
    ),
    pytest.param(
        {"demo/system.yaml": ("system: demo", "system: elvis")},
        "demo/system.yaml",
        ["field 'system'", "'elvis'", "'demo'"],
        id="system-field-not-folder-name",
    ),
    pytest.param(
        {"crosswalks/demo_lab_to_npu.csv": None},
        "demo/observation.yaml",
        ["columns.npu_code.args.crosswalk", "demo_lab_to_npu.csv"],
        id="crosswalk-csv-missing",
    ),
    pytest.param(
        {"crosswalks/demo_lab_to_npu.csv": "local,npu\nL-K,NPU03230\n"},
        "crosswalks/demo_lab_to_npu.csv",
        ["source_code,target_code"],
        id="crosswalk-csv-without-its-columns",
    ),
    pytest.param(
        {"demo/system.yaml": (PATIENT_FIELDS, "    columns: [PATNR, PNR, EFTERNAMN, FODD]\n")},
        "demo/system.yaml",
        ["datasets.patient", "fixed_width dataset needs 'fields'"],
        id="fixed-width-dataset-without-fields",
    ),
    pytest.param(
        {"demo/system.yaml": ("encoding: utf-8", "encoding: klingon-8")},
        "demo/system.yaml",
        ["datasets.kontakt", "klingon-8"],
        id="unknown-encoding",
    ),
    pytest.param(
        {"demo/system.yaml": ("format: delimited", "format: csv")},
        "demo/system.yaml",
        ["datasets.kontakt", "format"],
        id="unknown-file-format",
    ),
    pytest.param(
        {"demo/system.yaml": ("key: [KONTAKTNR]", "key: [KONTAKT_ID]")},
        "demo/system.yaml",
        ["dataset 'kontakt'", "['KONTAKT_ID']"],
        id="key-column-not-declared",
    ),
    pytest.param(
        {"demo/system.yaml": ("format: files", "format: sql")},
        "demo/system.yaml",
        ["dataset 'patient'", "sql dataset"],
        id="file-dataset-in-sql-system",
    ),
    pytest.param(
        {"demo/patient.yaml": ("columns:\n", "columns:\n  - {target: family_name, source: PNR}\n")},
        "demo/patient.yaml",
        ["['family_name']", "more than once"],
        id="target-mapped-twice",
    ),
    pytest.param(
        {"demo/encounter.yaml": ("columns:\n", "identifiers: [{source: PATNR}]\ncolumns:\n")},
        "demo/encounter.yaml",
        ["'identifiers'", "only allowed in a patient mapping"],
        id="identifiers-outside-patient",
    ),
    pytest.param(
        {
            "demo/encounter.yaml": (
                "columns:\n",
                "references: [{column: PATNR, dataset: besok}]\ncolumns:\n",
            )
        },
        "demo/encounter.yaml",
        ["field 'references.dataset'", "'besok'"],
        id="reference-to-unknown-dataset",
    ),
    pytest.param(
        {
            "demo/observation.yaml": (
                "columns:\n",
                "lookups: [{column: PATNR, dataset: kontakt, take: SPARR, as: KONTAKT_SPARR}]\n"
                "columns:\n",
            )
        },
        "demo/observation.yaml",
        ["field 'lookups.take'", "'SPARR'", "'kontakt'"],
        id="lookup-of-unknown-column",
    ),
    pytest.param(
        {
            "demo/observation.yaml": (
                "columns:\n",
                "lookups: [{column: PATNR, dataset: kontakt, take: START, as: ANALYSKOD}]\n"
                "columns:\n",
            )
        },
        "demo/observation.yaml",
        ["field 'lookups.as'", "'ANALYSKOD'"],
        id="lookup-shadowing-a-source-column",
    ),
    pytest.param(
        {"demo/encounter.yaml": ("columns:\n", "colums:\n")},
        "demo/encounter.yaml",
        ["field 'colums'", "field 'columns'"],
        id="misspelt-top-level-key",
    ),
    pytest.param(
        {"demo/patient.yaml": ("dataset: patient\n", "system: elvis\ndataset: patient\n")},
        "demo/patient.yaml",
        ["field 'system'", "'elvis'"],
        id="entity-file-claims-another-system",
    ),
    pytest.param(
        {"orbit/patient.yaml": PATIENT_YAML},
        "orbit",
        ["system.yaml"],
        id="system-folder-without-system-yaml",
    ),
    # Safety-critical targets (protected identity, spärr, death) must say how they fail closed.
    pytest.param(
        {"demo/encounter.yaml": ENCOUNTER_YAML + "  - {target: is_blocked, source: START}\n"},
        "demo/encounter.yaml",
        ["field 'columns.2'", "'is_blocked' is safety-critical", "on_uncertain: quarantine"],
        id="safety-target-without-declaration",
    ),
    pytest.param(
        {
            "demo/patient.yaml": PATIENT_YAML
            + "  - target: protected_identity\n    source: EFTERNAMN\n    transform: map_values\n"
            "    args: {values: {S: sekretessmarkering}, default: none}\n"
            "    safety: {on_uncertain: quarantine}\n"
        },
        "demo/patient.yaml",
        ["field 'columns.2'", "'protected_identity'", "remove args ['default']", "blank_means"],
        id="safety-target-with-a-blank-default",
    ),
    pytest.param(
        {
            "demo/patient.yaml": PATIENT_YAML
            + "  - target: deceased_date\n    source: FODD\n    transform: parse_legacy_date\n"
            "    args: {formats: ['%Y%m%d']}\n    safety: {on_uncertain: most_protective}\n"
        },
        "demo/patient.yaml",
        ["field 'columns.2'", "'deceased_date' has no protective value", "quarantine"],
        id="death-date-cannot-be-set-protective",
    ),
    pytest.param(
        {
            "demo/patient.yaml": PATIENT_YAML
            + "  - target: protected_identity\n    source: EFTERNAMN\n    transform: map_values\n"
            "    args: {values: {S: sekretessmarkering}}\n"
            "    safety: {on_uncertain: most_protective, blank_means: none}\n"
        },
        "demo/patient.yaml",
        ["field 'columns.2'", "'blank_means' needs a 'note'"],
        id="blank-means-without-a-note",
    ),
    pytest.param(
        {
            "demo/patient.yaml": PATIENT_YAML
            + "  - target: protected_identity\n    source: EFTERNAMN\n    transform: map_values\n"
            "    args: {values: {S: sekretessmarkering}}\n"
            "    safety: {on_uncertain: most_protective, blank_means: not_blocked, note: n}\n"
        },
        "demo/patient.yaml",
        ["field 'columns.2'", "'blank_means' can only be 'none'"],
        id="blank-means-the-wrong-harmless-value",
    ),
    pytest.param(
        {
            "demo/patient.yaml": (
                "target: family_name, source: EFTERNAMN",
                "target: family_name, source: EFTERNAMN, safety: {on_uncertain: quarantine}",
            )
        },
        "demo/patient.yaml",
        ["field 'columns.0'", "'family_name' is not a safety-critical field"],
        id="safety-on-an-ordinary-field",
    ),
    # Time: a Z or an offset written as literal text would read an instant as local time.
    pytest.param(
        {
            "demo/encounter.yaml": (
                "transform: parse_legacy_timestamp}",
                "transform: parse_legacy_timestamp, args: {formats: ['%Y-%m-%dT%H:%M:%SZ']}}",
            )
        },
        "demo/encounter.yaml",
        ["columns.1.formats", "reads 'Z' as literal text", "write '%Y-%m-%dT%H:%M:%S%z'"],
        id="timestamp-format-with-literal-z",
    ),
    pytest.param(
        {
            "demo/encounter.yaml": (
                "transform: parse_legacy_timestamp}",
                "transform: parse_legacy_timestamp, args: {formats: [\"%Y-%m-%d'T'%H:%M:%S'Z'\"]}}",
            )
        },
        "demo/encounter.yaml",
        ["columns.1.formats", "reads 'Z' as literal text", "write '%Y-%m-%dT%H:%M:%S%z'"],
        id="timestamp-format-with-quoted-z",
    ),
    pytest.param(
        {
            "demo/encounter.yaml": (
                "transform: parse_legacy_timestamp}",
                "transform: parse_legacy_timestamp, args: {formats: ['%Y%m%d%H%M+0100']}}",
            )
        },
        "demo/encounter.yaml",
        ["columns.1.formats", "reads '+0100' as literal text", "write '%Y%m%d%H%M%z'"],
        id="timestamp-format-with-literal-offset",
    ),
    pytest.param(
        {
            "demo/patient.yaml": (
                'args: {formats: ["%Y%m%d"]}',
                "args: {formats: ['%Y-%m-%dT%H:%MZ']}",
            )
        },
        "demo/patient.yaml",
        ["columns.1.formats", "reads 'Z' as literal text", "write '%Y-%m-%dT%H:%M%z'"],
        id="date-format-with-literal-z",
    ),
    pytest.param(
        {
            "demo/encounter.yaml": (
                "transform: parse_legacy_timestamp}",
                "transform: parse_legacy_timestamp, args: {timezone: Europe/Stokholm}}",
            )
        },
        "demo/encounter.yaml",
        ["columns.1.timezone", "unknown time zone 'Europe/Stokholm'"],
        id="unknown-time-zone",
    ),
]


@pytest.mark.parametrize(("changes", "bad_file", "fragments"), ERROR_CASES)
def test_mapping_error_names_the_file_and_the_field(tmp_path, changes, bad_file, fragments):
    root = write_mappings(tmp_path, changes)
    with pytest.raises(MappingError) as excinfo:
        load_catalog(root)
    message = str(excinfo.value)
    assert str(root / bad_file) in message
    for fragment in fragments:
        assert fragment in message


def test_every_problem_of_every_file_is_reported_at_once(tmp_path):
    """Three broken files in two systems: one error lists all three, each with its file and
    field, and an unknown target lists the entity's valid columns."""
    root = write_mappings(
        tmp_path,
        {
            "demo/patient.yaml": ("target: family_name", "target: surname"),
            "demo/observation.yaml": ("crosswalk: demo_lab_to_npu", "crosswalk: no_such_table"),
            "demo2/system.yaml": SYSTEM_YAML.replace("system: demo", "system: demo2"),
            "demo2/encounter.yaml": ENCOUNTER_YAML.replace("dataset: kontakt", "dataset: besok"),
            "demo2/patient.yaml": PATIENT_YAML,
        },
    )
    with pytest.raises(MappingError) as excinfo:
        load_catalog(root)
    message = str(excinfo.value)
    assert message.startswith("3 mapping problem(s) in 3 file(s):")
    assert len(excinfo.value.problems) == 3
    assert str(root / "demo/patient.yaml") in message and "['surname']" in message
    assert "its columns: " in message and "family_name" in message.split("its columns: ")[1]
    assert str(root / "demo2/encounter.yaml") in message and "'besok'" in message
    assert str(root / "demo/observation.yaml") in message and "no_such_table" in message
    assert "crosswalks: demo_lab_to_npu" in message


def test_check_mappings_prints_every_problem(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from etl.cli import app

    root = write_mappings(
        tmp_path,
        {
            "demo/patient.yaml": ("target: family_name", "target: surname"),
            "demo/encounter.yaml": ("dataset: kontakt", "dataset: besok"),
        },
    )
    monkeypatch.setenv("VARDFLYTT_MAPPINGS_DIR", str(root))
    result = CliRunner().invoke(app, ["check-mappings"])
    assert result.exit_code == 1
    assert "2 mapping problem(s) in 2 file(s)" in result.output
    assert "surname" in result.output and "besok" in result.output


def test_a_lookup_column_can_be_mapped_like_a_source_column(tmp_path):
    root = write_mappings(
        tmp_path,
        {
            "demo/observation.yaml": (
                "columns:\n",
                "lookups: [{column: PATNR, dataset: kontakt, take: START, as: KONTAKT_START}]\n"
                "columns:\n  - {target: sampled_at, source: KONTAKT_START, "
                "transform: parse_legacy_timestamp}\n",
            )
        },
    )
    mapping = load_catalog(root).system("demo").entities["observation"]
    assert mapping.virtual_columns() == ["KONTAKT_START"]
    assert "PATNR" in mapping.source_columns()


def test_a_mapping_file_that_is_not_utf8_is_named(tmp_path):
    """A corrupted or wrongly saved mapping (cp1252 bytes) is a MappingError naming the file,
    not a bare decoding error."""
    root = write_mappings(tmp_path, {})
    (root / "demo" / "patient.yaml").write_bytes(PATIENT_YAML.encode("utf-8") + b"# \xe5\xe4\xf6\n")
    with pytest.raises(MappingError, match=r"patient\.yaml: not UTF-8 text"):
        load_catalog(root)
