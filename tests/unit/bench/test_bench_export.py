"""The bench's FHIR export figures (etl/bench/export.py): rows, resources, rates and peak RSS of
one ``--all`` export of a small core, and their line in results.md."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from etl.bench.export import export_lines, measure_export
from etl.bench.markdown import results_markdown
from etl.core.database import core_engine, upgrade_core
from etl.core.tables import ENTITY_TABLES

pytestmark = pytest.mark.unit

LINEAGE = {"source_system": "bench", "batch_id": "b1", "content_hash": "h"}


def _core(url: str, patients: int, orphans: int) -> None:
    engine = core_engine(url)
    upgrade_core(engine)
    with engine.begin() as connection:
        connection.execute(
            sa.insert(ENTITY_TABLES["patient"]),
            [
                {"patient_id": f"{i:032x}", "source_key": f"p{i}", "protected_identity": "none"}
                | LINEAGE
                for i in range(patients)
            ],
        )
        rows = [
            {"diagnosis_id": f"{i + 1000:032x}", "patient_id": f"{i % patients:032x}"}
            for i in range(patients)
        ] + [  # a diagnosis whose patient the core does not hold: refused, not exported
            {"diagnosis_id": f"{i + 9000:032x}", "patient_id": "f" * 32} for i in range(orphans)
        ]
        connection.execute(
            sa.insert(ENTITY_TABLES["diagnosis"]),
            [r | {"source_key": r["diagnosis_id"], "is_blocked": False} | LINEAGE for r in rows],
        )
    engine.dispose()


def test_the_export_of_a_core_is_timed_counted_and_cleaned_up(tmp_path):
    url = f"sqlite:///{tmp_path / 'core.sqlite'}"
    _core(url, patients=30, orphans=2)
    out = tmp_path / "export"
    figures = measure_export(url, out, chunk_size=7)
    assert figures["core_rows"] == 62  # 30 patients, 32 diagnoses
    assert figures["resources"] == 60  # the two orphans are refused
    assert figures["counts"]["Patient"] == 30 and figures["counts"]["Condition"] == 30
    assert figures["unresolved_references"] == 2
    # "seconds" is rounded to the millisecond, the rate is computed from the exact time.
    assert 62 / (figures["seconds"] + 0.0005) <= figures["rows_per_second"]
    assert figures["rows_per_second"] <= 62 / max(figures["seconds"] - 0.0005, 1e-9)
    assert figures["resources_per_second"] < figures["rows_per_second"]
    assert figures["peak_rss_mib"] >= figures["start_rss_mib"] > 0
    assert not out.exists()  # patient data is not left in the bench folder

    line = "\n".join(export_lines(figures))
    assert "60 resources from 62 core rows" in line
    results = {
        "parameters": {"patients": 30, "chunk_rows": 7},
        "started_at": "2026-12-04T00:00:00+00:00",
        "git": {},
        "machine": {"cpu_count": 2},
        "runs": [],
        "export": figures,
    }
    assert "## FHIR export (SQLite core, --all)" in results_markdown(results)
