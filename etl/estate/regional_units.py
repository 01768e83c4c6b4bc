"""Care units outside the hospital wards of ``organisation.py``: vårdcentraler, dental clinics,
youth clinics, intensive care, radiology, maternity and other units the satellites record.

Fixed like the hospital units; HSA-ids are VGR's prefix + ``F`` + digits (never å/ä/ö), distinct
from the hospital units' ``E`` ids. ``site`` is the index into ``organisation.SITES`` whose
catchment the unit serves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from etl.estate.organisation import VGR_HSA_PREFIX

# (kind, site, name)
_UNITS: list[tuple[str, int, str]] = [
    ("vardcentral", 0, "Vårdcentralen Hjällbo"),
    ("vardcentral", 0, "Vårdcentralen Majorna"),
    ("vardcentral", 0, "Vårdcentralen Kungshöjd"),
    ("vardcentral", 0, "Vårdcentralen Mölndal"),
    ("vardcentral", 0, "Vårdcentralen Partille"),
    ("vardcentral", 1, "Vårdcentralen Trollhättan Centrum"),
    ("vardcentral", 1, "Vårdcentralen Uddevalla Skogslyckan"),
    ("vardcentral", 2, "Vårdcentralen Skövde Ryd"),
    ("vardcentral", 2, "Vårdcentralen Lidköping Ågården"),
    ("vardcentral", 3, "Vårdcentralen Borås Norrby"),
    ("vardcentral", 3, "Vårdcentralen Ulricehamn"),
    ("vardcentral", 4, "Vårdcentralen Kungälv Ytterby"),
    ("vardcentral", 5, "Vårdcentralen Alingsås Noltorp"),
    ("vardcentral", 5, "Vårdcentralen Lerum Gråbo"),
    ("tandvard", 0, "Folktandvården Brämaregården"),
    ("tandvard", 0, "Folktandvården Mölndal"),
    ("tandvard", 1, "Folktandvården Uddevalla"),
    ("tandvard", 1, "Folktandvården Trollhättan"),
    ("tandvard", 2, "Folktandvården Skövde"),
    ("tandvard", 2, "Folktandvården Falköping"),
    ("tandvard", 3, "Folktandvården Borås Centrum"),
    ("tandvard", 3, "Folktandvården Ulricehamn"),
    ("tandvard", 4, "Folktandvården Kungälv"),
    ("tandvard", 5, "Folktandvården Alingsås"),
    ("ungdomsmottagning", 0, "Ungdomsmottagningen Centrum Göteborg"),
    ("ungdomsmottagning", 0, "Ungdomsmottagningen Angered"),
    ("ungdomsmottagning", 3, "Ungdomsmottagningen Borås"),
    ("ungdomsmottagning", 3, "Ungdomsmottagningen Ulricehamn"),
    ("psykiatri", 0, "Psykiatri Affektiva Sahlgrenska"),
    ("psykiatri", 0, "Psykiatri Psykos Östra"),
    ("psykiatri", 1, "Psykiatriska kliniken NÄL"),
    ("psykiatri", 2, "Psykiatriska kliniken Skövde"),
    ("psykiatri", 3, "Psykiatriska kliniken SÄS"),
    ("bup", 0, "BUP Göteborg Centrum"),
    ("bup", 1, "BUP Uddevalla"),
    ("bup", 2, "BUP Skövde"),
    ("bup", 3, "BUP Borås"),
    ("iva", 0, "Intensivvårdsavdelningen Sahlgrenska"),
    ("iva", 0, "Thoraxintensiven Sahlgrenska"),
    ("iva", 1, "Intensivvårdsavdelningen NÄL"),
    ("iva", 2, "Intensivvårdsavdelningen Skövde"),
    ("iva", 3, "Intensivvårdsavdelningen SÄS"),
    ("rontgen", 0, "Röntgen Sahlgrenska"),
    ("rontgen", 0, "Röntgen Mölndal"),
    ("rontgen", 1, "Röntgen NÄL"),
    ("rontgen", 2, "Röntgen Skövde"),
    ("rontgen", 3, "Röntgen SÄS Borås"),
    ("dialys", 0, "Dialysmottagningen Sahlgrenska"),
    ("dialys", 2, "Dialysmottagningen Skövde"),
    ("fysioterapi", 0, "Rehabmottagningen Högsbo"),
    ("fysioterapi", 0, "Fysioterapin Mölndal"),
    ("fysioterapi", 2, "Fysioterapin Skövde"),
    ("fysioterapi", 2, "Fysioterapin Lidköping"),
    ("forlossning", 0, "Förlossningen Östra"),
    ("forlossning", 1, "Förlossningen NÄL"),
    ("forlossning", 2, "Förlossningen Skövde"),
    ("forlossning", 3, "Förlossningen SÄS"),
    ("barnmorskemottagning", 0, "Barnmorskemottagningen Frölunda"),
    ("barnmorskemottagning", 0, "Barnmorskemottagningen Angered"),
    ("barnmorskemottagning", 1, "Barnmorskemottagningen Trollhättan"),
    ("barnmorskemottagning", 2, "Barnmorskemottagningen Skövde"),
    ("barnmorskemottagning", 3, "Barnmorskemottagningen Borås"),
    ("barnmorskemottagning", 4, "Barnmorskemottagningen Kungälv"),
    ("barnmorskemottagning", 5, "Barnmorskemottagningen Alingsås"),
    ("operation", 0, "Centraloperation Sahlgrenska"),
    ("operation", 0, "Operation Mölndal"),
    ("operation", 1, "Operation NÄL"),
    ("operation", 2, "Operation Skövde"),
    ("operation", 3, "Operation SÄS Borås"),
    ("operation", 4, "Operation Kungälv"),
    ("operation", 5, "Operation Alingsås"),
    ("onkologi", 0, "Jubileumskliniken Sahlgrenska"),
    ("onkologi", 3, "Onkologimottagningen SÄS"),
    ("onkologi", 2, "Onkologimottagningen Skövde"),
    ("ambulans", 0, "Ambulanssjukvården Storgöteborg"),
    ("ambulans", 1, "Ambulanssjukvården NU-sjukvården"),
    ("ambulans", 2, "Ambulanssjukvården Skaraborg"),
    ("ambulans", 3, "Ambulanssjukvården Södra Älvsborg"),
    ("elevhalsa", 0, "Elevhälsan Göteborgs Stad"),
    ("elevhalsa", 1, "Elevhälsan Trollhättan"),
    ("elevhalsa", 2, "Elevhälsan Skövde"),
    ("elevhalsa", 3, "Elevhälsan Borås"),
    ("vaccination", 0, "Vaccinationsmottagningen Göteborg"),
    ("vaccination", 1, "Vaccinationsmottagningen Uddevalla"),
    ("vaccination", 2, "Vaccinationsmottagningen Skövde"),
    ("vaccination", 3, "Vaccinationsmottagningen Borås"),
    ("dosapotek", 0, "Dosapoteket Göteborg"),
    ("blodcentral", 0, "Blodcentralen Sahlgrenska"),
    ("blodcentral", 2, "Blodcentralen Skövde"),
    ("patologi", 0, "Klinisk patologi Sahlgrenska"),
    ("patologi", 2, "Klinisk patologi Skövde"),
    # The hospital laboratories (one LIS each, etl/estate/satellites/laboratory.py), named as
    # their results' MSH-4 names them. Appended last: an HSA-id is derived from the position in
    # this list, so every unit above keeps its id.
    ("laboratorium", 0, "Klinisk kemi Sahlgrenska"),
    ("laboratorium", 1, "Klinisk kemi NU-sjukvården"),
    ("laboratorium", 2, "Laboratoriemedicin Skaraborg"),
    ("laboratorium", 3, "Klinisk kemi SÄS Borås"),
    ("laboratorium", 4, "Klinisk kemi Kungälvs sjukhus"),
    ("laboratorium", 5, "Klinisk kemi Alingsås lasarett"),
    ("mikrobiologi", 0, "Klinisk mikrobiologi SU"),
    ("mikrobiologi", 2, "Klinisk mikrobiologi SkaS"),
]


@dataclass(frozen=True)
class Units:
    """Units of one kind: HSA-ids, names and the site each serves."""

    hsa: np.ndarray
    name: np.ndarray
    site: np.ndarray

    def __len__(self) -> int:
        return len(self.hsa)

    def for_sites(self, rng: np.random.Generator, sites: np.ndarray) -> np.ndarray:
        """A unit per row, at the row's site when the kind has one there (else any)."""
        choice = rng.integers(0, len(self.hsa), len(sites))
        for site in np.unique(sites).tolist():
            local = np.flatnonzero(self.site == site)
            rows = np.flatnonzero(sites == site)
            if len(local) and len(rows):
                choice[rows] = local[rng.integers(0, len(local), len(rows))]
        return choice


def _hsa(index: int) -> str:
    return f"{VGR_HSA_PREFIX}F{20_000 + 7_919 * (index + 1):012d}"


def units(kind: str) -> Units:
    rows = [(i, site, name) for i, (k, site, name) in enumerate(_UNITS) if k == kind]
    if not rows:
        raise KeyError(f"no regional units of kind {kind}")
    return Units(
        hsa=np.array([_hsa(i) for i, _, _ in rows], dtype=object),
        name=np.array([name for _, _, name in rows], dtype=object),
        site=np.array([site for _, site, _ in rows], dtype=np.int64),
    )


def all_hsa_ids() -> set[str]:
    return {_hsa(i) for i in range(len(_UNITS))}


def register_rows() -> list[tuple[str, str, int, str]]:
    """Every regional unit as ``(hsa_id, name, site, kind)``, in list order."""
    return [(_hsa(i), name, site, kind) for i, (kind, site, name) in enumerate(_UNITS)]
