"""The blood bank system (``blodcentral``, SQL): transfusion recipients, transfusions of blood
products (local product codes translated to KVÅ through a crosswalk) and irregular red-cell
antibodies, which are warning information (varningsinformation) in the core.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from etl.estate.base import Dataset, format_days, format_minutes, pick, window_draw
from etl.estate.cohort import Cohort, age_window, keyed, rows_in_window, select_cohort
from etl.estate.people import Population
from etl.estate.planting import (
    UNPARSEABLE_COMPACT_TIMESTAMPS,
    UNPARSEABLE_ISO_DATES,
    invalid_identity,
    missing_reference,
    set_values,
)
from etl.estate.regional_units import units
from etl.estate.satellites.common import (
    PERSON_COLUMN,
    EstateContext,
    SystemEntry,
    person_columns,
    sites_for,
)
from etl.estate.writers import write_sqlite

# Local blood product codes; all are in mappings/crosswalks/blood_product_to_kva.csv.
PRODUCTS = {"ERY": 0.7, "ERY-BESTR": 0.08, "PLASMA": 0.12, "TROMB": 0.1}
UNMAPPED_PRODUCTS = ["GRANULO", "ERY-TVATT", "HELBLOD", "X"]
ANTIBODIES = ["Anti-K", "Anti-E", "Anti-c", "Anti-Fya", "Anti-Jka", "Anti-D", "Anti-M"]
TABLES = {
    "mottagare": ["mottagare_id", "pnr", "efternamn", "fornamn", "kon", "skyddad"],
    "transfusion": [
        "transfusion_id",
        "mottagare_id",
        "produkt",
        "tapp_nr",
        "transfunderad",
        "enhet_hsa",
    ],
    "antikropp": ["antikropp_id", "mottagare_id", "antikropp", "pavisad", "kommentar"],
}


def build(ctx: EstateContext, entry: SystemEntry) -> dict[str, Dataset]:
    rng, pop = ctx.rng(entry), ctx.pop
    cohort = select_cohort(rng, pop, entry.system, share=0.06, min_age=1, key_base=100_001)
    recipients = _recipients(rng, pop, cohort, entry.system)
    lo, hi = age_window(pop, cohort.people, 1)
    transfusions = _transfusions(rng, pop, cohort, entry, lo, hi)
    antibodies = _antibodies(rng, cohort, entry.system, lo, hi)

    defects = ctx.rng(entry, "defects")
    invalid_identity(defects, recipients, "pnr")
    set_values(defects, transfusions, "produkt", UNMAPPED_PRODUCTS, "unmapped_code")
    set_values(
        defects, transfusions, "transfunderad", UNPARSEABLE_COMPACT_TIMESTAMPS, "unparseable_date"
    )
    missing_reference(defects, transfusions, "mottagare_id", cohort.keys)
    set_values(defects, antibodies, "pavisad", UNPARSEABLE_ISO_DATES, "unparseable_date")
    return {"mottagare": recipients, "transfusion": transfusions, "antikropp": antibodies}


def _recipients(rng: np.random.Generator, pop: Population, cohort: Cohort, system: str) -> Dataset:
    """The ``mottagare`` table: one row per transfusion recipient."""
    people = cohort.people
    person = person_columns(
        rng, pop, people, identity_form="mixed", protection=("N", "S", "F", "G")
    )
    return Dataset(
        system,
        "mottagare",
        "mottagare_id",
        {
            "mottagare_id": cohort.keys,
            PERSON_COLUMN: people,
            "pnr": person["identity"],
            "efternamn": person["family"],
            "fornamn": person["given"],
            "kon": person["sex"],
            "skyddad": person["protection"],
        },
    )


def _transfusions(
    rng: np.random.Generator,
    pop: Population,
    cohort: Cohort,
    entry: SystemEntry,
    lo: np.ndarray,
    hi: np.ndarray,
) -> Dataset:
    """The ``transfusion`` table: blood products given, in time order."""
    transfused, when = rows_in_window(rng, pop, cohort, 4.0, lo, hi, office_hours=0.6)
    m = len(transfused)
    unit = units("blodcentral")
    return keyed(
        entry.system,
        "transfusion",
        "transfusion_id",
        {
            "mottagare_id": cohort.key_of[transfused],
            "produkt": pick(rng, list(PRODUCTS), m, p=list(PRODUCTS.values())),
            "tapp_nr": np.array(
                [f"V{n:013d}" for n in rng.integers(10**11, 10**12, m)], dtype=object
            ),
            "transfunderad": format_minutes(when),
            "enhet_hsa": unit.hsa[unit.for_sites(rng, sites_for(entry, pop, transfused))],
        },
        when,
        base=7_000_001,
    )


def _antibodies(
    rng: np.random.Generator, cohort: Cohort, system: str, lo: np.ndarray, hi: np.ndarray
) -> Dataset:
    """The ``antikropp`` table: irregular antibodies found, in time order."""
    people = cohort.people
    # Antibodies are found in about a third of recipients (at least a dozen in any estate).
    draw = rng.random(len(people))
    found = np.sort(people[draw < max(0.3, np.sort(draw)[min(11, len(draw) - 1)])])
    k = len(found)
    where = cohort.positions(found)
    day = window_draw(rng, lo[where], hi[where]) // 1440
    return keyed(
        system,
        "antikropp",
        "antikropp_id",
        {
            "mottagare_id": cohort.key_of[found],
            "antikropp": pick(rng, ANTIBODIES, k),
            "pavisad": format_days(day, "YYYY-MM-DD"),
            "kommentar": pick(
                rng,
                [
                    "Beställ antigennegativ blod",
                    "Kontakta blodcentralen",
                    "Påvisad vid graviditet",
                    "",
                ],
                k,
            ),
        },
        day,
        base=300_001,
    )


def write(datasets: dict[str, Dataset], folder: Path, entry: SystemEntry) -> dict[str, Path]:
    path = folder / f"{entry.system}.sqlite"
    write_sqlite(path, {name: (datasets[name], columns) for name, columns in TABLES.items()})
    return {name: path for name in TABLES}
