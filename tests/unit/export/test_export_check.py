"""``vardflytt export check`` (etl/export/check.py): an export validated as its receiver would
read it: every resource against the FHIR models, the manifest's counts, every reference inside
the export. The checks must catch what a broken export looks like."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from etl.core.database import core_engine
from etl.export.bulk import export_fhir
from etl.export.check import ExportCheckError, check_export
from tests.commands import invoke
from tests.unit.bench.test_bench_export import _core

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 12, 4, 19, 0, tzinfo=dt.UTC)


@pytest.fixture
def exported(sqlite_core, tmp_path):
    url = sqlite_core(tmp_path)
    _core(url, patients=12, orphans=0)
    folder = tmp_path / "export"
    export_fhir(core_engine(url), folder, wave=None, transaction_time=NOW, chunk_size=5)
    return folder


def _lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _write(path, resources):
    path.write_text("".join(json.dumps(r) + "\n" for r in resources), encoding="utf-8")


def test_an_export_validates_and_its_references_resolve(exported):
    result = check_export(exported)
    assert result.ok, result.describe()
    assert result.resources["Patient"] == 12 and result.resources["Condition"] == 12
    assert result.references >= 12  # every Condition's subject at least
    assert "all valid" in result.describe()


def test_a_missing_patient_is_an_unresolved_reference_and_a_count_mismatch(exported):
    patients = exported / "Patient.ndjson"
    _write(patients, _lines(patients)[1:])
    result = check_export(exported)
    assert not result.ok
    assert result.unresolved["Patient"] >= 1
    assert any("Patient: manifest says 12" in m for m in result.count_mismatches)


def test_an_invalid_resource_is_named_by_its_element_never_its_value(exported):
    patients = exported / "Patient.ndjson"
    resources = _lines(patients)
    resources[3]["birthDate"] = "SECRET-1912-13-45"
    _write(patients, resources)
    result = check_export(exported)
    assert result.invalid == {"Patient: birthDate": 1}
    assert "SECRET" not in result.describe()


def test_the_command_exits_1_on_a_broken_export_and_2_on_a_folder_that_is_none(exported, tmp_path):
    assert "all valid" in invoke("export", "check", str(exported)).output
    conditions = exported / "Condition.ndjson"
    _write(conditions, [*_lines(conditions), {"resourceType": "Condition", "id": "x"}])
    invoke("export", "check", str(exported), expect=1)
    invoke("export", "check", str(tmp_path / "nowhere"), expect=2)
    with pytest.raises(ExportCheckError, match="not a vardflytt FHIR export"):
        check_export(tmp_path)


def test_a_corrupted_or_foreign_line_is_a_problem_not_a_crash_or_a_skip(exported):
    patients = exported / "Patient.ndjson"
    text = patients.read_text(encoding="utf-8").splitlines()
    text[2] = text[2][: len(text[2]) // 2]  # truncated mid-resource
    text[5] = json.dumps({"resourceType": "Condition", "id": "x"})  # in the wrong file
    patients.write_text("\n".join(text) + "\n", encoding="utf-8")
    result = check_export(exported)
    assert not result.ok
    assert result.invalid == {
        "Patient.ndjson: line 3 is not a Patient": 1,
        "Patient.ndjson: line 6 is not a Patient": 1,
    }
    assert result.resources["Patient"] == 12  # the manifest's count still matches: none skipped
