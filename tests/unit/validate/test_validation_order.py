"""An entity is validated after the entities its suite declares (context and references)."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.validate.order import (
    declared_needs,
    natural_key_providers,
    natural_key_targets,
    validation_needs,
)

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


def test_natural_key_targets_are_the_references_with_a_column():
    meta = {
        "references": {
            "patient_id": {"entity": "patient"},  # a core id: this system's own rows only
            "care_unit_hsa_id": {"entity": "care_unit", "column": "hsa_id"},
        }
    }
    assert natural_key_targets(meta) == {"care_unit"}
    assert natural_key_targets(None) == set()


@pytest.mark.parametrize(
    ("systems", "providers"),
    [
        pytest.param(
            {"elvis": ["care_unit", "patient"], "melior": ["patient", "encounter"]},
            {"elvis"},
            id="a-consumer-makes-a-provider",
        ),
        pytest.param({"elvis": ["care_unit", "encounter"]}, set(), id="its-own-references-only"),
        pytest.param(
            {"lab": ["patient", "observation"], "melior": ["patient", "encounter"]},
            set(),
            id="nobody-holds-the-target",
        ),
        pytest.param(
            {"elvis": ["care_unit", "diagnosis"], "asynja": ["practitioner", "encounter"]},
            {"elvis", "asynja"},
            id="each-the-others-provider",
        ),
        pytest.param(
            {"elvis": ["care_unit"], "lab": ["patient", "medication"]},
            set(),
            id="a-target-nobody-references-by-key",
        ),
    ],
)
def test_providers_are_the_systems_another_references_by_natural_key(systems, providers):
    assert natural_key_providers(EXPECTATIONS, systems) == providers
