"""Apply one entity mapping to landed rows, chunk by chunk, vectorised.

Every landed row leaves this stage in exactly one place: as a core row, or as an outcome
(quarantined with a reason and the field, excluded by a declared rule, or merged as an exact
duplicate). The first problem found decides the row's outcome. A row that loads may also carry
flags (outcome ``flagged``, severity warning): a safety-critical field set to its most protective
value, or a local time in a DST gap or fold read by the mapping's declared rule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import sqlalchemy as sa

from etl import identifiers
from etl.catalog import Catalog, ColumnMapping, EntityMapping, IdentifierOrigin, ReserveIssue
from etl.core import code_systems, safety
from etl.core.database import core_engine
from etl.core.ids import content_hashes, core_ids
from etl.core.model import ENTITIES
from etl.core.tables import ENTITY_TABLES
from etl.core.text_columns import may_contain, missing_text, text_masked
from etl.core.vocabulary import REGISTRY, TransformContext, TransformResult, clean_text
from etl.extract.landing import READ_ERROR, ROW_NUMBER, SOURCE_KEY
from etl.extract.readers import REPLACEMENT_CHARACTER
from etl.transform.vectorised import frame_as_text, is_in

OUTCOME_COLUMNS = [
    ROW_NUMBER,
    SOURCE_KEY,
    "outcome",
    "check_name",
    "severity",
    "field",
    "reason",
    "detail",
]
QUARANTINED, EXCLUDED, MERGED = "quarantined", "excluded", "merged"
# Loaded, and flagged for steward review: a warning-severity check, or a waived error.
FLAGGED = "flagged"


@dataclass
class Outcomes:
    """Per-row outcome of a chunk; the first outcome recorded for a row wins."""

    index: pd.Index
    columns: dict[str, pd.Series] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("outcome", "check_name", "severity", "field", "reason", "detail"):
            self.columns[name] = missing_text(self.index)

    @property
    def is_open(self) -> pd.Series:
        return self.columns["outcome"].isna()

    def record(
        self,
        mask: pd.Series,
        outcome: str,
        check_name: str,
        reason: str | pd.Series,
        field: str | None = None,
        detail: pd.Series | str | None = None,
        severity: str = "error",
    ) -> None:
        mask = mask.fillna(False).astype(bool) & self.is_open
        if not mask.any():
            return
        # Positionally in Arrow when the mask is on the chunk's own index, else aligned by pandas.
        condition = mask.to_numpy(dtype=bool) if mask.index.equals(self.index) else None
        changes = [
            ("outcome", outcome),
            ("check_name", check_name),
            ("severity", severity),
            ("field", field),
            ("reason", reason),
        ]
        if detail is not None:
            changes.append(("detail", detail))
        for name, value in changes:
            column = self.columns[name]
            if condition is None:
                self.columns[name] = column.mask(mask, value)
            else:
                self.columns[name] = text_masked(column, condition, value)

    def frame(self, chunk: pd.DataFrame) -> pd.DataFrame:
        closed = ~self.is_open
        # One frame of every column at once (not column by column: a fixed cost per column).
        result = pd.DataFrame(
            {ROW_NUMBER: chunk[ROW_NUMBER], SOURCE_KEY: chunk[SOURCE_KEY], **self.columns}
        )
        return result[closed].reset_index(drop=True)


@dataclass
class ReserveNumbers:
    """VGR reserve numbers in use while one entity of a batch is transformed (in the core and in
    the chunks so far), so that a number is never issued twice; and, by patient source key, the
    numbers this system issued in earlier batches, so that a patient keeps its number."""

    taken: set[str] = field(default_factory=set)
    previous: dict[str, str] = field(default_factory=dict)


def reserve_numbers_in_core(core_url: str, system: str) -> ReserveNumbers:
    """The VGR reserve numbers the core already holds, and those ``system`` issued, by key."""
    table = ENTITY_TABLES["patient_identifier"]
    issued = identifiers.IdentityKind.RESERVNUMMER_VGR_ISSUED.value
    kinds = [identifiers.IdentityKind.RESERVNUMMER_VGR.value, issued]
    query = sa.select(
        table.c.identity_number, table.c.identity_kind, table.c.source_system, table.c.source_key
    ).where(table.c.identity_kind.in_(kinds))
    numbers = ReserveNumbers()
    with core_engine(core_url).connect() as connection:
        for number, kind, source_system, source_key in connection.execute(query):
            numbers.taken.add(number)
            if kind == issued and source_system == system:
                # Identifier keys are "<patient key>#<position>" (_finish_identifiers).
                numbers.previous[source_key.rpartition("#")[0]] = number
    return numbers


@dataclass
class Flags:
    """Loaded-and-flagged findings of a chunk: a row may carry several, one per check."""

    index: pd.Index
    frames: list[pd.DataFrame] = field(default_factory=list)

    def record(
        self, mask: pd.Series, check_name: str, reason: str, field: str | None, detail: pd.Series
    ) -> None:
        mask = mask.fillna(False).astype(bool)
        if mask.any():
            self.frames.append(
                pd.DataFrame(
                    {
                        "row": self.index[mask.to_numpy()],
                        "check_name": check_name,
                        "severity": "warning",
                        "field": field,
                        "reason": reason,
                        "detail": detail[mask].astype("string"),
                    }
                )
            )

    def frame(self, chunk: pd.DataFrame, loaded: pd.Series) -> pd.DataFrame:
        """Flags of the rows that load; a row quarantined for another reason carries none."""
        if not self.frames:
            return pd.DataFrame(columns=OUTCOME_COLUMNS)
        flags = pd.concat(self.frames, ignore_index=True)
        flags = flags[loaded.loc[flags["row"]].to_numpy()]
        result = pd.DataFrame(
            {
                ROW_NUMBER: chunk[ROW_NUMBER].loc[flags["row"]].to_numpy(),
                SOURCE_KEY: chunk[SOURCE_KEY].loc[flags["row"]].to_numpy(),
                "outcome": FLAGGED,
            }
        )
        for name in ("check_name", "severity", "field", "reason", "detail"):
            result[name] = flags[name].astype("string").to_numpy()
        return result[OUTCOME_COLUMNS]


@dataclass(frozen=True)
class ChunkResult:
    rows: pd.DataFrame
    outcomes: pd.DataFrame
    patient_identifiers: pd.DataFrame | None = None


def _source_columns(chunk: pd.DataFrame, mapping: EntityMapping) -> list[str]:
    return [c for c in mapping.source_columns() if c in chunk.columns]


def _record_source_problems(
    chunk: pd.DataFrame,
    mapping: EntityMapping,
    reference_keys: dict[str, pd.Index],
    duplicates: pd.DataFrame,
    outcomes: Outcomes,
) -> None:
    """Outcomes of the rows as they came from the source, before any column is mapped:
    unreadable, keyless, duplicate, excluded, undecodable, or referring to nothing."""
    if READ_ERROR in chunk.columns:
        unreadable = chunk[READ_ERROR].notna()
        outcomes.record(
            unreadable,
            QUARANTINED,
            "read",
            "unreadable_record",
            field=READ_ERROR,
            detail=chunk[READ_ERROR],
        )

    keyless = chunk[SOURCE_KEY].isna() | (chunk[SOURCE_KEY] == "")
    outcomes.record(keyless, QUARANTINED, "source_key", "missing_source_key", field=SOURCE_KEY)

    if len(duplicates):
        outcome_of_row = chunk[ROW_NUMBER].map(duplicates.set_index(ROW_NUMBER)["outcome"])
        outcomes.record(outcome_of_row == "merged", MERGED, "duplicate_row", "duplicate_row")
        outcomes.record(
            outcome_of_row == "duplicate_source_key",
            QUARANTINED,
            "unique_source_key",
            "duplicate_source_key",
            field=SOURCE_KEY,
        )

    for rule in mapping.exclude:
        matches = clean_text(chunk[rule.column]).str.upper().isin([v.upper() for v in rule.equals])
        outcomes.record(matches, EXCLUDED, f"exclude:{rule.rule}", rule.rule, field=rule.column)

    for source_column in _source_columns(chunk, mapping):
        if not may_contain(chunk[source_column], REPLACEMENT_CHARACTER):
            continue  # nothing to record: no value holds the replacement character
        undecodable = chunk[source_column].str.contains(REPLACEMENT_CHARACTER, regex=False)
        outcomes.record(
            undecodable, QUARANTINED, "decode", "undecodable_bytes", field=source_column
        )

    for reference in mapping.references:
        values = clean_text(chunk[reference.column])
        missing = values.notna() & ~is_in(values, reference_keys[reference.dataset])
        outcomes.record(
            missing,
            QUARANTINED,
            f"reference:{reference.dataset}",
            "unresolved_reference",
            field=reference.column,
        )


def transform_chunk(
    chunk: pd.DataFrame,
    mapping: EntityMapping,
    catalog: Catalog,
    batch_id: str,
    reference_date: dt.date,
    reference_keys: dict[str, pd.Index],
    duplicates: pd.DataFrame,
    lookups: dict[str, pd.Series] | None = None,
    reserve_numbers: ReserveNumbers | None = None,
    require_approved_codes: bool = False,
) -> ChunkResult:
    """Map one chunk of landed rows to core rows plus outcomes."""
    chunk = add_lookup_columns(chunk, mapping, lookups)
    chunk = chunk.reset_index(drop=True)
    outcomes = Outcomes(chunk.index)
    unapproved = catalog.proposed_codes if require_approved_codes else {}
    context = TransformContext(mapping.system, reference_date, catalog.crosswalks, unapproved)

    _record_source_problems(chunk, mapping, reference_keys, duplicates, outcomes)

    core = pd.DataFrame(index=chunk.index)
    identifier_frames = []
    if mapping.identifiers:
        core, identifier_frames = _identities(chunk, mapping, reference_date, outcomes, core)

    flags = Flags(chunk.index)
    model = ENTITIES[mapping.entity]
    for column in mapping.columns:
        source = chunk[column.source] if column.source else missing_text(chunk.index)
        result = REGISTRY[column.transform].function(source, column.parsed_args(), context)
        if column.safety is not None:
            core[column.target] = _fail_closed(column, source, result, outcomes, flags)
            continue
        outcomes.record(
            result.errors.notna(),
            QUARANTINED,
            f"transform:{column.transform}",
            reason=result.errors,
            field=column.source,
            detail=column.target,
        )
        if result.warnings is not None:
            for reason in result.warnings.dropna().unique():
                flags.record(
                    result.warnings == reason,
                    f"{reason}:{column.target}",
                    str(reason),
                    column.source,
                    pd.Series(column.target, index=chunk.index),
                )
        core[column.target] = result.values
        if column.target in model.coded_fields and column.source:
            _keep_source_code(core, chunk[column.source], column, mapping, result, outcomes)

    if mapping.identifiers:
        identifier_frames += _issue_reserve_numbers(
            chunk, mapping, outcomes, core, identifier_frames, reserve_numbers or ReserveNumbers()
        )
        core["birth_date"] = _birth_date_with_identity(core)

    keep = outcomes.is_open
    # _finish reads only the lineage columns: the rest of the chunk is not filtered.
    rows = _finish(core[keep], chunk[[SOURCE_KEY, ROW_NUMBER]][keep], mapping, batch_id)
    outcome_frame = outcomes.frame(chunk)
    flagged = flags.frame(chunk, keep)
    if len(flagged):
        outcome_frame = pd.concat([outcome_frame, flagged], ignore_index=True)
    identifiers_frame = None
    if identifier_frames:
        identifiers_frame = pd.concat(
            [f[keep[f.index]] for f in identifier_frames], ignore_index=True
        )
        identifiers_frame = _finish_identifiers(identifiers_frame, mapping.system, batch_id)
    return ChunkResult(rows, outcome_frame, identifiers_frame)


SOURCE_CODE_CHECK = "source_code_system"


def _keep_source_code(
    core: pd.DataFrame,
    source: pd.Series,
    column: ColumnMapping,
    mapping: EntityMapping,
    result: TransformResult,
    outcomes: Outcomes,
) -> None:
    """A coded column's legacy code (trimmed, as written) and the URI of its system, beside the
    target code; a code none of the declared systems recognises is ``invalid_code`` (a SNOMED CT
    id with a wrong check digit, say). A column whose system varies per row (an alert's code)
    also gets its target code's system."""
    written = clean_text(source)
    systems = column.source_code_systems(mapping.system)
    found = code_systems.systems_of(written, systems)
    names = ", ".join(system.name for system in systems)
    outcomes.record(
        written.notna() & found.isna(),
        QUARANTINED,
        f"{SOURCE_CODE_CHECK}:{column.target}",
        reason="invalid_code",
        field=column.source,
        detail=f"{column.target}: not a code of {names}",
    )
    core[code_systems.source_code_column(column.target)] = written
    core[code_systems.source_system_column(column.target)] = found
    coded = ENTITIES[mapping.entity].coded_fields[column.target]
    if coded.system_column:
        targets = column.target_code_systems(mapping.system)
        target_found = code_systems.systems_of(result.values.astype("string"), targets)
        outcomes.record(
            result.values.notna() & target_found.isna(),
            QUARANTINED,
            f"{SOURCE_CODE_CHECK}:{coded.system_column}",
            reason="invalid_code",
            field=column.source,
            detail=f"{column.target}: not a code of {', '.join(s.name for s in targets)}",
        )
        core[coded.system_column] = target_found


def _fail_closed(column, source, result, outcomes: Outcomes, flags: Flags) -> pd.Series:
    """A safety-critical field: an uncertain value quarantines the row or loads protective.

    Uncertain is missing, blank (unless the mapping declares what blank means in this source),
    unparsable or an unexpected code; the transform's own default never decides.
    """
    judged = safety.judge(source, result.values, result.errors, column.target, column.safety)
    check = f"{safety.SAFETY_CHECK}:{column.target}"
    detail = column.target + ": " + judged.detail
    if column.safety.on_uncertain is safety.OnUncertain.QUARANTINE:
        outcomes.record(
            judged.uncertain, QUARANTINED, check, reason=check, field=column.source, detail=detail
        )
    else:
        flags.record(judged.uncertain & outcomes.is_open, check, check, column.source, detail)
    return judged.values


def _identities(chunk, mapping, reference_date, outcomes, core):
    """Normalise every declared identity column; the first valid one is the primary identity.

    Only a Swedish number the patient really has (personnummer, samordningsnummer, VGR
    reservnummer) can be primary; legacy reserve numbers, interim numbers and foreign
    identifiers are kept as secondary ones. A patient without a primary identity is quarantined
    as ``missing_identity_number`` unless the mapping issues reserve numbers
    (:func:`_issue_reserve_numbers`, after the columns are mapped).
    """
    primary_number = missing_text(chunk.index)
    primary_kind = missing_text(chunk.index)
    primary_kinds = [kind.value for kind in identifiers.PRIMARY_KINDS]
    frames = []
    for position, declared in enumerate(mapping.identifiers):
        normalised = _normalise_declared_identifier(chunk, declared, reference_date)
        failed = normalised["error"].notna()
        outcomes.record(
            failed,
            QUARANTINED,
            "identity_number",
            "invalid_identity_number",
            field=declared.source,
            detail=normalised["error"],
        )
        is_primary = (
            primary_number.isna()
            & normalised["identity_number"].notna()
            & normalised["identity_kind"].isin(primary_kinds)
        ).fillna(False)
        primary_number = primary_number.mask(is_primary, normalised["identity_number"])
        primary_kind = primary_kind.mask(is_primary, normalised["identity_kind"])
        present = normalised["identity_number"].notna()
        frames.append(
            pd.DataFrame(
                {
                    "owner_key": chunk[SOURCE_KEY],
                    ROW_NUMBER: chunk[ROW_NUMBER],
                    "position": position,
                    "identity_number": normalised["identity_number"],
                    "identity_kind": normalised["identity_kind"],
                    "issuer_country": normalised["issuer_country"],
                    "is_primary": is_primary,
                }
            )[present]
        )
    if mapping.reserve.issue is ReserveIssue.NEVER:
        outcomes.record(
            primary_number.isna(),
            QUARANTINED,
            "identity_number",
            "missing_identity_number",
            field=",".join(i.source for i in mapping.identifiers),
        )
    core["identity_number"] = primary_number
    core["identity_kind"] = primary_kind
    return core, frames


def _normalise_declared_identifier(chunk, declared, reference_date) -> pd.DataFrame:
    """``identity_number``, ``identity_kind``, ``issuer_country`` and ``error`` of one column."""
    values = chunk[declared.source]
    if declared.kind is IdentifierOrigin.FOREIGN:
        issuer = (
            chunk[declared.issuer_source]
            if declared.issuer_source
            else pd.Series(declared.issuer, index=chunk.index, dtype="string")
        )
        normalised = identifiers.normalise_foreign_identifier(values, issuer)
        kind = identifiers.IdentityKind(f"foreign_{declared.document.value}").value
        normalised["identity_kind"] = pd.Series(kind, index=chunk.index, dtype="string").where(
            normalised["identity_number"].notna()
        )
        return normalised
    century = chunk[declared.century_source] if declared.century_source else None
    normalised = identifiers.normalise_identity(
        values,
        century=century,
        reference_date=reference_date,
        accept_legacy_reserve=declared.accept_legacy_reserve,
    )
    normalised["issuer_country"] = missing_text(chunk.index)
    return normalised


def _issue_reserve_numbers(chunk, mapping, outcomes, core, frames, reserve_numbers):
    """With ``reserve: {issue: region_scheme}``: a VGR reservnummer for each patient still open
    without a primary identity, from its system and source key (etl.identifiers), never one
    already in use in this batch. It becomes the primary identity and an identifier row of kind
    ``reservnummer_vgr_issued`` (the record of the issue, undone with the batch)."""
    # Only VGR-shaped numbers can collide with an issued one (the letter sets them apart).
    vgr = identifiers.IdentityKind.RESERVNUMMER_VGR.value
    for frame in frames:
        reserve_numbers.taken.update(frame.loc[frame["identity_kind"] == vgr, "identity_number"])
    if mapping.reserve.issue is ReserveIssue.NEVER:
        return []
    needed = (core["identity_number"].isna() & outcomes.is_open).to_numpy(dtype=bool)
    if not needed.any():
        return []
    sex = core["sex"] if "sex" in core.columns else pd.Series(pd.NA, index=core.index)
    issued = identifiers.issue_reservnummer(
        mapping.system,
        chunk.loc[needed, SOURCE_KEY],
        core.loc[needed, "birth_date"],
        sex[needed].astype("string"),
        taken=reserve_numbers.taken,  # read only: a copy per chunk grew with the entity
        previous=reserve_numbers.previous,
    )
    failed = pd.Series(False, index=core.index)
    failed[issued.index] = issued["error"].notna().to_numpy()
    reasons = missing_text(core.index)
    reasons[issued.index] = issued["error"]
    outcomes.record(
        failed,
        QUARANTINED,
        "identity_number",
        reasons,
        field=",".join(i.source for i in mapping.identifiers),
    )
    issued = issued[issued["identity_number"].notna()]
    reserve_numbers.taken.update(issued["identity_number"].tolist())
    kind = identifiers.IdentityKind.RESERVNUMMER_VGR_ISSUED.value
    core.loc[issued.index, "identity_number"] = issued["identity_number"]
    core.loc[issued.index, "identity_kind"] = kind
    return [
        pd.DataFrame(
            {
                "owner_key": chunk.loc[issued.index, SOURCE_KEY],
                ROW_NUMBER: chunk.loc[issued.index, ROW_NUMBER],
                # After the declared columns: "<patient key>#<number of declared identifiers>".
                "position": len(mapping.identifiers),
                "identity_number": issued["identity_number"],
                "identity_kind": kind,
                "issuer_country": missing_text(issued.index),
                "is_primary": True,
            }
        )
    ]


def _birth_date_with_identity(core: pd.DataFrame) -> pd.Series:
    """Settle a birth date's century, or fill a missing one, from the identity number.

    A ``YYMMDD`` birth date cannot say 1912 from 2012; when its year, month and day match the
    identity number's date part except for the century, the identity's century wins. A missing
    birth date takes the identity's date part. Otherwise the mapped birth date stands: since 2009
    the two may legitimately differ, and that is never an error.
    """
    from_identity = identifiers.birth_date_from_identity(
        core["identity_number"], core["identity_kind"]
    )
    if "birth_date" not in core.columns:
        return from_identity.dt.date.astype("object").where(from_identity.notna(), None)
    mapped = pd.to_datetime(core["birth_date"], errors="coerce")
    same_but_century = (
        (mapped.dt.year % 100 == from_identity.dt.year % 100)
        & (mapped.dt.month == from_identity.dt.month)
        & (mapped.dt.day == from_identity.dt.day)
        & (mapped.dt.year != from_identity.dt.year)
    ).fillna(False)
    settled = mapped.mask(same_but_century, from_identity).fillna(from_identity)
    return settled.dt.date.astype("object").where(settled.notna(), None)


def _finish(
    core: pd.DataFrame, chunk: pd.DataFrame, mapping: EntityMapping, batch_id: str
) -> pd.DataFrame:
    """The core rows: business fields (a field the mapping does not set takes the model's
    default), ids, lineage and content hash. Built as whole frames, not column by column: the
    per-column cost dominates a small chunk (a delta's few rows)."""
    model = ENTITIES[mapping.entity]
    business = model.business_fields()
    columns: dict[str, Any] = {}
    for name in business:
        if name in core.columns:
            columns[name] = core[name]
        else:
            default = model.model_fields[name].default
            columns[name] = getattr(default, "value", default)
    index = core.index
    fields = pd.DataFrame(columns, index=index)
    lineage = {
        model.id_field(): core_ids(mapping.system, mapping.entity, chunk[SOURCE_KEY]),
        "source_system": mapping.system,
        "source_key": chunk[SOURCE_KEY].astype("string"),
        "batch_id": batch_id,
        "content_hash": content_hashes(frame_as_text(fields)),
        ROW_NUMBER: chunk[ROW_NUMBER].to_numpy(),
    }
    rows = pd.concat([fields, pd.DataFrame(lineage, index=index)], axis=1)
    return rows.reset_index(drop=True)


def _finish_identifiers(frame: pd.DataFrame, system: str, batch_id: str) -> pd.DataFrame:
    keys = frame["owner_key"].astype("string") + "#" + frame["position"].astype("string")
    result = pd.DataFrame(
        {
            "patient_identifier_id": core_ids(system, "patient_identifier", keys),
            "patient_id": core_ids(system, "patient", frame["owner_key"]),
            "identity_number": frame["identity_number"],
            "identity_kind": frame["identity_kind"],
            "is_primary": frame["is_primary"].astype(bool),
            "issuer_country": frame["issuer_country"].astype("string"),
            ROW_NUMBER: frame[ROW_NUMBER].to_numpy(),
        }
    )
    result["source_system"] = system
    result["source_key"] = keys
    result["batch_id"] = batch_id
    hashed = ["patient_id", "identity_number", "identity_kind", "is_primary", "issuer_country"]
    result["content_hash"] = content_hashes(result[hashed].astype("string"))
    return result.reset_index(drop=True)


# Within ``shared_landed_inputs()`` (a run's transform stage in one process): the landed key
# and lookup columns read once for every entity that points at them, not once per entity. Keyed
# by the file, its size and mtime; a landed file is not changed after extract (transform
# refuses one whose digest differs), and the store is dropped when the block ends.
_shared_inputs: ContextVar[dict[tuple, Any] | None] = ContextVar("shared_inputs", default=None)


@contextmanager
def shared_landed_inputs() -> Iterator[None]:
    """Share the landed columns read by :func:`load_reference_keys` and :func:`load_lookups`
    between the entities transformed in this block (read-only objects; dropped at its end)."""
    token = _shared_inputs.set({})
    try:
        yield
    finally:
        _shared_inputs.reset(token)


def _read_once(read: Callable[..., Any], path: Path, *args: str) -> Any:
    """``read(path, *args)``, or within ``shared_landed_inputs()`` what it returned before for
    the same file (path, mtime, size) and arguments."""
    store = _shared_inputs.get()
    if store is None:
        return read(path, *args)
    stat = path.stat()
    key = (read.__name__, str(path.resolve()), stat.st_mtime_ns, stat.st_size, *args)
    if key not in store:
        store[key] = read(path, *args)
    return store[key]


def _lookup_values(path: Path, take: str) -> pd.Series:
    table = pq.read_table(path, columns=[SOURCE_KEY, take])
    frame = table.to_pandas().dropna(subset=[SOURCE_KEY]).drop_duplicates(SOURCE_KEY)
    return frame.set_index(SOURCE_KEY)[take]


def load_lookups(paths, mapping: EntityMapping) -> dict[str, pd.Series]:
    """Per lookup, the looked-up column by source key of its dataset (key and one column only)."""
    values = {}
    for lookup in mapping.lookups:
        path = paths.landed_file(lookup.dataset)
        values[lookup.as_] = _read_once(_lookup_values, path, lookup.take)
    return values


def add_lookup_columns(
    chunk: pd.DataFrame, mapping: EntityMapping, lookups: dict[str, pd.Series] | None
) -> pd.DataFrame:
    """The chunk with each lookup's virtual column (NA where the row points nowhere)."""
    if not mapping.lookups:
        return chunk
    chunk = chunk.copy()
    for lookup in mapping.lookups:
        found = (lookups or {}).get(lookup.as_)
        keys = clean_text(chunk[lookup.column])
        values = (
            keys.map(found).astype("string") if found is not None else missing_text(chunk.index)
        )
        if lookup.when_unlinked is not None:
            values = values.mask(keys.isna(), lookup.when_unlinked)
        chunk[lookup.as_] = values
    return chunk


def load_reference_keys(paths, mapping: EntityMapping) -> dict[str, pd.Index]:
    """Source keys of every dataset this mapping's references point at (keys only: small)."""
    keys = {}
    for reference in mapping.references:
        path = paths.landed_file(reference.dataset)
        keys[reference.dataset] = _read_once(_source_keys, path)
    return keys


def _source_keys(path: Path) -> pd.Index:
    table = pq.read_table(path, columns=[SOURCE_KEY])
    return pd.Index(table.column(SOURCE_KEY).to_pandas().dropna().unique())
