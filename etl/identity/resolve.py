"""One person per human being: which core patients are the same person, and why.

The graph has two kinds of nodes, core patients and identity keys, and one edge per identity
number a patient carries (``patient_identifier`` plus the patient's primary identity). Patients
that share a key, or are joined through a chain of keys, are one connected component
(``scipy.sparse.csgraph.connected_components``: linear in patients plus identifiers, no pairwise
comparison). Keys are kind and normalised number:

- personnummer, samordningsnummer and VGR reservnummer link across source systems;
- a legacy (non-VGR) reserve number links only within its own source system: the same free-form
  string in two systems may be coincidence;
- a patient carrying two numbers (reserve number and personnummer, or a samordningsnummer and
  the personnummer that replaced it) joins them: the legacy system's own link says so.

A component is one person unless its patients disagree:

- ``sex_conflict``: known sexes differ;
- ``birth_date_conflict``: recorded birth dates differ by more than 31 days (a personnummer's date
  part may differ from the true birth date by a few days since 2009, so small gaps are allowed);
- ``protected_identity_conflict``: fingerade personuppgifter (a fictitious identity) meets any
  other protection level: joining them automatically could reveal the real identity;
- ``identity_number_conflict``: two personnummer/samordningsnummer are joined only through
  reserve numbers, never by one patient row carrying both.

Then every patient keeps a person of its own and one review goes to the data stewards. Their
decisions (merge / keep apart) are applied in the order they were taken and respected by every
later run; a kept-apart decision keeps its patients apart for good. When the group of patients
changes after a decision, the stewards are asked again.

A number shared by more than ``MAX_PATIENTS_PER_SYSTEM`` patients of one system is a placeholder
(``OKÄND``, ``0000``), not an identity: it links nobody.

Person ids are derived from the person's anchor patient (the best primary identity kind, then the
lowest patient id), never from an identity number: the id keys are in the source code, and a
hash of a personnummer could be reversed by trying every personnummer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.core.arrow import one_array
from etl.core.ids import core_ids
from etl.identifiers import IdentityKind
from etl.identity.evidence import (
    _concat,
    _Edges,
    _evidence,
    _first_codes,
    _fixed_width_words,
    _order,
    _text,
    _word_order,
)

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


def patient_set_keys(groups: list[list[str]]) -> list[str]:
    """``patient_set_key`` of each group, hashed in one vectorised call."""
    if not groups:
        return []
    joined = pd.Series(["|".join(sorted(ids)) for ids in groups], dtype=object)
    return core_ids("identity", "patient_set", joined).astype(str).tolist()


def review_ids_for(set_keys: list[str], run_id: str) -> list[str]:
    """``review_id_for`` of each set key in this run, hashed in one vectorised call."""
    if not set_keys:
        return []
    keyed = pd.Series([f"{key}@{run_id}" for key in set_keys], dtype=object)
    return core_ids("identity", "identity_review", keyed).astype(str).tolist()


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
    patients = _distinct_patients(patients[PATIENT_COLUMNS])
    n = len(patients)
    patient_text, patient_ids, system_code, system_names = _patient_codes(patients)

    edges, placeholders = _identifier_edges(
        patients, patient_text, identifiers, system_code, system_names
    )
    components = _patient_components(n, edges)

    conflicts = _conflicts(patients, components.of, components.count)
    number_conflicts = _identity_number_conflicts(n, edges, components.of)
    conflicts[IDENTITY_NUMBER_CONFLICT] = False
    conflicts.loc[number_conflicts, IDENTITY_NUMBER_CONFLICT] = True

    by_component, kept_apart = _decisions_by_component(decisions, patient_ids, components.of)
    has_conflict = conflicts[list(CONFLICT_REASONS)].any(axis=1).to_numpy()
    flagged = sorted(set(np.flatnonzero(has_conflict).tolist()) | kept_apart)
    stewards = _Stewards(by_component, kept_apart, _open_review_index(open_reviews), run_id)

    rule_text, reason_text, group, review_of, reviews = _settle_flagged(
        flagged, components, conflicts, stewards, patient_ids, system_code, system_names
    )
    person_of, persons = _persons(patients, patient_text, system_code, group)
    evidence = _evidence(
        patient_text,
        patient_ids,
        system_code,
        system_names,
        edges,
        components.of,
        components.size,
        reason_text,
        review_of,
    )
    links = pd.DataFrame(
        {
            "patient_id": _column(patient_text),
            "person_id": _column(person_of),
            "rule": _column(rule_text),
            "evidence": _column(evidence),
            "review_id": review_of,
        },
        columns=LINK_COLUMNS,
    )
    review_frame = pd.DataFrame(reviews, columns=REVIEW_COLUMNS)
    counts = _counts(n, persons, components, flagged, review_frame, placeholders, conflicts)
    return Resolution(links=links, persons=persons, reviews=review_frame, counts=counts)


@dataclass(frozen=True)
class _Components:
    """The patients' connected components: each patient's (numbered by first appearance), how
    many there are, and how many patients each holds."""

    of: np.ndarray  # the component of each patient, 0 .. count - 1
    count: int
    size: np.ndarray  # patients per component


@dataclass(frozen=True)
class _Stewards:
    """The stewards' part in a run: their decisions under each component, the components a
    kept-apart decision splits, their open reviews by (patient set key, reasons), and the run
    whose id a new review gets."""

    decisions: dict[int, list[_Decision]]
    kept_apart: set[int]
    open_by_key: dict[tuple[str, str], str]
    run_id: str


def _distinct_patients(patients: pd.DataFrame) -> pd.DataFrame:
    """Patients in patient id order, the first of each id kept (a stable sort, then equal
    neighbours dropped: no hashing of the ids)."""
    ids = patients["patient_id"]
    if _is_text(ids) and not ids.isna().any():
        ordered = patients.take(_text_order(_text_column(ids))).reset_index(drop=True)
    else:
        ordered = patients.sort_values("patient_id", kind="stable").reset_index(drop=True)
    ids = ordered["patient_id"]
    before = ids.shift()
    repeated = ((ids == before) | (ids.isna() & before.isna())).to_numpy(dtype=bool, copy=True)
    repeated[:1] = False
    return ordered[~repeated].reset_index(drop=True) if repeated.any() else ordered


def _is_text(values: pd.Series) -> bool:
    """Whether a column holds text only (then its ``str`` is itself: distinct stays distinct)."""
    return isinstance(values.dtype, pd.StringDtype) or (
        values.dtype == object
        and pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty")
    )


# The dtype pandas gives a column of Python strings (``str`` on Arrow in pandas 3).
_TEXT_DTYPE = pd.Series(["text"]).dtype


def _column(values: pa.Array) -> Any:
    """Arrow strings as the frame column pandas would make of the same Python strings, without
    making them (no Python object per row)."""
    if isinstance(_TEXT_DTYPE, pd.StringDtype) and len(values) and values.null_count == 0:
        return _TEXT_DTYPE.__from_arrow__(values)  # type: ignore[attr-defined]  # pandas-stubs lack it
    return values.to_numpy(zero_copy_only=False)


def _text_column(values: pd.Series) -> pa.Array:
    """A column as Arrow large strings (each value as its ``str``, missing values null)."""
    return one_array(pa.array(values.astype("string").array, type=pa.large_string()))


def _codes(values: pa.Array) -> tuple[np.ndarray, list[Any]]:
    """Integer codes of the values (null: -1) and the distinct values, by first appearance."""
    encoded = values.dictionary_encode()
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, encoded.dictionary.to_pylist()


def _patient_codes(patients: pd.DataFrame) -> tuple[pa.Array, np.ndarray, np.ndarray, list[Any]]:
    """The patient ids as Arrow text and as an array (distinct as text, or an error), and the
    source systems as codes into their names (a missing one is an error)."""
    patient_text = _text_column(patients["patient_id"].astype(str))
    if not _is_text(patients["patient_id"]) and len(pc.unique(patient_text)) != len(patients):
        raise ValueError("patient ids must be distinct as text")
    patient_ids = patient_text.to_numpy(zero_copy_only=False)
    # Systems as codes into their names (a missing one: -1), from the read on.
    system_code, system_names = _codes(_text_column(patients["source_system"].astype(str)))
    if (system_code < 0).any():
        raise ValueError("every patient needs its source_system")
    return patient_text, patient_ids, system_code, system_names


def _identifier_edges(
    patients: pd.DataFrame,
    patient_text: pa.Array,
    identifiers: pd.DataFrame,
    system_code: np.ndarray,
    system_names: list[Any],
) -> tuple[_Edges, int]:
    """The edges and the number of placeholder keys left out.

    A key is kind and number, and the system for kinds that link only within their own system;
    it is kept as integer codes (numbers and kinds dictionary-encoded once in Arrow), never as a
    string built and hashed per row.
    """
    number, kind, owner, identifier_id = _identity_rows(patients, patient_text, identifiers)
    keep = pc.and_(pc.not_equal(number, ""), kind.is_valid()).fill_null(False).to_numpy(
        zero_copy_only=False
    ) & (owner >= 0)
    kept = pa.array(keep)
    owner = owner[keep]
    number = number.filter(kept)
    number_code, _ = _codes(number)
    kind_code, kinds = _codes(kind.filter(kept))
    identifier_id = identifier_id.filter(kept)

    system = system_code[owner]
    key, n_keys = _identity_keys(number, number_code, kind_code, kinds, system, system_names)

    # One edge per (patient, key): a patient's system is fixed, so that is (patient, kind,
    # number); the first one kept.
    first = ~pd.Series(owner * max(n_keys, 1) + key).duplicated(keep="first").to_numpy()
    owner, key, kind_code = owner[first], key[first], kind_code[first]
    identifier_id = identifier_id.filter(pa.array(first))

    crowded = _placeholder_keys(key, n_keys, system, first, max(len(system_names), 1))
    linking = ~crowded[key]
    n_linking = n_keys
    if not linking.all():
        key, n_linking = _first_codes(key[linking])
    edges = _Edges(
        patient_index=owner[linking],
        key=key,
        n_keys=n_linking,
        kind=kind_code[linking],
        kinds=[str(name) for name in kinds],
        identifier_id=identifier_id.filter(pa.array(linking)),
    )
    return edges, int(crowded.sum())


def _identity_rows(
    patients: pd.DataFrame, patient_text: pa.Array, identifiers: pd.DataFrame
) -> tuple[pa.Array, pa.Array, np.ndarray, pa.Array]:
    """Number, kind, owning patient (-1: none) and identifier id of every identity: the
    identifier rows, then the patients' primary identities (identifier id null)."""
    n = len(patients)

    def both(column: str) -> pa.Array:
        """The identifiers' column, then the patients' (their primary identity)."""
        return pa.concat_arrays([_text_column(identifiers[column]), _text_column(patients[column])])

    number = pc.utf8_trim_whitespace(both("identity_number"))
    kind = pc.utf8_trim_whitespace(both("identity_kind"))
    owner_of_identifier = pc.index_in(
        _text_column(identifiers["patient_id"].astype(str)), value_set=patient_text
    )
    owner = np.concatenate(
        [
            owner_of_identifier.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64),
            np.arange(n, dtype=np.int64),
        ]
    )
    identifier_id = pa.concat_arrays(
        [
            _text_column(identifiers["patient_identifier_id"]),
            pa.nulls(n, pa.large_string()),
        ]
    )
    return number, kind, owner, identifier_id


def _identity_keys(
    number: pa.Array,
    number_code: np.ndarray,
    kind_code: np.ndarray,
    kinds: list[Any],
    system: np.ndarray,
    system_names: list[Any],
) -> tuple[np.ndarray, int]:
    """The key of each identity (codes 0 .. n_keys - 1 by first appearance) and the key count:
    kind and number, and the system for kinds that link only within their own system."""
    n_numbers = int(number_code.max()) + 1 if len(number_code) else 0
    n_system_codes = max(len(system_names), 1)
    scoped_kind = np.array([name not in CROSS_SYSTEM_KINDS for name in kinds], dtype=bool)
    scope = np.where(scoped_kind[kind_code], system, -1) + 1
    if any("|" in str(name) for name in [*kinds, *system_names]):
        # A "|" inside a kind or system name could make two keys one string: keep the text keys.
        prefix = pc.if_else(
            pa.array(scoped_kind[kind_code]),
            _concat(pa.array(system_names, pa.large_string()).take(pa.array(system)), "|"),
            "",
        )
        text_key = _concat(
            pa.array(kinds, pa.large_string()).take(pa.array(kind_code)),
            "|",
            prefix,
            number,
        )
        key = _codes(text_key)[0]
    else:
        kind_scope, _ = _first_codes(kind_code * (n_system_codes + 1) + scope)
        key, _ = _first_codes(kind_scope * max(n_numbers, 1) + number_code)
    return _first_codes(key)


def _placeholder_keys(
    key: np.ndarray, n_keys: int, system: np.ndarray, first: np.ndarray, n_system_codes: int
) -> np.ndarray:
    """Per key, whether it is a placeholder: shared by more than MAX_PATIENTS_PER_SYSTEM patients
    of one system. Only a key with that many patients in all can be one (counted per system
    only for those). ``system``: each kept identity's; ``first``: those that are edges."""
    crowded = np.zeros(max(n_keys, 1), dtype=bool)
    candidate = np.bincount(key, minlength=n_keys)[key] > MAX_PATIENTS_PER_SYSTEM
    if candidate.any():
        per_system, combinations = _first_codes(
            key[candidate] * n_system_codes + system[first][candidate]
        )
        is_crowded = np.bincount(per_system, minlength=combinations) > MAX_PATIENTS_PER_SYSTEM
        crowded[key[candidate][is_crowded[per_system]]] = True
    return crowded


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


def _patient_components(n: int, edges: _Edges) -> _Components:
    """The connected components of the patients, joined through the keys they carry."""
    labels = _components(n + edges.n_keys, edges.patient_index, n + edges.key)
    component = pd.factorize(labels[:n], sort=False)[0] if n else np.zeros(0, dtype=np.int64)
    n_components = int(component.max()) + 1 if n else 0
    component_size = np.bincount(component, minlength=n_components)
    return _Components(of=component, count=n_components, size=component_size)


def _identity_number_conflicts(n: int, edges: _Edges, component: np.ndarray) -> pd.Index:
    """The components whose personnummer and samordningsnummer are joined only through other
    keys: their personal keys alone fall into more than one group."""
    key_index, patient_index = edges.key, edges.patient_index
    personal_kind = np.array([name in PERSONAL_KINDS for name in edges.kinds], dtype=bool)
    personal = personal_kind[edges.kind]
    personal_labels = _components(
        n + edges.n_keys, patient_index[personal], n + key_index[personal]
    )
    number_conflict = (
        pd.Series(personal_labels[n + key_index[personal]])
        .groupby(component[patient_index[personal]])
        .nunique()
    )
    return number_conflict.index[number_conflict.to_numpy() > 1]


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


def _settle_flagged(
    flagged: list[int],
    components: _Components,
    conflicts: pd.DataFrame,
    stewards: _Stewards,
    patient_ids: np.ndarray,
    system_code: np.ndarray,
    system_names: list[Any],
) -> tuple[pa.Array, pa.Array, np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Each patient's rule, reasons (as text), group and review once the stewards' decisions on
    the flagged components are applied; and the reviews of the flagged groups not decided."""
    component, n_components = components.of, components.count
    n = len(patient_ids)
    is_shared = components.size[component] > 1
    rule = np.where(is_shared, RULE_SHARED_IDENTIFIER, RULE_SINGLE).astype(object)
    review_of = np.full(n, None, dtype=object)
    group = component.astype(np.int64).copy()
    reviews: list[dict[str, Any]] = []
    reason_json = np.full(n, "[]", dtype=object)
    order = _order(component)
    starts = np.searchsorted(component[order], np.arange(n_components + 1))
    next_group = n_components
    # The keys of every flagged group, hashed in one call each (not two calls per group).
    set_keys = patient_set_keys(
        [patient_ids[order[starts[c] : starts[c + 1]]].tolist() for c in flagged]
    )
    fresh_review_ids = review_ids_for(set_keys, stewards.run_id)
    conflict_flags = conflicts[list(CONFLICT_REASONS)].to_numpy(dtype=bool)
    for position, c in enumerate(flagged):
        members = order[starts[c] : starts[c + 1]]
        reasons = _reasons(conflict_flags[c], c in stewards.kept_apart)
        reason_json[members] = json.dumps(reasons)
        local_group, local_rule, decided_by, is_decided = _apply_decisions(
            members, patient_ids, stewards.decisions.get(c, [])
        )
        for label in sorted(set(local_group.values())):
            for p in members:
                if local_group[p] == label:
                    group[p] = next_group
            next_group += 1
        member_ids = patient_ids[members].tolist()
        review_id = None
        if not is_decided:
            systems = {system_names[code] for code in system_code[members].tolist()}
            reviews.append(
                _review(
                    set_keys[position],
                    reasons,
                    stewards.open_by_key,
                    fresh_review_ids[position],
                    member_ids,
                    systems,
                )
            )
            review_id = reviews[-1]["review_id"]
        for p in members:
            rule[p] = local_rule[p]
            review_of[p] = decided_by[p] or review_id

    rule_text, reason_text = _rule_and_reason_text(
        is_shared, rule, reason_json, [order[starts[c] : starts[c + 1]] for c in flagged]
    )
    return rule_text, reason_text, group, review_of, reviews


def _reasons(conflict_flags: np.ndarray, kept_apart: bool) -> list[str]:
    """Why a component is flagged: its conflicts, then a kept-apart decision on its patients."""
    reasons = [
        name for name, is_set in zip(CONFLICT_REASONS, conflict_flags, strict=True) if is_set
    ]
    if kept_apart:
        reasons.append(PREVIOUSLY_KEPT_APART)
    return reasons


def _review(
    set_key: str,
    reasons: list[str],
    open_by_key: dict[tuple[str, str], str],
    fresh_review_id: str,
    member_ids: list[str],
    systems: set[Any],
) -> dict[str, Any]:
    """The review of a flagged group no decision covers: the open review of the same patients
    and reasons, else a new one with the fresh id."""
    reason_text = ",".join(reasons)
    review_id = open_by_key.get((set_key, reason_text))
    return {
        "review_id": review_id or fresh_review_id,
        "patient_set_key": set_key,
        "patient_ids": json.dumps(sorted(member_ids)),
        "systems": json.dumps(sorted(systems)),
        "reasons": reason_text,
        "is_new": review_id is None,
    }


def _rule_and_reason_text(
    is_shared: np.ndarray, rule: np.ndarray, reason_json: np.ndarray, members: list[np.ndarray]
) -> tuple[pa.Array, pa.Array]:
    """Rules and reasons as Arrow strings: each distinct text once, the flagged patients' own
    (``members``: the patients of each flagged component)."""
    n = len(rule)
    flagged_members = np.concatenate(members) if members else np.zeros(0, dtype=np.int64)
    rule_text = _patched(
        pa.array([RULE_SINGLE, RULE_SHARED_IDENTIFIER], pa.large_string()).take(
            pa.array(is_shared.astype(np.int8))
        ),
        flagged_members,
        rule[flagged_members],
        n,
    )
    reason_text = _patched("[]", flagged_members, reason_json[flagged_members], n)
    return rule_text, reason_text


def _counts(
    n: int,
    persons: pd.DataFrame,
    components: _Components,
    flagged: list[int],
    review_frame: pd.DataFrame,
    placeholders: int,
    conflicts: pd.DataFrame,
) -> dict[str, int]:
    """The run's counts: patients, persons, components (merged, flagged, with each conflict),
    reviews and placeholder identifiers."""
    return {
        "patients": n,
        "persons": len(persons),
        "components": components.count,
        "merged_components": int(
            ((components.size > 1) & ~np.isin(np.arange(components.count), flagged)).sum()
        ),
        "flagged_components": len(flagged),
        "reviews": len(review_frame),
        "placeholder_identifiers": placeholders,
        "persons_in_several_systems": int((persons["system_count"] > 1).sum()),
        **{f"components_with_{name}": int(conflicts[name].sum()) for name in CONFLICT_REASONS},
    }


def _lookup(values: pd.Series, table: dict[str, int], default: int, missing: str | None = None):
    """``table``'s number for each value's text (``default`` when absent), via the distinct values
    (one dictionary encoding, no Python call per row). Also the codes and the distinct texts."""
    text = _text_column(values)
    if missing is not None:
        text = text.fill_null(missing)
    codes, names = _codes(text)
    numbers = np.array([table.get(name, default) for name in names] + [default], dtype=np.int64)
    return numbers[codes], codes, names


def _patched(base: pa.Array | str, positions: np.ndarray, values: np.ndarray, n: int) -> pa.Array:
    """``n`` strings: ``base`` (an array, or one text everywhere) with ``values`` at
    ``positions``."""
    position = np.full(n, -1, dtype=np.int64)
    position[positions] = np.arange(len(positions))
    patched = _text(values).take(pa.array(position, mask=position < 0))
    return pc.coalesce(patched, _text(base) if isinstance(base, str) else base)


def _first_per_group(group: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Per group (in group order), the position of its member with the lowest ``rank``, the
    lowest position among equals: one stable sort of one integer key."""
    order = _order(rank - rank.min(), group)
    first = np.ones(len(order), dtype=bool)
    first[1:] = group[order][1:] != group[order][:-1]
    return order[first]


def _persons(
    patients: pd.DataFrame, patient_text: pa.Array, system_code: np.ndarray, group: np.ndarray
) -> tuple[pa.Array, pd.DataFrame]:
    """The person id of every patient, and one row per person (anchor patient's identity)."""
    n = len(patients)
    if n == 0:
        return pa.array([], type=pa.large_string()), pd.DataFrame(columns=PERSON_COLUMNS)
    priority, _, _ = _lookup(patients["identity_kind"], KIND_PRIORITY, len(KIND_PRIORITY))
    # By group, then priority, then patient id (patients are already in id order).
    anchors = _first_per_group(group, priority)
    groups = group[anchors]
    person_ids = pa.array(
        core_ids("identity", "person", pd.Series(_column(patient_text.take(anchors)))).array,
        type=pa.large_string(),
    )
    slot = np.zeros(int(group.max()) + 1, dtype=np.int64)
    slot[groups] = np.arange(len(groups))
    person_of = person_ids.take(pa.array(slot[group]))

    rank, level_code, levels = _lookup(
        patients["protected_identity"], PROTECTION_RANK, _UNKNOWN_PROTECTION_RANK, missing="none"
    )
    strictest = _first_per_group(group, -rank)
    protection_code = np.zeros(len(slot), dtype=np.int64)
    protection_code[group[strictest]] = level_code[strictest]
    patient_count = np.bincount(group, minlength=len(slot))
    n_systems = int(system_code.max()) + 1
    group_systems = pd.unique(group.astype(np.int64) * n_systems + system_code)
    system_count = np.bincount(group_systems // n_systems, minlength=len(slot))
    by_id = _text_order(person_ids)
    anchor = anchors[by_id]
    persons = pd.DataFrame(
        {
            "person_id": _column(person_ids.take(pa.array(by_id))),
            # Only the anchors' values become Python objects (not every patient's).
            "identity_number": patients["identity_number"].take(anchor).to_numpy(dtype=object),
            "identity_kind": patients["identity_kind"].take(anchor).to_numpy(dtype=object),
            "protected_identity": np.array(levels, dtype=object)[protection_code[groups[by_id]]],
            "patient_count": patient_count[groups[by_id]].astype(np.int64),
            "system_count": system_count[groups[by_id]].astype(np.int64),
        },
        columns=PERSON_COLUMNS,
    )
    return person_of, persons


def _text_order(values: pa.Array) -> np.ndarray:
    """Stable ascending order of strings (code point order), nulls last."""
    words = _fixed_width_words(values)
    if words is None:
        return pc.array_sort_indices(values, null_placement="at_end").to_numpy()
    return _word_order(words)
