"""The estate's systems beyond ELVIS and Melior: contracts, determinism, identities, defects.

Every source is read back with the pipeline's own readers (``etl.extract.readers``), so what is
checked here is what the pipeline will see: row numbers, keys and values as landed.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import cache
from pathlib import Path

import pandas as pd
import pytest

from etl.catalog import FileDataset, SqlDataset, load_catalog
from etl.core import safety
from etl.core.vocabulary import REGISTRY, TransformContext
from etl.estate import EstateManifest, generate_estate
from etl.estate.people import PERSONNUMMER_FILE, SAMORDNINGSNUMMER_FILE, build_population
from etl.estate.systems import SYSTEMS
from etl.extract import readers
from etl.extract.landing import check_schema
from etl.extract.records import reason_of
from etl.identifiers import normalise_identity
from etl.settings import Settings
from etl.validate.context import reference_table
from etl.validate.suites import read_suite_definition
from tests.commands import estate_manifest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
MAPPINGS = ROOT / "mappings"
EXPECTATIONS = ROOT / "expectations"
LAB_REFERENCE = MAPPINGS / "crosswalks" / "reference" / "npu_units_and_ranges.csv"
PATIENTS = 400
SEED = 14  # a seed whose small population has several people with protected identity
REFERENCE_DATE = dt.date(2026, 7, 1)
NEW_SYSTEMS = sorted(entry.system for entry in SYSTEMS)
TRANSFORM_CLASSES = {
    "unparseable_date",
    "invalid_value",
    "invalid_number",
    "unmapped_code",
    "invalid_code",
}
LEGACY_ENCODINGS = {"cp1252", "iso-8859-1", "cp850", "iso646_se"}


@pytest.fixture(scope="module")
def estate(estate_of) -> tuple[Path, EstateManifest]:
    out = estate_of(PATIENTS, SEED)
    return out, estate_manifest(out)


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(MAPPINGS)


@pytest.fixture(scope="module")
def defects(estate) -> pd.DataFrame:
    out, _ = estate
    frame = pd.read_csv(out / "defects.csv", dtype=str, keep_default_na=False)
    return frame[frame.system.isin(NEW_SYSTEMS)].reset_index(drop=True)


@pytest.fixture(scope="module")
def read(estate, catalog):
    """``read(system, dataset)``: every row as the pipeline lands it (with row number and key)."""
    out, _ = estate
    settings = Settings(estate_dir=out, home=out / "home")

    @cache
    def read_dataset(system: str, dataset: str) -> pd.DataFrame:
        spec = catalog.system(system).spec
        declared = spec.datasets[dataset]
        if isinstance(declared, SqlDataset):
            engine = readers.read_only_engine(readers.source_url(spec, settings))
            try:
                frame = pd.concat(list(readers.read_sql_chunks(engine, declared, 100_000)))
            finally:
                engine.dispose()
        else:
            folder = readers.source_path(spec, settings)
            frame = pd.concat(list(readers.read_file_chunks(folder, declared, 100_000)))
        frame = frame.reset_index(drop=True)
        if "_read_error" not in frame.columns:
            frame["_read_error"] = pd.NA
        key = frame[declared.key[0]].astype("string").str.strip()
        for column in declared.key[1:]:
            key = key + "|" + frame[column].astype("string").str.strip()
        frame["_source_key"] = key
        frame["_row_number"] = frame.index + 1
        return frame

    return read_dataset


def pool() -> set[str]:
    numbers = set()
    for path in (PERSONNUMMER_FILE, SAMORDNINGSNUMMER_FILE):
        numbers |= set(path.read_text(encoding="ascii").split())
    return numbers


def mapping_of(catalog, system: str, dataset: str):
    return next(m for m in catalog.system(system).entities.values() if m.dataset == dataset)


# --- which systems, in which formats ------------------------------------------------------------


def test_every_generated_system_has_a_mapping_folder_and_every_folder_a_generator(catalog):
    assert set(NEW_SYSTEMS) == set(catalog.systems) - {"elvis", "melior"}
    assert len(NEW_SYSTEMS) >= 39
    journals = {"asynjavisph", "obstetrix", "journal_d", "orbit"}
    assert journals <= set(NEW_SYSTEMS)
    assert len(set(NEW_SYSTEMS) - journals) >= 35


def test_a_satellites_generator_is_that_of_its_archetype():
    from etl.layout import archetype_of

    for entry in SYSTEMS:
        archetype = archetype_of(MAPPINGS / entry.system)
        assert archetype in (None, entry.kind), entry
        if archetype is None:  # a system of its own kind
            assert entry.kind == entry.system, entry


def test_each_source_format_and_legacy_encoding_serves_several_systems(catalog):
    formats: dict[str, set[str]] = {}
    encodings: dict[str, set[str]] = {}
    for name, system in catalog.systems.items():
        for dataset in system.spec.datasets.values():
            kind = "sql" if isinstance(dataset, SqlDataset) else str(dataset.format)
            formats.setdefault(kind, set()).add(name)
            if isinstance(dataset, FileDataset) and dataset.format in {"delimited", "fixed_width"}:
                encodings.setdefault(dataset.encoding, set()).add(name)
    assert {"sql", "delimited", "fixed_width", "hl7v2", "xml", "jsonl"} <= set(formats)
    for kind, systems in formats.items():
        assert len(systems) >= 3, (kind, systems)
    for encoding in LEGACY_ENCODINGS:
        assert len(encodings.get(encoding, set())) >= 2, (encoding, encodings.get(encoding))


# --- contracts and counts -----------------------------------------------------------------------


@pytest.mark.parametrize("system", NEW_SYSTEMS)
def test_sources_match_their_contract_and_the_manifest_counts(estate, catalog, read, system):
    out, manifest = estate
    check_schema(catalog, system, Settings(estate_dir=out, home=out / "home"))
    for dataset in catalog.system(system).spec.datasets:
        assert len(read(system, dataset)) == manifest.row_counts[system][dataset], dataset
    for item in manifest.files:
        if item.system == system:
            assert (out / item.path).is_file()


def test_determinism(estate, tmp_path):
    out, manifest = estate
    again = generate_estate(tmp_path / "again", patients=PATIENTS, seed=SEED)
    assert again == manifest  # file hashes and row counts included
    assert (tmp_path / "again" / "defects.csv").read_bytes() == (out / "defects.csv").read_bytes()
    for item in manifest.files:
        if item.system in NEW_SYSTEMS and item.sha256 is None:  # SQLite: compare the rows
            again_rows = _sqlite_rows(tmp_path / "again" / item.path)
            assert again_rows == _sqlite_rows(out / item.path), item.path

    other = generate_estate(tmp_path / "other", patients=PATIENTS, seed=SEED + 1)
    mine = {f.path: f.sha256 for f in manifest.files if f.system in NEW_SYSTEMS and f.sha256}
    theirs = {f.path: f.sha256 for f in other.files if f.system in NEW_SYSTEMS and f.sha256}
    assert sum(mine[path] != theirs.get(path) for path in mine) >= 0.9 * len(mine)


def _sqlite_rows(path: Path) -> dict[str, list[tuple]]:
    import sqlite3

    with sqlite3.connect(path) as connection:
        tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master")]
        return {t: connection.execute(f'SELECT * FROM "{t}" ORDER BY 1').fetchall() for t in tables}


def test_row_counts_are_modest_per_satellite(estate):
    _, manifest = estate
    for system in NEW_SYSTEMS:
        for dataset, rows in manifest.row_counts[system].items():
            assert 10 <= rows <= 5_000, (system, dataset, rows)


# --- identities -----------------------------------------------------------------------------------


def test_identity_numbers_come_from_the_test_lists_or_are_vgr_reservnummer(catalog, read, defects):
    allowed = pool()
    damaged = defects[defects.defect_class == "invalid_identity_number"]
    kinds_seen: set[str] = set()
    for system in NEW_SYSTEMS:
        mapping = catalog.system(system).entities["patient"]
        frame = read(system, mapping.dataset)
        bad_rows = damaged[(damaged.system == system)].row_number.astype(int)
        readable = frame[frame["_read_error"].isna() & ~frame["_row_number"].isin(bad_rows)]
        for declared in mapping.identifiers:
            values = readable[declared.source]
            result = normalise_identity(
                values,
                readable[declared.century_source] if declared.century_source else None,
                reference_date=REFERENCE_DATE,
                accept_legacy_reserve=declared.accept_legacy_reserve,
            )
            given = values.notna() & (values.str.strip() != "")
            assert result.error[given].isna().all(), (system, declared.source)
            kinds = set(result.identity_kind[given].dropna())
            kinds_seen |= kinds
            allowed_kinds = {"personnummer", "samordningsnummer", "reservnummer_vgr"}
            if declared.accept_legacy_reserve:
                allowed_kinds.add("reservnummer_legacy")
            assert kinds <= allowed_kinds, (system, kinds)
            personal = result.identity_kind.isin(["personnummer", "samordningsnummer"])
            assert set(result.identity_number[personal & given]) <= allowed, system
            legacy = result.identity_kind == "reservnummer_legacy"
            assert result.identity_number[legacy & given].str.fullmatch(r"R\d{7}").all()
    assert {"personnummer", "samordningsnummer", "reservnummer_vgr"} <= kinds_seen


def test_patients_are_people_of_the_shared_population(catalog, read):
    """Satellites hold the same people as ELVIS and Melior: the same identity numbers."""
    elvis = read("elvis", "patient")
    melior = read("melior", "patient")
    known = set(
        normalise_identity(elvis.pnr, reference_date=REFERENCE_DATE).identity_number.dropna()
    ) | set(
        normalise_identity(
            melior.PNR, melior.SEKEL, reference_date=REFERENCE_DATE
        ).identity_number.dropna()
    )
    shared = 0
    for system in ("asynjavisph", "lab_su", "dental_goteborg", "akut_su"):
        mapping = catalog.system(system).entities["patient"]
        frame = read(system, mapping.dataset)
        numbers = normalise_identity(
            frame[mapping.identifiers[0].source], reference_date=REFERENCE_DATE
        ).identity_number.dropna()
        shared += len(set(numbers) & known)
        assert len(set(numbers) & known) >= 0.5 * len(numbers), system
    assert shared > 0


# --- planted defects ------------------------------------------------------------------------------


def test_every_defect_row_points_at_a_real_row_that_carries_the_defect(catalog, read, defects):
    assert len(defects) > 0
    for record in defects.itertuples():
        frame = read(record.system, record.dataset)
        row_number = int(record.row_number)
        assert 1 <= row_number <= len(frame), record
        row = frame.iloc[row_number - 1]
        where = f"{record.system}.{record.dataset} row {row_number} ({record.defect_class})"
        if record.defect_class == "unreadable_record":
            assert pd.notna(row["_read_error"]), where
            continue
        if record.defect_class == "undecodable_bytes":  # the whole record is unreadable
            assert reason_of(row["_read_error"]) == "undecodable_bytes", where
            assert record.field in row["_read_error"], where  # the column is named
            continue
        assert pd.isna(row["_read_error"]), where
        assert row["_source_key"] == record.source_key, where
        _assert_defect(catalog, read, record, frame, row, where)


def _assert_defect(catalog, read, record, frame, row, where) -> None:
    cls, field = record.defect_class, record.field
    value = row[field] if field else None
    mapping = mapping_of(catalog, record.system, record.dataset)
    if cls == "missing_value":
        assert pd.isna(value) or not str(value).strip(), where
    elif cls == "invalid_identity_number":
        result = normalise_identity(
            pd.Series([value], dtype="string"), reference_date=REFERENCE_DATE
        )
        assert result.error.iloc[0] == "invalid_check_digit", where
    elif cls == "unresolved_reference":
        reference = next(r for r in mapping.references if r.column == field)
        parents = read(record.system, reference.dataset)["_source_key"]
        assert str(value).strip() not in set(parents), where
    elif cls == "duplicate_row":
        columns = [c for c in frame.columns if not c.startswith("_")]
        earlier = frame.iloc[: int(record.row_number) - 1][columns].fillna("")
        assert (earlier == row[columns].fillna("")).all(axis=1).any(), where
    elif cls in TRANSFORM_CLASSES:
        column = next(c for c in mapping.columns if c.source == field)
        context = TransformContext(record.system, REFERENCE_DATE, catalog.crosswalks)
        result = REGISTRY[column.transform].function(
            pd.Series([value], dtype="string"), column.parsed_args(), context
        )
        error = result.errors.iloc[0]
        if pd.isna(error):  # a well-formed code the entity's suite rejects (e.g. not a vaccine)
            assert cls == "invalid_code", where
            pattern = _expected_pattern(mapping.entity, column.target)
            assert not re.fullmatch(pattern, str(result.values.iloc[0])), where
        else:
            assert error == cls, where
    elif cls == "implausible_maternal_age":
        # The newborn's own patient number in the mother's field: a mother aged 0.
        assert row[field] == row["BARN_PATID"], where
    elif cls in {"lab_value_out_of_range", "invalid_lab_unit"}:
        code = str(row["analysis_code"])
        npu = code if code.startswith("NPU") else catalog.crosswalks["lab_local_to_npu"][code]
        ranges = reference_table(LAB_REFERENCE, ("npu_code", "unit"))
        allowed = ranges[ranges.npu_code == npu]
        assert len(allowed), where
        if cls == "invalid_lab_unit":
            assert value not in set(allowed.unit), where
        else:
            limits = allowed[allowed.unit == row["unit"]].iloc[0]
            number = float(str(value).replace(",", "."))
            assert not limits.lowest_possible <= number <= limits.highest_possible, where
    else:  # pragma: no cover
        pytest.fail(f"unknown defect class {cls}")


def _expected_pattern(entity: str, target: str) -> str:
    for expectation in read_suite_definition(EXPECTATIONS, entity)["expectations"]:
        if (
            expectation["type"] == "expect_column_values_to_match_regex"
            and expectation["kwargs"]["column"] == target
        ):
            return expectation["kwargs"]["regex"].strip("^$")
    raise AssertionError(f"no pattern for {entity}.{target}")


@pytest.mark.parametrize("system", NEW_SYSTEMS)
def test_no_unrecorded_unreadable_or_undecodable_rows(catalog, read, defects, system):
    for dataset in catalog.system(system).spec.datasets:
        frame = read(system, dataset)
        planted = defects[(defects.system == system) & (defects.dataset == dataset)]
        errors = frame["_read_error"].dropna()
        is_undecodable = errors.map(reason_of) == "undecodable_bytes"
        unreadable = set(errors.index[~is_undecodable] + 1)
        expected = planted[planted.defect_class == "unreadable_record"].row_number.astype(int)
        assert unreadable == set(expected), dataset
        expected = planted[planted.defect_class == "undecodable_bytes"].row_number.astype(int)
        assert set(errors.index[is_undecodable] + 1) == set(expected), dataset
        text = frame[[c for c in frame.columns if not c.startswith("_")]].astype("string")
        damaged = text.apply(lambda col: col.str.contains("\ufffd", na=False)).any(axis=1)
        assert not damaged.any(), dataset  # never a replacement character in a value


def test_every_format_carries_its_own_kind_of_damage(catalog, defects):
    by_system = defects.groupby("system").defect_class.agg(set).to_dict()
    for system in NEW_SYSTEMS:
        classes = by_system.get(system, set())
        assert len(classes) >= 3, (system, classes)
        datasets = catalog.system(system).spec.datasets.values()
        formats = {getattr(d, "format", "sql") for d in datasets}
        encodings = {getattr(d, "encoding", None) for d in datasets}
        if formats & {"hl7v2", "jsonl"}:
            assert "unreadable_record" in classes, system
        if "iso646_se" in encodings or "cp1252" in encodings:
            assert "undecodable_bytes" in classes, system
        assert "invalid_identity_number" in classes, system


def test_iso646_exports_are_seven_bit_except_the_planted_bytes(estate, catalog, defects):
    out, _ = estate
    swedish_letters = 0
    for system in NEW_SYSTEMS:
        for name, dataset in catalog.system(system).spec.datasets.items():
            if getattr(dataset, "encoding", None) != "iso646_se":
                continue
            raw = (out / system / dataset.file).read_bytes()
            planted = defects[
                (defects.system == system)
                & (defects.dataset == name)
                & (defects.defect_class == "undecodable_bytes")
            ]
            assert sum(byte >= 0x80 for byte in raw) == len(planted), (system, name)
            swedish_letters += sum(raw.count(byte) for byte in b"[\\]{|}")
    assert swedish_letters > 0  # ÄÖÅäöå written as [\]{|}


def test_hl7_archives_are_iso_8859_1_messages_with_cr_segment_ends(estate, catalog):
    out, _ = estate
    for system in NEW_SYSTEMS:
        for dataset in catalog.system(system).spec.datasets.values():
            if getattr(dataset, "format", None) != "hl7v2":
                continue
            raw = (out / system / dataset.file).read_bytes()
            assert raw.startswith(b"MSH|^~\\&|") and raw.endswith(b"\r")
            assert b"\n" not in raw
            raw.decode("iso-8859-1")


# --- the journals ----------------------------------------------------------------------------


def test_newborns_are_patients_of_their_own_with_plausible_mothers(read, defects):
    patients = read("obstetrix", "patient")
    patients = patients[patients["_read_error"].isna()].set_index("PATID")
    deliveries = read("obstetrix", "forlossning")
    damaged = defects[(defects.system == "obstetrix") & (defects.dataset == "forlossning")]
    clean = deliveries[~deliveries["_row_number"].isin(damaged.row_number.astype(int))]
    # Deliveries of mothers and children whose own patient rows are readable.
    clean = clean[clean.PATID.isin(patients.index) & clean.BARN_PATID.isin(patients.index)]
    assert len(clean) >= 10
    born = pd.to_datetime(clean.FORL_TID, format="%Y%m%d%H%M")
    mother_birth = pd.to_datetime(patients.loc[clean.PATID, "FODELSEDATUM"], format="%d.%m.%Y")
    age = (born.dt.normalize().to_numpy() - mother_birth.to_numpy()) / pd.Timedelta(days=365.25)
    assert ((age >= 17) & (age <= 45)).all()
    assert 26 <= float(age.mean()) <= 36
    newborn = patients.loc[clean.BARN_PATID]
    assert (clean.BARN_PATID.to_numpy() != clean.PATID.to_numpy()).all()
    newborn_birth = pd.to_datetime(newborn.FODELSEDATUM, format="%d.%m.%Y").to_numpy()
    assert (newborn_birth == born.dt.normalize().to_numpy()).all()
    reserve = normalise_identity(newborn.RESERVNR, reference_date=REFERENCE_DATE)
    assert (reserve.identity_kind == "reservnummer_vgr").mean() >= 0.95
    weights = pd.to_numeric(clean.VIKT)
    assert weights.between(400, 6000).all() and 3000 <= weights.median() <= 4000


PROTECTION_LEVELS = {
    "SEKR": "sekretessmarkering",
    "SKYDD": "skyddad_folkbokforing",
    "FING": "fingerade_personuppgifter",
}


def test_protected_identity_is_carried_for_exactly_the_protected_people(catalog, read, defects):
    """Each system's protection column, mapped, says for each person what the population says."""
    population = build_population(PATIENTS, SEED)
    level_of = {
        number: PROTECTION_LEVELS.get(level, "none")
        for number, level in zip(population.number, population.protected, strict=True)
    }
    assert sum(level != "none" for level in level_of.values()) >= 3
    carried = 0
    for system in NEW_SYSTEMS:
        mapping = catalog.system(system).entities["patient"]
        frame = read(system, mapping.dataset)
        damaged = defects[(defects.system == system) & (defects.dataset == mapping.dataset)]
        frame = frame[frame["_read_error"].isna()]
        frame = frame[~frame["_row_number"].isin(damaged.row_number.astype(int))].reset_index()
        identity = pd.Series(pd.NA, index=frame.index, dtype="string")
        for declared in mapping.identifiers:  # the first valid one, as the pipeline does
            found = normalise_identity(
                frame[declared.source], reference_date=REFERENCE_DATE
            ).identity_number
            identity = identity.fillna(found)
        column = next(c for c in mapping.columns if c.target == "protected_identity")
        context = TransformContext(system, REFERENCE_DATE, catalog.crosswalks)
        result = REGISTRY[column.transform].function(
            frame[column.source], column.parsed_args(), context
        )
        # As the engine does: the mapping's safety declaration decides what a blank means.
        mapped = safety.judge(
            frame[column.source], result.values, result.errors, column.target, column.safety
        ).values
        expected = identity.map(level_of)
        assert (mapped.astype(str) == expected.astype(str)).all(), system
        carried += int((expected != "none").sum())
    assert carried >= 10


def test_blocking_flags_are_carried_by_many_systems(catalog, read):
    blocking_systems = set()
    for system in NEW_SYSTEMS:
        for mapping in catalog.system(system).entities.values():
            column = next((c for c in mapping.columns if c.target == "is_blocked"), None)
            if column is None or not column.source:
                continue
            frame = read(system, mapping.dataset)
            frame = frame[frame["_read_error"].isna()]
            context = TransformContext(system, REFERENCE_DATE, catalog.crosswalks)
            result = REGISTRY[column.transform].function(
                frame[column.source], column.parsed_args(), context
            )
            if result.values.fillna(False).astype(bool).any():
                blocking_systems.add(system)
    assert len(blocking_systems) >= 10, blocking_systems
