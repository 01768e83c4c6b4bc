"""A system's validation beside another system's first promotion (etl/core/batch_states.py's
``has_promoted``): references by core id and patient context are looked up in the core only
once a batch of the validated system is promoted, so the validation neither waits for a core
table that another system's promotion holds exclusively until it commits, nor finds rows there
before its own system has any; once the system's batch is promoted, its core rows are found."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from etl.batch import BatchPaths
from etl.core.batch_states import PROMOTED, ROLLED_BACK, STAGED, SUPERSEDED, has_promoted
from etl.core.database import core_engine
from etl.core.tables import ENTITY_TABLES, promotion
from etl.validate.context import enrich
from etl.validate.references import Reference, unresolved

pytestmark = pytest.mark.integration

PATIENT = Reference("encounter", "patient_id", "patient", "patient_id")
UNIT_HSA = Reference("encounter", "care_unit_hsa_id", "care_unit", "hsa_id")
CONTEXT = {"context": {"patient": ["birth_date", "deceased_date"]}}
# Long enough for any lookup on a loaded machine; a lookup that waits for the lock never ends.
PATIENCE_SECONDS = 20


def _patient(patient_id: str, system: str) -> dict:
    row = dict.fromkeys(c.name for c in ENTITY_TABLES["patient"].columns)
    row.update(
        patient_id=patient_id,
        source_system=system,
        source_key=patient_id,
        batch_id=f"{system}-b1",
        content_hash="h",
        protected_identity="none",
        birth_date=pd.Timestamp("1950-01-02").date(),
    )
    return row


def _promotion(connection: sa.Connection, system: str, state: str, batch: str = "b1") -> None:
    connection.execute(
        promotion.insert().values(
            batch_id=f"{system}-{batch}", source_system=system, kind="full", state=state
        )
    )


@pytest.fixture
def batch(tmp_path) -> BatchPaths:
    """Melior's batch: nothing transformed of the targets (every key is asked of the core)."""
    paths = BatchPaths(tmp_path / "landing" / "b1" / "melior")
    path = paths.stage_file("transformed", "patient")
    path.parent.mkdir(parents=True)
    empty = {
        "patient_id": pa.array([], pa.string()),
        "birth_date": pa.array([], pa.date32()),
        "deceased_date": pa.array([], pa.date32()),
    }
    pq.write_table(pa.table(empty), path)
    return paths


def _beside_a_held_table(url: str, table: str, work, wait: float = PATIENCE_SECONDS):
    """``work()`` in a thread while another session holds ``table`` as a first promotion does
    (etl/load/direct.py); returns ``(answered in time, the answer)``. The lock is released
    before the thread is joined, so a lookup that waits for it ends either way."""
    engine = sa.create_engine(url)
    pool = ThreadPoolExecutor(1)
    try:
        with engine.connect() as connection, connection.begin() as transaction:
            connection.exec_driver_sql(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
            future = pool.submit(work)
            try:
                future.result(timeout=wait)
                in_time = True
            except TimeoutError:
                in_time = False
            transaction.rollback()
        return in_time, future.result(timeout=PATIENCE_SECONDS)
    finally:
        pool.shutdown(wait=True)
        engine.dispose()


@pytest.mark.postgres
def test_a_systems_first_validation_does_not_wait_for_another_systems_promotion(
    postgres_url, batch
):
    """ELVIS's first promotion holds ``patient`` exclusively; Melior, never promoted, validates
    its encounters' patient references and patient context meanwhile: neither waits, and no id
    resolves in the core (it holds none of Melior's)."""
    values = pd.Series(["p1", "p2", None])
    rows = pd.DataFrame({"patient_id": ["p1", "p2"]})
    in_time, failing = _beside_a_held_table(
        postgres_url,
        "patient",
        lambda: unresolved(batch, PATIENT, values, postgres_url, system="melior"),
    )
    assert in_time, f"the reference lookup waited {PATIENCE_SECONDS} s for the held table"
    assert failing.tolist() == [True, True, False]
    in_time, enriched = _beside_a_held_table(
        postgres_url,
        "patient",
        lambda: enrich(batch, rows.copy(), CONTEXT, postgres_url, system="melior"),
    )
    assert in_time, f"the context lookup waited {PATIENCE_SECONDS} s for the held table"
    assert enriched["patient__birth_date"].isna().all()


@pytest.mark.postgres
def test_without_the_system_a_held_table_is_still_waited_for(postgres_url, batch):
    """The control: asked without knowing whose rows they are, the lookup reads the table and so
    waits for the lock (which is why the stages pass the system)."""
    values = pd.Series(["p1"])
    in_time, failing = _beside_a_held_table(
        postgres_url,
        "patient",
        lambda: unresolved(batch, PATIENT, values, postgres_url),
        wait=1.5,
    )
    assert not in_time
    assert failing.tolist() == [True]


def test_a_systems_core_rows_are_found_once_a_batch_of_it_is_promoted(core_url, batch):
    """Staged, superseded or rolled-back batches put nothing in the core: the lookup starts
    with the first promoted one (and a natural key, an HSA-id, is asked of the core always)."""
    engine = core_engine(core_url)
    with engine.begin() as connection:
        connection.execute(ENTITY_TABLES["patient"].insert(), [_patient("p1", "melior")])
        for number, state in enumerate((STAGED, SUPERSEDED, ROLLED_BACK)):
            _promotion(connection, "melior", state, f"b{number + 2}")
        _promotion(connection, "elvis", PROMOTED)
        assert not has_promoted(connection, "melior")
        assert has_promoted(connection, "elvis")
    values = pd.Series(["p1", "p9"])
    assert unresolved(batch, PATIENT, values, core_url, system="melior").tolist() == [True, True]
    with engine.begin() as connection:
        _promotion(connection, "melior", PROMOTED)
        assert has_promoted(connection, "melior")
    assert unresolved(batch, PATIENT, values, core_url, system="melior").tolist() == [False, True]
    rows = pd.DataFrame({"patient_id": ["p1", "p9"]})
    enriched = enrich(batch, rows, CONTEXT, core_url, system="melior")
    assert enriched["patient__birth_date"].notna().tolist() == [True, False]


def test_a_natural_key_is_looked_up_in_every_systems_rows(core_url, batch):
    """An HSA-id resolves against care units any system promoted, even before the validated
    system's first promotion."""
    unit = dict.fromkeys(c.name for c in ENTITY_TABLES["care_unit"].columns)
    unit.update(
        care_unit_id="u1",
        hsa_id="SE2321000131-E000000000001",
        source_system="elvis",
        source_key="u1",
        batch_id="elvis-b1",
        content_hash="h",
    )
    with core_engine(core_url).begin() as connection:
        connection.execute(ENTITY_TABLES["care_unit"].insert(), [unit])
        _promotion(connection, "elvis", PROMOTED)
    values = pd.Series(["SE2321000131-E000000000001", "SE2321000131-E000000000009"])
    assert unresolved(batch, UNIT_HSA, values, core_url, system="melior").tolist() == [
        False,
        True,
    ]
