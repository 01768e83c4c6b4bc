"""Every system of the region end to end: a small estate, every system in the catalog migrated
into one SQLite core, and the quarantine compared with the estate's ground truth exactly.

The estate is generated and migrated once for the module (CI time matters); the tests read the
same core: exactness, recall per planted defect class, false-positive rate. Onboarding is
configuration: a satellite copied under a new name into a mappings folder of its own migrates
without any code change.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from etl import pipeline
from etl.catalog import load_catalog
from etl.estate.defects import EXPECTED_OUTCOMES
from etl.layout import ARCHETYPE_DIR, CROSSWALK_DIR
from etl.load.loader import LoadReport
from etl.report.recall import recall_report
from etl.settings import Settings
from tests.reports_off import without_batch_reports

from .defects import actual_quarantine, expected_quarantine

# Nothing here reads a batch's validation report: run_system skips it (tests/conftest.py,
# tests/reports_off.py).
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("without_batch_reports")]

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"
AS_OF = dt.date(2026, 7, 1)
PATIENTS = 200
SEED = 5
SYSTEMS = tuple(sorted(load_catalog(MAPPINGS).systems))


@pytest.fixture(scope="module")
def estate(estate_of) -> Path:
    return estate_of(PATIENTS, SEED)


@dataclass(frozen=True)
class Migration:
    settings: Settings
    core_url: str
    reports: dict[str, LoadReport]


@pytest.fixture(scope="module")
def migrated(estate, tmp_path_factory) -> Iterator[Migration]:
    """Every system of the catalog migrated once into one SQLite core (read-only to the tests)."""
    home = tmp_path_factory.mktemp("all_systems_home")
    core_url = f"sqlite:///{home / 'core.sqlite'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VARDFLYTT_HOME", str(home))
        patch.setenv("VARDFLYTT_ESTATE_DIR", str(estate))
        patch.setenv("VARDFLYTT_CORE_URL", core_url)
        without_batch_reports(patch)
        settings = Settings()
        reports = {
            system: pipeline.run_system(system, f"{system}-all", AS_OF, settings=settings)
            for system in SYSTEMS
        }
        yield Migration(settings, core_url, reports)


def _defects(estate: Path) -> pd.DataFrame:
    return pd.read_csv(estate / "defects.csv", dtype=str, keep_default_na=False)


def test_every_system_reconciles_and_quarantines_exactly_the_planted_defects(estate, migrated):
    core_url, reports = migrated.core_url, migrated.reports

    for system, report in reports.items():
        assert report.is_reconciled, system
        for row in report.accounting:
            assert row.extracted == row.loaded + row.quarantined + row.excluded + row.merged
            assert row.extracted > 0, (system, row.dataset)

    expected = expected_quarantine(estate, SYSTEMS)
    actual = actual_quarantine(core_url)
    by_system = {
        system: (
            sorted(e for e in expected - actual if e[0] == system)[:5],
            sorted(a for a in actual - expected if a[0] == system)[:5],
        )
        for system in SYSTEMS
    }
    mismatched = {system: found for system, found in by_system.items() if any(found)}
    assert not mismatched, f"(missed, unexpected) per system: {mismatched}"
    assert actual == expected

    defects = _defects(estate)
    for system, report in reports.items():
        planted = defects[defects.system == system]
        merged = int((planted.expected_outcome == "merged").sum())
        excluded = int(planted.expected_outcome.str.startswith("excluded:").sum())
        assert sum(r.merged for r in report.accounting) == merged, system
        assert sum(r.excluded for r in report.accounting) == excluded, system


def test_every_planted_defect_class_is_caught_and_clean_rows_are_left_alone(estate, migrated):
    report = recall_report(migrated.settings, estate)

    by_class = report.by_class()
    assert set(by_class) == set(EXPECTED_OUTCOMES), "every planted class is in the report"
    missed = {name: c.missed_as for name, c in by_class.items() if c.caught == 0}
    assert not missed, f"classes never caught: {missed}"
    for name, item in by_class.items():
        assert item.expected_outcome == EXPECTED_OUTCOMES[name]
        assert item.planted >= 3, name
        assert item.recall >= 0.99, (name, item.missed_as)
    assert report.recall >= 0.99
    assert report.clean_rows > 10 * report.planted
    assert report.false_positive_rate < 0.005, report.false_positive_reasons
    assert sorted(report.systems) == sorted(SYSTEMS)


def test_onboarding_a_satellite_is_configuration(estate, settings_for, tmp_path):
    """lab_kungalv's folder and data under a new name: it migrates with no code change."""
    mappings = tmp_path / "mappings"
    shutil.copytree(MAPPINGS / ARCHETYPE_DIR, mappings / ARCHETYPE_DIR)
    shutil.copytree(MAPPINGS / CROSSWALK_DIR, mappings / CROSSWALK_DIR)
    (mappings / "lab_new").mkdir()
    system_yaml = (MAPPINGS / "lab_kungalv" / "system.yaml").read_text(encoding="utf-8")
    (mappings / "lab_new" / "system.yaml").write_text(
        system_yaml.replace("lab_kungalv", "lab_new").replace("LAB_KUNGALV", "LAB_NEW"),
        encoding="utf-8",
    )
    new_estate = tmp_path / "estate"
    shutil.copytree(estate / "lab_kungalv", new_estate / "lab_new")
    core_url = f"sqlite:///{tmp_path / 'core.sqlite'}"
    settings = settings_for(new_estate, core_url, mappings_dir=mappings)

    report = pipeline.run_system("lab_new", "lab-new-onboarding", AS_OF, settings=settings)

    assert report.is_reconciled
    assert {row.entity for row in report.accounting} == {"patient", "observation"}
    assert all(row.loaded > 0 for row in report.accounting)
    planted = {
        ("lab_new", dataset, row, reason)
        for _, dataset, row, reason in expected_quarantine(estate, ("lab_kungalv",))
    }
    assert actual_quarantine(core_url) == planted
