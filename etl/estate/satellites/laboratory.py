"""Laboratory information systems (archetype ``lab_hl7``): one per hospital laboratory, each an
HL7 v2 archive of its patient register feed (ADT^A31) and its results (ORU^R01, one row per
OBX). Results are in Swedish notation (decimal comma, ``<0,8``, ranges ``3,5-4,6``); analyses are
NPU-coded or carry the laboratory's local codes, translated through
``mappings/crosswalks/lab_local_to_npu.csv``. Variant ``microbiology``: culture and PCR results as
text, local codes through ``microbiology_local_to_npu.csv``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from etl.estate.base import Dataset
from etl.estate.codes import ANALYTES
from etl.estate.cohort import Cohort, hl7_timestamp, moments, select_cohort
from etl.estate.defects import plant_lab_results, plant_lab_units, scaled_defect_count
from etl.estate.melior import lab_values
from etl.estate.organisation import SITES
from etl.estate.people import Population
from etl.estate.planting import insert_unreadable, invalid_identity, set_values
from etl.estate.satellites import hl7
from etl.estate.satellites.common import EstateContext, SystemEntry
from etl.estate.writers import hl7_messages, msh, segment, write_hl7

FILES = {"patient": "patienter.hl7", "result": "svar.hl7"}
APPLICATION = "LIS"
# Local codes of the regional LIS catalogue and the NPU analyte each is; the rest are sent
# NPU-coded. All are in mappings/crosswalks/lab_local_to_npu.csv.
LOCAL_CODES = {
    "NPU02319": "HB",
    "NPU03230": "K",
    "NPU03429": "NA",
    "NPU18016": "KREA",
    "NPU19748": "CRP",
    "NPU27300": "HBA1C",
}
NPU_OF_LOCAL_CODE = {local: npu for npu, local in LOCAL_CODES.items()}
UNMAPPED_LAB_CODES = ["LAKTAT", "PROKALC", "AMMONIAK", "VITD", "ZINK"]
MICROBIOLOGY = [
    (
        "ODL-URIN",
        "Urinodling",
        [
            "Ingen växt",
            "Växt av E. coli >100 000 CFU/mL",
            "Blandflora",
            "Växt av Enterococcus faecalis",
        ],
    ),
    ("ODL-BLOD", "Blododling", ["Ingen växt efter 5 dygn", "Växt av Staphylococcus aureus"]),
    ("ODL-SAR", "Sårodling", ["Normal hudflora", "Växt av beta-hemolyserande streptokocker"]),
    ("PCR-COV", "SARS-CoV-2 PCR", ["Negativ", "Positiv"]),
    ("PCR-INFL", "Influensa A/B PCR", ["Negativ", "Positiv influensa A"]),
    ("PCR-CHLAM", "Chlamydia trachomatis PCR", ["Negativ", "Positiv"]),
]
UNMAPPED_MICRO_CODES = ["ODL-FAECES", "PCR-MPOX", "SEROLOGI", "ODL-X"]
BAD_TIMES = ["20230230101500", "2022130108", "20210431250000", "00000000000000"]


def build(ctx: EstateContext, entry: SystemEntry) -> dict[str, Dataset]:
    rng, pop = ctx.rng(entry), ctx.pop
    micro = entry.variant == "microbiology"
    cohort = select_cohort(
        rng,
        pop,
        entry.system,
        share=0.1 if micro else 0.3,
        home_site=entry.site,
        away_share=0.01,
        key_base=100_001,
    )
    prefix = entry.system.split("_")[-1].upper()[:3]
    patients = hl7.person_rows(rng, pop, cohort.people, cohort.keys, entry.system, prefix)
    assert entry.site is not None  # every laboratory satellite sits at a site
    laboratory = f"Klinisk mikrobiologi {SITES[entry.site][0]}" if micro else SITES[entry.site][1]
    results = _results(rng, pop, cohort, entry.system, prefix, laboratory, micro)
    _plant_defects(ctx.rng(entry, "defects"), patients, results, laboratory, micro)
    return {"patient": patients, "result": results}


def _results(
    rng: np.random.Generator,
    pop: Population,
    cohort: Cohort,
    system: str,
    prefix: str,
    laboratory: str,
    micro: bool,
) -> Dataset:
    """The results (one row per OBX) of the ORU^R01 messages, in message order."""
    # Messages: a few per patient, each with one to six results of one sample.
    message_person = np.repeat(cohort.people, rng.poisson(2.5 * pop.activity[cohort.people]))
    sampled = moments(rng, pop, message_person, office_hours=0.75)
    order = np.argsort(sampled, kind="stable")
    message_person, sampled = message_person[order], sampled[order]
    per_message = rng.integers(1, 3 if micro else 7, len(message_person))
    owner = np.repeat(np.arange(len(message_person)), per_message)
    m = len(owner)
    set_id = np.concatenate([np.arange(1, k + 1) for k in per_message]) if m else owner
    control = np.array(
        [f"{prefix}{100_000_001 + i}" for i in range(len(message_person))], dtype=object
    )
    person = message_person[owner]
    if micro:
        code, name, result, unit, reference = _microbiology_analyses(rng, m)
    else:
        code, name, result, unit, reference = _chemistry_analyses(rng, pop, person)
    observed = sampled[owner] + rng.integers(30, 600, m)
    return Dataset(
        system,
        "result",
        "_source_key",
        {
            "message_id": control[owner],
            "patient_number": np.array(
                [f"{prefix}{k}" for k in cohort.key_of[person]], dtype=object
            ),
            "set_id": set_id.astype(str).astype(object),
            "analysis_code": code,
            "analysis_name": name,
            "result": result,
            "unit": unit,
            "reference_range": reference,
            "observed_at": hl7_timestamp(observed),
            "laboratory": np.full(m, laboratory, dtype=object),
            "_sampled_at": hl7_timestamp(sampled[owner]),
            "_source_key": np.array(
                [f"{c}|{s}" for c, s in zip(control[owner], set_id, strict=True)], dtype=object
            ),
        },
    )


def _microbiology_analyses(
    rng: np.random.Generator, m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Code, name, result, unit and reference range of ``m`` culture and PCR results (text)."""
    test = rng.integers(0, len(MICROBIOLOGY), m)
    code = np.array([t[0] for t in MICROBIOLOGY], dtype=object)[test]
    name = np.array([t[1] for t in MICROBIOLOGY], dtype=object)[test]
    result = np.array(
        [MICROBIOLOGY[t][2][int(rng.integers(0, len(MICROBIOLOGY[t][2])))] for t in test],
        dtype=object,
    )
    unit = np.full(m, None, dtype=object)
    reference = np.full(m, None, dtype=object)
    return code, name, result, unit, reference


def _chemistry_analyses(
    rng: np.random.Generator, pop: Population, person: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Code (NPU or local), name, result, unit and reference range of each person's result."""
    m = len(person)
    analyte = rng.integers(0, len(ANALYTES), m)
    code = np.array([a.code for a in ANALYTES], dtype=object)[analyte]
    name = np.array([a.name for a in ANALYTES], dtype=object)[analyte]
    result, reference = lab_values(rng, analyte, pop.sex[person] == "K")
    unit = np.array([a.unit for a in ANALYTES], dtype=object)[analyte]
    local = np.array([LOCAL_CODES.get(c) for c in code], dtype=object)
    use_local = np.not_equal(local, None) & (rng.random(m) < 0.4)
    code = np.where(use_local, local, code).astype(object)
    return code, name, result, unit, reference


def _plant_defects(
    defects: np.random.Generator,
    patients: Dataset,
    results: Dataset,
    laboratory: str,
    micro: bool,
) -> None:
    """The planted defects: bad identities, codes and times, garbage messages, bad results."""
    invalid_identity(defects, patients, "identity_number")
    set_values(
        defects,
        results,
        "analysis_code",
        UNMAPPED_MICRO_CODES if micro else UNMAPPED_LAB_CODES,
        "unmapped_code",
    )
    set_values(defects, results, "observed_at", BAD_TIMES, "unparseable_date")
    insert_unreadable(
        defects,
        results,
        hl7.garbage(defects, 12, APPLICATION, laboratory, "ORU^R01"),
        group_column="message_id",
    )
    if not micro:
        npu = np.array(
            [NPU_OF_LOCAL_CODE.get(code, code) for code in results.columns["analysis_code"]],
            dtype=object,
        )
        plant_lab_results(defects, results, npu, "result", n=scaled_defect_count(len(results)))
        plant_lab_units(defects, results, npu, "unit", n=scaled_defect_count(len(results)))


def _result_message(ds: Dataset, rows: np.ndarray) -> str:
    c = ds.columns
    first = rows[0]
    sampled = c["_sampled_at"][first]
    segments = [
        msh(APPLICATION, c["laboratory"][first], sampled, "ORU^R01", c["message_id"][first]),
        segment("PID", {1: "1", 2: [c["patient_number"][first] or "", "", "", APPLICATION, "PI"]}),
        segment("ORC", {1: "RE", 2: c["message_id"][first]}),
        segment("OBR", {1: "1", 2: c["message_id"][first], 7: sampled}),
    ]
    for row in rows.tolist():
        segments.append(
            segment(
                "OBX",
                {
                    1: c["set_id"][row],
                    2: "ST",
                    3: [
                        c["analysis_code"][row] or "",
                        c["analysis_name"][row] or "",
                        "NPU" if str(c["analysis_code"][row]).startswith("NPU") else "L",
                    ],
                    5: c["result"][row] or "",
                    6: c["unit"][row] or "",
                    7: c["reference_range"][row] or "",
                    11: "F",
                    14: c["observed_at"][row] or "",
                },
            )
        )
    return hl7.SEGMENT_END.join(segments) + hl7.SEGMENT_END


def write(datasets: dict[str, Dataset], folder: Path, entry: SystemEntry) -> dict[str, Path]:
    patients, results = datasets["patient"], datasets["result"]
    laboratory = next((v for v in results.columns["laboratory"] if v), "Laboratoriet")
    write_hl7(
        folder / FILES["patient"],
        [
            hl7.person_message(patients, row, "ADT^A31", APPLICATION, laboratory)
            for row in range(len(patients))
        ],
    )
    write_hl7(folder / FILES["result"], hl7_messages(results, "message_id", _result_message))
    return {name: folder / filename for name, filename in FILES.items()}
