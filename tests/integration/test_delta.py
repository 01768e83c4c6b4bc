"""Delta loads end to end, on SQLite and on the real PostgreSQL.

Per database, once (module scope): ELVIS and Melior fully loaded from a copy of the small
estate, then days of legacy activity simulated on the copy (etl.estate.activity), then one
delta batch per system. The tests hold the core against ``activity.csv``: every new row is there,
every changed row is updated, every deleted row is gone, and nothing else moved; the delta's
accounting balances; the reservnummer patient is linked to their personnummer. The last test
re-runs the deltas (nothing changes) and rolls them back (the core is the full load again, to the
checksum).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from etl import pipeline
from etl.batch import BatchPaths
from etl.core.database import core_engine
from etl.core.ids import core_ids
from etl.core.model import ENTITIES
from etl.core.tables import ENTITY_TABLES, source_watermark
from etl.estate.activity import ACTIVITY_FILE, simulate_activity
from etl.extract.delta import NoBaseBatchError, delta_file
from etl.identifiers import IdentityKind
from etl.load.loader import LoadReport, rewind_watermarks
from etl.load.promote import core_checksums, rollback
from etl.settings import Settings
from tests.core_fingerprint import core_fingerprint
from tests.cores import BOTH_CORES
from tests.integration.defects import estate_copy_home

pytestmark = pytest.mark.integration

SYSTEMS = ("elvis", "melior")
FULL_AS_OF = dt.date(2026, 7, 1)
DELTA_AS_OF = dt.date(2026, 7, 15)  # after the week of activity that follows the extract date
ACTIVITY_SEED = 11
PERSONNUMMER, RESERVNUMMER = IdentityKind.PERSONNUMMER, IdentityKind.RESERVNUMMER_VGR


def _full(system: str) -> str:
    return f"full-{system}"


def _delta(system: str) -> str:
    return f"delta-{system}"


@dataclass(frozen=True)
class Migrated:
    settings: Settings
    estate: Path
    activity: pd.DataFrame
    before: dict[str, pd.DataFrame]  # core rows after the full loads, per entity, by id
    after: dict[str, pd.DataFrame]  # core rows after the deltas
    checksums_full: dict[str, str]
    checksums_delta: dict[str, str]
    reports: dict[str, LoadReport]

    def engine(self) -> sa.Engine:
        return core_engine(self.settings.resolved_core_url)


def _core_rows(settings: Settings) -> dict[str, pd.DataFrame]:
    """Every core row of ELVIS and Melior, per entity, indexed by its id."""
    rows = {}
    with core_engine(settings.resolved_core_url).connect() as connection:
        for entity, table in ENTITY_TABLES.items():
            frame = pd.read_sql(
                sa.select(table).where(table.c.source_system.in_(SYSTEMS)), connection
            )
            rows[entity] = frame.set_index(ENTITIES[entity].id_field()).sort_index()
    return rows


def _checksums(settings: Settings) -> dict[str, str]:
    with core_engine(settings.resolved_core_url).connect() as connection:
        return core_fingerprint(connection)


@pytest.fixture(scope="module", params=BOTH_CORES)
def migrated(request, small_estate, tmp_path_factory, core_of):
    root = tmp_path_factory.mktemp(f"delta-{request.param}")
    with estate_copy_home(request.param, small_estate, root, core_of) as settings:
        estate = settings.resolved_estate_dir
        for system in SYSTEMS:
            pipeline.run_system(system, _full(system), FULL_AS_OF, settings=settings)
        before, checksums_full = _core_rows(settings), _checksums(settings)
        simulate_activity(estate, seed=ACTIVITY_SEED)
        reports = {
            system: pipeline.run_system(
                system, _delta(system), DELTA_AS_OF, settings=settings, kind="delta"
            )
            for system in SYSTEMS
        }
        yield Migrated(
            settings=settings,
            estate=estate,
            activity=pd.read_csv(estate / ACTIVITY_FILE, dtype=str),
            before=before,
            after=_core_rows(settings),
            checksums_full=checksums_full,
            checksums_delta=_checksums(settings),
            reports=reports,
        )


def _entity_of(settings: Settings, system: str, dataset: str) -> str:
    entities = pipeline.catalog(settings).system(system).entities
    return next(entity for entity, mapping in entities.items() if mapping.dataset == dataset)


def _expected(migrated: Migrated) -> pd.DataFrame:
    """activity.csv with the entity and core id each change lands on."""
    activity = migrated.activity.copy()
    activity["entity"] = [
        _entity_of(migrated.settings, system, dataset)
        for system, dataset in zip(activity["system"], activity["dataset"], strict=True)
    ]
    activity["row_id"] = [
        core_ids(system, entity, pd.Series([key])).iloc[0]
        for system, entity, key in zip(
            activity["system"], activity["entity"], activity["source_key"], strict=True
        )
    ]
    return activity


def test_activity_covers_every_kind_of_change(migrated):
    activity = migrated.activity
    whats = set(activity["what"])
    for system in SYSTEMS:
        changes = set(activity.loc[activity["system"] == system, "change"])
        assert {"new", "changed", "deleted"} <= changes, system
    assert {
        "reservnummer_linked_to_personnummer",
        "newborn_registered_under_reservnummer",
        "new_address",
        "deceased",
        "cancelled_booking_purged",
        "registered_in_error_deleted",
        "new_diagnosis",
        "care_contact_blocked",
        "inherits_care_contact_block",
    } <= whats


def test_every_change_reaches_the_core_and_nothing_else_moves(migrated):
    expected = _expected(migrated)
    patients = expected[expected["entity"] == "patient"]
    touched_patients = set(patients["row_id"])
    for entity in ENTITY_TABLES:
        before, after = migrated.before[entity], migrated.after[entity]
        mine = expected[expected["entity"] == entity]
        for change, what, row_id in zip(mine["change"], mine["what"], mine["row_id"], strict=True):
            where = f"{entity} {row_id} ({change}: {what})"
            if change == "new":
                assert row_id not in before.index and row_id in after.index, where
            elif change == "deleted":
                assert row_id in before.index and row_id not in after.index, where
            else:  # changed, or inherited from a row it takes a value from
                assert row_id in before.index and row_id in after.index, where
                assert not before.loc[row_id].equals(after.loc[row_id]), where
                assert after.loc[row_id, "batch_id"].startswith("delta-"), where
        touched = set(mine["row_id"])
        if entity == "patient_identifier":  # identifiers follow their patient
            touched |= set(before.index[before["patient_id"].isin(touched_patients)])
            touched |= set(after.index[after["patient_id"].isin(touched_patients)])
        untouched_before = before.drop(index=list(touched & set(before.index)))
        untouched_after = after.drop(index=list(touched & set(after.index)))
        pd.testing.assert_frame_equal(untouched_before, untouched_after, obj=entity)


def test_changed_values_are_the_legacy_systems_new_values(migrated):
    expected = _expected(migrated).set_index("what")
    after, before = migrated.after, migrated.before

    def row_id(what: str, system: str) -> str:
        rows = expected.loc[[what]]
        return rows.loc[rows["system"] == system, "row_id"].iloc[0]

    for system in SYSTEMS:
        dead = row_id("deceased", system)
        assert pd.isna(before["patient"].loc[dead, "deceased_date"])
        assert pd.Timestamp(after["patient"].loc[dead, "deceased_date"]).date() > FULL_AS_OF
    moved = row_id("new_address", "elvis")
    assert (
        after["patient"].loc[moved, "address_line"] != before["patient"].loc[moved, "address_line"]
    )
    blocked = expected.loc[["care_contact_blocked", "inherits_care_contact_block"]]
    for entity, identifier in zip(blocked["entity"], blocked["row_id"], strict=True):
        assert not before[entity].loc[identifier, "is_blocked"], (entity, identifier)
        assert after[entity].loc[identifier, "is_blocked"], (entity, identifier)
    corrected = row_id("diagnosis_code_corrected", "melior")
    assert (
        after["diagnosis"].loc[corrected, "icd10_code"]
        != (before["diagnosis"].loc[corrected, "icd10_code"])
    )
    fulfilled = row_id("booking_fulfilled", "elvis")
    assert after["appointment"].loc[fulfilled, "status"] == "fulfilled"


def test_the_reservnummer_patient_is_linked_to_their_personnummer(migrated):
    expected = _expected(migrated).set_index("what")
    linked = expected.loc["reservnummer_linked_to_personnummer", "row_id"]
    before = migrated.before["patient_identifier"]
    after = migrated.after["patient_identifier"]
    was = before[before["patient_id"] == linked]
    now = after[after["patient_id"] == linked]
    assert list(was["identity_kind"]) == [RESERVNUMMER] and was["is_primary"].all()
    kinds = dict(zip(now["identity_kind"], now["is_primary"], strict=True))
    assert kinds == {PERSONNUMMER: True, RESERVNUMMER: False}
    # The reserve number stays linked to the same patient, under the same identifier row.
    assert was.index[0] in now.index
    assert now.loc[was.index[0], "identity_number"] == was.iloc[0]["identity_number"]
    patient = migrated.after["patient"].loc[linked]
    assert patient["identity_kind"] == PERSONNUMMER
    assert patient["identity_number"] == now.loc[now["is_primary"], "identity_number"].iloc[0]

    newborn = expected.loc["newborn_registered_under_reservnummer", "row_id"]
    born = after[after["patient_id"] == newborn]
    assert list(born["identity_kind"]) == [RESERVNUMMER] and born["is_primary"].all()
    deleted = expected.loc["registered_in_error_deleted", "row_id"]
    assert (before["patient_id"] == deleted).any()
    assert not (after["patient_id"] == deleted).any()


def test_the_delta_accounts_for_every_delta_row(migrated):
    activity = migrated.activity
    for system, report in migrated.reports.items():
        assert report.is_reconciled, system
        paths = BatchPaths.of(migrated.settings, _delta(system), system)
        manifest = json.loads(paths.manifest_file.read_text("utf-8"))
        assert manifest["kind"] == "delta"
        assert manifest["base_batch_id"] == _full(system)
        mine = activity[activity["system"] == system]
        for row in report.accounting:
            counts = manifest["datasets"][row.dataset]["delta"]
            rows = mine[mine["dataset"] == row.dataset]
            processed = rows["change"].isin(["new", "changed", "inherited"]).sum()
            assert row.extracted == counts["new"] + counts["changed"] + counts["dependent"]
            assert row.extracted == processed, (system, row.dataset)
            assert counts["deleted"] == (rows["change"] == "deleted").sum(), (system, row.dataset)
            assert row.loaded + row.quarantined + row.excluded + row.merged == row.extracted
            assert row.residue == 0 and row.is_verified
            listed = pq.read_table(delta_file(paths, row.dataset)).to_pandas()
            assert len(listed) == row.extracted + counts["deleted"]
        with migrated.engine().connect() as connection:
            recorded = pd.read_sql(
                sa.text(
                    "SELECT extracted, loaded, quarantined, excluded, merged, residue "
                    "FROM batch_accounting WHERE batch_id = :b"
                ),
                connection,
                params={"b": _delta(system)},
            )
        assert recorded["residue"].eq(0).all()
        assert recorded["extracted"].sum() == sum(r.extracted for r in report.accounting)


def test_watermarks_follow_the_promoted_delta(migrated):
    with migrated.engine().connect() as connection:
        marks = pd.read_sql(sa.select(source_watermark), connection)
    for system in SYSTEMS:
        mine = marks[marks["source_system"] == system]
        spec = pipeline.catalog(migrated.settings).system(system).spec
        assert set(mine["dataset"]) == set(spec.datasets)
        assert set(mine["batch_id"]) == {_delta(system)}
        manifest = json.loads(
            BatchPaths.of(migrated.settings, _delta(system), system).manifest_file.read_text()
        )
        rows = {name: landed["rows"] for name, landed in manifest["datasets"].items()}
        assert dict(zip(mine["dataset"], mine["rows"], strict=True)) == rows


def test_an_entity_the_delta_selects_no_row_of_reads_no_mapping_inputs(migrated, monkeypatch):
    """A delta entity with no new, changed or dependent row writes the empty result the chunk
    loop gives (no chunk: nothing mapped) without reading the keys, lookups, duplicates and
    reserve numbers its chunks would be mapped against; it still fails closed on a landed input
    gone. An entity with rows reads them once."""
    from etl.core.arrow import stage_schema
    from etl.extract.delta import selected_row_numbers
    from etl.transform import stage

    settings = migrated.settings
    real_read = stage._ChunkInputs.read
    reads: list[str] = []

    def counted(paths, mapping, settings_, system):
        reads.append(mapping.entity)
        return real_read(paths, mapping, settings_, system)

    monkeypatch.setattr(stage._ChunkInputs, "read", staticmethod(counted))
    empty_entities = 0
    for system in SYSTEMS:
        paths = BatchPaths.of(settings, _delta(system), system)
        catalog = pipeline.catalog(settings)
        for entity, mapping in catalog.system(system).entities.items():
            selected = len(selected_row_numbers(paths, mapping.dataset))
            written = {
                name: pq.read_table(paths.stage_file("transformed", entity, *extra))
                for name, extra in (("rows", ()), ("outcomes", ("outcomes",)))
            }
            reads.clear()
            report = stage.transform_entity(catalog, system, entity, _delta(system), settings)
            assert report.rows_in == selected, (system, entity)
            again = {
                name: pq.read_table(paths.stage_file("transformed", entity, *extra))
                for name, extra in (("rows", ()), ("outcomes", ("outcomes",)))
            }
            assert all(again[name].equals(written[name]) for name in written), (system, entity)
            if selected:
                assert reads == [entity]
                continue
            empty_entities += 1
            assert reads == []
            assert report.rows_out == 0 and report.outcomes == {}
            assert again["rows"].num_rows == 0 and again["outcomes"].num_rows == 0
            assert again["rows"].schema.equals(stage_schema(entity))
            assert again["outcomes"].schema.equals(stage.OUTCOME_SCHEMA)
            # Fail closed as when the inputs were read: a landed input gone is an error.
            with monkeypatch.context() as gone:
                gone.setattr(
                    BatchPaths, "duplicates_file", lambda self, dataset: self.root / "gone"
                )
                with pytest.raises(OSError):
                    stage.transform_entity(catalog, system, entity, _delta(system), settings)
            stage.transform_entity(catalog, system, entity, _delta(system), settings)
    assert empty_entities  # the week of activity leaves some entities untouched


def _checksums_of_row_objects(connection: sa.Connection) -> dict[str, str]:
    """``core_checksums`` as it was written before rows became tuples: pandas handed the
    SQLAlchemy rows themselves (the definition its figures must keep)."""
    import hashlib

    sums = {}
    for entity, table in ENTITY_TABLES.items():
        if entity not in ENTITIES:
            continue
        key = table.c[ENTITIES[entity].id_field()]
        digest, rows = hashlib.sha256(), 0
        result = connection.execute(
            sa.select(*table.columns).order_by(key).execution_options(yield_per=97)
        )
        columns = list(result.keys())
        for partition in result.partitions():
            frame = pd.DataFrame(partition, columns=columns).astype("string")
            digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
            rows += len(frame)
        sums[entity] = f"{rows}:{digest.hexdigest()}"
    return sums


def test_core_checksums_are_those_of_the_rows_handed_to_pandas_as_they_come(migrated):
    """The same figures as pandas gives for SQLAlchemy's row objects, chunk by chunk (chunks of
    97 rows, so that every table spans several)."""
    with migrated.engine().connect() as connection:
        expected = _checksums_of_row_objects(connection)
        assert core_checksums(connection, chunk=97) == expected
    assert set(expected) == set(ENTITIES)


def test_rerunning_the_delta_changes_nothing_and_rollback_restores_the_full_load(migrated):
    """Last in the module: it rolls the deltas back."""
    settings = migrated.settings
    for system in SYSTEMS:
        again = pipeline.run_system(
            system, _delta(system), DELTA_AS_OF, settings=settings, kind="delta"
        )
        assert again.is_reconciled
        assert [r.extracted for r in again.accounting] == [
            r.extracted for r in migrated.reports[system].accounting
        ]
    assert _checksums(settings) == migrated.checksums_delta

    with migrated.engine().begin() as connection:
        for system in reversed(SYSTEMS):  # newest first
            rollback(connection, _delta(system))
            assert rewind_watermarks(connection, system, settings) == _full(system)
    assert _checksums(settings) == migrated.checksums_full
    with migrated.engine().connect() as connection:
        marks = pd.read_sql(sa.select(source_watermark), connection)
    assert set(marks["batch_id"]) == {_full(system) for system in SYSTEMS}

    # The base of the next delta is the batch still promoted: the same changes are found again.
    for system in SYSTEMS:
        extracted = pipeline.extract(system, f"again-{system}", DELTA_AS_OF, settings, "delta")
        assert extracted["base_batch_id"] == _full(system)
        first = {r.dataset: r.extracted for r in migrated.reports[system].accounting}
        assert {k: v for k, v in extracted["rows"].items() if k in first} == first
        # An extract alone is a run that holds the system until it loads: this one ends here.
        assert pipeline.release_system(system, f"again-{system}", settings)


@pytest.mark.parametrize("backend", BOTH_CORES)
def test_a_delta_without_a_promoted_batch_is_refused(backend, small_estate, settings_for, request):
    core_url = None if backend == "sqlite" else request.getfixturevalue("postgres_url")
    settings = settings_for(small_estate, core_url)
    with pytest.raises(NoBaseBatchError, match="run a full load first"):
        pipeline.run_system("elvis", "delta-first", DELTA_AS_OF, settings=settings, kind="delta")
    assert not BatchPaths.of(settings, "delta-first", "elvis").manifest_file.exists()
