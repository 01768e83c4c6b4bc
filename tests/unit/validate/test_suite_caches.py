"""The validate stage's caches of parsed thresholds and built suites (etl/validate/checks.py,
etl/validate/suites.py) are keyed on the files' bytes: a file rewritten in place is read again
even when its modification time is unchanged (rewritten within the clock's resolution, or
copied with its time kept), and a changed file never reuses what the old one built."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from etl.validate import checks, suites
from etl.validate.checks import thresholds_for
from etl.validate.suites import validate_chunk

pytestmark = pytest.mark.unit

EXPECTATIONS = Path(__file__).resolve().parents[3] / "expectations"
CHECK = "patient.identity_number.not_null"


def _rewrite_keeping_mtime(path: Path, text: str) -> None:
    """Replace the file's content and put its modification time back as it was."""
    before = path.stat()
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns


def _suite(reason: str) -> str:
    """A one-expectation patient suite whose failures carry ``reason``."""
    expectation = {
        "type": "expect_column_values_to_not_be_null",
        "kwargs": {"column": "identity_number"},
        "meta": {"check": CHECK, "reason": reason},
    }
    return json.dumps({"name": "patient", "expectations": [expectation]})


@pytest.fixture
def expectations(tmp_path) -> Path:
    folder = tmp_path / "expectations"
    folder.mkdir()
    shutil.copy(EXPECTATIONS / "thresholds.yaml", folder / "thresholds.yaml")
    (folder / "patient.json").write_text(_suite("missing_value"), encoding="utf-8")
    return folder


def _failures(folder: Path):
    rows = pd.DataFrame(
        {"patient_id": ["p1", "p2"], "identity_number": ["191212121212", None]}, dtype="string"
    )
    return validate_chunk(folder, "patient", rows, "patient_id", {"as_of_date": "2026-07-01"})


def test_a_thresholds_file_changed_in_place_is_read_again(expectations):
    path = expectations / "thresholds.yaml"
    assert thresholds_for(expectations).rule_for(CHECK).severity == "error"
    content = yaml.safe_load(path.read_text(encoding="utf-8"))
    content["checks"][CHECK]["severity"] = "warning"
    _rewrite_keeping_mtime(path, yaml.safe_dump(content, allow_unicode=True))
    assert thresholds_for(expectations).rule_for(CHECK).severity == "warning"
    # ... and the suite built with the old thresholds is not reused: its failures follow.
    (failure,) = _failures(expectations)
    assert failure.severity == "warning"


def test_a_suite_changed_in_place_is_built_again(expectations):
    (failure,) = _failures(expectations)
    assert (failure.check_name, failure.reason, list(failure.row_ids)) == (
        CHECK,
        "missing_value",
        ["p2"],
    )
    _rewrite_keeping_mtime(expectations / "patient.json", _suite("identity_number_missing"))
    (failure,) = _failures(expectations)
    assert (failure.check_name, failure.reason, list(failure.row_ids)) == (
        CHECK,
        "identity_number_missing",
        ["p2"],
    )


def test_the_same_bytes_reuse_what_was_built_and_the_caches_are_bounded(expectations):
    _failures(expectations)
    key = suites._suite_key(expectations, "patient")
    assert suites._cached_suite(*key) is suites._cached_suite(*key)
    assert thresholds_for(expectations) is thresholds_for(expectations)
    for cached in (suites._cached_suite, suites._direct_plan, suites._batch_definition):
        assert cached.cache_info().maxsize is not None
    assert checks._cached.cache_info().maxsize is not None


def test_a_directly_evaluated_suite_builds_no_gx_data_source(expectations):
    """The suite runs without GX's graph: no data source, asset or batch definition is made
    for it (each costs GX a save of its whole project configuration)."""
    key = suites._suite_key(expectations, "patient")
    built = suites._batch_definition.cache_info().currsize
    _failures(expectations)
    assert suites._direct_plan(key, json.dumps({"as_of_date": "2026-07-01"})) is not None
    assert suites._batch_definition.cache_info().currsize == built
