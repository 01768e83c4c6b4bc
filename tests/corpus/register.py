"""The patient register the XML and JSON lines corpora export: the identity numbers (Skatteverket
test personnummer) of records 1 to 5, and the row record ``n`` reads as."""

from __future__ import annotations

NUMBERS = ["199001012385", "202204082388", "201501212391", "201707162382", "201007032392"]


def row(n: int, protection: str | None = None, note: str | None = None, **changes) -> dict:
    values = {
        "id": f"P{n}",
        "identity_type": "pnr",
        "identity_number": NUMBERS[n - 1],
        "protection": protection,
        "note": note,
    }
    return {**values, **changes}
