"""The plan fingerprint (etl/cutover/fingerprint.py): which files, per-file digests, differences."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from etl.cutover import fingerprint
from etl.cutover.plan import load_plan
from etl.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.unit

PLAN = """version: 1
waves:
  - wave: w
    title: lab wave
    systems: [lab_su]
    window: {start: 2027-01-01, end: 2027-01-14}
    criteria: {max_quarantine_rate: 0.05, dq_gate: pass, reconciliation: exact,
               accounting: exact,
               approvers: {project_lead: {airflow_users: [lena]}}}
"""


@pytest.fixture
def settings(tmp_path) -> Settings:
    mappings = tmp_path / "mappings"
    for name in ("lab_su", "lab_nal", "_archetypes/lab_hl7", "crosswalks"):
        shutil.copytree(PROJECT_ROOT / "mappings" / name, mappings / name)
    (mappings / "waves.yaml").write_text(PLAN, encoding="utf-8")
    shutil.copytree(PROJECT_ROOT / "expectations", tmp_path / "expectations")
    return Settings(
        home=tmp_path / "home", mappings_dir=mappings, expectations_dir=tmp_path / "expectations"
    )


def _wave(settings):
    return load_plan(settings.mappings_dir).wave("w")


def test_the_plan_covers_the_wave_its_systems_archetype_crosswalks_and_checks(settings):
    files = fingerprint.plan_files(settings, _wave(settings))
    assert {
        "mappings/waves.yaml",
        "mappings/lab_su/system.yaml",
        "mappings/_archetypes/lab_hl7/observation.yaml",
        "mappings/crosswalks/lab_local_to_npu.csv",
        "mappings/crosswalks/reference/npu_units_and_ranges.csv",
        "expectations/thresholds.yaml",
        "expectations/observation.json",
        "expectations/patient.json",
    } <= set(files)
    # Another system of the same archetype is another wave's business; so is an unmapped entity.
    assert not any(path.startswith("mappings/lab_nal/") for path in files)
    assert "expectations/encounter.json" not in files


def test_each_file_has_its_own_digest_and_the_plan_digest_covers_them_all(settings):
    plan = fingerprint.fingerprint(settings, _wave(settings), "abc123")
    thresholds = (settings.expectations_dir / "thresholds.yaml").read_bytes()
    assert plan.files["expectations/thresholds.yaml"] == hashlib.sha256(thresholds).hexdigest()
    assert plan.digest == fingerprint.plan_digest(plan.files) and len(plan.digest) == 64
    assert plan.mapping_version == "abc123"
    # The mapping version is beside the digest, not in it: the same content, the same plan.
    assert fingerprint.fingerprint(settings, _wave(settings), "def456").digest == plan.digest

    (settings.mappings_dir / "_archetypes" / "lab_hl7" / "observation.yaml").write_text("x: 1\n")
    edited = fingerprint.fingerprint(settings, _wave(settings))
    assert edited.digest != plan.digest
    assert fingerprint.difference(plan.files, edited.files).as_dict() == {
        "changed": ["mappings/_archetypes/lab_hl7/observation.yaml"],
        "added": [],
        "removed": [],
    }


def test_a_difference_names_changed_added_and_removed_files():
    before = {"a": "1", "b": "2", "c": "3"}
    after = {"a": "1", "b": "9", "d": "4"}
    difference = fingerprint.difference(before, after)
    assert difference.describe() == "changed: b; added: d; removed: c"
    assert not fingerprint.difference(before, dict(before))
    assert fingerprint.difference(before, dict(before)).describe() == "no file changed"


def test_a_folder_outside_git_has_no_uncommitted_files(settings):
    assert fingerprint.uncommitted_files(settings) is None
