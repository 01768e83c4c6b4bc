"""The closed vocabulary of named transforms (``etl.core.vocabulary``) as tables.

Each case is: transform, its ``args`` as written in a mapping file, one legacy value, and the
expected core value and error reason (``None`` means missing). The context's reference date is
fixed, so no rule here depends on today.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json

import pandas as pd
import pytest
from pydantic import ValidationError

from etl.core.ids import core_ids
from etl.core.vocabulary import REGISTRY, TransformArgs, TransformContext, describe

pytestmark = pytest.mark.unit

REFERENCE_DATE = dt.date(2026, 11, 25)
LAB_CROSSWALK = "melior_lab_local_to_npu"
CONTEXT = TransformContext(
    system="melior",
    reference_date=REFERENCE_DATE,
    # Keys are upper case, as load_crosswalks stores them.
    crosswalks={LAB_CROSSWALK: {"L-CRP": "NPU19748", "L-HB": "NPU02319"}},
)

NOT_MAPPED = None  # the expected value or error is missing (NA, NaN, NaT or None)


def run(name: str, raw_values: list, args: dict | None = None, index=None):
    definition = REGISTRY[name]
    values = pd.Series(raw_values, index=index, dtype="object")
    return definition.function(values, definition.args_model.model_validate(args or {}), CONTEXT)


def assert_cell(actual, expected) -> None:
    if expected is NOT_MAPPED:
        assert pd.isna(actual), f"expected missing, got {actual!r}"
    else:
        assert not pd.isna(actual), f"expected {expected!r}, got missing"
        assert actual == expected
        # A date must stay a date: a Timestamp would silently become a timestamp column.
        assert type(actual) is type(expected) or not isinstance(expected, dt.date)


def case(name: str, raw, value, error=NOT_MAPPED, args: dict | None = None, *, id: str, marks=()):
    return pytest.param(name, args or {}, raw, value, error, id=f"{name}: {id}", marks=marks)


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


YMD = {"formats": ["%Y%m%d"]}
ISO = {"formats": ["%Y-%m-%d"]}
YYMMDD = {"formats": ["%y%m%d"]}
SEX = {"values": {"M": "male", "K": "female", "U": "unknown"}}
LAB = {"crosswalk": LAB_CROSSWALK, "standard_pattern": r"NPU\d{5}"}
LOW = {"bound": "low"}
HIGH = {"bound": "high"}
VALID_HSA_ID = "SE2321000131-E000000000001"


def reference(key: str, system: str = "melior", entity: str = "patient") -> str:
    return core_ids(system, entity, pd.Series([key])).iloc[0]


ARABIC_INDIC_ORGANISATION_NUMBER = "\u0662\u0663\u0662\u0661\u0660\u0660\u0660\u0661\u0663\u0661"

CASES = [
    # text and numbers
    case("text", "  Anna  ", "Anna", id="trims"),
    case("text", "Anna  Maria", "Anna  Maria", id="keeps-inner-spaces"),
    case("text", "Jönköping", "Jönköping", id="keeps-swedish-letters"),
    case("upper_text", " sahlgrenska ", "SAHLGRENSKA", id="trims-and-upper-cases"),
    case("upper_text", "göteborg", "GÖTEBORG", id="upper-cases-swedish-letters"),
    case("constant", "anything", "ambulatory", args={"value": "ambulatory"}, id="ignores-source"),
    case("constant", "", "ambulatory", args={"value": "ambulatory"}, id="fills-blank-rows"),
    case("constant", "x", True, args={"value": True}, id="boolean"),
    case("integer", "12", 12, id="digits"),
    case("integer", " -3 ", -3, id="negative-padded"),
    case("integer", "+7", 7, id="plus-sign"),
    case("integer", "1.5", NOT_MAPPED, "invalid_number", id="decimal"),
    case("integer", "12a", NOT_MAPPED, "invalid_number", id="trailing-letter"),
    case("integer", "1 000", NOT_MAPPED, "invalid_number", id="thousands-space"),
    case("decimal_comma", "5,4", 5.4, id="comma"),
    case("decimal_comma", "5.4", 5.4, id="point"),
    case("decimal_comma", "-0,25", -0.25, id="negative"),
    case("decimal_comma", "1 000,5", 1000.5, id="thousands-space"),
    case("decimal_comma", "7", 7.0, id="whole-number"),
    case("decimal_comma", "5,4,3", NOT_MAPPED, "invalid_number", id="two-commas"),
    case("decimal_comma", "ca 5", NOT_MAPPED, "invalid_number", id="words"),
    # flags and closed sets
    case("yes_no", "J", True, id="J"),
    case("yes_no", " ja ", True, id="ja-lower-padded"),
    case("yes_no", "1", True, id="one"),
    case("yes_no", "N", False, id="N"),
    case("yes_no", "nej", False, id="nej"),
    case("yes_no", "0", False, id="zero"),
    case("yes_no", "X", NOT_MAPPED, "invalid_value", id="unknown-letter"),
    case("yes_no", "", False, id="blank-is-false-by-default"),
    case("yes_no", "", NOT_MAPPED, args={"missing_is": None}, id="blank-stays-missing"),
    case("yes_no", "t", True, args={"true_values": ["T"], "false_values": ["F"]}, id="own-values"),
    case("map_values", "M", "male", args=SEX, id="known"),
    case("map_values", " K ", "female", args=SEX, id="padded"),
    case("map_values", "m", NOT_MAPPED, "invalid_value", args=SEX, id="case-sensitive"),
    case("map_values", "X", NOT_MAPPED, "invalid_value", args=SEX, id="unknown"),
    case("map_values", "", "none", args={**SEX, "default": "none"}, id="blank-gets-default"),
    case("map_values", "J", True, args={"values": {"J": True, "N": False}}, id="boolean-values"),
    # dates
    case("parse_legacy_date", "2023-11-05", dt.date(2023, 11, 5), args=ISO, id="iso"),
    case("parse_legacy_date", "20231105", dt.date(2023, 11, 5), args=YMD, id="yyyymmdd"),
    case("parse_legacy_date", " 20231105 ", dt.date(2023, 11, 5), args=YMD, id="padded"),
    case(
        "parse_legacy_date",
        "2023111",
        NOT_MAPPED,
        "unparseable_date",
        args=YMD,
        id="seven-digits-not-yyyymmdd",
    ),
    case(
        "parse_legacy_date",
        "2023-1-5",
        NOT_MAPPED,
        "unparseable_date",
        args=ISO,
        id="one-digit-month",
    ),
    case("parse_legacy_date", "20231305", NOT_MAPPED, "unparseable_date", args=YMD, id="month-13"),
    case(
        "parse_legacy_date",
        "2023-02-29",
        NOT_MAPPED,
        "unparseable_date",
        args=ISO,
        id="not-leap-year",
    ),
    case("parse_legacy_date", "2024-02-29", dt.date(2024, 2, 29), args=ISO, id="leap-day"),
    case(
        "parse_legacy_date",
        "05.11.2023",
        dt.date(2023, 11, 5),
        args={"formats": ["%d.%m.%Y"]},
        id="dd.mm.yyyy",
    ),
    case(
        "parse_legacy_date",
        "31.02.2021",
        NOT_MAPPED,
        "unparseable_date",
        args={"formats": ["%d.%m.%Y"]},
        id="31-february",
    ),
    case(
        "parse_legacy_date",
        "20231105",
        dt.date(2023, 11, 5),
        args={"formats": ["%Y-%m-%d", "%Y%m%d", "%d.%m.%Y"]},
        id="second-of-three-formats",
    ),
    case("parse_legacy_date", "hösten 2023", NOT_MAPPED, "unparseable_date", args=ISO, id="words"),
    case("parse_legacy_date", "231105", dt.date(2023, 11, 5), args=YYMMDD, id="yymmdd-recent"),
    case("parse_legacy_date", "500101", dt.date(1950, 1, 1), args=YYMMDD, id="yymmdd-to-past"),
    case(
        "parse_legacy_date",
        "261125",
        dt.date(2026, 11, 25),
        args=YYMMDD,
        id="yymmdd-on-reference-date-kept",
    ),
    case(
        "parse_legacy_date",
        "261126",
        dt.date(1926, 11, 26),
        args=YYMMDD,
        id="yymmdd-day-after-reference-date-pivots",
    ),
    case(
        "parse_legacy_date",
        "330115",
        dt.date(2033, 1, 15),
        args={**YYMMDD, "future_years_allowed": 10},
        id="yymmdd-planned-date-within-allowed-future",
    ),
    case(
        "parse_legacy_date",
        "370115",
        dt.date(1937, 1, 15),
        args={**YYMMDD, "future_years_allowed": 10},
        id="yymmdd-beyond-allowed-future-pivots",
    ),
    case(
        "parse_legacy_date",
        "500101",
        dt.date(2050, 1, 1),
        args={**YYMMDD, "two_digit_years": "python"},
        id="yymmdd-python-rule",
    ),
    case(
        "parse_legacy_date",
        "2030-01-01",
        dt.date(2030, 1, 1),
        args={"formats": ["%Y-%m-%d", "%y%m%d"]},
        id="four-digit-year-never-pivoted",
    ),
    # timestamps: Europe/Stockholm local time to UTC
    case("parse_legacy_timestamp", "202307011200", utc("2023-07-01 10:00"), id="summer-cest"),
    case("parse_legacy_timestamp", "202301151200", utc("2023-01-15 11:00"), id="winter-cet"),
    case(
        "parse_legacy_timestamp",
        "202310290230",
        NOT_MAPPED,
        "ambiguous_local_time",
        id="repeated-autumn-hour-quarantined-by-default",
    ),
    case(
        "parse_legacy_timestamp",
        "202310290230",
        utc("2023-10-29 01:30"),
        args={"on_ambiguous": "standard_time"},
        id="repeated-autumn-hour-as-declared-standard-time",
    ),
    case(
        "parse_legacy_timestamp",
        "202310290130",
        utc("2023-10-28 23:30"),
        id="hour-before-autumn-change-is-summer-time",
    ),
    case(
        "parse_legacy_timestamp",
        "202303260230",
        NOT_MAPPED,
        "nonexistent_local_time",
        id="missing-spring-hour-quarantined-by-default",
    ),
    case(
        "parse_legacy_timestamp",
        "202303260230",
        utc("2023-03-26 01:30"),
        args={"on_nonexistent": "standard_time"},
        id="missing-spring-hour-as-declared-standard-time",
    ),
    case("parse_legacy_timestamp", "202401010030", utc("2023-12-31 23:30"), id="crosses-new-year"),
    case(
        "parse_legacy_timestamp",
        "2023070112",
        NOT_MAPPED,
        "unparseable_date",
        id="no-minutes",
    ),
    case("parse_legacy_timestamp", "202313011200", NOT_MAPPED, "unparseable_date", id="month-13"),
    case(
        "parse_legacy_timestamp",
        "2023-07-01 12:00",
        utc("2023-07-01 10:00"),
        args={"formats": ["%Y-%m-%d %H:%M"]},
        id="own-format",
    ),
    case(
        "parse_legacy_timestamp",
        "202307011200",
        utc("2023-07-01 12:00"),
        args={"timezone": "UTC"},
        id="source-already-utc",
    ),
    # codes
    case("normalise_icd10_se", "I219", "I21.9", id="adds-dot"),
    case("normalise_icd10_se", "e11.9", "E11.9", id="upper-cases"),
    case("normalise_icd10_se", "Z86.1A", "Z86.1A", id="swedish-extension-letter-kept"),
    case("normalise_icd10_se", "I21", "I21", id="category-only"),
    case("normalise_icd10_se", "S7200", "S72.00", id="five-characters"),
    case("normalise_icd10_se", " i 21 9 ", "I21.9", id="inner-spaces"),
    case("normalise_icd10_se", "hjärtinfarkt", NOT_MAPPED, "invalid_code", id="free-text"),
    case("normalise_icd10_se", "121.9", NOT_MAPPED, "invalid_code", id="digit-first"),
    case("normalise_icd10_se", "I21.", NOT_MAPPED, "invalid_code", id="dot-without-digit"),
    case("normalise_kva", "NFB49", "NFB49", id="surgical-3-letters-2-digits"),
    case("normalise_kva", "dt016", "DT016", id="medical-2-letters-3-digits-lower"),
    case("normalise_kva", "NF49", NOT_MAPPED, "invalid_code", id="too-short"),
    case("normalise_kva", "12345", NOT_MAPPED, "invalid_code", id="digits-only"),
    case("normalise_atc", "A10BA02", "A10BA02", id="substance-level"),
    case("normalise_atc", " a10ba02 ", "A10BA02", id="lower-padded"),
    case("normalise_atc", "A10BA", NOT_MAPPED, "invalid_code", id="chemical-group-only"),
    case("normalise_atc", "A10BA2", NOT_MAPPED, "invalid_code", id="one-digit-short"),
    case("normalise_npl_id", "20100402100118", "20100402100118", id="14-digits"),
    case("normalise_npl_id", "2010040210011", NOT_MAPPED, "invalid_code", id="13-digits"),
    case("normalise_npl_id", "20100402100118X", NOT_MAPPED, "invalid_code", id="trailing-letter"),
    case(
        "normalise_npl_id",
        "\u0661" * 14,
        NOT_MAPPED,
        "invalid_code",
        id="arabic-indic-digits",
    ),
    case("hsa_id", VALID_HSA_ID, VALID_HSA_ID, id="valid"),
    case("hsa_id", VALID_HSA_ID.lower(), VALID_HSA_ID, id="lower-case"),
    case(
        "hsa_id",
        "SE2321000131-E00000000000000001",
        "SE2321000131-E00000000000000001",
        id="31-characters",
    ),
    case(
        "hsa_id",
        "SE2321000131-E000000000000000001",
        NOT_MAPPED,
        "invalid_hsa_id",
        id="32-characters",
    ),
    case("hsa_id", "SE2321000131-Eå01", NOT_MAPPED, "invalid_hsa_id", id="å"),
    case("hsa_id", "SE2321000131E000000000001", NOT_MAPPED, "invalid_hsa_id", id="missing-dash"),
    case("hsa_id", "SE232100013-E01", NOT_MAPPED, "invalid_hsa_id", id="9-digit-organisation"),
    case(
        "hsa_id",
        f"SE{ARABIC_INDIC_ORGANISATION_NUMBER}-E1",
        NOT_MAPPED,
        "invalid_hsa_id",
        id="arabic-indic-digits",
    ),
    case("map_code", "L-CRP", "NPU19748", args=LAB, id="local-code-through-crosswalk"),
    case("map_code", " l-crp ", "NPU19748", args=LAB, id="local-code-lower-padded"),
    case("map_code", "NPU03230", "NPU03230", args=LAB, id="standard-code-passes"),
    case("map_code", "npu03230", "NPU03230", args=LAB, id="standard-code-lower"),
    case("map_code", "L-XYZ", NOT_MAPPED, "unmapped_code", args=LAB, id="unknown-local-code"),
    case("map_code", "NPU1234", NOT_MAPPED, "unmapped_code", args=LAB, id="not-quite-standard"),
    case(
        "map_code",
        "NPU03230",
        NOT_MAPPED,
        "unmapped_code",
        args={"crosswalk": LAB_CROSSWALK},
        id="no-standard-pattern",
    ),
    # laboratory values in Swedish notation
    case("lab_value_numeric", "5,4", 5.4, id="decimal-comma"),
    case("lab_value_numeric", "<0,8", 0.8, id="below"),
    case("lab_value_numeric", ">200", 200.0, id="above"),
    case("lab_value_numeric", "<= 3", 3.0, id="at-most-spaced"),
    case("lab_value_numeric", "POS", NOT_MAPPED, id="text-result"),
    case("lab_value_comparator", "5,4", NOT_MAPPED, id="plain-number"),
    case("lab_value_comparator", "<0,8", "<", id="below"),
    case("lab_value_comparator", ">200", ">", id="above"),
    case("lab_value_comparator", ">= 1,5", ">=", id="at-least-spaced"),
    case("lab_value_comparator", "POS", NOT_MAPPED, id="text-result"),
    case("lab_value_text", "5,4", NOT_MAPPED, id="decimal-comma"),
    case("lab_value_text", "<0,8", NOT_MAPPED, id="below"),
    case("lab_value_text", ">200", NOT_MAPPED, id="above"),
    case("lab_value_text", "POS", "POS", id="text-result"),
    case("lab_value_text", " Neg ", "Neg", id="text-trimmed-case-kept"),
    case("reference_range_bound", "3,5-4,6", 3.5, args=LOW, id="low-of-range"),
    case("reference_range_bound", "3,5-4,6", 4.6, args=HIGH, id="high-of-range"),
    case("reference_range_bound", "3,5 - 4,6", 3.5, args=LOW, id="low-of-spaced-range"),
    case("reference_range_bound", "<5", NOT_MAPPED, args=LOW, id="low-of-below"),
    case("reference_range_bound", "<5", 5.0, args=HIGH, id="high-of-below"),
    case("reference_range_bound", "<=5,5", 5.5, args=HIGH, id="high-of-at-most"),
    case("reference_range_bound", ">60", 60.0, args=LOW, id="low-of-above"),
    case("reference_range_bound", ">60", NOT_MAPPED, args=HIGH, id="high-of-above"),
    case(
        "reference_range_bound", "garbage", NOT_MAPPED, "invalid_range", args=LOW, id="garbage-low"
    ),
    case(
        "reference_range_bound",
        "garbage",
        NOT_MAPPED,
        "invalid_range",
        args=HIGH,
        id="garbage-high",
    ),
    case("reference_range_bound", "3,5-", NOT_MAPPED, "invalid_range", args=HIGH, id="open-range"),
    # references between rows
    case("reference_id", "P1", reference("P1"), args={"entity": "patient"}, id="own-system"),
    case("reference_id", " P1 ", reference("P1"), args={"entity": "patient"}, id="padded-key"),
    case(
        "reference_id",
        "P1",
        reference("P1", system="elvis"),
        args={"entity": "patient", "system": "elvis"},
        id="other-system",
    ),
    case(
        "reference_id",
        "K7",
        reference("K7", entity="encounter"),
        args={"entity": "encounter"},
        id="other-entity",
    ),
]


@pytest.mark.parametrize(("name", "args", "raw", "value", "error"), CASES)
def test_transform(name, args, raw, value, error):
    result = run(name, [raw], args)
    assert_cell(result.values.iloc[0], value)
    assert_cell(result.errors.iloc[0], error)


# Arguments that make each transform read its input as text and leave a blank blank.
MINIMAL_ARGS = {
    "text": {},
    "upper_text": {},
    "integer": {},
    "decimal_comma": {},
    "yes_no": {"missing_is": None},
    "map_values": SEX,
    "parse_legacy_date": YMD,
    "parse_legacy_timestamp": {},
    "normalise_icd10_se": {},
    "normalise_kva": {},
    "normalise_atc": {},
    "normalise_npl_id": {},
    "hsa_id": {},
    "map_code": LAB,
    "lab_value_numeric": {},
    "lab_value_comparator": {},
    "lab_value_text": {},
    "reference_range_bound": LOW,
    "reference_id": {"entity": "patient"},
}
NOT_READING_TEXT = {"constant"}
BLANKS = {"empty": "", "spaces": "   ", "tab": "\t", "none": None}


@pytest.mark.parametrize("blank", list(BLANKS.values()), ids=list(BLANKS))
@pytest.mark.parametrize("name", sorted(MINIMAL_ARGS))
def test_blank_input_gives_missing_value_and_no_error(name, blank):
    result = run(name, [blank], MINIMAL_ARGS[name])
    assert_cell(result.values.iloc[0], NOT_MAPPED)
    assert_cell(result.errors.iloc[0], NOT_MAPPED)


def test_every_transform_has_a_table_and_a_blank_test():
    tabled = {param.values[0] for param in CASES}
    assert tabled == set(REGISTRY), "add table cases for new transforms"
    assert set(MINIMAL_ARGS) | NOT_READING_TEXT == set(REGISTRY), "add it to MINIMAL_ARGS"


def _case_groups() -> list:
    """The table's cases that share a transform and args, as one multi-row input each."""
    groups: dict[tuple[str, str], list] = {}
    for param in CASES:
        if param.marks:
            continue
        name, args, *_ = param.values
        groups.setdefault((name, json.dumps(args, sort_keys=True)), []).append(param.values)
    return [
        pytest.param(rows, id=f"{name} {args_key}") for (name, args_key), rows in groups.items()
    ]


@pytest.mark.parametrize("rows", _case_groups())
def test_cases_give_the_same_results_in_one_series(rows):
    """Vectorised: row results do not depend on their neighbours, and the index is kept."""
    name, args = rows[0][0], rows[0][1]
    rows = [*rows, *reversed(rows)]
    index = [1000 - 3 * position for position in range(len(rows))]
    result = run(name, [row[2] for row in rows], args, index=index)
    assert result.values.index.tolist() == index
    assert result.errors.index.tolist() == index
    for position, (_, _, _, value, error) in enumerate(rows):
        assert_cell(result.values.loc[index[position]], value)
        assert_cell(result.errors.loc[index[position]], error)


def test_timestamps_are_utc():
    result = run("parse_legacy_timestamp", ["202307011200", ""])
    assert str(result.values.dt.tz) == "UTC"


def test_map_code_unknown_crosswalk_is_a_key_error():
    """The catalog checks crosswalks at load; at run time a missing one is a programming error."""
    with pytest.raises(KeyError):
        run("map_code", ["L-CRP"], {"crosswalk": "no_such_crosswalk"})


@pytest.mark.parametrize(
    ("name", "args"),
    [
        pytest.param("parse_legacy_date", {}, id="date-without-formats"),
        pytest.param("parse_legacy_date", {**YMD, "two_digit_years": "soon"}, id="date-bad-pivot"),
        pytest.param("map_values", {}, id="map-values-without-values"),
        pytest.param("map_code", {}, id="map-code-without-crosswalk"),
        pytest.param("reference_range_bound", {"bound": "middle"}, id="range-bad-bound"),
        pytest.param("reference_id", {}, id="reference-without-entity"),
        pytest.param("text", {"strip": True}, id="unexpected-argument"),
    ],
)
def test_bad_args_are_rejected(name, args):
    with pytest.raises(ValidationError):
        REGISTRY[name].args_model.model_validate(args)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_transform_has_a_one_line_summary_and_an_args_model(name):
    definition = REGISTRY[name]
    docstring = inspect.getdoc(definition.function)
    assert docstring, f"{name} has no docstring"
    first_line, *rest = docstring.splitlines()
    assert definition.summary == first_line.strip() != ""
    assert not rest or rest[0].strip() == "", "the summary must be one line, then a blank line"
    assert issubclass(definition.args_model, TransformArgs)
    assert definition.args_model.model_config.get("extra") == "forbid"
    assert describe(name).startswith(f"{name}(")


@pytest.mark.parametrize(
    ("group", "code", "is_valid"),
    [
        (None, "N02BE01", True),
        ("J07", "J07BB02", True),
        ("J07", "j07bb02 ", True),
        ("J07", "N02BE01", False),  # well formed, but no vaccine
        ("J07", "J01CE02", False),
        ("J07", "J07", False),  # a group is not a substance
        ("J07BB", "J07BB02", True),
        ("J07BB", "J07BN01", False),
        ("J", "J07BN01", True),
    ],
)
def test_an_atc_code_outside_its_declared_group_is_an_invalid_code(group, code, is_valid):
    from etl.core.vocabulary import AtcArgs, normalise_atc

    result = normalise_atc(pd.Series([code], dtype="string"), AtcArgs(group=group), None)
    assert bool(result.errors.isna().iloc[0]) is is_valid
    if not is_valid:
        assert result.errors.iloc[0] == "invalid_code" and pd.isna(result.values.iloc[0])


@pytest.mark.parametrize("group", ["J0", "j07", "J07BB0", ""])
def test_an_atc_group_must_be_a_level_of_the_atc_hierarchy(group):
    from pydantic import ValidationError

    from etl.core.vocabulary import AtcArgs

    with pytest.raises(ValidationError):
        AtcArgs(group=group)
