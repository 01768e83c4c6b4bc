"""What the XML exports (radiology, pathology, journal_d) share: patient records and broken
records. An unescaped ``&`` in free text (``Hb & Hct``) breaks one record, not the file."""

from __future__ import annotations

import numpy as np

from etl.estate.planting import RAW_RECORD

BROKEN_TEXTS = [
    "Hb & Hct kontrolleras",
    "Jmf tidigare us <2019",
    "Svar: <b>se bilaga</i>",
    "Patologiskt &nbsp; fynd",
]


def break_records(
    rng: np.random.Generator, rows: np.ndarray, record: str, key_attribute: str, keys, column: str
) -> list[str]:
    """The raw text of each chosen record with a free-text element that does not parse."""
    texts = []
    for row in rows.tolist():
        text = BROKEN_TEXTS[int(rng.integers(0, len(BROKEN_TEXTS)))]
        texts.append(
            f'  <{record} {key_attribute}="{keys[row]}"><{column}>{text}</{column}></{record}>'
        )
    return texts


def plant_broken_records(
    rng: np.random.Generator, ds, rows: np.ndarray, record: str, key_attribute: str, text_path: str
) -> None:
    """Replace whole records by ones that do not parse (the row stays, as unreadable)."""
    keys = ds.columns[ds.key]
    if RAW_RECORD not in ds.columns:
        ds.columns[RAW_RECORD] = np.full(len(ds), None, dtype=object)
    ds.columns[RAW_RECORD][rows] = break_records(rng, rows, record, key_attribute, keys, text_path)
    ds.mark(rows, "unreadable_record", "_read_error")
