"""Source codes kept (etl.transform.engine): every coded column keeps the legacy code and its
code system beside the target code, so a many-to-one crosswalk loses nothing; an alert's code
gets its system; a code no declared system recognises (a SNOMED CT id with a wrong check
digit) is quarantined as ``invalid_code``."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
import sqlalchemy as sa

from etl.catalog import EntityMapping, load_catalog
from etl.core import code_systems
from etl.core.database import core_engine
from etl.core.tables import ENTITY_TABLES
from etl.extract.landing import ROW_NUMBER
from etl.transform.engine import transform_chunk
from tests.golden_helpers import MAPPINGS, NO_DUPLICATES, REFERENCE_DATE, landed, run

pytestmark = pytest.mark.unit

BLOOD_PRODUCT = "urn:vardflytt:blood-product:blodcentral"


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(MAPPINGS)


def _transfusion(key: str, product: str) -> dict:
    return {
        "transfusion_id": key,
        "mottagare_id": "1",
        "produkt": product,
        "tapp_nr": "T1",
        "transfunderad": "202401021230",
        "enhet_hsa": "SE2321000131-E000000000001",
    }


def test_a_many_to_one_crosswalk_keeps_each_source_code_retrievable_in_the_core(catalog, tmp_path):
    """ERY and ERY-BESTR both become KVÅ DR029; the core still says which product it was."""
    rows = [_transfusion("1", "ERY"), _transfusion("2", " ery-bestr "), _transfusion("3", "PLASMA")]
    result = run(catalog, "blodcentral", "procedure", rows, "transfusion_id", {"mottagare": ["1"]})
    assert result.outcomes.empty
    core = result.rows.drop(columns=[ROW_NUMBER])
    assert core["kva_code"].tolist() == ["DR029", "DR029", "DR033"]
    assert core["kva_code_source_code"].tolist() == ["ERY", "ery-bestr", "PLASMA"]
    assert set(core["kva_code_source_system"]) == {BLOOD_PRODUCT}

    engine = core_engine(f"sqlite:///{tmp_path / 'core.sqlite'}")
    table = ENTITY_TABLES["procedure"]
    with engine.begin() as connection:
        connection.execute(
            table.insert(), core.astype(object).where(core.notna(), None).to_dict("records")
        )
        kept = connection.execute(
            sa.select(table.c.kva_code_source_code, table.c.kva_code_source_system)
            .where(table.c.kva_code == "DR029")
            .order_by(table.c.kva_code_source_code)
        ).all()
    assert kept == [("ERY", BLOOD_PRODUCT), ("ery-bestr", BLOOD_PRODUCT)]


def test_the_kept_codes_are_part_of_the_content_hash(catalog):
    """Two products that map to one KVÅ code are two different rows' contents."""
    one = run(catalog, "blodcentral", "procedure", [_transfusion("1", "ERY")], "transfusion_id",
              {"mottagare": ["1"]})  # fmt: skip
    other = run(catalog, "blodcentral", "procedure", [_transfusion("1", "ERY-BESTR")],
                "transfusion_id", {"mottagare": ["1"]})  # fmt: skip
    assert one.rows["kva_code"].iloc[0] == other.rows["kva_code"].iloc[0]
    assert one.rows["content_hash"].iloc[0] != other.rows["content_hash"].iloc[0]


def test_standard_codes_and_crosswalked_ones_each_keep_their_own_system(catalog):
    """AsynjaVisph: ICD-10-SE passes unchanged, retired KSH97-P goes through the crosswalk."""
    rows = [
        {"diagnos_id": "1", "pat_id": "1", "besok_id": "", "kod": "J06.9", "klartext": "",
         "datum": "2024-01-02", "huvud": "J", "sparr": "N"},
        {"diagnos_id": "2", "pat_id": "1", "besok_id": "", "kod": "J06-P", "klartext": "",
         "datum": "2024-01-02", "huvud": "J", "sparr": "N"},
    ]  # fmt: skip
    result = run(
        catalog, "asynjavisph", "diagnosis", rows, "diagnos_id", {"patient": ["1"], "besok": []}
    )
    assert result.outcomes.empty, result.outcomes
    assert result.rows["icd10_code"].tolist() == ["J06.9", "J06.9"]
    assert result.rows["icd10_code_source_code"].tolist() == ["J06.9", "J06-P"]
    assert result.rows["icd10_code_source_system"].tolist() == [
        code_systems.ICD10_SE.uri,
        code_systems.KSH97_P.uri,
    ]


def _warning(key: str, code: str) -> dict:
    return {"VARNINGSNR": key, "PATNR": "1", "TYP": "Överkänslighet", "KOD": code,
            "BESKRIVNING": "", "REGISTRERAD": "02.01.2024"}  # fmt: skip


def test_alerts_get_the_code_system_of_their_code(catalog):
    rows = [_warning("1", "J01CE02"), _warning("2", "Z88.1"), _warning("3", "MRSA-X")]
    result = run(catalog, "melior", "alert", rows, "VARNINGSNR", {"patient": ["1"]})
    assert result.outcomes.empty, result.outcomes
    assert result.rows["code_system"].tolist() == [
        code_systems.ATC.uri,
        code_systems.ICD10_SE.uri,
        "urn:vardflytt:alert-code:melior",
    ]
    assert result.rows["code_source_system"].tolist() == result.rows["code_system"].tolist()


def _declared(mapping: EntityMapping, target: str, **changes) -> EntityMapping:
    content = mapping.model_dump(by_alias=True)
    for column in content["columns"]:
        if column["target"] == target:
            column.update(changes)
    return EntityMapping.model_validate(content)


def test_an_alert_code_no_declared_system_recognises_is_quarantined(catalog):
    mapping = _declared(
        catalog.system("melior").entities["alert"], "code", source_system=["atc", "icd10_se"]
    )
    rows = landed([_warning("1", "J01CE02"), _warning("2", "MRSA-X")], "VARNINGSNR")
    result = _transform(rows, mapping, catalog, {"patient": ["1"]})
    assert result.rows["code"].tolist() == ["J01CE02"]
    problem = result.outcomes.iloc[0]
    assert (problem["reason"], problem["field"]) == ("invalid_code", "KOD")
    assert problem["check_name"] == "source_code_system:code"
    assert problem["detail"] == "code: not a code of atc, icd10_se"


def _transform(rows, mapping, catalog, references):
    keys = {name: pd.Index(values) for name, values in references.items()}
    return transform_chunk(rows, mapping, catalog, "batch-1", REFERENCE_DATE, keys, NO_DUPLICATES)


def test_snomed_ct_diagnoses_keep_their_concept_id_and_a_wrong_check_digit_is_refused(catalog):
    """A source coding diagnoses in SNOMED CT, mapped to ICD-10-SE through a crosswalk: the
    concept id is kept beside the ICD-10-SE code; an id with a wrong check digit is no SNOMED CT
    id, even when the crosswalk lists it."""
    mapping = _declared(
        catalog.system("melior").entities["diagnosis"],
        "icd10_code",
        transform="map_code",
        args={"crosswalk": "snomed_to_icd10_se", "standard_pattern": r"[A-Z][0-9]{2}\.[0-9]"},
        source_system=["icd10_se", "snomed_ct"],
    )
    crosswalks = {"snomed_to_icd10_se": {"22298006": "I21.9", "22298007": "I21.9"}}
    with_snomed = SimpleNamespace(crosswalks=crosswalks, proposed_codes={})
    rows = landed(
        [_diagnosis("1", "22298006"), _diagnosis("2", "I21.9"), _diagnosis("3", "22298007")],
        "DIAGNOSNR",
    )
    result = _transform(rows, mapping, with_snomed, {"patient": ["1"]})
    assert result.rows["icd10_code"].tolist() == ["I21.9", "I21.9"]
    assert result.rows["icd10_code_source_code"].tolist() == ["22298006", "I21.9"]
    assert result.rows["icd10_code_source_system"].tolist() == [
        "http://snomed.info/sct",
        code_systems.ICD10_SE.uri,
    ]
    problem = result.outcomes.iloc[0]
    assert (problem["reason"], problem["field"]) == ("invalid_code", "DIAGNOSKOD")
    assert problem["detail"] == "icd10_code: not a code of icd10_se, snomed_ct"


def _diagnosis(key: str, code: str) -> dict:
    return {"DIAGNOSNR": key, "PATNR": "1", "KONTAKTNR": "", "DIAGNOSKOD": code,
            "DIAGNOSTEXT": "", "DIAGNOSDATUM": "02.01.2024", "HUVUDDIAGNOS": "J",
            "LAKARE_HSA": ""}  # fmt: skip
