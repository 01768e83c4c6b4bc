"""Context columns come from the core when the batch lacks the related row (delta batches)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from etl.batch import BatchPaths
from etl.core.database import core_engine
from etl.core.tables import ENTITY_TABLES
from etl.validate.context import enrich

pytestmark = pytest.mark.unit

META = {"context": {"patient": ["birth_date", "deceased_date"]}}


def test_a_patient_missing_from_the_batch_is_read_from_the_core(sqlite_core, tmp_path):
    url = sqlite_core(tmp_path)
    with core_engine(url).begin() as connection:
        connection.execute(
            ENTITY_TABLES["patient"].insert(),
            [
                {
                    "patient_id": "p1",
                    "birth_date": dt.date(1950, 3, 1),
                    "deceased_date": dt.date(2020, 1, 5),
                    "protected_identity": "none",
                    "source_system": "elvis",
                    "source_key": "1",
                    "batch_id": "b0",
                    "content_hash": "h",
                }
            ],
        )
    rows = pd.DataFrame({"patient_id": ["p1", "p2", None], "encounter_id": ["e1", "e2", "e3"]})
    paths = BatchPaths(tmp_path / "landing" / "b1" / "elvis")  # no transformed patients at all

    without = enrich(paths, rows.copy(), META)
    assert without["patient__birth_date"].isna().all()

    enriched = enrich(paths, rows.copy(), META, url)
    assert enriched.loc[0, "patient__birth_date"] == pd.Timestamp("1950-03-01")
    assert enriched.loc[0, "patient__deceased_date"] == pd.Timestamp("2020-01-05")
    assert enriched.loc[1:, "patient__birth_date"].isna().all()
