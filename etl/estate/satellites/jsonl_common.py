"""What the JSON lines exports (intensive care, oncology, ambulance) share: broken lines.

Broken lines as they turn up: a record cut off mid-line, a Swedish decimal comma written into a
JSON number, two records glued together, a stray log line.
"""

from __future__ import annotations

import numpy as np

BROKEN_LINES = [
    '{"{key}":"{value}","patientId":"',
    '{"{key}":"{value}","varde":7,4}',
    '{"{key}":"{value}"}{"{key}":"{value}"}',
    "2024-03-01 02:13:44 WARN export retried",
    '{"{key}":"{value}",}',
]


def broken_lines(rng: np.random.Generator, count: int, key: str, prefix: str) -> list[str]:
    return [
        BROKEN_LINES[int(rng.integers(0, len(BROKEN_LINES)))]
        .replace("{key}", key)
        .replace("{value}", f"{prefix}{int(rng.integers(10**6, 10**7))}")
        for _ in range(count)
    ]
