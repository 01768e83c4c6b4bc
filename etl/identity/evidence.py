"""The evidence of every person link: per patient, a JSON object saying why it is that person.

The object holds the patient's component (how many patients, which systems), the identifier kinds
it carries, its matches (each identifier another patient also carries: the identifier's id and
kind, the matched patient and that patient's system), the reasons its component is flagged and
its review. Ids, kinds, system names, counts and reasons only: never an identity number.

Built with Arrow's string kernels over integer codes: each distinct text is made once and taken
where it is needed. The graph's edges (``_Edges``) and the array helpers the resolver shares with
it (concatenation, orders, first-appearance codes) live here; ``resolve`` imports them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


@dataclass
class _Edges:
    """One row per (patient, identity key), as integer codes: identifier rows first (in their
    order), then any primary identity not among them."""

    patient_index: np.ndarray  # the patient's position
    key: np.ndarray  # the identity key, 0 .. n_keys - 1
    n_keys: int
    kind: np.ndarray  # position in ``kinds``
    kinds: list[str]
    identifier_id: pa.Array  # patient_identifier_id as text; null for a primary identity

    def __len__(self) -> int:
        return len(self.patient_index)


def _evidence(
    patient_text: pa.Array,
    patient_ids: np.ndarray,
    system_code: np.ndarray,
    system_names: list[Any],
    edges: _Edges,
    component: np.ndarray,
    component_size: np.ndarray,
    reason_text: pa.Array,
    review_of: np.ndarray,
) -> np.ndarray:
    """Per patient, a JSON object: its component, its identifier kinds, what matched and why.

    Built with array string operations (the values are ids, kinds and system names only) over
    integer codes: each distinct text is made once and taken where it is needed.
    """
    n = len(patient_ids)
    if n == 0:
        return pa.array([], type=pa.large_string())
    names = pa.array([str(name) for name in system_names], type=pa.large_string())
    patient_system = pa.array(system_code)
    kind_json = _kind_json(n, edges)
    component_systems = _component_systems(
        names, patient_system, system_code, system_names, component, component_size
    )
    matches = _matches(n, patient_text, patient_ids, edges, names, patient_system)

    sizes = pc.cast(pa.array(component_size, type=pa.int64()), pa.large_string())
    evidence = _concat(
        '{"component_patients":',
        sizes.take(pa.array(component)),
        ',"component_systems":',
        component_systems,
        ',"identifier_kinds":',
        kind_json,
        ',"matches":[',
        matches,
        '],"reasons":',
        reason_text,
        ',"review_id":',
        pc.fill_null(_concat('"', _text(review_of), '"'), _text("null")),
        "}",
    )
    return evidence


def _kind_json(n: int, edges: _Edges) -> pa.Array:
    """Per patient, the JSON list of the kinds it carries: a bit per kind (by name), one list per
    distinct combination."""
    present = np.flatnonzero(np.bincount(edges.kind, minlength=len(edges.kinds)))
    kinds = sorted(edges.kinds[code] for code in present.tolist())
    mask = np.zeros(n, dtype=np.int64)
    for bit, kind in enumerate(kinds):
        carriers = edges.patient_index[edges.kind == edges.kinds.index(kind)]
        mask[carriers] |= 1 << bit
    combination, combinations = pd.factorize(mask)
    return pa.array(
        [
            json.dumps([k for bit, k in enumerate(kinds) if value >> bit & 1])
            for value in combinations.tolist()
        ],
        type=pa.large_string(),
    ).take(pa.array(combination))


def _component_systems(
    names: pa.Array,
    patient_system: pa.Array,
    system_code: np.ndarray,
    system_names: list[Any],
    component: np.ndarray,
    component_size: np.ndarray,
) -> pa.Array:
    """Per patient, the JSON list of its component's systems (by name) if it has other patients;
    a lone patient's is its own system."""
    component_systems = _concat('["', names.take(patient_system), '"]')
    shared = component_size[component] > 1
    if shared.any():
        by_name = np.array(sorted(range(len(system_names)), key=lambda c: str(system_names[c])))
        name_rank = np.empty(len(by_name), dtype=np.int64)
        name_rank[by_name] = np.arange(len(by_name))
        width = max(len(by_name), 1)
        pairs = np.sort(
            pd.unique(component[shared].astype(np.int64) * width + name_rank[system_code[shared]])
        )
        owners, joined = _join_groups(
            pairs // width, _concat('"', names.take(pa.array(by_name[pairs % width])), '"')
        )
        per_component = _spread(owners, joined, len(component_size), "")
        component_systems = pc.if_else(
            pa.array(shared), per_component.take(pa.array(component)), component_systems
        )
    return component_systems


def _matches(
    n: int,
    patient_text: pa.Array,
    patient_ids: np.ndarray,
    edges: _Edges,
    names: pa.Array,
    patient_system: pa.Array,
) -> pa.Array:
    """Per patient, its matches as comma-separated JSON objects: every identifier of the patient
    that another patient also carries, ordered by patient, identifier id (as quoted), matched
    patient id, then edge order. The list's brackets are the evidence's own text (a patient
    without matches: nothing between them)."""
    matches = _text(np.full(n, "", dtype=object))
    holders = np.flatnonzero(np.bincount(edges.key, minlength=edges.n_keys)[edges.key] > 1)
    if len(holders):
        identifier_json = pc.fill_null(_concat('"', edges.identifier_id, '"'), _text("null"))
        edge, other, owner = _match_pairs(patient_text, patient_ids, edges, holders)
        pieces, n_edges = _match_pieces(edges, identifier_json, names, patient_system, patient_text)
        matches = _joined_matches(pieces, n_edges, edge, other, owner, n)
    return matches


def _match_pairs(
    patient_text: pa.Array, patient_ids: np.ndarray, edges: _Edges, holders: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The edge, the matched patient and the owner of every match, in match order (owners
    sorted); ``holders``: the edges whose key another edge shares, in edge order."""
    n = len(patient_ids)
    patient_index = edges.patient_index
    patient_rank = np.arange(n) if _is_sorted(patient_text) else _ranks(patient_ids)
    holder_patient = patient_index[holders]
    holder_rank = _identifier_ranks(edges.identifier_id.take(pa.array(holders)))
    left = _order(holder_rank, holder_patient)  # then by edge: holders are in edge order
    item, partner = _pairs_within_groups(
        _first_codes(edges.key[holders])[0], patient_rank[holder_patient], left
    )
    edge, other = holders[item], holder_patient[partner]
    owner = holder_patient[item]
    apart = owner != other
    edge, other, owner = edge[apart], other[apart], owner[apart]
    ordered_left = left
    tied = (holder_patient[ordered_left][1:] == holder_patient[ordered_left][:-1]) & (
        holder_rank[ordered_left][1:] == holder_rank[ordered_left][:-1]
    )
    if tied.any():
        # Two identifiers of one patient with the same id: their partners interleave.
        rank_of_edge = np.zeros(len(edges), dtype=np.int64)
        rank_of_edge[holders] = holder_rank
        order = np.lexsort((edge, patient_rank[other], rank_of_edge[edge], owner))
        edge, other, owner = edge[order], other[order], owner[order]
    return edge, other, owner


def _match_pieces(
    edges: _Edges,
    identifier_json: pa.Array,
    names: pa.Array,
    patient_system: pa.Array,
    patient_text: pa.Array,
) -> tuple[pa.Array, int]:
    """The pieces matches are made of, each string built once in Arrow: per edge its identifier's
    (then the same after a comma), per patient its own as a matched patient; and the edge count."""
    kind_names = pa.array(edges.kinds, type=pa.large_string())
    edge_part = _concat(
        '{"identifier_id":',
        identifier_json,
        ',"kind":"',
        kind_names.take(pa.array(edges.kind)),
        '","matched_patient_id":"',
    )
    patient_part = _concat(patient_text, '","matched_system":"', names.take(patient_system), '"}')
    n_edges = len(edge_part)
    return pa.concat_arrays([edge_part, _concat(",", edge_part), patient_part]), n_edges


def _joined_matches(
    pieces: pa.Array,
    n_edges: int,
    edge: np.ndarray,
    other: np.ndarray,
    owner: np.ndarray,
    n: int,
) -> pa.Array:
    """Per patient, its matches put together from the pieces.

    A match is two pieces, its identifier's (after a comma unless it is its patient's first) and
    the matched patient's; a patient's pieces (its matches, in order: the owners are sorted) are
    joined with no separator. One take and one join over the pieces, instead of a string per
    match, a join per patient and a copy spread to all.
    """
    is_first = np.ones(len(owner), dtype=bool)
    is_first[1:] = owner[1:] != owner[:-1]
    piece = np.empty(2 * len(owner), dtype=np.int64)
    piece[0::2] = edge + np.where(is_first, 0, n_edges)
    piece[1::2] = 2 * n_edges + other
    offsets = 2 * np.searchsorted(owner, np.arange(n + 1))
    return pc.binary_join(
        pa.LargeListArray.from_arrays(
            pa.array(offsets, type=pa.int64()), pieces.take(pa.array(piece))
        ),
        _text(""),
    )


def _first_codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Codes 0 .. k - 1 of non-negative integers (k distinct), by first appearance."""
    codes, uniques = pd.factorize(values, sort=False)
    return codes.astype(np.int64), len(uniques)


def _order(*keys: np.ndarray) -> np.ndarray:
    """``np.lexsort(keys)``: positions sorted by the last key, then the one before, ..., then
    position. When the keys (non-negative integers) and the position fit one 63-bit integer,
    one unstable sort of distinct integers does it (several times faster than a stable sort
    per key); otherwise ``np.lexsort`` does."""
    n = len(keys[0]) if keys else 0
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    combined = np.zeros(n, dtype=np.int64)
    span = 1
    for key in reversed(keys):
        low, high = int(key.min()), int(key.max())
        width = high - low + 1
        span *= width
        if span * n >= 2**62:
            return np.lexsort(keys)
        combined = combined * width + (key - low)
    return np.argsort(combined * n + np.arange(n, dtype=np.int64))


def _text(values: Any) -> pa.Array | pa.Scalar:
    """A piece of a string concatenation as Arrow large strings (a str is a broadcast scalar)."""
    if isinstance(values, str):
        return pa.scalar(values, pa.large_string())
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values.cast(pa.large_string())
    return pa.array(values, type=pa.large_string(), from_pandas=True)


def _concat(*parts: Any) -> pa.Array:
    """Element-wise concatenation of string arrays and literals, in Arrow's C++ kernels.

    Arrow buffers instead of a Python string object per row and per partial result: the
    matches of 200,000 people are millions of strings.
    """
    return pc.binary_join_element_wise(*(_text(part) for part in parts), _text(""))


def _join_groups(groups: np.ndarray, items: Any) -> tuple[np.ndarray, pa.Array]:
    """Comma-joined ``items`` per run of equal ``groups`` (both sorted by group), each in
    brackets: a JSON list per group.

    One Arrow list per group, joined by ``binary_join``: no Python call per group or item.
    """
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    offsets = pa.array(np.r_[starts, len(groups)], type=pa.int64())
    lists = pa.LargeListArray.from_arrays(offsets, _text(items))
    return groups[starts], _concat("[", pc.binary_join(lists, _text(",")), "]")


def _spread(owners: np.ndarray, values: pa.Array, n: int, default: str) -> pa.Array:
    """``n`` strings: ``values[i]`` at position ``owners[i]``, ``default`` everywhere else."""
    position = np.full(n, -1, dtype=np.int64)
    position[owners] = np.arange(len(owners))
    return pc.fill_null(values.take(pa.array(position, mask=position < 0)), _text(default))


def _ranks(values: np.ndarray) -> np.ndarray:
    """The position of each value in sorted order (equal values share a rank)."""
    codes, _ = pd.factorize(pd.Series(values, dtype=object), sort=True)
    return codes


def _is_sorted(values: pa.Array) -> bool:
    """Whether the strings are in strictly increasing order (code point order, as Python
    compares ``str``): then each one's rank is its position."""
    if len(values) < 2 or values.null_count:
        return len(values) < 2
    return bool(pc.all(pc.less(values[:-1], values[1:])).as_py())


def _fixed_width_words(values: pa.Array) -> np.ndarray | None:
    """Strings of one byte length (core ids: 32 hex characters) as rows of big-endian 64-bit
    words, whose order is the strings' (UTF-8 bytes compare as code points, as Python compares
    ``str``); None when some are null or the lengths differ."""
    if len(values) == 0 or values.null_count:
        return None
    values = values.cast(pa.large_string())
    lengths = pc.binary_length(values)
    width = pc.min_max(lengths).as_py()
    if width["min"] != width["max"]:
        return None
    length = int(width["max"])
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64)
    start = int(offsets[values.offset])
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8)[start : start + length * len(values)]
    words = -(-length // 8) or 1
    padded = np.zeros((len(values), words * 8), dtype=np.uint8)
    padded[:, :length] = data.reshape(len(values), length)
    return padded.view(">u8").astype(np.uint64)


def _word_order(words: np.ndarray) -> np.ndarray:
    """Stable ascending order of rows of words (first word most significant): one sort of the
    first words; only rows whose first word is shared are sorted again by every word."""
    order = np.argsort(words[:, 0])
    first = words[order, 0]
    shared = np.zeros(len(order), dtype=bool)
    same = first[1:] == first[:-1]
    shared[1:] |= same
    shared[:-1] |= same
    if shared.any():
        # The rows sharing a first word are runs in place; sorted together by every word (and
        # position) each run stays in its own place.
        runs = np.flatnonzero(shared)
        rows = order[runs]
        order[runs] = rows[np.lexsort((rows, *words[rows].T[::-1]))]
    return order


def _dense_ranks(values: pa.Array) -> np.ndarray:
    """The position of each string in sorted order (equal values share one; code point order,
    as Python compares ``str``)."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    ranks = pc.rank(values, sort_keys="ascending", tiebreaker="dense")
    return ranks.to_numpy().astype(np.int64) - 1


def _identifier_ranks(identifier_id: pa.Array) -> np.ndarray:
    """Dense ranks of the identifiers' JSON (``"<id>"``, or ``null`` for a primary identity).

    Ids of one length (core ids) sort as their fixed-width words, ``null`` after every quoted
    one ('"' sorts before 'n'): integer sorts instead of a string sort."""
    valid = identifier_id.is_valid().to_numpy(zero_copy_only=False)
    words = _fixed_width_words(identifier_id.filter(pa.array(valid)))
    if words is None:
        return _dense_ranks(pc.fill_null(_concat('"', identifier_id, '"'), _text("null")))
    order = _word_order(words)
    ordered = words[order]
    change = np.ones(len(order), dtype=bool)
    change[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    dense = np.empty(len(order), dtype=np.int64)
    dense[order] = np.cumsum(change) - 1
    ranks = np.full(len(valid), len(order) and int(dense.max()) + 1, dtype=np.int64)
    ranks[valid] = dense
    return ranks


def _pairs_within_groups(
    group_of: np.ndarray, rank: np.ndarray, left: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair of items of one group, the pairs of each ``left`` item together in
    the order given by ``left`` and then each partner by ``rank``.

    ``group_of``: the group of each item (codes 0 .. g - 1); ``rank``: the order of partners
    within a group; ``left``: the items whose pairs are wanted, in the order wanted. Returns the
    item and the partner of each pair (an item pairs with itself too). Linear in the pairs: no
    hashing of the pairs and no sort of them.
    """
    sizes = np.bincount(group_of) if len(group_of) else np.zeros(0, dtype=np.int64)
    members = _order(rank, group_of)  # by group, then rank
    group_start = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    partner_count = sizes[group_of[left]]
    item = np.repeat(left, partner_count)
    first_of_run = np.cumsum(partner_count) - partner_count
    within = np.arange(len(item), dtype=np.int64) - np.repeat(first_of_run, partner_count)
    partner = members[np.repeat(group_start[group_of[left]], partner_count) + within]
    return item, partner
