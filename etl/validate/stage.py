"""The validate stage for one entity of one batch: transformed rows in, loadable rows out.

Rows failing an error-severity expectation move to the outcomes (quarantined, never dropped);
warnings are counted and the row still loads.
"""

from __future__ import annotations

import itertools
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from etl.batch import BatchPaths, write_json
from etl.catalog import Catalog, EntityMapping
from etl.core.arrow import (
    iter_batches_and_frames,
    iter_frames,
    open_parquet,
    stage_schema,
    to_arrow,
)
from etl.core.files import private_file, temporaries_removed_on_failure, temporary_file
from etl.core.model import ENTITIES
from etl.extract.landing import ROW_NUMBER, SOURCE_KEY, read_manifest
from etl.settings import Settings
from etl.transform.engine import FLAGGED, OUTCOME_COLUMNS, QUARANTINED
from etl.transform.stage import (
    OUTCOME_SCHEMA,
    StageReport,
    StageWriter,
    count_outcomes,
    outcomes_table,
)
from etl.transform.vectorised import is_in
from etl.validate.checks import source_check, thresholds_for
from etl.validate.context import enrich
from etl.validate.order import declared_needs
from etl.validate.references import Reference, landed_ids, reference_failures
from etl.validate.suites import (
    read_suite_definition,
    suite_checks,
    suite_references,
    validate_chunk,
)

LOG = logging.getLogger(__name__)
FAILURES_SCHEMA = pa.schema(
    [(ROW_NUMBER, pa.int64()), ("check", pa.string()), ("is_waived", pa.bool_())]
)


@dataclass
class CheckTally:
    """Per check: rows evaluated, rows failing (every failing row, not only the first problem)."""

    severity: dict[str, str] = dataclass_field(default_factory=dict)
    dimension: dict[str, str | None] = dataclass_field(default_factory=dict)
    failed: dict[str, int] = dataclass_field(default_factory=dict)
    waived: dict[str, int] = dataclass_field(default_factory=dict)
    # Row numbers of every failing row per check (``failures_file``): what lets a wave's gate
    # judge its slice of a split system on its own rows (etl/validate/gate.py).
    # Kept as arrays per check (8 + 1 bytes a failing row) until the file is written.
    rows: dict[str, list[tuple[np.ndarray, np.ndarray]]] = dataclass_field(default_factory=dict)

    def add(self, check: str, severity: str, dimension: str | None, failed: int, waived: int):
        self.severity[check] = severity
        self.dimension[check] = dimension
        self.failed[check] = self.failed.get(check, 0) + failed
        self.waived[check] = self.waived.get(check, 0) + waived

    def add_rows(self, check: str, row_numbers: pd.Series, waived: pd.Series | bool) -> None:
        if len(row_numbers):
            flags = pd.Series(waived, index=row_numbers.index).to_numpy(bool)
            self.add_row_arrays(check, row_numbers.to_numpy("int64"), flags)

    def add_row_arrays(self, check: str, row_numbers: np.ndarray, waived: np.ndarray) -> None:
        """``add_rows`` of arrays already taken: row numbers and their waived flags."""
        if len(row_numbers):
            numbers = np.asarray(row_numbers, dtype="int64")
            self.rows.setdefault(check, []).append((numbers, np.asarray(waived, dtype=bool)))

    def rows_table(self) -> pa.Table:
        tables = [FAILURES_SCHEMA.empty_table()]
        for check, parts in sorted(self.rows.items()):
            numbers = np.concatenate([n for n, _ in parts])
            tables.append(
                pa.table(
                    {
                        ROW_NUMBER: pa.array(numbers, pa.int64()),
                        "check": pa.repeat(pa.scalar(check, pa.string()), len(numbers)),
                        "is_waived": pa.array(np.concatenate([w for _, w in parts]), pa.bool_()),
                    },
                    schema=FAILURES_SCHEMA,
                )
            )
        return pa.concat_tables(tables)

    def records(self, evaluated: int) -> list[dict]:
        return [
            {
                "check": check,
                "severity": self.severity[check],
                "dimension": self.dimension[check],
                "rows_evaluated": evaluated,
                "rows_failed": self.failed[check],
                "rows_waived": self.waived.get(check, 0),
            }
            for check in sorted(self.failed)
        ]


def _checked_chunk(
    settings: Settings,
    entity: str,
    rows: pd.DataFrame,
    source_of: dict[str, str],
    parameters: dict,
    waivers: pd.DataFrame,
    tally: CheckTally,
    references: Callable[[pd.DataFrame, str], list] | None = None,
) -> tuple[pd.Series, pd.DataFrame]:
    """Which rows of the chunk are quarantined (a boolean mask on its index), and its outcomes.

    Masks are numpy arrays by position (the chunk's index is unique: one row a position), and
    rows are taken from its columns' arrays through them: the same values in the same order as
    ``rows.loc[mask, column]``, without pandas aligning each mask to the index first."""
    id_column = ENTITIES[entity].id_field()
    failures = validate_chunk(settings.expectations_dir, entity, rows, id_column, parameters)
    if references is not None:
        failures += references(rows, id_column)
    columns = _ChunkColumns(rows)
    quarantined = np.zeros(len(rows), dtype=bool)
    outcome_rows = []
    for failure in failures:
        failing = is_in(rows[id_column], failure.row_ids).to_numpy(bool)
        waived = np.zeros(len(rows), dtype=bool)
        if failure.severity == "error" and len(waivers):
            keys = waivers.loc[waivers["check_name"] == failure.check_name, "source_key"]
            waived = failing & is_in(rows["source_key"], keys).to_numpy(bool)
        is_waived = bool(waived.any())
        tally.add(
            failure.check_name,
            failure.severity,
            failure.dimension,
            int(failing.sum()),
            int(waived.sum()),
        )
        tally.add_row_arrays(failure.check_name, columns.row_numbers[failing], waived[failing])
        if failure.severity == "warning" or is_waived:
            # Loaded, and flagged for review: a warning, or an error a steward waived.
            flagged = failing if failure.severity == "warning" else waived
            outcome_rows.append(
                _outcome_frame(columns, flagged, FLAGGED, failure, source_of, "warning", is_waived)
            )
        if failure.severity == "warning":
            continue
        failing = failing & ~waived
        newly = failing & ~quarantined
        quarantined |= failing
        if newly.any():
            outcome_rows.append(
                _outcome_frame(columns, newly, QUARANTINED, failure, source_of, "error", False)
            )
    outcomes = (
        pd.concat(outcome_rows, ignore_index=True)
        if outcome_rows
        else pd.DataFrame(columns=OUTCOME_COLUMNS)
    )
    # A row both flagged and quarantined is quarantined: it is not loaded, so no flag.
    if len(outcomes):
        gone = rows.loc[quarantined, ROW_NUMBER]
        outcomes = outcomes[
            (outcomes["outcome"] != FLAGGED) | ~outcomes[ROW_NUMBER].isin(gone)
        ].reset_index(drop=True)
    return pd.Series(quarantined, index=rows.index), outcomes


class _ChunkColumns:
    """The chunk's row numbers and source keys as arrays (numpy, or pandas' own extension
    array), taken by a positional mask: ``rows.loc[mask, column]``'s values and dtype."""

    def __init__(self, rows: pd.DataFrame):
        self.row_numbers = rows[ROW_NUMBER].array
        self.source_keys = rows["source_key"].array

    def outcome_columns(self, mask: np.ndarray) -> dict:
        return {ROW_NUMBER: self.row_numbers[mask], SOURCE_KEY: self.source_keys[mask]}


class ValidatedRows:
    """The validated rows file. A chunk that loses no row, and whose rows convert back to exactly
    the batch read from the transformed file, is held back (not encoded); if every chunk is, the
    transformed file is copied as it is.

    Re-encoding every row of an entity that quarantined none was a fifth of the stage (Parquet
    encoding). The copy holds the table the old way wrote: each chunk converted back
    (``to_arrow``) was checked equal to the file's own batch, and the file's schema is the stage
    schema, metadata included. Once a chunk loses a row (or converts differently), the held
    chunks are read again and written first, then every chunk as before.
    """

    def __init__(self, transformed: Path, path: Path, entity: str, chunk_rows: int):
        self._transformed, self._path, self._entity = transformed, path, entity
        self._chunk_rows = chunk_rows
        self._schema = stage_schema(entity)
        self._writer: StageWriter | None = None
        self._held = 0  # chunks validated whole, equal to the file's batches, not written yet

    def write(self, rows: pd.DataFrame, quarantined: pd.Series, read: pa.RecordBatch) -> None:
        """The chunk's rows but those ``quarantined`` (a boolean mask on its index); ``read`` is
        the batch of the transformed file the chunk was converted from."""
        is_quarantined = quarantined.to_numpy(bool)
        if len(rows) == read.num_rows and converts_back_exactly(read, self._schema):
            # ``rows`` is ``read`` converted (``iter_batches_and_frames``), context columns
            # added and none changed: converting them back gives ``read`` itself.
            table = pa.Table.from_batches([read])
        else:
            table = to_arrow(rows, self._entity)
        if self._writer is None:
            if not is_quarantined.any() and table.equals(pa.Table.from_batches([read])):
                self._held += 1
                return
            self._writer = self._writer_with_held_rows()
        # Filtered in Arrow: the same table as converting the filtered frame, without pandas
        # taking every column, context ones included.
        self._writer.write("rows", table.filter(pa.array(~is_quarantined)))

    def close(self) -> None:
        if self._writer is None and self._is_copyable():
            temporary = temporary_file(self._path.with_suffix(".parquet.tmp"))
            shutil.copyfile(self._transformed, temporary)
            temporary.replace(self._path)
            private_file(self._path)
            return
        (self._writer or self._writer_with_held_rows()).close()

    def _writer_with_held_rows(self) -> StageWriter:
        """A writer with the held chunks written: the file's batches, each checked equal to what
        the old way converted and wrote."""
        writer = StageWriter({"rows": (self._path, self._schema)})
        if self._held:
            # Only the held batches are read: stopping at the batch after them decoded a whole
            # chunk for nothing (every chunk of the file when the first one lost a row).
            source = open_parquet(self._transformed)
            batches = source.iter_batches(batch_size=self._chunk_rows)
            for batch in itertools.islice(batches, self._held):
                writer.write("rows", pa.Table.from_batches([batch]))
        self._held = 0
        return writer

    def _is_copyable(self) -> bool:
        return pq.read_schema(self._transformed).equals(self._schema, check_metadata=True)


_EXACT_INTEGER = 2**53  # float64 holds every integer up to here


def converts_back_exactly(read: pa.RecordBatch, schema: pa.Schema) -> bool:
    """Whether ``to_arrow`` of the frame ``iter_batches_and_frames`` converts ``read`` to is
    ``read`` again, value for value (both with the stage ``schema``). By type, as pandas and
    pyarrow convert there and back: text (pandas' Arrow-backed strings), booleans (object with
    None when missing), dates (``datetime.date`` objects) and UTC microsecond timestamps
    (``datetime64[us, UTC]``) always; integers when none is missing or all fit a float64 (a
    missing one makes the column float64); floats when none is NaN (pandas' missing value,
    converted back as a null). Any other type, or a schema other than the stage's: no, and the
    frame is converted back as before."""
    if not read.schema.equals(schema, check_metadata=False):
        return False
    for column in read.columns:
        kind = column.type
        if kind in _ALWAYS_EXACT:
            continue
        if kind == pa.int64():
            if column.null_count == 0:
                continue
            bounds = pc.min_max(column)
            low, high = bounds["min"].as_py(), bounds["max"].as_py()
            if low is None or (low >= -_EXACT_INTEGER and high <= _EXACT_INTEGER):
                continue
            return False
        if kind == pa.float64():
            if not pc.any(pc.is_nan(column)).as_py():
                continue
            return False
        return False
    return True


_ALWAYS_EXACT = (
    pa.string(),
    pa.bool_(),
    pa.date32(),
    pa.timestamp("us", tz="UTC"),
)


def _outcome_frame(
    columns: _ChunkColumns, mask: np.ndarray, outcome, failure, source_of, severity, waived
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            **columns.outcome_columns(mask),
            "outcome": outcome,
            "check_name": failure.check_name,
            "severity": severity,
            "field": source_of.get(failure.column or "", failure.column),
            "reason": f"waived:{failure.reason}" if waived else failure.reason,
            "detail": pd.NA,
        }
    )


def checks_file(paths: BatchPaths, entity: str) -> Path:
    return paths.validated / f"{entity}.checks.json"


def failures_file(paths: BatchPaths, entity: str) -> Path:
    """Every failing row of every check (row number, check, waived): counts' row-level twin."""
    return paths.validated / f"{entity}.failures.parquet"


@temporaries_removed_on_failure()
def validate_entity(
    catalog: Catalog,
    system: str,
    entity: str,
    batch_id: str,
    settings: Settings,
    waivers: pd.DataFrame,
) -> StageReport:
    """Run the entity's suite chunk by chunk; carry the transform outcomes forward.

    ``waivers`` are the stewards' current waivers of the entity's source dataset (columns
    ``source_key`` and ``check_name``; ``etl.core.decisions.waived_keys``): validation applies
    them but does not look them up, so it depends on no steward code or decision store."""
    paths = BatchPaths.of(settings, batch_id, system)
    transformed = paths.stage_file("transformed", entity)
    mapping = catalog.system(system).entities[entity]
    # Stewards fix data at source: name the legacy column behind a failing core field.
    source_of = {c.target: ",".join(c.source_columns) for c in mapping.columns if c.source_columns}
    manifest = read_manifest(settings, batch_id, system)
    parameters = {"as_of_date": manifest.as_of_date.isoformat()}
    suite_meta = read_suite_definition(settings.expectations_dir, entity).get("meta") or {}
    references = suite_references(settings.expectations_dir, entity)
    _refuse_before_needs(catalog, system, entity, batch_id, paths, suite_meta)
    check_references = _reference_checker(catalog, system, paths, references, settings)
    writer = StageWriter(
        {"outcomes": (paths.stage_file("validated", entity, "outcomes"), OUTCOME_SCHEMA)}
    )
    validated_rows = ValidatedRows(
        transformed, paths.stage_file("validated", entity), entity, settings.chunk_rows
    )
    rows_in = rows_out = 0
    outcome_frames = []
    tally = CheckTally()
    quarantined_ids: list[pd.Series] = []
    id_column = ENTITIES[entity].id_field()
    for read, rows in iter_batches_and_frames(transformed, settings.chunk_rows):
        rows = enrich(
            paths, rows, suite_meta, settings.resolved_core_url, settings.mappings_dir, system
        )
        quarantined, outcomes = _checked_chunk(
            settings, entity, rows, source_of, parameters, waivers, tally, check_references
        )
        validated_rows.write(rows, quarantined, read)
        _write_outcomes(writer, outcomes)
        quarantined_ids.append(rows.loc[quarantined, id_column])
        outcome_frames.append(outcomes[[ROW_NUMBER, "outcome", "reason", "field"]])
        rows_in += len(rows)
        rows_out += len(rows) - int(quarantined.sum())
        del read, rows, quarantined, outcomes  # one chunk alive at a time, not two
    transform_problems = _carry_transform_outcomes(
        paths, entity, settings.chunk_rows, writer, outcome_frames, tally
    )
    writer.close()
    validated_rows.close()
    pq.write_table(tally.rows_table(), failures_file(paths, entity))
    private_file(failures_file(paths, entity))
    # Fresh output: any steward deferral is applied anew by the gate, from these files.
    discard_deferral(paths, entity)
    if mapping.identifiers:
        _validate_identifiers(
            settings,
            paths,
            pd.concat(quarantined_ids) if quarantined_ids else pd.Series(dtype="string"),
        )
    source = catalog.system(system).spec.datasets[mapping.dataset].source_name
    log_problem_rows(system, source, outcome_frames)
    counts = count_outcomes(outcome_frames)
    # A delta batch is judged on its own rows (new, changed, dependent), not the snapshot.
    landed_rows = manifest.datasets[mapping.dataset].extracted
    checks = _transform_checks(transform_problems, landed_rows) + tally.records(rows_in)
    _write_checks(paths, system, mapping, batch_id, checks, rows_in, settings)
    return StageReport(
        system=system,
        entity=entity,
        batch_id=batch_id,
        rows_in=rows_in,
        rows_out=rows_out,
        outcomes=counts,
    )


def _reference_checker(
    catalog: Catalog,
    system: str,
    paths: BatchPaths,
    references: list,
    settings: Settings,
) -> Callable[[pd.DataFrame, str], list]:
    """The check of a chunk's references (``reference_failures``): each against the core and
    the batch's landed rows of the entity it points at, under that check's threshold rule."""
    thresholds = thresholds_for(settings.expectations_dir)
    entities = catalog.system(system).entities

    def in_landing(reference: Reference, ids: set[str]) -> set[str]:
        if reference.target not in entities:
            return set()
        landed = paths.landed_file(entities[reference.target].dataset)
        return landed_ids(landed, system, reference.target, ids, settings.chunk_rows)

    def check_references(rows: pd.DataFrame, id_column: str) -> list:
        return reference_failures(
            paths,
            rows,
            references,
            id_column,
            settings.resolved_core_url,
            lambda check: thresholds.rule_for(check, system),
            in_landing,
            system,
        )

    return check_references


def _transform_checks(problems: dict[str, int], rows_evaluated: int) -> list[dict]:
    """The transform's reasons as checks the gate judges: errors, out of the landed rows."""
    return [
        {
            "check": source_check(reason),
            "severity": "error",
            "dimension": None,
            "rows_evaluated": rows_evaluated,
            "rows_failed": number,
            "rows_waived": 0,
        }
        for reason, number in sorted(problems.items())
    ]


def _write_checks(
    paths: BatchPaths,
    system: str,
    mapping: EntityMapping,
    batch_id: str,
    checks: list[dict],
    rows_validated: int,
    settings: Settings,
) -> None:
    """The entity's checks and their counts (``checks_file``), which the gate judges."""
    write_json(
        checks_file(paths, mapping.entity),
        {
            "system": system,
            "entity": mapping.entity,
            "dataset": mapping.dataset,
            "batch_id": batch_id,
            "checks": checks,
            "suite_checks": suite_checks(settings.expectations_dir, mapping.entity),
            "rows_validated": rows_validated,
        },
    )


def _refuse_before_needs(
    catalog: Catalog,
    system: str,
    entity: str,
    batch_id: str,
    paths: BatchPaths,
    suite_meta: dict,
) -> None:
    """Refuse to validate ``entity`` before the entities its suite checks it against (its
    declared needs) are transformed: validating first would silently skip those checks."""
    for related in declared_needs(suite_meta):
        if (
            related in catalog.system(system).entities
            and not paths.stage_file("transformed", related).exists()
        ):
            raise RuntimeError(
                f"{system} batch {batch_id}: {entity} is checked against the batch's {related} "
                f"rows, which are not transformed yet; transform {related} before validating "
                f"{entity} (run_system and the DAGs do)"
            )


def _carry_transform_outcomes(
    paths: BatchPaths,
    entity: str,
    chunk_rows: int,
    writer: StageWriter,
    outcome_frames: list[pd.DataFrame],
    tally: CheckTally,
) -> dict[str, int]:
    """The transform's outcomes carried into the validated ones (written, added to
    ``outcome_frames`` and ``tally``); returns the rows each transform reason quarantined or
    flagged. Flagged while mapping (a safety field set protective, a DST time read by its
    declared rule) counts too: a systematic fault must reach the gate, not only the steward
    queue."""
    transform_problems: dict[str, int] = {}
    for transform_outcomes in iter_frames(
        paths.stage_file("transformed", entity, "outcomes"), chunk_rows
    ):
        _write_outcomes(writer, transform_outcomes)
        outcome_frames.append(transform_outcomes[[ROW_NUMBER, "outcome", "reason", "field"]])
        problem_rows = transform_outcomes["outcome"].isin([QUARANTINED, FLAGGED])
        for reason, number in transform_outcomes.loc[problem_rows, "reason"].value_counts().items():
            transform_problems[str(reason)] = transform_problems.get(str(reason), 0) + int(number)
        for reason, rows_of in transform_outcomes[problem_rows].groupby("reason"):
            tally.add_rows(source_check(str(reason)), rows_of[ROW_NUMBER], False)
    return transform_problems


def _write_outcomes(writer: StageWriter, outcomes: pd.DataFrame) -> None:
    """An empty frame writes nothing (``StageWriter.write``): not converted either."""
    if len(outcomes):
        writer.write("outcomes", outcomes_table(outcomes))


def log_problem_rows(
    system: str, source: str, frames: list[pd.DataFrame], examples: int = 5
) -> None:
    """One readable line per reason and field: which rows, and what to do. No values, ever."""
    problems = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if problems.empty:
        return
    for (outcome, reason, field), group in problems.groupby(
        ["outcome", "reason", "field"], dropna=False, sort=True
    ):
        rows = ", ".join(str(n) for n in group[ROW_NUMBER].head(examples))
        more = f" and {len(group) - examples} more" if len(group) > examples else ""
        advice = {
            QUARANTINED: "review with `vardflytt steward list`; fix at source and re-run the batch",
            FLAGGED: "loaded and flagged for review (`vardflytt steward list --flagged`)",
        }.get(cast(str, outcome), "by design (declared rule or exact duplicate)")
        LOG.warning(
            "%s %s: %d row(s) %s, reason %s, field %s, rows %s%s; %s",
            system,
            source,
            len(group),
            outcome,
            reason,
            field,
            rows,
            more,
            advice,
        )


def _validate_identifiers(
    settings: Settings, paths: BatchPaths, quarantined_patient_ids: pd.Series
) -> None:
    """Identifiers follow their patient: only those of loadable patients go on."""
    entity = "patient_identifier"
    transformed = paths.stage_file("transformed", entity)
    writer = ValidatedRows(
        transformed, paths.stage_file("validated", entity), entity, settings.chunk_rows
    )
    for read, chunk in iter_batches_and_frames(transformed, settings.chunk_rows):
        left_out = is_in(chunk["patient_id"], quarantined_patient_ids)
        rows = chunk[~left_out]
        failures = validate_chunk(settings.expectations_dir, entity, rows, "patient_identifier_id")
        failing_ids = [f.row_ids for f in failures if f.severity == "error"]
        if failing_ids:
            # An identifier failing its checks after its patient passed is a mapping bug: stop.
            raise RuntimeError(
                f"{paths.root}: {sum(len(ids) for ids in failing_ids)} patient identifier rows "
                "fail their suite although their patients passed; check the patient mapping"
            )
        writer.write(chunk, left_out, read)
    writer.close()


# --- entity deferral (a steward's decision to promote the system without one entity) ----------

DEFERRED_REASON = "entity_deferred"
_BEFORE_DEFERRAL = "before_deferral"
# Parquet metadata key marking a delta's deletions file as rewritten by a deferral.
_DEFERRED_METADATA = b"vardflytt_deferred_entities"


def _deletions(paths: BatchPaths) -> Path:
    """A delta's deletions (written by etl/extract/delta.py at extract time)."""
    return paths.validated / "deletions.parquet"


def _restore_deletions(paths: BatchPaths) -> None:
    """Put back the extract's deletions, unless a re-extract has written newer ones since."""
    deletions, kept = _deletions(paths), _kept(_deletions(paths))
    if not kept.exists():
        return
    if deletions.exists() and _DEFERRED_METADATA not in (pq.read_schema(deletions).metadata or {}):
        kept.unlink()
        return
    kept.replace(deletions)


def deferred_check(entity: str) -> str:
    """The check id a deferred entity's rows are quarantined under (never waivable)."""
    return f"{entity}.{DEFERRED_REASON}"


def _deferral_files(paths: BatchPaths, entity: str) -> list[Path]:
    files = [
        paths.stage_file("validated", entity),
        paths.stage_file("validated", entity, "outcomes"),
    ]
    if entity == "patient":
        # Identifiers follow their patient: none of them load while the patients are deferred.
        files.append(paths.stage_file("validated", "patient_identifier"))
    return files


def _kept(path: Path) -> Path:
    """Where the validate stage's own output waits while a deferral replaces it."""
    return path.with_name(f"{path.stem}.{_BEFORE_DEFERRAL}{path.suffix}")


def _restore(path: Path) -> None:
    kept = _kept(path)
    if kept.exists():
        kept.replace(path)


def discard_deferral(paths: BatchPaths, entity: str) -> None:
    """Forget a deferral's kept files: the validate stage is about to write fresh ones."""
    for path in _deferral_files(paths, entity):
        _kept(path).unlink(missing_ok=True)
    _restore_deletions(paths)


def lift_deferral(paths: BatchPaths, entity: str) -> None:
    """Put the validate stage's output back (the deferral was undone); idempotent."""
    for path in _deferral_files(paths, entity):
        _restore(path)
    _restore_deletions(paths)


def apply_deferral(paths: BatchPaths, entity: str, entities: list[str], chunk_rows: int) -> int:
    """Quarantine every loadable row of ``entity`` with reason ``entity_deferred``; idempotent.

    The validate stage's files are kept beside (``*.before_deferral.parquet``) so that undoing the
    decision restores them exactly. Rows the suite already quarantined keep their own reason;
    flags are dropped, since a deferred row is not loaded. ``entities`` are all the deferred
    entities of the batch (a delta's deletions of them are not promoted either). Returns the
    number of rows deferred.
    """
    files = _deferral_files(paths, entity)
    for path in files:
        if path.exists() and not _kept(path).exists():
            path.replace(_kept(path))
    rows_path, outcomes_path = files[0], files[1]
    writer = StageWriter(
        {
            "rows": (rows_path, stage_schema(entity)),
            "outcomes": (outcomes_path, OUTCOME_SCHEMA),
        }
    )
    deferred = 0
    for rows in iter_frames(_kept(rows_path), chunk_rows):
        writer.write(
            "outcomes",
            outcomes_table(
                pd.DataFrame(
                    {
                        ROW_NUMBER: rows[ROW_NUMBER].astype("int64"),
                        SOURCE_KEY: rows["source_key"].astype("string"),
                        "outcome": QUARANTINED,
                        "check_name": deferred_check(entity),
                        "severity": "error",
                        "field": pd.NA,
                        "reason": DEFERRED_REASON,
                        "detail": pd.NA,
                    }
                )
            ),
        )
        deferred += len(rows)
    for outcomes in iter_frames(_kept(outcomes_path), chunk_rows):
        writer.write("outcomes", outcomes_table(outcomes[outcomes["outcome"] != FLAGGED]))
    writer.close()
    if entity == "patient" and _kept(files[2]).exists():
        identifiers = StageWriter({"rows": (files[2], stage_schema("patient_identifier"))})
        identifiers.close()
    _restore_deletions(paths)
    deletions = _deletions(paths)
    if deletions.exists():
        deletions.replace(_kept(deletions))
        table = pq.read_table(_kept(deletions))
        keep = pc.invert(pc.is_in(table.column("entity"), value_set=pa.array(entities)))
        marked = table.filter(keep).replace_schema_metadata(
            {**(table.schema.metadata or {}), _DEFERRED_METADATA: ",".join(entities).encode()}
        )
        pq.write_table(marked, deletions)
        private_file(deletions)
    return deferred
