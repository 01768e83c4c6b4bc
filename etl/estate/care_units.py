"""The care-unit register the estate's systems record: what ``mappings/care_units.yaml`` lists.

The cutover plan scopes a wave by care unit (HSA-id) or by site, and a site expands to its units
through that register (etl/cutover/plan.py). The register is a reviewed file in ``mappings/``;
this module writes it from the estate's fixed units (hospital units of ``organisation.py``, the
regional units of ``regional_units.py``), and a test keeps the two equal. Regenerate with::

    python -c "from etl.estate.care_units import register_yaml; print(register_yaml(), end='')" \\
        > mappings/care_units.yaml
"""

from __future__ import annotations

from etl.estate import regional_units
from etl.estate.organisation import SITES, UNITS, build_organisation

HEADER = """\
# The region's care-unit register (vårdenheter): HSA-id, name and the site (hospital area) each
# unit belongs to. The cutover plan (waves.yaml) scopes a wave by HSA-ids or by site, and a site
# expands to its units through this list. Reviewed like the mappings; the demo's copy is written
# from the synthetic estate's units (etl/estate/care_units.py) and a test keeps them equal.
# kind: hospital for the hospital units ELVIS and Melior record, else the regional unit's kind.
"""


def register_units() -> list[dict[str, str]]:
    """Every unit of the estate with its HSA-id, name, site and kind, hospital units first."""
    organisation = build_organisation(0)  # units are fixed: the seed only draws staff
    site_names = [name for name, _ in SITES]
    rows = [
        {"hsa_id": str(hsa), "name": str(name), "site": site_names[int(site)], "kind": "hospital"}
        for hsa, name, site in zip(
            organisation.unit_hsa, organisation.unit_name, organisation.unit_site, strict=True
        )
    ]
    assert len(rows) == len(UNITS)
    rows += [
        {"hsa_id": hsa, "name": name, "site": site_names[site], "kind": kind}
        for hsa, name, site, kind in regional_units.register_rows()
    ]
    return rows


def register_yaml() -> str:
    """The register file's text: one flow mapping a line, so a review diff shows one unit."""
    lines = [HEADER, "sites: [" + ", ".join(name for name, _ in SITES) + "]", "care_units:"]
    for unit in register_units():
        lines.append(
            f"  - {{hsa_id: {unit['hsa_id']}, site: {unit['site']}, kind: {unit['kind']}, "
            f'name: "{unit["name"]}"}}'
        )
    return "\n".join(lines) + "\n"
