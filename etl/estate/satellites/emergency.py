"""Emergency department systems (archetype ``ed_adt_hl7``): the ED's patient register feed
(ADT^A28, one message per patient) and its visit feed (ADT^A01 at arrival), as HL7 v2 archives
in ISO-8859-1. Unknown patients are registered under a VGR reservnummer. The visit feed also
holds ADT^A08 messages that repeat a visit unchanged: exact duplicates, merged by the pipeline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from etl.estate.base import Dataset
from etl.estate.cohort import hl7_timestamp, moments, rows_per_person, select_cohort
from etl.estate.defects import choose, scaled_defect_count
from etl.estate.organisation import SITES, UNITS
from etl.estate.planting import (
    insert_unreadable,
    invalid_identity,
    missing_reference,
    set_values,
)
from etl.estate.satellites import hl7
from etl.estate.satellites.common import EstateContext, SystemEntry
from etl.estate.writers import msh, segment, write_hl7

FILES = {"patient": "patienter.hl7", "visit": "besok.hl7"}
APPLICATION = "AKUTEN"
BAD_TIMES = ["20230230101500", "2022130108", "00000000000000", "20210431250000"]
BAD_CLASSES = ["Z", "X", "AKUT", "99"]


def build(ctx: EstateContext, entry: SystemEntry) -> dict[str, Dataset]:
    rng, pop, org = ctx.rng(entry), ctx.pop, ctx.org
    cohort = select_cohort(
        rng,
        pop,
        entry.system,
        share=0.3,
        home_site=entry.site,
        away_share=0.02,
        reserve_share=1.0,
        key_base=500_001,
    )
    prefix = "AK" + entry.system.split("_")[-1].upper()[:3]
    patients = hl7.person_rows(rng, pop, cohort.people, cohort.keys, entry.system, prefix)
    assert entry.site is not None  # every emergency satellite sits at a site
    facility = SITES[entry.site][0]
    ed_units = [
        i
        for i, (site, name) in enumerate(UNITS)
        if site == entry.site and name.startswith("Akutmottagningen")
    ]
    unit_hsa = (
        org.unit_hsa[ed_units[0]] if ed_units else org.unit_hsa[org.site_first_unit[entry.site]]
    )

    visit_person = rows_per_person(rng, pop, cohort.people, 1.2)
    arrived = moments(rng, pop, visit_person, office_hours=0.4)
    order = np.argsort(arrived, kind="stable")
    visit_person, arrived = visit_person[order], arrived[order]
    m = len(visit_person)
    visit_number = np.array([f"{prefix}V{700_000_001 + i}" for i in range(m)], dtype=object)
    visits = Dataset(
        entry.system,
        "visit",
        "visit_number",
        {
            "visit_number": visit_number,
            "patient_number": np.array(
                [f"{prefix}{k}" for k in cohort.key_of[visit_person]], dtype=object
            ),
            "patient_class": np.where(rng.random(m) < 0.97, "E", "O").astype(object),
            "unit_hsa_id": np.full(m, unit_hsa, dtype=object),
            "arrived_at": hl7_timestamp(arrived),
            "_message_type": np.full(m, "ADT^A01", dtype=object),
            "_control_id": np.array([f"{prefix}M{i:09d}" for i in range(m)], dtype=object),
        },
    )

    defects = ctx.rng(entry, "defects")
    invalid_identity(defects, patients, "identity_number")
    set_values(defects, visits, "arrived_at", BAD_TIMES, "unparseable_date")
    missing_reference(defects, visits, "patient_number", np.array([0]))
    _prefix_references(visits, prefix)
    set_values(defects, visits, "patient_class", BAD_CLASSES, "invalid_value")
    _repeat_as_updates(defects, visits)
    insert_unreadable(defects, visits, hl7.garbage(defects, 12, APPLICATION, facility, "ADT^A01"))
    return {"patient": patients, "visit": visits}


def _prefix_references(visits: Dataset, prefix: str) -> None:
    """Dangling patient numbers planted as bare numbers get the system's prefix."""
    values = visits.columns["patient_number"]
    planted = np.flatnonzero(visits.defect_class == "unresolved_reference")
    values[planted] = [f"{prefix}9{v}" for v in values[planted]]


def _repeat_as_updates(rng: np.random.Generator, visits: Dataset) -> None:
    """ADT^A08 updates that repeat a visit unchanged, a little after it: exact duplicates."""
    originals = choose(rng, visits, scaled_defect_count(len(visits)))
    insert_at = np.minimum(originals + 1 + rng.integers(0, 20, len(originals)), len(visits))
    order = np.insert(np.arange(len(visits)), insert_at, originals)
    is_copy = np.insert(np.zeros(len(visits), dtype=bool), insert_at, True)
    visits.take(order)
    copies = np.flatnonzero(is_copy)
    visits.columns["_message_type"][copies] = "ADT^A08"
    visits.columns["_control_id"][copies] = [f"{c}U" for c in visits.columns["_control_id"][copies]]
    visits.defect_class[copies] = None
    visits.mark(copies, "duplicate_row", "")


def _visit_message(ds: Dataset, rows: np.ndarray) -> str:
    c = ds.columns
    row = int(rows[0])
    message_type = c["_message_type"][row]
    timestamp = c["arrived_at"][row] or ""
    segments = [
        msh(
            APPLICATION, c["unit_hsa_id"][row] or "", timestamp, message_type, c["_control_id"][row]
        ),
        segment("EVN", {1: message_type.split("^")[1], 2: timestamp}),
        segment("PID", {1: "1", 2: [c["patient_number"][row] or "", "", "", APPLICATION, "PI"]}),
        segment(
            "PV1",
            {
                1: "1",
                2: c["patient_class"][row] or "",
                3: c["unit_hsa_id"][row] or "",
                19: c["visit_number"][row] or "",
                44: timestamp,
            },
        ),
    ]
    return hl7.SEGMENT_END.join(segments) + hl7.SEGMENT_END


def write(datasets: dict[str, Dataset], folder: Path, entry: SystemEntry) -> dict[str, Path]:
    patients, visits = datasets["patient"], datasets["visit"]
    assert entry.site is not None  # every emergency satellite sits at a site
    facility = SITES[entry.site][0]
    write_hl7(
        folder / FILES["patient"],
        [
            hl7.person_message(patients, row, "ADT^A28", APPLICATION, facility)
            for row in range(len(patients))
        ],
    )
    raw = visits.columns.get("_raw_record")
    messages = [
        raw[row]
        if raw is not None and raw[row] is not None
        else _visit_message(visits, np.array([row]))
        for row in range(len(visits))
    ]
    write_hl7(folder / FILES["visit"], messages)
    return {name: folder / filename for name, filename in FILES.items()}
