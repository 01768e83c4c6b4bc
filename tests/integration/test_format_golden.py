"""Golden tests for the structured formats: given these HL7 v2 / XML / JSON-lines records, the
real archetype mappings produce these core rows (extract -> transform -> validate, no Airflow).

Identity numbers are Skatteverket test numbers; the reference date is fixed.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from etl import pipeline
from etl.batch import BatchPaths
from etl.core.ids import core_ids

pytestmark = pytest.mark.integration

AS_OF = dt.date(2026, 7, 1)
PERSONNUMMER = "195401036818"


def migrate(
    system: str, folder: Path, settings_for, monkeypatch, tmp_path
) -> dict[str, pd.DataFrame]:
    """Run extract, transform and validate; return validated core rows and outcomes per entity."""
    monkeypatch.setenv(f"VARDFLYTT_SOURCE_{system.upper()}_PATH", str(folder))
    settings = settings_for(tmp_path / "no-estate", f"sqlite:///{tmp_path / 'core.sqlite'}")
    pipeline.extract(system, "golden", AS_OF, settings)
    paths = BatchPaths.of(settings, "golden", system)
    result = {}
    pipeline.transform_and_validate(system, "golden", settings)
    for entity in pipeline.catalog(settings).system(system).entities:
        result[entity] = pq.read_table(paths.stage_file("validated", entity)).to_pandas()
        result[f"{entity}.outcomes"] = pq.read_table(
            paths.stage_file("validated", entity, "outcomes")
        ).to_pandas()
    return result


def test_hl7_lab_results_become_observations(tmp_path, settings_for, monkeypatch):
    folder = tmp_path / "lab_su"
    folder.mkdir()
    patients = (
        "MSH|^~\\&|LIS|SU|VF|VGR|202301150900||ADT^A31|A1|P|2.5\r"
        f"PID|1|L-1|{PERSONNUMMER}||Hellstr\xf6m^Karl||19540103|M\rZPI|SKYDD\r"
    )
    results = (
        "MSH|^~\\&|LIS|Klinisk kemi SU|VF|VGR|202301150900||ORU^R01|M1|P|2.5\r"
        "PID|1|L-1\rOBR|1|||KEM\r"
        "OBX|1|NM|NPU02319^B-Hemoglobin||134|g/L|117-153||||F|||20230115083000\r"
        "OBX|2|ST|CRP^P-CRP||<0,8|mg/L|<5||||F|||20230115083000\r"
    )
    (folder / "patienter.hl7").write_bytes(patients.encode("iso-8859-1"))
    (folder / "svar.hl7").write_bytes(results.encode("iso-8859-1"))

    core = migrate("lab_su", folder, settings_for, monkeypatch, tmp_path)

    patient = core["patient"].iloc[0]
    assert (patient["identity_number"], patient["family_name"], patient["sex"]) == (
        PERSONNUMMER,
        "Hellström",
        "male",
    )
    assert (patient["protected_identity"], patient["birth_date"]) == (
        "skyddad_folkbokforing",
        dt.date(1954, 1, 3),
    )
    observations = core["observation"].sort_values("source_key").reset_index(drop=True)
    assert observations["source_key"].tolist() == ["M1|1", "M1|2"]
    assert observations["npu_code"].tolist() == ["NPU02319", "NPU19748"]
    assert observations["value_numeric"].tolist() == [134.0, 0.8]
    assert observations["value_comparator"].fillna("").tolist() == ["", "<"]
    assert observations["reference_high"].tolist() == [153.0, 5.0]
    assert observations["sampled_at"].iloc[0] == pd.Timestamp("2023-01-15 07:30", tz="UTC")
    assert (
        observations["patient_id"] == core_ids("lab_su", "patient", pd.Series(["L-1"])).iloc[0]
    ).all()


def test_xml_radiology_examinations_become_procedures(tmp_path, settings_for, monkeypatch):
    folder = tmp_path / "ris_su"
    folder.mkdir()
    (folder / "patienter.xml").write_bytes(
        (
            '<?xml version="1.0" encoding="ISO-8859-1"?>\n<RisExport>\n'
            f'<Patient id="R-1"><Personnummer>{PERSONNUMMER[:8]}-{PERSONNUMMER[8:]}</Personnummer>'
            "<Namn><Efternamn>Hellstr\xf6m</Efternamn><Fornamn>Karl</Fornamn></Namn><Kon>M</Kon><Skydd/></Patient>\n"
            "</RisExport>\n"
        ).encode("iso-8859-1")
    )
    (folder / "undersokningar.xml").write_bytes(
        (
            '<?xml version="1.0" encoding="ISO-8859-1"?>\n<RisExport>\n'
            '<Undersokning id="U1"><PatientId>R-1</PatientId><Kod>DT-HJARNA</Kod>'
            "<Benamning>DT hj\xe4rna</Benamning>"
            "<Utford>2001-01-08T12:35:00</Utford><EnhetHsaId>SE2321000131-F000000368436</EnhetHsaId>"
            "<Sparr>true</Sparr><Utlatande>Ingen fraktur p\xe5visas.</Utlatande></Undersokning>\n"
            '<Undersokning id="U2"><PatientId>R-1</PatientId><Kod>AQ014</Kod>'
            "<Benamning>R\xf6ntgen</Benamning>"
            "<Utford>2001-13-08T12:35:00</Utford><EnhetHsaId>SE2321000131-F000000368436</EnhetHsaId>"
            "<Sparr>false</Sparr></Undersokning>\n"
            "</RisExport>\n"
        ).encode("iso-8859-1")
    )

    core = migrate("ris_su", folder, settings_for, monkeypatch, tmp_path)

    assert core["patient"]["identity_number"].tolist() == [PERSONNUMMER]
    procedure = core["procedure"].iloc[0]
    assert (procedure["source_key"], procedure["kva_code"], procedure["procedure_date"]) == (
        "U1",
        "AF021",
        dt.date(2001, 1, 8),
    )
    assert bool(procedure["is_blocked"]) is True  # spärr travels with the examination
    outcomes = core["procedure.outcomes"]
    quarantined = outcomes[outcomes["outcome"] == "quarantined"]
    assert quarantined[["_source_key", "reason", "field"]].values.tolist() == [
        ["U2", "unparseable_date", "utford"]
    ]
    # The care unit's HSA-id is in neither the batch nor the core (the register comes from
    # ELVIS): the examination loads, flagged for a steward.
    flagged = outcomes[outcomes["outcome"] == "flagged"]
    assert flagged[["_source_key", "reason", "field"]].values.tolist() == [
        ["U1", "unresolved_reference", "enhet"]
    ]


def test_jsonl_icu_measurements_become_observations(tmp_path, settings_for, monkeypatch):
    folder = tmp_path / "icu_su"
    folder.mkdir()
    (folder / "patienter.jsonl").write_text(
        f'{{"patientId":"I-1","identitet":{{"nummer":"{PERSONNUMMER}","typ":"PERSONNUMMER"}},'
        '"namn":{"efternamn":"Hellström","fornamn":"Karl"},"kon":"man","skydd":""}\n',
        encoding="utf-8",
    )
    (folder / "vardtillfallen.jsonl").write_text(
        '{"vardtillfalleId":"V-1","patientId":"I-1","avdelning":{"hsaId":"SE2321000131-F000000328841",'
        '"namn":"Thoraxintensiven"},"inskriven":"1999-05-07T15:30:00","utskriven":"1999-05-21T08:19:00"}\n',
        encoding="utf-8",
    )
    (folder / "matningar.jsonl").write_text(
        '{"matningId":"M-1","patientId":"I-1","tid":"1999-05-11T19:45:00","analys":{"kod":"POC-HB",'
        '"namn":"B-Hemoglobin"},"varde":"122","enhet":"g/L","referens":"134-170"}\n'
        "{this is not json\n",
        encoding="utf-8",
    )

    core = migrate("icu_su", folder, settings_for, monkeypatch, tmp_path)

    observation = core["observation"].iloc[0]
    assert (
        observation["npu_code"],
        observation["value_numeric"],
        observation["reference_low"],
    ) == ("NPU02319", 122.0, 134.0)
    assert observation["sampled_at"] == pd.Timestamp("1999-05-11 17:45", tz="UTC")
    assert core["observation.outcomes"]["reason"].tolist() == ["unreadable_record"]
    assert core["encounter"]["started_at"].tolist() == [pd.Timestamp("1999-05-07 13:30", tz="UTC")]
