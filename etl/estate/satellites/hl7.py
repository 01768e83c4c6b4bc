"""HL7 v2 building blocks the laboratory and emergency department generators share.

Archives are ISO-8859-1; segments end with ``\\r`` and messages follow each other, each
starting with ``MSH|``. Patient register feeds carry one person message per patient (PID and
the region's local ``ZPI`` segment with the protection level).
"""

from __future__ import annotations

import numpy as np

from etl.estate.base import Dataset, format_days
from etl.estate.cohort import hl7_timestamp, identity_text, sex_letter
from etl.estate.people import Population
from etl.estate.satellites.common import PERSON_COLUMN, protection_codes
from etl.estate.writers import msh, segment

ENCODING = "iso-8859-1"
SEGMENT_END = "\r"
# Protection levels in ZPI.1 (the region's local segment).
PROTECTION = ("", "SEKR", "SKYDD", "FING")
# Unreadable messages as they turn up in real archives: a value cut by a stray line break, a
# header without a message type, binary noise after a header.
GARBAGE_TEMPLATES = [
    "MSH|^~\\&|{app}|{facility}|VARDFLYTT|VGR|{ts}||{type}|{control}|P|2.5\r"
    "PID|1|{patient}^^^{app}^PI\rOBX|1|ST|NPU02319^B-Hemoglobin^NPU||13\r4|g/L\r",
    "MSH|^~\\&|{app}|{facility}|VARDFLYTT|VGR|{ts}\r",
    "MSH|^~\\&|{app}|{facility}|VARDFLYTT|VGR|{ts}||{type}|{control}|P|2.5\r\x1a\x1a\x1a\x1a\r",
]


def person_rows(
    rng: np.random.Generator,
    pop: Population,
    people: np.ndarray,
    keys: np.ndarray,
    system: str,
    key_prefix: str,
) -> Dataset:
    """The rows of a person-information feed: one message per patient, in key order."""
    n = len(people)
    return Dataset(
        system,
        "patient",
        "patient_number",
        {
            "patient_number": np.array([f"{key_prefix}{k}" for k in keys], dtype=object),
            PERSON_COLUMN: people,
            "identity_number": identity_text(rng, pop, people, "12"),
            "family_name": pop.family[people].astype(object),
            "given_name": pop.given[people].astype(object),
            "birth_date": format_days(pop.birth_day[people], "YYYYMMDD"),
            "sex": sex_letter(pop.sex[people], "F", "M", "U"),
            "protection": protection_codes(pop, people, PROTECTION),
            "_control_id": np.array([f"{key_prefix}A{i:08d}" for i in range(n)], dtype=object),
            "_timestamp": hl7_timestamp(pop.first_day[people] * 1440 + 8 * 60),
        },
    )


def person_message(
    ds: Dataset, row: int, message_type: str, application: str, facility: str
) -> str:
    """ADT person message (A28/A31): MSH, EVN, PID and ZPI."""
    c = ds.columns
    timestamp = c["_timestamp"][row]
    segments = [
        msh(application, facility, timestamp, message_type, c["_control_id"][row]),
        segment("EVN", {1: message_type.split("^")[1], 2: timestamp}),
        segment(
            "PID",
            {
                1: "1",
                2: [c["patient_number"][row] or "", "", "", application, "PI"],
                3: [c["identity_number"][row] or "", "", "", "SKV", "PNR"],
                5: [c["family_name"][row] or "", c["given_name"][row] or ""],
                7: c["birth_date"][row] or "",
                8: c["sex"][row] or "",
            },
        ),
        segment("ZPI", {1: c["protection"][row] or ""}),
    ]
    return SEGMENT_END.join(segments) + SEGMENT_END


def garbage(
    rng: np.random.Generator, count: int, application: str, facility: str, message_type: str
) -> list[str]:
    """``count`` unreadable messages, each standing alone between readable ones."""
    texts = []
    for i in range(count):
        template = GARBAGE_TEMPLATES[int(rng.integers(0, len(GARBAGE_TEMPLATES)))]
        texts.append(
            template.format(
                app=application,
                facility=facility,
                ts=f"2024{int(rng.integers(1, 13)):02d}1512000{i % 10}",
                type=message_type,
                control=f"X{int(rng.integers(10**7, 10**8))}",
                patient=int(rng.integers(10**5, 10**6)),
            )
        )
    return texts
