"""An entity is validated after the entities its suite declares (context and references)."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.validate.order import declared_needs, validation_needs

pytestmark = pytest.mark.unit

EXPECTATIONS = Path(__file__).resolve().parents[3] / "expectations"


def test_needs_come_from_the_suites_context_and_references_not_a_name():
    meta = {
        "context": {"pregnancy": ["start_date"], "lookups": {}, "derived": {}},
        "references": {"pregnancy_id": {"entity": "pregnancy"}, "x": {"entity": "encounter"}},
    }
    assert declared_needs(meta) == ["pregnancy", "encounter"]
    assert declared_needs(None) == []


def test_needs_are_limited_to_the_systems_own_entities():
    needs = validation_needs(EXPECTATIONS, ["patient", "diagnosis"])
    assert needs["diagnosis"] == ["patient"]  # its encounter/practitioner are not in this system
    assert needs["patient"] == []
    with_encounter = validation_needs(EXPECTATIONS, ["patient", "encounter", "diagnosis"])
    assert set(with_encounter["diagnosis"]) == {"patient", "encounter"}
