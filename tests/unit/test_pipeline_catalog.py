"""``pipeline.catalog``: the mappings are read once per process and folder content, so a
long-lived process (the dashboard, a Celery worker) sees a mapping changed in place."""

from __future__ import annotations

import pytest

from etl import pipeline
from etl.settings import Settings
from tests.unit.test_catalog import PATIENT_YAML, write_mappings

pytestmark = pytest.mark.unit


def test_an_unchanged_folder_is_read_once_and_a_changed_mapping_is_read_again(tmp_path):
    root = write_mappings(tmp_path / "mappings", {})
    settings = Settings(home=tmp_path / "home", mappings_dir=root)

    first = pipeline.catalog(settings)
    assert pipeline.catalog(settings) is first  # unchanged folder: the same catalog
    assert "family_name" in _targets(first)

    changed = PATIENT_YAML.replace("  - {target: family_name, source: EFTERNAMN}\n", "")
    (root / "demo" / "patient.yaml").write_text(changed, encoding="utf-8")
    again = pipeline.catalog(settings)
    assert again is not first
    assert "family_name" not in _targets(again)


def _targets(catalog) -> set[str]:
    return {column.target for column in catalog.systems["demo"].entities["patient"].columns}


def test_a_run_keeps_the_catalog_it_started_with(tmp_path):
    """``run_system`` reads the mappings once: a mapping edited while a run goes on changes
    the next run, not this one halfway through."""
    root = write_mappings(tmp_path / "mappings", {})
    settings = Settings(home=tmp_path / "home", mappings_dir=root)
    patient = root / "demo" / "patient.yaml"

    with pipeline.one_catalog(settings):
        started = pipeline.catalog(settings)
        patient.write_text(PATIENT_YAML.replace("EFTERNAMN}", "EFTERNAMN}\n"), encoding="utf-8")
        assert pipeline.catalog(settings) is started
        elsewhere = write_mappings(tmp_path / "other", {})  # another folder is not pinned
        assert pipeline.catalog(Settings(home=tmp_path / "home", mappings_dir=elsewhere)) is not (
            started
        )
    assert pipeline.catalog(settings) is not started
