"""Safety-critical fields fail closed (``etl.core.safety`` through the engine).

A table: for each safety target (protected identity, spärr, death date), each way a value can be
uncertain (missing, empty, whitespace, unparsable, an unexpected code) and each declared policy,
the row is quarantined naming the field, or loaded with the most protective value and flagged.
Never "not protected", "not blocked" or "alive" by default.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pandas as pd
import pytest

from etl.catalog import EntityMapping
from etl.core.safety import SAFETY_TARGETS, SafetyDeclaration, describe
from etl.extract.landing import ROW_NUMBER, SOURCE_KEY
from etl.transform.engine import FLAGGED, QUARANTINED, transform_chunk
from etl.transform.stage import outcomes_table

pytestmark = pytest.mark.unit

REFERENCE_DATE = dt.date(2026, 7, 1)
NO_DUPLICATES = pd.DataFrame(
    {ROW_NUMBER: pd.Series(dtype="int64"), "outcome": pd.Series(dtype="string")}
)
CATALOG = SimpleNamespace(crosswalks={})

# One column mapping per target, as a source system would write it.
TARGETS = {
    "protected_identity": (
        "patient",
        {
            "transform": "map_values",
            "args": {
                "values": {
                    "N": "none",
                    "S": "sekretessmarkering",
                    "F": "skyddad_folkbokforing",
                    "G": "fingerade_personuppgifter",
                }
            },
        },
    ),
    "is_blocked": ("encounter", {"transform": "yes_no"}),
    "deceased_date": (
        "patient",
        {"transform": "parse_legacy_date", "args": {"formats": ["%Y%m%d"]}},
    ),
}
# Each way a value can be uncertain, per target (an unexpected code: a well-formed value that is
# not one the mapping knows).
UNCERTAIN = {
    "missing": {t: None for t in TARGETS},
    "empty": {t: "" for t in TARGETS},
    "whitespace": {t: "  \t" for t in TARGETS},
    "unparsable": {"protected_identity": "J?", "is_blocked": "J?", "deceased_date": "2020013?"},
    "unexpected-code": {"protected_identity": "X", "is_blocked": "X", "deceased_date": "20201345"},
}
CERTAIN = {
    "protected_identity": [
        ("N", "none"),
        ("S", "sekretessmarkering"),
        (" G ", "fingerade_personuppgifter"),
    ],
    "is_blocked": [("N", False), ("J", True), ("nej", False)],
    "deceased_date": [("20200131", dt.date(2020, 1, 31))],
}
NOT_PROTECTED = {"protected_identity": "none", "is_blocked": False, "deceased_date": None}


def mapping_for(target: str, safety: dict) -> EntityMapping:
    entity, column = TARGETS[target]
    columns = [{"target": target, "source": "VALUE", **column, "safety": safety}]
    if entity == "encounter":
        columns.append({"target": "patient_id", "source": "PATIENT"})
    return EntityMapping.model_validate(
        {"system": "demo", "entity": entity, "dataset": "rows", "columns": columns}
    )


def landed(values: list) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "KEY": [str(n) for n in range(1, len(values) + 1)],
            "PATIENT": "P1",
            "VALUE": pd.Series(values, dtype="object").astype("string"),
        }
    )
    frame[ROW_NUMBER] = pd.RangeIndex(1, len(frame) + 1, dtype="int64")
    frame[SOURCE_KEY] = frame["KEY"]
    return frame


def run(target: str, safety: dict, values: list):
    return transform_chunk(
        landed(values),
        mapping_for(target, safety),
        CATALOG,
        "b1",
        REFERENCE_DATE,
        {},
        NO_DUPLICATES,
    )


def uncertain_cases():
    return [
        pytest.param(target, kind, values[target], id=f"{target}-{kind}")
        for kind, values in UNCERTAIN.items()
        for target in TARGETS
    ]


@pytest.mark.parametrize(("target", "kind", "raw"), uncertain_cases())
def test_quarantine_policy_quarantines_and_names_the_field(target, kind, raw):
    result = run(target, {"on_uncertain": "quarantine"}, [raw])

    assert result.rows.empty
    outcome = result.outcomes.iloc[0]
    assert outcome["outcome"] == QUARANTINED
    assert outcome["reason"] == f"safety_field_uncertain:{target}"
    assert outcome["check_name"] == f"safety_field_uncertain:{target}"
    assert outcome["field"] == "VALUE"
    assert outcome["detail"].startswith(f"{target}: ")
    assert len(result.outcomes) == 1


@pytest.mark.parametrize(
    ("target", "kind", "raw"),
    [p for p in uncertain_cases() if SAFETY_TARGETS[p.values[0]].most_protective is not None],
)
def test_most_protective_policy_loads_the_strongest_value_and_flags_it(target, kind, raw):
    result = run(target, {"on_uncertain": "most_protective"}, [raw])

    assert len(result.rows) == 1
    loaded = result.rows[target].iloc[0]
    assert loaded == SAFETY_TARGETS[target].most_protective
    assert loaded != NOT_PROTECTED[target]
    flag = result.outcomes.iloc[0]
    assert len(result.outcomes) == 1
    assert (flag["outcome"], flag["severity"]) == (FLAGGED, "warning")
    assert flag["check_name"] == f"safety_field_uncertain:{target}"
    assert (flag["field"], flag[ROW_NUMBER], flag[SOURCE_KEY]) == ("VALUE", 1, "1")


def test_most_protective_values_are_the_strongest():
    assert SAFETY_TARGETS["protected_identity"].most_protective == "fingerade_personuppgifter"
    assert SAFETY_TARGETS["is_blocked"].most_protective is True
    # A death date has no protective value: only quarantine (see etl/core/safety.py).
    assert SAFETY_TARGETS["deceased_date"].most_protective is None


@pytest.mark.parametrize(
    ("target", "raw", "expected", "policy"),
    [
        pytest.param(target, raw, expected, policy, id=f"{target}-{raw.strip()}-{policy}")
        for target, pairs in CERTAIN.items()
        for raw, expected in pairs
        for policy in ("quarantine", "most_protective")
        # A death date can only be declared with quarantine (see the catalog tests).
        if policy == "quarantine" or SAFETY_TARGETS[target].most_protective is not None
    ],
)
def test_explicit_values_load_unflagged(target, raw, expected, policy):
    result = run(target, {"on_uncertain": policy}, [raw])

    assert result.outcomes.empty
    assert result.rows[target].iloc[0] == expected


@pytest.mark.parametrize(
    ("target", "label", "harmless"),
    [
        ("protected_identity", "none", "none"),
        ("is_blocked", "not_blocked", False),
        ("deceased_date", "alive", None),
    ],
)
def test_declared_blank_means_only_covers_blanks(target, label, harmless):
    """A source writing the harmless value as an empty field says so; garbage stays uncertain."""
    safety = {
        "on_uncertain": "quarantine",
        "blank_means": label,
        "note": "documented by the source",
    }
    values = [
        None,
        "",
        "   ",
        UNCERTAIN["unparsable"][target],
        UNCERTAIN["unexpected-code"][target],
    ]
    result = run(target, safety, values)

    assert result.rows["source_key"].tolist() == ["1", "2", "3"]
    loaded = result.rows[target].tolist()
    assert all((v is None or pd.isna(v)) if harmless is None else v == harmless for v in loaded)
    assert result.outcomes[SOURCE_KEY].tolist() == ["4", "5"]
    assert set(result.outcomes["outcome"]) == {QUARANTINED}


def test_one_chunk_mixes_certain_and_uncertain_rows_vectorised():
    values = ["S", None, "N", "J?", "", "G", "X"]
    result = run("protected_identity", {"on_uncertain": "most_protective"}, values)

    assert result.rows["protected_identity"].tolist() == [
        "sekretessmarkering",
        "fingerade_personuppgifter",
        "none",
        "fingerade_personuppgifter",
        "fingerade_personuppgifter",
        "fingerade_personuppgifter",
        "fingerade_personuppgifter",
    ]
    flagged = result.outcomes.set_index(SOURCE_KEY)["detail"].to_dict()
    assert flagged == {
        "2": "protected_identity: missing",
        "4": "protected_identity: invalid_value",
        "5": "protected_identity: blank",
        "7": "protected_identity: invalid_value",
    }


def test_a_row_quarantined_for_another_reason_carries_no_safety_flag():
    mapping = EntityMapping.model_validate(
        {
            "system": "demo",
            "entity": "encounter",
            "dataset": "rows",
            "columns": [
                {"target": "patient_id", "source": "PATIENT"},
                {
                    "target": "is_blocked",
                    "source": "VALUE",
                    "transform": "yes_no",
                    "safety": {"on_uncertain": "most_protective"},
                },
                {
                    "target": "started_at",
                    "source": "START",
                    "transform": "parse_legacy_timestamp",
                },
            ],
        }
    )
    chunk = landed(["", ""])
    chunk["START"] = pd.Series(["202501011200", "not a time"], dtype="string")
    result = transform_chunk(chunk, mapping, CATALOG, "b1", REFERENCE_DATE, {}, NO_DUPLICATES)

    assert result.rows["source_key"].tolist() == ["1"]
    assert bool(result.rows["is_blocked"].iloc[0]) is True
    by_key = result.outcomes.set_index(SOURCE_KEY)["outcome"].to_dict()
    assert by_key == {"1": FLAGGED, "2": QUARANTINED}
    # Both kinds of outcome fit the stage's Parquet schema (etl/transform/stage.py).
    assert outcomes_table(result.outcomes).num_rows == 2


def test_the_mapping_documentation_says_how_each_field_fails_closed():
    protective = SafetyDeclaration(on_uncertain="most_protective")
    assert describe("is_blocked", protective) == (
        "Safety-critical: a missing, empty, unreadable or unknown value loads as True and is "
        "flagged."
    )
    declared_blank = SafetyDeclaration(
        on_uncertain="quarantine", blank_means="alive", note="Empty for the living."
    )
    assert describe("deceased_date", declared_blank) == (
        "Safety-critical: an empty field means alive (Empty for the living.); an unreadable or "
        "unknown value quarantines the row."
    )


def test_inherited_sparr_unlinked_is_declared_dangling_is_uncertain():
    """Melior's diagnoses inherit their contact's spärr (a lookup): no contact means no spärr as
    declared (``when_unlinked``); a contact missing from the export is uncertain, so blocked."""
    mapping = EntityMapping.model_validate(
        {
            "system": "demo",
            "entity": "diagnosis",
            "dataset": "rows",
            "lookups": [
                {
                    "column": "CONTACT",
                    "dataset": "contacts",
                    "take": "SPARR",
                    "as": "CONTACT_SPARR",
                    "when_unlinked": "N",
                }
            ],
            "columns": [
                {"target": "patient_id", "source": "PATIENT"},
                {
                    "target": "is_blocked",
                    "source": "CONTACT_SPARR",
                    "transform": "yes_no",
                    "safety": {"on_uncertain": "most_protective"},
                },
            ],
        }
    )
    chunk = landed(["", "", "", ""])
    chunk["CONTACT"] = pd.Series(["K1", "K2", None, "K404"], dtype="string")
    contact_sparr = pd.Series({"K1": "J", "K2": "N"}, dtype="string")
    result = transform_chunk(
        chunk,
        mapping,
        CATALOG,
        "b1",
        REFERENCE_DATE,
        {},
        NO_DUPLICATES,
        {"CONTACT_SPARR": contact_sparr},
    )

    assert result.rows["is_blocked"].astype(bool).tolist() == [True, False, False, True]
    assert result.outcomes[SOURCE_KEY].tolist() == ["4"]
    assert result.outcomes["detail"].tolist() == ["is_blocked: missing"]
