"""The identity resolver as it was before its evidence and review keys were vectorised (commit
2955a9e, etl/identity/resolve.py), frozen: the reference the vectorised resolver must equal, row for
row (tests/unit/identity/test_identity_resolve_vectorised.py). Do not change it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from etl.core.ids import core_ids
from etl.identifiers import IdentityKind

RULE_SINGLE = "single"
RULE_SHARED_IDENTIFIER = "shared_identifier"
RULE_STEWARD_MERGE = "steward_merge"
RULE_STEWARD_KEPT_APART = "steward_kept_apart"
RULE_PENDING_REVIEW = "pending_review"

SEX_CONFLICT = "sex_conflict"
BIRTH_DATE_CONFLICT = "birth_date_conflict"
PROTECTED_IDENTITY_CONFLICT = "protected_identity_conflict"
IDENTITY_NUMBER_CONFLICT = "identity_number_conflict"
PREVIOUSLY_KEPT_APART = "previously_kept_apart"
CONFLICT_REASONS = (
    SEX_CONFLICT,
    BIRTH_DATE_CONFLICT,
    PROTECTED_IDENTITY_CONFLICT,
    IDENTITY_NUMBER_CONFLICT,
)

DECISION_MERGED = "merged"
DECISION_KEPT_APART = "kept_apart"

BIRTH_DATE_TOLERANCE_DAYS = 31
MAX_PATIENTS_PER_SYSTEM = 5

CROSS_SYSTEM_KINDS = (
    IdentityKind.PERSONNUMMER.value,
    IdentityKind.SAMORDNINGSNUMMER.value,
    IdentityKind.RESERVNUMMER_VGR.value,
)
PERSONAL_KINDS = (IdentityKind.PERSONNUMMER.value, IdentityKind.SAMORDNINGSNUMMER.value)
# Which patient's primary identity a person takes: a personnummer before anything else.
KIND_PRIORITY = {
    IdentityKind.PERSONNUMMER.value: 0,
    IdentityKind.SAMORDNINGSNUMMER.value: 1,
    IdentityKind.RESERVNUMMER_VGR.value: 2,
}
FINGERADE = "fingerade_personuppgifter"
# Strictest wins; an unrecognised level ranks above all (fail safe) and is carried as it is.
PROTECTION_RANK = {
    "none": 0,
    "sekretessmarkering": 1,
    "skyddad_folkbokforing": 2,
    FINGERADE: 3,
}
_UNKNOWN_PROTECTION_RANK = 4

PATIENT_COLUMNS = [
    "patient_id",
    "source_system",
    "identity_number",
    "identity_kind",
    "sex",
    "birth_date",
    "protected_identity",
]
IDENTIFIER_COLUMNS = ["patient_identifier_id", "patient_id", "identity_number", "identity_kind"]
LINK_COLUMNS = ["patient_id", "person_id", "rule", "evidence", "review_id"]
PERSON_COLUMNS = [
    "person_id",
    "identity_number",
    "identity_kind",
    "protected_identity",
    "patient_count",
    "system_count",
]
REVIEW_COLUMNS = ["review_id", "patient_set_key", "patient_ids", "systems", "reasons", "is_new"]


@dataclass
class Resolution:
    """The state a run wants: one link per patient, the persons, the reviews to keep open."""

    links: pd.DataFrame
    persons: pd.DataFrame
    reviews: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class _Decision:
    order: int
    review_id: str
    status: str
    patient_ids: frozenset[str]


def patient_set_key(patient_ids: list[str] | tuple[str, ...] | frozenset[str]) -> str:
    """A stable key of a group of patients (a keyed hash of their sorted ids)."""
    joined = "|".join(sorted(patient_ids))
    return str(core_ids("identity", "patient_set", pd.Series([joined]))[0])


def review_id_for(set_key: str, run_id: str) -> str:
    return str(core_ids("identity", "identity_review", pd.Series([f"{set_key}@{run_id}"]))[0])


def resolve_identities(
    patients: pd.DataFrame,
    identifiers: pd.DataFrame,
    decisions: pd.DataFrame | None = None,
    open_reviews: pd.DataFrame | None = None,
    run_id: str = "",
) -> Resolution:
    """Persons, links and reviews for these patients, identifiers and steward decisions.

    ``decisions``: ``review_id``, ``status`` (merged / kept_apart), ``patient_ids`` (list) in
    the order they were taken. ``open_reviews``: ``review_id``, ``patient_set_key``, ``reasons``
    of reviews still open, so an unchanged conflict keeps its review. New reviews get ids from
    ``run_id``.
    """
    patients = (
        patients[PATIENT_COLUMNS]
        .sort_values("patient_id", kind="stable")
        .drop_duplicates("patient_id")
        .reset_index(drop=True)
    )
    n = len(patients)
    patient_ids = patients["patient_id"].astype(str).to_numpy(dtype=object)
    systems = patients["source_system"].astype(str).to_numpy(dtype=object)

    edges, placeholders = _identifier_edges(patients, identifiers)
    key_index, key_values = pd.factorize(edges["key"], sort=True)
    n_keys = len(key_values)
    patient_index = edges["patient_index"].to_numpy()
    labels = _components(n + n_keys, patient_index, n + key_index)
    component = pd.factorize(labels[:n], sort=False)[0] if n else np.zeros(0, dtype=np.int64)
    n_components = int(component.max()) + 1 if n else 0
    component_size = np.bincount(component, minlength=n_components)

    conflicts = _conflicts(patients, component, n_components)
    personal = edges["identity_kind"].isin(PERSONAL_KINDS).to_numpy()
    personal_labels = _components(n + n_keys, patient_index[personal], n + key_index[personal])
    number_conflict = (
        pd.Series(personal_labels[n + key_index[personal]])
        .groupby(component[patient_index[personal]])
        .nunique()
    )
    conflicts[IDENTITY_NUMBER_CONFLICT] = False
    conflicts.loc[
        number_conflict.index[number_conflict.to_numpy() > 1], IDENTITY_NUMBER_CONFLICT
    ] = True

    by_component, kept_apart_components = _decisions_by_component(decisions, patient_ids, component)
    has_conflict = conflicts[list(CONFLICT_REASONS)].any(axis=1).to_numpy()
    flagged = sorted(set(np.flatnonzero(has_conflict).tolist()) | kept_apart_components)

    rule = np.where(component_size[component] > 1, RULE_SHARED_IDENTIFIER, RULE_SINGLE).astype(
        object
    )
    review_of = np.full(n, None, dtype=object)
    group = component.astype(np.int64).copy()
    open_by_key = _open_review_index(open_reviews)
    reviews: list[dict[str, Any]] = []
    reason_json = np.full(n, "[]", dtype=object)
    order = np.argsort(component, kind="stable")
    starts = np.searchsorted(component[order], np.arange(n_components + 1))
    next_group = n_components
    for c in flagged:
        members = order[starts[c] : starts[c + 1]]
        reasons = [name for name in CONFLICT_REASONS if bool(conflicts.at[c, name])]
        if c in kept_apart_components:
            reasons.append(PREVIOUSLY_KEPT_APART)
        reason_json[members] = json.dumps(reasons)
        local_group, local_rule, decided_by, is_decided = _apply_decisions(
            members, patient_ids, by_component.get(c, [])
        )
        for label in sorted(set(local_group.values())):
            for p in members:
                if local_group[p] == label:
                    group[p] = next_group
            next_group += 1
        member_ids = patient_ids[members].tolist()
        review_id = None
        if not is_decided:
            set_key = patient_set_key(member_ids)
            reason_text = ",".join(reasons)
            review_id = open_by_key.get((set_key, reason_text))
            reviews.append(
                {
                    "review_id": review_id or review_id_for(set_key, run_id),
                    "patient_set_key": set_key,
                    "patient_ids": json.dumps(sorted(member_ids)),
                    "systems": json.dumps(sorted(set(systems[members].tolist()))),
                    "reasons": reason_text,
                    "is_new": review_id is None,
                }
            )
            review_id = reviews[-1]["review_id"]
        for p in members:
            rule[p] = local_rule[p]
            review_of[p] = decided_by[p] or review_id

    person_of, persons = _persons(patients, group)
    evidence = _evidence(
        patients, edges, key_index, component, component_size, reason_json, review_of
    )
    links = pd.DataFrame(
        {
            "patient_id": patient_ids,
            "person_id": person_of,
            "rule": rule,
            "evidence": evidence,
            "review_id": review_of,
        },
        columns=LINK_COLUMNS,
    )
    review_frame = pd.DataFrame(reviews, columns=REVIEW_COLUMNS)
    counts = {
        "patients": n,
        "persons": len(persons),
        "components": n_components,
        "merged_components": int(
            ((component_size > 1) & ~np.isin(np.arange(n_components), flagged)).sum()
        ),
        "flagged_components": len(flagged),
        "reviews": len(review_frame),
        "placeholder_identifiers": placeholders,
        "persons_in_several_systems": int((persons["system_count"] > 1).sum()),
        **{f"components_with_{name}": int(conflicts[name].sum()) for name in CONFLICT_REASONS},
    }
    return Resolution(links=links, persons=persons, reviews=review_frame, counts=counts)


def _identifier_edges(
    patients: pd.DataFrame, identifiers: pd.DataFrame
) -> tuple[pd.DataFrame, int]:
    """One row per (patient, identity key): identifier rows first, then any primary not among them.

    Returns the edges and the number of placeholder keys left out.
    """
    primary = patients[["patient_id", "identity_number", "identity_kind"]].assign(
        patient_identifier_id=None
    )
    frame = pd.concat(
        [identifiers[IDENTIFIER_COLUMNS], primary[IDENTIFIER_COLUMNS]], ignore_index=True
    )
    number = frame["identity_number"].astype("string").str.strip()
    kind = frame["identity_kind"].astype("string").str.strip()
    index = pd.Index(patients["patient_id"].astype(str)).get_indexer(
        # pandas-stubs: get_indexer takes any array-like
        frame["patient_id"].astype(str)  # type: ignore[arg-type]
    )
    keep = (number.notna() & (number != "") & kind.notna() & (index >= 0)).to_numpy(dtype=bool)
    frame = pd.DataFrame(
        {
            "patient_index": index[keep],
            "patient_identifier_id": frame["patient_identifier_id"].to_numpy(dtype=object)[keep],
            "identity_kind": kind[keep].to_numpy(dtype=object),
            "identity_number": number[keep].to_numpy(dtype=object),
        }
    ).drop_duplicates(["patient_index", "identity_kind", "identity_number"], keep="first")
    system = patients["source_system"].astype(str).to_numpy(dtype=object)[frame["patient_index"]]
    scoped = ~frame["identity_kind"].isin(CROSS_SYSTEM_KINDS).to_numpy()
    prefix = np.where(scoped, system + "|", "").astype(object)
    frame["system"] = system
    frame["key"] = frame["identity_kind"] + "|" + prefix + frame["identity_number"]

    per_system = frame.groupby(["key", "system"])["patient_index"].nunique()
    crowded = per_system[per_system > MAX_PATIENTS_PER_SYSTEM].index.get_level_values("key")
    placeholder = frame["key"].isin(crowded)
    edges = frame[~placeholder].drop(columns=["identity_number"]).reset_index(drop=True)
    return edges, int(crowded.nunique())


def _components(n_nodes: int, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Connected-component label of every node of an undirected graph given as an edge list."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if n_nodes == 0:
        return np.zeros(0, dtype=np.int64)
    graph = coo_matrix(
        (np.ones(len(rows), dtype=np.int8), (rows, columns)), shape=(n_nodes, n_nodes)
    ).tocsr()
    _, labels = connected_components(graph, directed=False)
    return labels


def _conflicts(patients: pd.DataFrame, component: np.ndarray, n_components: int) -> pd.DataFrame:
    """Per component, whether its patients disagree on sex, birth date or protection level."""
    result = pd.DataFrame(index=pd.RangeIndex(n_components))
    sex = patients["sex"].astype("string")
    known_sex = sex.where(sex.isin(["male", "female"]))
    result[SEX_CONFLICT] = known_sex.groupby(component).nunique().reindex(result.index) > 1

    birth = pd.to_datetime(patients["birth_date"], errors="coerce")
    grouped = birth.groupby(component)
    spread = (grouped.max() - grouped.min()).reindex(result.index)
    result[BIRTH_DATE_CONFLICT] = (
        (spread > pd.Timedelta(days=BIRTH_DATE_TOLERANCE_DAYS)).fillna(False).astype(bool)
    )

    level = patients["protected_identity"].astype("string").fillna("none")
    fingerade = (level == FINGERADE).groupby(component).any().reindex(result.index)
    mixed = level.groupby(component).nunique().reindex(result.index) > 1
    result[PROTECTED_IDENTITY_CONFLICT] = (fingerade & mixed).fillna(False).astype(bool)
    result[SEX_CONFLICT] = result[SEX_CONFLICT].fillna(False).astype(bool)
    return result


def _decisions_by_component(
    decisions: pd.DataFrame | None, patient_ids: np.ndarray, component: np.ndarray
) -> tuple[dict[int, list[_Decision]], set[int]]:
    """Steward decisions under each component holding any of their patients, in decision order;
    and the components where a kept-apart decision holds at least two patients."""
    if decisions is None or decisions.empty:
        return {}, set()
    parsed = [
        # pandas-stubs type itertuples() fields as any scalar; patient_ids is a list
        _Decision(order, str(row.review_id), str(row.status), frozenset(map(str, row.patient_ids)))  # type: ignore[arg-type]
        for order, row in enumerate(decisions.itertuples(index=False))
    ]
    members = pd.DataFrame(
        {
            "decision": np.repeat(np.arange(len(parsed)), [len(d.patient_ids) for d in parsed]),
            "patient_id": [p for d in parsed for p in sorted(d.patient_ids)],
        }
    )
    positions = pd.Index(patient_ids).get_indexer(members["patient_id"])
    members = members[positions >= 0].assign(component=component[positions[positions >= 0]])
    found: dict[int, list[_Decision]] = {}
    kept_apart: set[int] = set()
    counts = members.groupby(["decision", "component"]).size()
    for (d, c), count in counts.items():
        decision = parsed[int(d)]
        found.setdefault(int(c), []).append(decision)
        if decision.status == DECISION_KEPT_APART and count >= 2:
            kept_apart.add(int(c))
    return found, kept_apart


def _apply_decisions(
    members: np.ndarray, patient_ids: np.ndarray, decisions: list[_Decision]
) -> tuple[dict[int, int], dict[int, str], dict[int, str | None], bool]:
    """Groups inside one flagged component: everyone apart, then each decision in order.

    Returns the group of each member, its rule, the deciding review, and whether a decision was
    taken on exactly this group of patients (then no new review is needed).
    """
    group = {int(p): int(p) for p in members}
    rule = dict.fromkeys(group, RULE_PENDING_REVIEW)
    decided_by: dict[int, str | None] = dict.fromkeys(group)
    by_id = {str(patient_ids[p]): int(p) for p in members}
    fresh = len(patient_ids)
    member_ids = frozenset(by_id)
    is_decided = False
    for decision in sorted(decisions, key=lambda d: d.order):
        inside = [by_id[p] for p in sorted(decision.patient_ids) if p in by_id]
        is_decided |= decision.patient_ids == member_ids
        if decision.status == DECISION_MERGED and len(inside) >= 2:
            joined = {group[p] for p in inside}
            target = min(joined)
            for p in group:
                if group[p] in joined:
                    group[p] = target
                    rule[p] = RULE_STEWARD_MERGE
                    decided_by[p] = decision.review_id
        elif decision.status == DECISION_KEPT_APART:
            for p in inside:
                group[p] = fresh
                fresh += 1
                rule[p] = RULE_STEWARD_KEPT_APART
                decided_by[p] = decision.review_id
    return group, rule, decided_by, is_decided


def _open_review_index(open_reviews: pd.DataFrame | None) -> dict[tuple[str, str], str]:
    if open_reviews is None or open_reviews.empty:
        return {}
    return {
        (str(row.patient_set_key), str(row.reasons)): str(row.review_id)
        for row in open_reviews.itertuples(index=False)
    }


def _persons(patients: pd.DataFrame, group: np.ndarray) -> tuple[np.ndarray, pd.DataFrame]:
    """The person id of every patient, and one row per person (anchor patient's identity)."""
    n = len(patients)
    if n == 0:
        return np.zeros(0, dtype=object), pd.DataFrame(columns=PERSON_COLUMNS)
    patient_ids = patients["patient_id"].astype(str).to_numpy(dtype=object)
    priority = patients["identity_kind"].map(KIND_PRIORITY).fillna(len(KIND_PRIORITY)).to_numpy(int)
    # Sorted by group, then priority, then patient id (patients are already in id order).
    order = np.lexsort((np.arange(n), priority, group))
    first = np.ones(n, dtype=bool)
    first[1:] = group[order][1:] != group[order][:-1]
    anchors = order[first]
    groups = group[anchors]
    person_ids = core_ids("identity", "person", pd.Series(patient_ids[anchors])).to_numpy(
        dtype=object
    )
    person_of_group = pd.Series(person_ids, index=groups)
    person_of = person_of_group.reindex(group).to_numpy(dtype=object)

    level = patients["protected_identity"].astype("string").fillna("none")
    rank = level.map(PROTECTION_RANK).fillna(_UNKNOWN_PROTECTION_RANK).to_numpy(int)
    strictest = np.lexsort((np.arange(n), -rank, group))
    first_strict = np.ones(n, dtype=bool)
    first_strict[1:] = group[strictest][1:] != group[strictest][:-1]
    protection = pd.Series(
        level.to_numpy(dtype=object)[strictest[first_strict]], index=group[strictest[first_strict]]
    )
    frame = pd.DataFrame({"group": group, "system": patients["source_system"].astype(str)})
    per_group = frame.groupby("group").agg(
        patient_count=("system", "size"), system_count=("system", "nunique")
    )
    persons = pd.DataFrame(
        {
            "person_id": person_ids,
            "identity_number": patients["identity_number"].to_numpy(dtype=object)[anchors],
            "identity_kind": patients["identity_kind"].to_numpy(dtype=object)[anchors],
            "protected_identity": protection.reindex(groups).to_numpy(dtype=object),
            "patient_count": per_group["patient_count"].reindex(groups).to_numpy(np.int64),
            "system_count": per_group["system_count"].reindex(groups).to_numpy(np.int64),
        },
        columns=PERSON_COLUMNS,
    )
    return person_of, persons.sort_values("person_id", kind="stable").reset_index(drop=True)


def _quoted(values: np.ndarray) -> np.ndarray:
    """JSON strings of id-like text (ids, kinds, system names: no characters to escape)."""
    text = pd.Series(values, dtype="object")
    return np.where(text.isna(), "null", '"' + text.fillna("").astype(str) + '"').astype(object)


def _join_groups(groups: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Comma-joined ``items`` per run of equal ``groups`` (both sorted by group).

    ``np.add.reduceat`` concatenates in one C loop: no Python call per group.
    """
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    separated = ("," + items).astype(object)
    separated[starts] = items[starts]
    return groups[starts], np.add.reduceat(separated, starts)


def _evidence(
    patients: pd.DataFrame,
    edges: pd.DataFrame,
    key_index: np.ndarray,
    component: np.ndarray,
    component_size: np.ndarray,
    reason_json: np.ndarray,
    review_of: np.ndarray,
) -> np.ndarray:
    """Per patient, a JSON object: its component, its identifier kinds, what matched and why.

    Built with array string operations (the values are ids, kinds and system names only).
    """
    n = len(patients)
    if n == 0:
        return np.zeros(0, dtype=object)
    patient_ids = patients["patient_id"].astype(str).to_numpy(dtype=object)
    systems = patients["source_system"].astype(str).to_numpy(dtype=object)
    patient_index = edges["patient_index"].to_numpy()

    # Kinds a patient carries: a bit per kind, one JSON list per distinct combination.
    kinds = sorted(edges["identity_kind"].unique().tolist())
    mask = np.zeros(n, dtype=np.int64)
    for bit, kind in enumerate(kinds):
        carriers = patient_index[(edges["identity_kind"] == kind).to_numpy()]
        mask[carriers] |= 1 << bit
    kind_lists = {
        value: json.dumps([k for bit, k in enumerate(kinds) if value >> bit & 1])
        for value in np.unique(mask).tolist()
    }
    kind_json = pd.Series(mask).map(kind_lists).to_numpy(dtype=object)

    # Systems of each multi-patient component; a lone patient's is its own system.
    component_systems = ('["' + systems + '"]').astype(object)
    shared = component_size[component] > 1
    if shared.any():
        pairs = (
            pd.DataFrame({"component": component[shared], "system": systems[shared]})
            .drop_duplicates()
            .sort_values(["component", "system"])
        )
        owners, joined = _join_groups(
            pairs["component"].to_numpy(), ('"' + pairs["system"] + '"').to_numpy(dtype=object)
        )
        by_component = np.empty(len(component_size), dtype=object)
        by_component[owners] = "[" + joined + "]"
        component_systems[shared] = by_component[component[shared]]

    # Matches: every identifier of a patient that another patient also carries.
    matches = np.full(n, "[]", dtype=object)
    holders = pd.DataFrame(
        {
            "key": key_index,
            "patient_index": patient_index,
            "identifier_id": _quoted(edges["patient_identifier_id"].to_numpy(dtype=object)),
            "kind": edges["identity_kind"].to_numpy(dtype=object),
        }
    )
    holders = holders[holders.groupby("key")["patient_index"].transform("nunique") > 1]
    if not holders.empty:
        pairs = holders.merge(
            holders[["key", "patient_index"]].rename(columns={"patient_index": "other"}), on="key"
        )
        pairs = pairs[pairs["patient_index"] != pairs["other"]]
        pairs = pairs.assign(
            other_id=patient_ids[pairs["other"].to_numpy()],
            other_system=systems[pairs["other"].to_numpy()],
        ).sort_values(["patient_index", "identifier_id", "other_id"])
        entries = (
            '{"identifier_id":'
            + pairs["identifier_id"]
            + ',"kind":"'
            + pairs["kind"]
            + '","matched_patient_id":"'
            + pairs["other_id"]
            + '","matched_system":"'
            + pairs["other_system"]
            + '"}'
        )
        owners, joined = _join_groups(
            pairs["patient_index"].to_numpy(), entries.to_numpy(dtype=object)
        )
        matches[owners] = "[" + joined + "]"

    return (
        '{"component_patients":'
        + pd.Series(component_size[component]).astype(str).to_numpy(dtype=object)
        + ',"component_systems":'
        + component_systems
        + ',"identifier_kinds":'
        + kind_json
        + ',"matches":'
        + matches
        + ',"reasons":'
        + reason_json
        + ',"review_id":'
        + _quoted(review_of)
        + "}"
    ).astype(object)
