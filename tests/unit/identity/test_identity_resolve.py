"""Identity resolution as tables: given these patients and identifiers, expect these persons.

Numbers are Skatteverket test numbers (and made-up reserve numbers); resolution never validates
them, it only compares them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd
import pytest

from etl.identity.resolve import (
    BIRTH_DATE_CONFLICT,
    IDENTITY_NUMBER_CONFLICT,
    PATIENT_COLUMNS,
    PREVIOUSLY_KEPT_APART,
    PROTECTED_IDENTITY_CONFLICT,
    RULE_PENDING_REVIEW,
    RULE_SHARED_IDENTIFIER,
    RULE_SINGLE,
    RULE_STEWARD_KEPT_APART,
    RULE_STEWARD_MERGE,
    SEX_CONFLICT,
    patient_set_key,
    resolve_identities,
)

pytestmark = pytest.mark.unit

PNR_A = ("personnummer", "189001019802")
PNR_B = ("personnummer", "189001029819")
PNR_C = ("personnummer", "189001039800")
SAM_A = ("samordningsnummer", "191401682396")
VGR_A = ("reservnummer_vgr", "19810829M071")
LEGACY_A = ("reservnummer_legacy", "R1234567")
PLACEHOLDER = ("reservnummer_legacy", "OKÄND")
NUMBERS = {n for _, n in (PNR_A, PNR_B, PNR_C, SAM_A, VGR_A, LEGACY_A, PLACEHOLDER)}


@dataclass
class P:
    """A core patient: id, system, identity numbers (the first is its primary), attributes."""

    patient_id: str
    system: str
    numbers: list[tuple[str, str]]
    sex: str | None = "female"
    birth_date: str | None = "1890-01-01"
    protected: str = "none"


@dataclass
class Case:
    patients: list[P]
    persons: list[set[str]]  # every group of patients that is one person (singletons too)
    reviews: list[tuple[set[str], str]] = field(default_factory=list)  # (patients, reasons)
    rules: dict[str, str] = field(default_factory=dict)  # patient -> rule, where it matters
    decisions: list[tuple[str, set[str]]] = field(default_factory=list)  # (status, patients)


def frames(patients: list[P]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, identifiers = [], []
    for patient in patients:
        kind, number = patient.numbers[0] if patient.numbers else (None, None)
        rows.append(
            {
                "patient_id": patient.patient_id,
                "source_system": patient.system,
                "identity_number": number,
                "identity_kind": kind,
                "sex": patient.sex,
                "birth_date": patient.birth_date,
                "protected_identity": patient.protected,
            }
        )
        for position, (kind, number) in enumerate(patient.numbers):
            identifiers.append(
                {
                    "patient_identifier_id": f"{patient.patient_id}#{position}",
                    "patient_id": patient.patient_id,
                    "identity_number": number,
                    "identity_kind": kind,
                }
            )
    return pd.DataFrame(rows, columns=PATIENT_COLUMNS), pd.DataFrame(
        identifiers,
        columns=["patient_identifier_id", "patient_id", "identity_number", "identity_kind"],
    )


def decision_frame(decisions: list[tuple[str, set[str]]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"review_id": f"review-{i}", "status": status, "patient_ids": sorted(ids)}
            for i, (status, ids) in enumerate(decisions)
        ],
        columns=["review_id", "status", "patient_ids"],
    )


def run(case: Case, run_id: str = "run-1", open_reviews: pd.DataFrame | None = None):
    patients, identifiers = frames(case.patients)
    return resolve_identities(
        patients, identifiers, decision_frame(case.decisions), open_reviews, run_id
    )


def groups(resolution) -> list[set[str]]:
    by_person = resolution.links.groupby("person_id")["patient_id"].agg(set)
    return sorted(by_person.tolist(), key=sorted)


CASES = {
    "same personnummer in two systems is one person": Case(
        [P("e1", "elvis", [PNR_A]), P("m1", "melior", [PNR_A])],
        persons=[{"e1", "m1"}],
        rules={"e1": RULE_SHARED_IDENTIFIER, "m1": RULE_SHARED_IDENTIFIER},
    ),
    "different personnummer are different people": Case(
        [P("e1", "elvis", [PNR_A]), P("m1", "melior", [PNR_B])],
        persons=[{"e1"}, {"m1"}],
        rules={"e1": RULE_SINGLE, "m1": RULE_SINGLE},
    ),
    "registered twice in one system under the same personnummer": Case(
        [P("e1", "elvis", [PNR_A]), P("e2", "elvis", [PNR_A])],
        persons=[{"e1", "e2"}],
    ),
    "a legacy reserve number links only within its own system": Case(
        [
            P("e1", "elvis", [PNR_A, LEGACY_A]),
            P("e2", "elvis", [VGR_A, LEGACY_A]),
            P("m1", "melior", [PNR_B, LEGACY_A]),
        ],
        persons=[{"e1", "e2"}, {"m1"}],
    ),
    "the same legacy reserve string in two systems may be coincidence": Case(
        [P("e1", "elvis", [PNR_A, LEGACY_A]), P("m1", "melior", [PNR_B, LEGACY_A])],
        persons=[{"e1"}, {"m1"}],
    ),
    "registered first under a VGR reservnummer, then under the personnummer": Case(
        [
            P("e1", "elvis", [VGR_A]),
            P("e2", "elvis", [PNR_A, VGR_A]),
            P("m1", "melior", [PNR_A]),
            P("x1", "lab", [VGR_A]),
        ],
        persons=[{"e1", "e2", "m1", "x1"}],
    ),
    "a samordningsnummer replaced by a personnummer": Case(
        [P("m1", "melior", [SAM_A]), P("e1", "elvis", [PNR_A, SAM_A])],
        persons=[{"e1", "m1"}],
    ),
    "a changed personnummer carried with the old one on one row": Case(
        [
            P("e1", "elvis", [PNR_B, PNR_A]),
            P("m1", "melior", [PNR_A]),
            P("x1", "lab", [PNR_B]),
        ],
        persons=[{"e1", "m1", "x1"}],
    ),
    "two personnummer joined only through a reserve number go to review": Case(
        [P("e1", "elvis", [PNR_A, VGR_A]), P("m1", "melior", [PNR_B, VGR_A])],
        persons=[{"e1"}, {"m1"}],
        reviews=[({"e1", "m1"}, IDENTITY_NUMBER_CONFLICT)],
    ),
    "known sexes differ: review, not merge": Case(
        [P("e1", "elvis", [PNR_A], sex="female"), P("m1", "melior", [PNR_A], sex="male")],
        persons=[{"e1"}, {"m1"}],
        reviews=[({"e1", "m1"}, SEX_CONFLICT)],
        rules={"e1": RULE_PENDING_REVIEW, "m1": RULE_PENDING_REVIEW},
    ),
    "an unknown sex is no conflict": Case(
        [
            P("e1", "elvis", [PNR_A], sex="unknown"),
            P("m1", "melior", [PNR_A], sex="male"),
            P("x1", "lab", [PNR_A], sex=None),
        ],
        persons=[{"e1", "m1", "x1"}],
    ),
    "birth dates a few days apart (allowed since 2009) are no conflict": Case(
        [
            P("e1", "elvis", [PNR_A], birth_date="2012-03-01"),
            P("m1", "melior", [PNR_A], birth_date="2012-03-06"),
            P("x1", "lab", [PNR_A], birth_date=None),
        ],
        persons=[{"e1", "m1", "x1"}],
    ),
    "birth dates more than 31 days apart go to review": Case(
        [
            P("e1", "elvis", [PNR_A], birth_date="1950-03-01"),
            P("m1", "melior", [PNR_A], birth_date="1950-04-02"),
        ],
        persons=[{"e1"}, {"m1"}],
        reviews=[({"e1", "m1"}, BIRTH_DATE_CONFLICT)],
    ),
    "two conflicts at once are one review with both reasons": Case(
        [
            P("e1", "elvis", [PNR_A], sex="male", birth_date="1950-03-01"),
            P("m1", "melior", [PNR_A], sex="female", birth_date="1960-03-01"),
        ],
        persons=[{"e1"}, {"m1"}],
        reviews=[({"e1", "m1"}, f"{SEX_CONFLICT},{BIRTH_DATE_CONFLICT}")],
    ),
    "fingerade personuppgifter never join another level by themselves": Case(
        [
            P("e1", "elvis", [PNR_A], protected="fingerade_personuppgifter"),
            P("m1", "melior", [PNR_A], protected="none"),
        ],
        persons=[{"e1"}, {"m1"}],
        reviews=[({"e1", "m1"}, PROTECTED_IDENTITY_CONFLICT)],
    ),
    "a placeholder shared by many patients of one system links nobody": Case(
        [P(f"e{i}", "elvis", [(PNR_A[0], f"18900{i}019802"), PLACEHOLDER]) for i in range(6)],
        persons=[{f"e{i}"} for i in range(6)],
    ),
    "kept apart by a steward: stays apart, no new review": Case(
        [P("e1", "elvis", [PNR_A], sex="female"), P("m1", "melior", [PNR_A], sex="male")],
        persons=[{"e1"}, {"m1"}],
        decisions=[("kept_apart", {"e1", "m1"})],
        rules={"e1": RULE_STEWARD_KEPT_APART, "m1": RULE_STEWARD_KEPT_APART},
    ),
    "kept apart stays apart even when the conflict is gone": Case(
        [P("e1", "elvis", [PNR_A], sex="male"), P("m1", "melior", [PNR_A], sex="male")],
        persons=[{"e1"}, {"m1"}],
        decisions=[("kept_apart", {"e1", "m1"})],
    ),
    "a new patient joining a kept-apart pair asks the stewards again": Case(
        [
            P("e1", "elvis", [PNR_A], sex="female"),
            P("m1", "melior", [PNR_A], sex="male"),
            P("x1", "lab", [PNR_A], sex="male"),
        ],
        persons=[{"e1"}, {"m1"}, {"x1"}],
        decisions=[("kept_apart", {"e1", "m1"})],
        reviews=[({"e1", "m1", "x1"}, f"{SEX_CONFLICT},{PREVIOUSLY_KEPT_APART}")],
        rules={
            "e1": RULE_STEWARD_KEPT_APART,
            "m1": RULE_STEWARD_KEPT_APART,
            "x1": RULE_PENDING_REVIEW,
        },
    ),
    "merged by a steward despite a conflict": Case(
        [P("e1", "elvis", [PNR_A], sex="female"), P("m1", "melior", [PNR_A], sex="male")],
        persons=[{"e1", "m1"}],
        decisions=[("merged", {"e1", "m1"})],
        rules={"e1": RULE_STEWARD_MERGE, "m1": RULE_STEWARD_MERGE},
    ),
    "a later decision wins over an earlier one": Case(
        [P("e1", "elvis", [PNR_A], sex="female"), P("m1", "melior", [PNR_A], sex="male")],
        persons=[{"e1", "m1"}],
        decisions=[("kept_apart", {"e1", "m1"}), ("merged", {"e1", "m1"})],
    ),
    "no patients, no persons": Case([], persons=[]),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_resolution(case: Case):
    resolution = run(case)

    assert groups(resolution) == sorted(case.persons, key=sorted)
    actual_reviews = {
        (frozenset(json.loads(row.patient_ids)), row.reasons)
        for row in resolution.reviews.itertuples()
    }
    assert actual_reviews == {(frozenset(ids), reasons) for ids, reasons in case.reviews}
    rules = dict(zip(resolution.links["patient_id"], resolution.links["rule"], strict=True))
    for patient_id, rule in case.rules.items():
        assert rules[patient_id] == rule, patient_id
    assert len(resolution.persons) == len(case.persons)
    assert resolution.persons["patient_count"].sum() == len(case.patients)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_evidence_names_identifiers_never_numbers(case: Case):
    resolution = run(case)
    for evidence in resolution.links["evidence"]:
        parsed = json.loads(evidence)
        assert set(parsed) == {
            "component_patients",
            "component_systems",
            "identifier_kinds",
            "matches",
            "reasons",
            "review_id",
        }
        assert not any(number in evidence for number in NUMBERS)


def test_evidence_says_which_identifiers_and_systems_matched():
    case = CASES["registered first under a VGR reservnummer, then under the personnummer"]
    links = run(case).links.set_index("patient_id")
    evidence = json.loads(links.at["e2", "evidence"])
    assert evidence["identifier_kinds"] == ["personnummer", "reservnummer_vgr"]
    assert evidence["component_systems"] == ["elvis", "lab", "melior"]
    assert {(m["identifier_id"], m["matched_patient_id"]) for m in evidence["matches"]} == {
        ("e2#0", "m1"),
        ("e2#1", "e1"),
        ("e2#1", "x1"),
    }


@pytest.mark.parametrize(
    ("levels", "expected"),
    [
        (["none", "sekretessmarkering"], "sekretessmarkering"),
        (["skyddad_folkbokforing", "none", "sekretessmarkering"], "skyddad_folkbokforing"),
        (["none", "none"], "none"),
        (["fingerade_personuppgifter", "fingerade_personuppgifter"], "fingerade_personuppgifter"),
    ],
    ids=["sekretess wins", "skyddad wins", "none", "both fingerade"],
)
def test_the_strictest_protected_identity_is_carried_to_the_person(levels, expected):
    case = Case(
        [P(f"p{i}", f"system{i}", [PNR_A], protected=level) for i, level in enumerate(levels)],
        persons=[{f"p{i}" for i in range(len(levels))}],
    )
    persons = run(case).persons
    assert persons["protected_identity"].tolist() == [expected]


def test_a_person_takes_the_personnummer_as_primary_identity():
    case = CASES["a samordningsnummer replaced by a personnummer"]
    persons = run(case).persons
    assert persons[["identity_kind", "identity_number"]].values.tolist() == [list(PNR_A)]


def test_the_same_input_in_any_order_gives_the_same_ids_and_evidence():
    case = CASES["registered first under a VGR reservnummer, then under the personnummer"]
    first = run(case)
    shuffled = Case(list(reversed(case.patients)), persons=case.persons)
    second = run(shuffled)
    pd.testing.assert_frame_equal(first.links, second.links)
    pd.testing.assert_frame_equal(first.persons, second.persons)


def test_person_ids_do_not_depend_on_identity_numbers():
    """A person id is keyed on a patient id: a hash of a personnummer could be reversed."""
    case = CASES["same personnummer in two systems is one person"]
    renumbered = Case(
        [P(p.patient_id, p.system, [PNR_C]) for p in case.patients], persons=case.persons
    )
    assert run(case).persons["person_id"].tolist() == run(renumbered).persons["person_id"].tolist()


def test_an_open_review_for_the_same_conflict_is_kept():
    case = CASES["known sexes differ: review, not merge"]
    first = run(case, run_id="run-1").reviews
    assert first["is_new"].tolist() == [True]
    again = run(case, run_id="run-2", open_reviews=first).reviews
    assert again["review_id"].tolist() == first["review_id"].tolist()
    assert again["is_new"].tolist() == [False]
    assert first["patient_set_key"].tolist() == [patient_set_key(["m1", "e1"])]


def test_a_changed_reason_opens_a_new_review():
    case = CASES["known sexes differ: review, not merge"]
    first = run(case, run_id="run-1").reviews
    both = CASES["two conflicts at once are one review with both reasons"]
    again = run(both, run_id="run-2", open_reviews=first).reviews
    assert again["is_new"].tolist() == [True]
    assert again["review_id"].tolist() != first["review_id"].tolist()


def test_counts_describe_the_run():
    counts = run(CASES["a placeholder shared by many patients of one system links nobody"]).counts
    assert counts["placeholder_identifiers"] == 1
    assert counts["patients"] == counts["persons"] == 6
    counts = run(CASES["known sexes differ: review, not merge"]).counts
    assert counts["flagged_components"] == counts["reviews"] == 1
    assert counts["components_with_sex_conflict"] == 1
