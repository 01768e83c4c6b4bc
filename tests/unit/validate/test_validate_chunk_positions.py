"""The validate stage's chunk bookkeeping by position gives what it gave by label.

- ``_checked_chunk`` takes failing rows through numpy masks by position; the reference is the
  way it did it before, ``rows.loc[mask, column]`` with pandas aligning every mask to the
  chunk's index. A chunk whose index is not ``0..n-1`` (shuffled labels) tells them apart.
- ``ValidatedRows`` reads back only the chunks it held: none when the first chunk already
  loses a row (it used to decode that chunk to find out it needed none).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.core.model import ENTITIES
from etl.extract.landing import ROW_NUMBER, SOURCE_KEY
from etl.settings import Settings
from etl.transform.engine import FLAGGED, OUTCOME_COLUMNS, QUARANTINED
from etl.transform.stage import outcomes_table
from etl.transform.vectorised import is_in
from etl.validate import stage
from etl.validate.stage import CheckTally, ValidatedRows, _checked_chunk
from etl.validate.suites import Failure
from tests.unit.validate.test_validate_fast_paths import (
    CHUNK,
    ENTITY,
    _chunk_masks,
    _same_file,
    _transformed,
)

pytestmark = pytest.mark.unit

ID = ENTITIES[ENTITY].id_field()


def _chunk(count: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            ID: pd.array([f"e-{n}" for n in range(count)], dtype="string"),
            "source_key": pd.array([f"k-{n}" for n in range(count)], dtype="string"),
            ROW_NUMBER: np.arange(1, count + 1, dtype="int64") * 3,
            "patient_id": pd.array([f"p-{n % 4}" for n in range(count)], dtype="string"),
        }
    )
    frame.index = pd.Index(rng.permutation(count) + 100)  # labels in no order, not positions
    return frame


def _failures(rows: pd.DataFrame, seed: int) -> list[Failure]:
    """Errors and warnings over overlapping rows, one error partly waived."""
    rng = np.random.default_rng(seed)
    ids = rows[ID].tolist()
    failures = []
    for number, severity in enumerate(["error", "warning", "error", "warning", "error"]):
        picked = [i for i in ids if rng.random() < 0.4]
        failures.append(
            Failure(
                f"{ENTITY}.check_{number}",
                "patient_id" if number % 2 else None,
                f"reason_{number}",
                severity,
                pd.Series(picked, dtype="string"),
                "validity",
            )
        )
    return failures


def _by_label(rows, source_of, waivers, tally, failures):
    """``_checked_chunk`` as it was: masks as Series on the chunk's index, rows by ``.loc``."""
    quarantined = pd.Series(False, index=rows.index)
    outcome_rows = []

    def frame(mask, outcome, failure, severity, waived):
        return pd.DataFrame(
            {
                ROW_NUMBER: rows.loc[mask, ROW_NUMBER],
                SOURCE_KEY: rows.loc[mask, "source_key"],
                "outcome": outcome,
                "check_name": failure.check_name,
                "severity": severity,
                "field": source_of.get(failure.column or "", failure.column),
                "reason": f"waived:{failure.reason}" if waived else failure.reason,
                "detail": pd.NA,
            }
        )

    for failure in failures:
        failing = is_in(rows[ID], failure.row_ids)
        waived = pd.Series(False, index=rows.index)
        if failure.severity == "error" and len(waivers):
            keys = waivers.loc[waivers["check_name"] == failure.check_name, "source_key"]
            waived = failing & is_in(rows["source_key"], keys)
        tally.add(
            failure.check_name,
            failure.severity,
            failure.dimension,
            int(failing.sum()),
            int(waived.sum()),
        )
        tally.add_rows(failure.check_name, rows.loc[failing, ROW_NUMBER], waived[failing])
        if failure.severity == "warning" or waived.any():
            flagged = failing if failure.severity == "warning" else waived
            outcome_rows.append(frame(flagged, FLAGGED, failure, "warning", waived.any()))
        if failure.severity == "warning":
            continue
        failing = failing & ~waived
        newly = failing & ~quarantined
        quarantined |= failing
        if newly.any():
            outcome_rows.append(frame(newly, QUARANTINED, failure, "error", False))
    outcomes = (
        pd.concat(outcome_rows, ignore_index=True)
        if outcome_rows
        else pd.DataFrame(columns=OUTCOME_COLUMNS)
    )
    if len(outcomes):
        gone = rows.loc[quarantined, ROW_NUMBER]
        outcomes = outcomes[
            (outcomes["outcome"] != FLAGGED) | ~outcomes[ROW_NUMBER].isin(gone)
        ].reset_index(drop=True)
    return quarantined, outcomes


@pytest.mark.parametrize("seed", range(6))
def test_checked_chunk_by_position_is_the_chunk_checked_by_label(monkeypatch, tmp_path, seed):
    rows = _chunk(40, seed)
    failures = _failures(rows, seed)
    monkeypatch.setattr(stage, "validate_chunk", lambda *_args: [])
    waivers = pd.DataFrame(
        {
            "source_key": pd.array([f"k-{n}" for n in range(0, 40, 3)], dtype="string"),
            "check_name": f"{ENTITY}.check_2",
        }
    )
    source_of = {"patient_id": "PATNR"}
    expected_tally, actual_tally = CheckTally(), CheckTally()
    expected_quarantined, expected = _by_label(rows, source_of, waivers, expected_tally, failures)
    quarantined, outcomes = _checked_chunk(
        Settings(home=tmp_path),
        ENTITY,
        rows,
        source_of,
        {},
        waivers,
        actual_tally,
        lambda _rows, _id_column: list(failures),
    )
    assert expected_quarantined.any() and (expected["outcome"] == FLAGGED).any()
    assert expected["reason"].str.startswith("waived:").any()
    pd.testing.assert_series_equal(quarantined, expected_quarantined)
    pd.testing.assert_frame_equal(outcomes, expected)
    assert outcomes_table(outcomes).equals(outcomes_table(expected))
    assert actual_tally.rows_table().equals(expected_tally.rows_table())
    assert actual_tally.records(len(rows)) == expected_tally.records(len(rows))


class _CountingFile:
    """A Parquet file that counts the batches read from it."""

    def __init__(self, path, counts: list[int]):
        self._file, self._counts = pq.ParquetFile(path, pre_buffer=False), counts
        counts.append(0)

    def iter_batches(self, **options):
        for batch in self._file.iter_batches(**options):
            self._counts[-1] += 1
            yield batch


@pytest.mark.parametrize(
    ("lost", "batches_read"),
    [
        ({0}, []),  # the first chunk loses a row: nothing held, the file is not read again
        ({5}, [1]),  # the second does: only the first chunk is read back
        ({13}, [3]),  # the fourth: the three before it
    ],
)
def test_only_the_held_chunks_are_read_again(monkeypatch, tmp_path, lost, batches_read):
    counts: list[int] = []
    monkeypatch.setattr(stage, "open_parquet", lambda path: _CountingFile(path, counts))
    actual = _same_file(tmp_path, 16, 4, _chunk_masks(16, lost))
    assert actual.num_rows == 16 - len(lost)
    assert counts == batches_read


def test_a_chunk_that_loses_every_row_after_held_chunks_writes_the_held_ones(tmp_path):
    transformed = _transformed(tmp_path, 8, 4)
    path = tmp_path / "new" / f"{ENTITY}.parquet"
    path.parent.mkdir()
    validated = ValidatedRows(transformed, path, ENTITY, CHUNK)
    for position, batch in enumerate(pq.ParquetFile(transformed).iter_batches(CHUNK)):
        table = pa.Table.from_batches([batch])
        rows = table.to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get)
        validated.write(rows, pd.Series(position == 1, index=rows.index), batch)
    validated.close()
    assert pq.read_table(path).column(ROW_NUMBER).to_pylist() == [1, 2, 3, 4]
