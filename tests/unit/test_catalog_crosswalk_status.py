"""Crosswalk rows with a status (proposed/approved): parsing, errors, and approved-only mapping."""

from __future__ import annotations

import pandas as pd
import pytest

from etl.catalog import MappingError, load_catalog
from etl.core.vocabulary import REGISTRY, TransformContext
from etl.validate.checks import read_thresholds, source_check
from tests.golden_helpers import NO_DUPLICATES, REFERENCE_DATE, ROOT, landed
from tests.unit.test_catalog import write_mappings

pytestmark = pytest.mark.unit

CROSSWALK = "crosswalks/demo_lab_to_npu.csv"
WITH_STATUS = (
    "source_code,target_code,note,status,decided_by,decided_at\n"
    "L-K,NPU03230,P-Kalium,,,\n"
    "L-NA,NPU03429,P-Natrium,approved,steward-a,2026-11-30T10:00:00+00:00\n"
    "L-CRP,NPU19748,P-CRP,proposed,steward-b,2026-12-01\n"
)


def test_rows_without_status_are_approved_and_proposed_rows_are_known(tmp_path):
    catalog = load_catalog(write_mappings(tmp_path, {CROSSWALK: WITH_STATUS}))
    assert catalog.crosswalks["demo_lab_to_npu"] == {
        "L-K": "NPU03230",
        "L-NA": "NPU03429",
        "L-CRP": "NPU19748",
    }
    rows = catalog.crosswalk_rows["demo_lab_to_npu"]
    assert {code: row.status for code, row in rows.items()} == {
        "L-K": "approved",
        "L-NA": "approved",
        "L-CRP": "proposed",
    }
    assert rows["L-CRP"].decided_by == "steward-b"
    assert catalog.proposed_codes == {"demo_lab_to_npu": frozenset({"L-CRP"})}


def test_every_bad_row_is_named_by_file_row_and_field(tmp_path):
    bad = (
        "source_code,target_code,note,status,decided_by,decided_at\n"
        "L-K,NPU03230,ok,,,\n"
        "L-X,NPU1,typo,aproved,someone,2026-12-01\n"
        "L-Y,,no target,proposed,,\n"
        "L-Z,NPU2,no who,approved,,\n"
        "L-W,NPU3,bad when,proposed,someone,yesterday\n"
    )
    with pytest.raises(MappingError) as error:
        load_catalog(write_mappings(tmp_path, {CROSSWALK: bad}))
    problems = error.value.problems
    path = tmp_path / CROSSWALK
    assert (
        f"{path}: row 3: field 'status': 'aproved' is not one of proposed, approved"
        in (problems[0])
    )
    assert any(p.startswith(f"{path}: row 4: field 'target_code': empty") for p in problems)
    assert any(p.startswith(f"{path}: row 5: field 'decided_by'") for p in problems)
    assert any(p.startswith(f"{path}: row 5: field 'decided_at'") for p in problems)
    assert any(p.startswith(f"{path}: row 6: field 'decided_at': 'yesterday'") for p in problems)
    assert len(problems) == 5


def test_an_unknown_column_is_a_problem(tmp_path):
    bad = "source_code,target_code,note,approver\nL-K,NPU03230,ok,x\n"
    with pytest.raises(MappingError, match=r"unknown column.*approver"):
        load_catalog(write_mappings(tmp_path, {CROSSWALK: bad}))


def test_the_region_crosswalks_still_load_all_approved():
    catalog = load_catalog(ROOT / "mappings")
    assert catalog.crosswalks
    assert not any(catalog.proposed_codes.values())


def _map_code(values: list[str | None], unapproved: dict[str, frozenset[str]]):
    context = TransformContext(
        "demo",
        REFERENCE_DATE,
        {"lab": {"L-K": "NPU03230", "L-CRP": "NPU19748"}},
        unapproved,
    )
    definition = REGISTRY["map_code"]
    args = definition.args_model.model_validate(
        {"crosswalk": "lab", "standard_pattern": r"NPU\d{5}"}
    )
    return definition.function(pd.Series(values, dtype="object"), args, context)


def test_map_code_refuses_a_proposed_only_code_when_approval_is_required():
    values = ["L-K", "l-crp", "L-NONE", "NPU19748", None]
    lenient = _map_code(values, {})
    assert lenient.values.tolist()[:4] == ["NPU03230", "NPU19748", pd.NA, "NPU19748"]
    assert lenient.errors.tolist()[:4] == [pd.NA, pd.NA, "unmapped_code", pd.NA]
    strict = _map_code(values, {"lab": frozenset({"L-CRP", "NPU19748"})})
    assert strict.values.tolist()[:4] == ["NPU03230", pd.NA, pd.NA, "NPU19748"]
    assert strict.errors.tolist() == [pd.NA, "unapproved_code", "unmapped_code", pd.NA, pd.NA]


@pytest.mark.parametrize("required", [False, True])
def test_transform_quarantines_the_proposed_only_code_only_when_required(tmp_path, required):
    from etl.transform.engine import transform_chunk

    catalog = load_catalog(write_mappings(tmp_path, {CROSSWALK: WITH_STATUS}))
    mapping = catalog.system("demo").entities["observation"]
    rows = [
        {"SVARSNR": "1", "PATNR": "P1", "ANALYSKOD": "L-K"},
        {"SVARSNR": "2", "PATNR": "P1", "ANALYSKOD": "L-CRP"},
    ]
    result = transform_chunk(
        landed(rows, "SVARSNR"),
        mapping,
        catalog,
        "batch-1",
        REFERENCE_DATE,
        {"patient": pd.Index(["P1"])},
        NO_DUPLICATES,
        require_approved_codes=required,
    )
    if required:
        assert result.rows["npu_code"].tolist() == ["NPU03230"]
        (outcome,) = result.outcomes.itertuples()
        assert (outcome.reason, outcome.field) == ("unapproved_code", "ANALYSKOD")
    else:
        assert result.rows["npu_code"].tolist() == ["NPU03230", "NPU19748"]
        assert result.outcomes.empty


def test_the_gate_stops_at_the_first_unapproved_code():
    thresholds = read_thresholds(ROOT / "expectations" / "thresholds.yaml")
    check = source_check("unapproved_code")
    assert thresholds.rule_for(check).severity == "error"
    assert not thresholds.is_waivable(check)
    assert thresholds.breaches(check, "demo", 1, 1_000_000)
    assert not thresholds.breaches(check, "demo", 0, 1_000_000)
