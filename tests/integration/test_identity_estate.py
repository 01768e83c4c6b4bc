"""Small estate -> migrate ELVIS and Melior -> resolve identities -> compare with the ground truth.

``identity_truth.csv`` says which patient rows are the same person and where a conflict was
planted. Every truly same person must end up as one person, except the planted conflicts, which
must wait in review; nobody may be merged with somebody else.
"""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from etl import pipeline
from etl.core.database import core_engine
from etl.identity import runs
from tests.integration.defects import actual_quarantine, expected_quarantine

pytestmark = pytest.mark.integration

AS_OF = dt.date(2026, 7, 1)
SYSTEMS = ("elvis", "melior")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def core_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'core.sqlite'}"
    return request.getfixturevalue("postgres_url")


def _links(settings) -> pd.DataFrame:
    with core_engine(settings.resolved_core_url).connect() as connection:
        return pd.read_sql(
            "SELECT p.source_system, p.source_key, l.person_id, l.rule, l.review_id "
            "FROM person_link l JOIN patient p ON p.patient_id = l.patient_id "
            "WHERE l.is_active",
            connection,
        )


def test_resolution_matches_the_ground_truth(small_estate, settings_for, core_url):
    settings = settings_for(small_estate, core_url)
    for system in SYSTEMS:
        pipeline.run_system(system, f"{system}-identity", AS_OF, settings=settings)
    # A planted identity conflict is valid data: it must not quarantine anything.
    assert actual_quarantine(core_url) == expected_quarantine(small_estate, SYSTEMS)

    summary = runs.resolve("identity-1", settings)

    truth = pd.read_csv(small_estate / "identity_truth.csv", dtype=str, keep_default_na=False)
    links = _links(settings).merge(
        truth,
        left_on=["source_system", "source_key"],
        right_on=["system", "source_key"],
        how="left",
        validate="one_to_one",
    )
    assert links["person_key"].notna().all(), "every core patient is in the ground truth"
    assert len(links) == summary.counts["patients"]

    persons_per_key = links.groupby("person_key")["person_id"].nunique()
    keys_per_person = links.groupby("person_id")["person_key"].nunique()
    assert (keys_per_person == 1).all(), "no two different people are merged"

    planted = links[links["injected_conflict"] != ""]
    clean = links[links["injected_conflict"] == ""]
    assert (persons_per_key[clean["person_key"].unique()] == 1).all(), "true matches are merged"
    assert set(planted["injected_conflict"]) == {"sex_conflict", "birth_date_conflict"}
    assert (planted["rule"] == "pending_review").all()
    assert (persons_per_key[planted["person_key"].unique()] > 1).all()

    reviews = runs.list_open_reviews(settings)
    expected = {
        (frozenset(f"{s}/{k}" for s, k in zip(g["system"], g["source_key"], strict=True)), reason)
        for (_, reason), g in planted.groupby(["person_key", "injected_conflict"])
    }
    assert {(frozenset(r.patient_row_keys), ",".join(r.reasons)) for r in reviews} == expected

    both = clean.groupby("person_key")["system"].nunique()
    assert summary.counts["persons_in_several_systems"] == int((both > 1).sum()) > 0
    # People first registered under a reserve number: two ELVIS rows, one person.
    elvis_twice = clean[clean["system"] == "elvis"].groupby("person_key").size()
    assert (elvis_twice > 1).any()

    again = runs.resolve("identity-2", settings)
    assert again.counts["links_created"] == again.counts["links_ended"] == 0


def test_evidence_and_review_listing_carry_no_identity_numbers(
    small_estate, settings_for, tmp_path
):
    settings = settings_for(small_estate, f"sqlite:///{tmp_path / 'core.sqlite'}")
    for system in SYSTEMS:
        pipeline.run_system(system, f"{system}-identity", AS_OF, settings=settings)
    runs.resolve("identity-1", settings)

    with core_engine(settings.resolved_core_url).connect() as connection:
        numbers = set(
            pd.read_sql("SELECT identity_number FROM patient_identifier", connection)[
                "identity_number"
            ]
        )
        evidence = pd.read_sql("SELECT evidence FROM person_link", connection)["evidence"]
    text = "\n".join(evidence) + json.dumps(
        [r.model_dump() for r in runs.list_open_reviews(settings)]
    )
    assert numbers and not any(number in text for number in numbers)
