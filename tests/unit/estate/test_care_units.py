"""The care-unit register (mappings/care_units.yaml) is the estate's units, written by
etl/estate/care_units.py; HSA-ids never move when units are added."""

from __future__ import annotations

import pytest
import yaml

from etl.estate.care_units import register_units, register_yaml
from etl.estate.organisation import SITES, build_organisation
from etl.estate.regional_units import units
from etl.settings import PROJECT_ROOT

pytestmark = pytest.mark.unit

REGISTER = PROJECT_ROOT / "mappings" / "care_units.yaml"


def test_the_reviewed_register_is_the_estates_units():
    assert REGISTER.read_text(encoding="utf-8") == register_yaml(), (
        "mappings/care_units.yaml differs from the estate's units: regenerate it as "
        "etl/estate/care_units.py says, and review the difference"
    )


def test_every_unit_the_estate_records_is_registered_with_its_site():
    registered = {unit["hsa_id"]: unit["site"] for unit in register_units()}
    organisation = build_organisation(7)
    sites = [name for name, _ in SITES]

    for hsa, site in zip(organisation.unit_hsa, organisation.unit_site, strict=True):
        assert registered[hsa] == sites[site]
    for kind in ("operation", "vardcentral", "laboratorium", "mikrobiologi"):
        kind_units = units(kind)
        for hsa, site in zip(kind_units.hsa, kind_units.site, strict=True):
            assert registered[hsa] == sites[site], kind
    assert len(registered) == len(register_units())  # no HSA-id twice


def test_existing_hsa_ids_do_not_move():
    """Ids derive from the position in the unit lists: new units are appended."""
    assert units("vardcentral").hsa[0] == "SE2321000131-F000000027919"
    assert build_organisation(1).unit_hsa[14] == "SE2321000131-E000000128785"  # Akut Skövde
    assert units("patologi").hsa[-1] == "SE2321000131-F000000740629"


def test_the_register_file_is_valid_yaml_with_one_unit_a_line():
    content = yaml.safe_load(REGISTER.read_text(encoding="utf-8"))

    assert content["sites"] == [name for name, _ in SITES]
    assert len(content["care_units"]) == len(register_units())
