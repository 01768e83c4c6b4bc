"""Swedish identity-number rules (DOMAIN.md, "Identifiers").

Valid personnummer and samordningsnummer come from Skatteverket's published test numbers, never
from a generator: a random number that passes the check digit may belong to a living person.
Numbers built here with ``luhn_check_digit`` are invalid on purpose (impossible dates).
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import etl
from etl.identifiers import (
    FHIR_SYSTEMS,
    IdentityKind,
    birth_date_from_identity,
    is_valid_hsa_id,
    is_valid_organisationsnummer,
    luhn_check_digit,
    normalise_identity,
    normalise_identity_one,
    sex_from_identity,
)

pytestmark = pytest.mark.unit

REFERENCE_DATE = datetime.date(2026, 11, 25)
TEST_ID_DIRECTORY = Path(etl.__file__).parent / "estate" / "data"

PERSONNUMMER = IdentityKind.PERSONNUMMER.value
SAMORDNINGSNUMMER = IdentityKind.SAMORDNINGSNUMMER.value
RESERVNUMMER_VGR = IdentityKind.RESERVNUMMER_VGR.value
RESERVNUMMER_LEGACY = IdentityKind.RESERVNUMMER_LEGACY.value
INTERIMSNUMMER = IdentityKind.INTERIMSNUMMER.value


def with_check_digit(nine_digits: str) -> str:
    """Append the correct Luhn digit, so that only the date can make the number invalid."""
    return nine_digits + str(luhn_check_digit(nine_digits))


# Luhn-correct but on a day that does not exist, so it can never be anyone's number.
FEBRUARY_30 = with_check_digit("900230238")
# "199001012385" in Arabic-Indic digits: \d would match these, the rules must not.
ARABIC_INDIC_DIGITS = "\u0661\u0669\u0669\u0660\u0660\u0661\u0660\u0661\u0662\u0663\u0668\u0665"


def vgr_with_check_digit(prefix: str) -> str:
    """Append the correct check digit to a VGR reservnummer prefix ``yyyymmddGgg``."""
    letter_digit = {"K": "5", "M": "7", "X": "8"}[prefix[8]]
    return prefix + str(luhn_check_digit(prefix[2:8] + letter_digit + prefix[9:11]))


def read_test_numbers(file_name: str) -> list[str]:
    return (TEST_ID_DIRECTORY / file_name).read_text(encoding="ascii").split()


def ten_digits_with_separator(twelve_digits: str) -> str:
    """``YYMMDD-NNNC``, or ``YYMMDD+NNNC`` from the year the person turns 100 (Skatteverket)."""
    separator = "+" if REFERENCE_DATE.year - int(twelve_digits[:4]) >= 100 else "-"
    return f"{twelve_digits[2:8]}{separator}{twelve_digits[8:]}"


# --- Luhn and FHIR systems -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("digits", "expected"),
    [
        ("900101238", 5),
        ("232100013", 1),
        ("810829707", 1),
        ("0", 0),
        ("7", 5),
    ],
    ids=["personnummer-body", "vgr-organisationsnummer", "vgr-reserve-letter-as-7", "zero", "one"],
)
def test_luhn_check_digit(digits: str, expected: int) -> None:
    assert luhn_check_digit(digits) == expected


@pytest.mark.parametrize("digits", ["", "12a4", "１２３"], ids=["empty", "letter", "fullwidth"])
def test_luhn_check_digit_rejects_non_digits(digits: str) -> None:
    with pytest.raises(ValueError):
        luhn_check_digit(digits)


@pytest.mark.parametrize(
    ("kind", "system"),
    [
        (IdentityKind.PERSONNUMMER, "http://electronichealth.se/identifier/personnummer"),
        (IdentityKind.SAMORDNINGSNUMMER, "http://electronichealth.se/identifier/samordningsnummer"),
        (IdentityKind.RESERVNUMMER_VGR, "urn:vardflytt:reservnummer:vgr"),
        (IdentityKind.RESERVNUMMER_LEGACY, "urn:vardflytt:legacy-reservnummer"),
    ],
    ids=lambda value: str(value),
)
def test_fhir_systems(kind: IdentityKind, system: str) -> None:
    assert FHIR_SYSTEMS[kind] == system


# --- normalise_identity: valid values -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "century", "expected_number", "expected_kind"),
    [
        ("199001012385", None, "199001012385", PERSONNUMMER),
        ("19900101-2385", None, "199001012385", PERSONNUMMER),
        ("  199001012385\t", None, "199001012385", PERSONNUMMER),
        ("189001019802", None, "189001019802", PERSONNUMMER),
        ("9001012385", None, "199001012385", PERSONNUMMER),
        ("900101-2385", None, "199001012385", PERSONNUMMER),
        ("000101-2384", None, "200001012384", PERSONNUMMER),
        ("100101-2382", None, "201001012382", PERSONNUMMER),
        # 2026-12-04 lies after the reference date, so the latest possible century is 19xx.
        ("261204-9029", None, "192612049029", PERSONNUMMER),
        ("200101+1564", None, "192001011564", PERSONNUMMER),
        ("900101+9802", None, "189001019802", PERSONNUMMER),
        # A 4-digit year already names the century; a "+" adds nothing and is accepted.
        ("19200101+1564", None, "192001011564", PERSONNUMMER),
        ("202002292387", None, "202002292387", PERSONNUMMER),
        ("189202299815", None, "189202299815", PERSONNUMMER),
        ("9001019802", "8", "189001019802", PERSONNUMMER),
        ("9001012385", "9", "199001012385", PERSONNUMMER),
        ("0001012384", "0", "200001012384", PERSONNUMMER),
        ("2001011564", "9", "192001011564", PERSONNUMMER),
        ("200101-1564", "9", "192001011564", PERSONNUMMER),
        ("199001012385", "0", "199001012385", PERSONNUMMER),
        ("191401682396", None, "191401682396", SAMORDNINGSNUMMER),
        ("140168+2396", None, "191401682396", SAMORDNINGSNUMMER),
        ("1401682396", "9", "191401682396", SAMORDNINGSNUMMER),
        # Skatteverket issues samordningsnummer with an unknown month (00) or day (60 = day 00).
        ("191500882392", None, "191500882392", SAMORDNINGSNUMMER),
        (
            "19" + with_check_digit("900160238"),
            None,
            "19" + with_check_digit("900160238"),
            SAMORDNINGSNUMMER,
        ),
        ("000287-2380", None, "200002872380", SAMORDNINGSNUMMER),
        ("20000377-2381", None, "200003772381", SAMORDNINGSNUMMER),
        # Skatteverket's test list: coordination numbers whose date part is no calendar date.
        ("192004912388", None, "192004912388", SAMORDNINGSNUMMER),
        ("193002902397", None, "193002902397", SAMORDNINGSNUMMER),
        ("195102892386", None, "195102892386", SAMORDNINGSNUMMER),
        (
            "19" + with_check_digit("900290238"),
            None,
            "19" + with_check_digit("900290238"),
            SAMORDNINGSNUMMER,
        ),
        # "+" from the year the person turns 100: born December 1926, 100 in the reference year.
        ("261204+9029", None, "192612049029", PERSONNUMMER),
        ("19800101-T123", None, "19800101T123", INTERIMSNUMMER),
        ("800101T123", None, "19800101T123", INTERIMSNUMMER),
        ("800101-1R23", None, "198001011R23", INTERIMSNUMMER),
        ("20200229-12s4", None, "2020022912S4", INTERIMSNUMMER),
        ("19800101-K123", None, "19800101K123", INTERIMSNUMMER),
        ("19810829M071", None, "19810829M071", RESERVNUMMER_VGR),
        ("19450829K088", None, "19450829K088", RESERVNUMMER_VGR),
        ("19930829X802", None, "19930829X802", RESERVNUMMER_VGR),
        (" 19810829m071 ", None, "19810829M071", RESERVNUMMER_VGR),
    ],
    ids=[
        "pnr-12-digits",
        "pnr-12-with-dash",
        "pnr-surrounding-whitespace",
        "pnr-12-born-1890",
        "pnr-10-digits",
        "pnr-10-with-dash",
        "pnr-10-dash-2000s",
        "pnr-10-dash-2010s",
        "pnr-10-dash-date-after-reference-goes-back-a-century",
        "pnr-plus-born-1920",
        "pnr-plus-born-1890",
        "pnr-12-with-plus",
        "pnr-leap-day-2020",
        "pnr-leap-day-1892",
        "century-code-8",
        "century-code-9",
        "century-code-0",
        "century-code-overrides-inferred-century",
        "century-code-overrides-dash",
        "century-code-ignored-for-12-digits",
        "snr-12-digits",
        "snr-10-with-plus",
        "snr-century-code",
        "snr-month-00-from-skatteverket-list",
        "snr-day-60-unknown-day",
        "snr-10-dash-2000s",
        "snr-12-with-dash",
        "snr-31-april-from-skatteverket-list",
        "snr-30-february-from-skatteverket-list",
        "snr-29-february-1951-from-skatteverket-list",
        "snr-february-30",
        "pnr-plus-turns-100-later-in-the-reference-year",
        "interim-12-with-dash",
        "interim-10-without-separator",
        "interim-letter-second",
        "interim-letter-third-lower-case",
        "interim-vgr-letter-with-separator",
        "vgr-man",
        "vgr-woman",
        "vgr-unknown-sex",
        "vgr-lower-case-letter",
    ],
)
def test_normalise_identity_valid(
    value: str, century: str | None, expected_number: str, expected_kind: str
) -> None:
    assert normalise_identity_one(value, REFERENCE_DATE, century=century) == (
        expected_number,
        expected_kind,
        None,
    )


# --- normalise_identity: invalid values ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "century", "expected_error"),
    [
        ("199001012386", None, "invalid_check_digit"),
        ("900101-2386", None, "invalid_check_digit"),
        ("200101+1565", None, "invalid_check_digit"),
        ("191401682397", None, "invalid_check_digit"),
        ("19" + FEBRUARY_30, None, "invalid_date"),
        (FEBRUARY_30[:6] + "-" + FEBRUARY_30[6:], None, "invalid_date"),
        ("19" + with_check_digit("901301238"), None, "invalid_date"),
        ("19" + with_check_digit("900100238"), None, "invalid_date"),
        ("19" + with_check_digit("900132238"), None, "invalid_date"),
        ("19" + with_check_digit("900145238"), None, "invalid_date"),
        ("19" + with_check_digit("000229238"), None, "invalid_date"),
        (with_check_digit("000229238"), "9", "invalid_date"),
        ("19" + with_check_digit("900192238"), None, "invalid_date"),
        ("19" + with_check_digit("901392238"), None, "invalid_date"),
        ("19" + with_check_digit("900101000"), None, "invalid_serial_number"),
        (
            with_check_digit("900101000")[:6] + "-" + with_check_digit("900101000")[6:],
            None,
            "invalid_serial_number",
        ),
        ("19" + with_check_digit("900161000"), None, "invalid_serial_number"),
        ("19800230-T123", None, "invalid_date"),
        ("19800101-A123", None, "invalid_format"),
        ("19800101-TT23", None, "invalid_format"),
        ("9001012385", "5", "invalid_format"),
        ("9001012385", "19", "invalid_format"),
        ("19900101_2385", None, "invalid_format"),
        ("19900101 2385", None, "invalid_format"),
        ("900101--2385", None, "invalid_format"),
        ("9001-012385", None, "invalid_format"),
        ("900101238", None, "invalid_format"),
        (ARABIC_INDIC_DIGITS, None, "invalid_format"),
        ("R1234567", None, "invalid_format"),
        ("99-123456", None, "invalid_format"),
        ("1234567890123", None, "invalid_format"),
        ("19810829K071", None, "invalid_format"),
        ("19450829M088", None, "invalid_format"),
        ("19930829K802", None, "invalid_format"),
        ("19810829X071", None, "invalid_format"),
        (vgr_with_check_digit("19810829M05"), None, "invalid_format"),
        (vgr_with_check_digit("19810829K80"), None, "invalid_format"),
        (vgr_with_check_digit("19810829X90"), None, "invalid_format"),
        ("19810829A071", None, "invalid_format"),
        ("19810829M072", None, "invalid_check_digit"),
        ("19450829K089", None, "invalid_check_digit"),
        ("19930829X803", None, "invalid_check_digit"),
        (vgr_with_check_digit("19810230M07"), None, "invalid_date"),
        (vgr_with_check_digit("19811329K08"), None, "invalid_date"),
    ],
    ids=[
        "pnr-12-wrong-check-digit",
        "pnr-10-wrong-check-digit",
        "pnr-plus-wrong-check-digit",
        "snr-wrong-check-digit",
        "pnr-12-february-30",
        "pnr-10-february-30",
        "pnr-month-13",
        "pnr-day-00",
        "pnr-day-32",
        "pnr-day-45-between-ranges",
        "pnr-1900-is-not-a-leap-year",
        "pnr-century-code-1900-february-29",
        "snr-day-92",
        "snr-month-13",
        "pnr-serial-000",
        "pnr-10-serial-000",
        "snr-serial-000",
        "interim-february-30",
        "interim-letter-no-issuer-uses",
        "interim-two-letters",
        "century-code-unknown",
        "century-code-two-digits",
        "pnr-underscore-separator",
        "pnr-space-separator",
        "pnr-double-dash",
        "pnr-dash-misplaced",
        "pnr-nine-digits",
        "pnr-non-ascii-digits",
        "legacy-letter-prefix",
        "legacy-dash",
        "legacy-thirteen-digits",
        "vgr-woman-letter-odd-digits",
        "vgr-man-letter-even-digits",
        "vgr-woman-letter-unknown-range",
        "vgr-unknown-letter-person-range",
        "vgr-gender-digits-below-06",
        "vgr-woman-letter-80",
        "vgr-unknown-letter-above-89",
        "vgr-other-letter",
        "vgr-man-wrong-check-digit",
        "vgr-woman-wrong-check-digit",
        "vgr-unknown-wrong-check-digit",
        "vgr-february-30",
        "vgr-month-13",
    ],
)
def test_normalise_identity_invalid(value: str, century: str | None, expected_error: str) -> None:
    assert normalise_identity_one(value, REFERENCE_DATE, century=century) == (
        None,
        None,
        expected_error,
    )


@pytest.mark.parametrize(
    "value",
    [None, "", "   ", "\t\n"],
    ids=["none", "empty", "spaces", "tab-newline"],
)
@pytest.mark.parametrize("accept_legacy_reserve", [False, True], ids=["strict", "legacy"])
def test_normalise_identity_blank_gives_na_without_error(
    value: str | None, accept_legacy_reserve: bool
) -> None:
    result = normalise_identity_one(
        value, REFERENCE_DATE, accept_legacy_reserve=accept_legacy_reserve
    )
    assert result == (None, None, None)


# --- legacy reserve numbers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("R1234567", ("R1234567", RESERVNUMMER_LEGACY, None)),
        ("  r1234567 ", ("R1234567", RESERVNUMMER_LEGACY, None)),
        ("99-123456", ("99-123456", RESERVNUMMER_LEGACY, None)),
        ("1234567890123", ("1234567890123", RESERVNUMMER_LEGACY, None)),
        ("19810829K071", ("19810829K071", RESERVNUMMER_LEGACY, None)),
        ("19810829M072", ("19810829M072", RESERVNUMMER_LEGACY, None)),
        ("199001012386", (None, None, "invalid_check_digit")),
        ("900101-2386", (None, None, "invalid_check_digit")),
        ("200101+1565", (None, None, "invalid_check_digit")),
        ("19" + FEBRUARY_30, (None, None, "invalid_date")),
        ("199001012385", ("199001012385", PERSONNUMMER, None)),
        ("191401682396", ("191401682396", SAMORDNINGSNUMMER, None)),
        ("19810829M071", ("19810829M071", RESERVNUMMER_VGR, None)),
    ],
    ids=[
        "letter-prefix",
        "stripped-and-upper-cased",
        "dash",
        "thirteen-digits",
        "vgr-shaped-wrong-sex-digits",
        "vgr-shaped-wrong-check-digit",
        "12-digits-wrong-check-digit-stays-error",
        "10-with-dash-wrong-check-digit-stays-error",
        "10-with-plus-wrong-check-digit-stays-error",
        "digits-only-impossible-date-stays-error",
        "valid-personnummer-unchanged",
        "valid-samordningsnummer-unchanged",
        "valid-vgr-reservnummer-unchanged",
    ],
)
def test_normalise_identity_accepting_legacy_reserve(value: str, expected: tuple) -> None:
    assert normalise_identity_one(value, REFERENCE_DATE, accept_legacy_reserve=True) == expected


# --- normalise_identity: the vectorised frame ---------------------------------------------------


def test_normalise_identity_frame_keeps_index_and_uses_string_columns() -> None:
    values = pd.Series(
        ["199001012385", None, "R1234567", "900101-2386", "19810829M071", np.nan],
        index=["a", "b", "c", "d", "e", "f"],
    )
    result = normalise_identity(values, reference_date=REFERENCE_DATE)

    assert list(result.columns) == ["identity_number", "identity_kind", "error"]
    assert result.index.equals(values.index)
    assert all(isinstance(dtype, pd.StringDtype) for dtype in result.dtypes)
    assert result["identity_number"].tolist() == [
        "199001012385",
        pd.NA,
        pd.NA,
        pd.NA,
        "19810829M071",
        pd.NA,
    ]
    assert result["identity_kind"].tolist() == [
        PERSONNUMMER,
        pd.NA,
        pd.NA,
        pd.NA,
        RESERVNUMMER_VGR,
        pd.NA,
    ]
    assert result["error"].tolist() == [
        pd.NA,
        pd.NA,
        "invalid_format",
        "invalid_check_digit",
        pd.NA,
        pd.NA,
    ]


@pytest.mark.parametrize(
    "century",
    [
        pd.Series(["8", None, "0", "9"], dtype="string"),
        pd.Series([8, np.nan, 0, 9]),
        pd.Series([" 8", "  ", "0 ", "9"], dtype=object),
    ],
    ids=["text-with-na", "floats-with-nan", "text-with-blanks"],
)
def test_normalise_identity_century_codes_per_row(century: pd.Series) -> None:
    values = pd.Series(["9001019802", "9001012385", "0001012384", "2001011564"])
    result = normalise_identity(values, century, reference_date=REFERENCE_DATE)
    assert result["identity_number"].tolist() == [
        "189001019802",
        "199001012385",
        "200001012384",
        "192001011564",
    ]


def test_normalise_identity_century_must_share_the_index() -> None:
    values = pd.Series(["9001012385"], index=[7])
    with pytest.raises(ValueError, match="same index"):
        normalise_identity(values, pd.Series(["9"], index=[0]), reference_date=REFERENCE_DATE)


def test_normalise_identity_empty_series() -> None:
    result = normalise_identity(pd.Series([], dtype="string"), reference_date=REFERENCE_DATE)
    assert result.empty
    assert list(result.columns) == ["identity_number", "identity_kind", "error"]


# --- Skatteverket's whole test pool -------------------------------------------------------------


@pytest.mark.parametrize("form", ["12-digits", "10-digits-with-separator"])
@pytest.mark.parametrize(
    ("file_name", "count", "kind"),
    [
        ("skatteverket_personnummer.txt", 41_129, PERSONNUMMER),
        ("skatteverket_samordningsnummer.txt", 2_264, SAMORDNINGSNUMMER),
    ],
    ids=["personnummer", "samordningsnummer"],
)
def test_every_skatteverket_test_number_is_valid(
    file_name: str, count: int, kind: str, form: str
) -> None:
    numbers = read_test_numbers(file_name)
    assert len(numbers) == count
    values = numbers if form == "12-digits" else [ten_digits_with_separator(n) for n in numbers]

    result = normalise_identity(pd.Series(values), reference_date=REFERENCE_DATE)

    assert result["error"].isna().all(), result[result["error"].notna()].head()
    assert (result["identity_kind"] == kind).all()
    assert result["identity_number"].tolist() == numbers


# --- sex and birth date -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identity_number", "kind", "expected"),
    [
        ("192001050455", PERSONNUMMER, "male"),
        ("199001012385", PERSONNUMMER, "female"),
        ("191401682396", SAMORDNINGSNUMMER, "male"),
        ("200002872380", SAMORDNINGSNUMMER, "female"),
        ("19810829M071", RESERVNUMMER_VGR, "male"),
        ("19450829K088", RESERVNUMMER_VGR, "female"),
        ("19930829X802", RESERVNUMMER_VGR, "unknown"),
        ("R1234567", RESERVNUMMER_LEGACY, None),
        ("19800101T123", INTERIMSNUMMER, None),
        (pd.NA, pd.NA, None),
    ],
    ids=[
        "pnr-odd-ninth-digit",
        "pnr-even-ninth-digit",
        "snr-odd",
        "snr-even",
        "vgr-m",
        "vgr-k",
        "vgr-x",
        "legacy",
        "interim-has-no-common-sex-rule",
        "missing",
    ],
)
def test_sex_from_identity(identity_number: str, kind: str, expected: str | None) -> None:
    sex = sex_from_identity(
        pd.Series([identity_number], dtype="string"), pd.Series([kind], dtype="string")
    )
    assert sex.dtype == "string"
    if expected is None:
        assert pd.isna(sex.iloc[0])
    else:
        assert sex.iloc[0] == expected


@pytest.mark.parametrize(
    ("identity_number", "kind", "expected"),
    [
        ("189001019802", PERSONNUMMER, "1890-01-01"),
        ("202002292387", PERSONNUMMER, "2020-02-29"),
        ("191401682396", SAMORDNINGSNUMMER, "1914-01-08"),
        ("200003772381", SAMORDNINGSNUMMER, "2000-03-17"),
        ("19810829M071", RESERVNUMMER_VGR, "1981-08-29"),
        ("19800101T123", INTERIMSNUMMER, "1980-01-01"),
        ("191500882392", SAMORDNINGSNUMMER, None),
        ("191806602395", SAMORDNINGSNUMMER, None),
        ("192004912388", SAMORDNINGSNUMMER, None),
        ("R1234567", RESERVNUMMER_LEGACY, None),
        (pd.NA, pd.NA, None),
    ],
    ids=[
        "pnr-1890",
        "pnr-leap-day",
        "snr-minus-60",
        "snr-2000s",
        "vgr",
        "interim",
        "snr-month-00-unknown",
        "snr-day-60-unknown",
        "snr-31-april-unknown",
        "legacy",
        "missing",
    ],
)
def test_birth_date_from_identity(identity_number: str, kind: str, expected: str | None) -> None:
    birth_date = birth_date_from_identity(
        pd.Series([identity_number], dtype="string"), pd.Series([kind], dtype="string")
    )
    assert pd.api.types.is_datetime64_dtype(birth_date)
    if expected is None:
        assert pd.isna(birth_date.iloc[0])
    else:
        assert birth_date.iloc[0] == pd.Timestamp(expected)


def test_sex_and_birth_date_follow_normalise_identity() -> None:
    normalised = normalise_identity(
        pd.Series(["200101+1564", "140168+2396", "19450829K088", "R1234567"], index=[3, 1, 4, 9]),
        reference_date=REFERENCE_DATE,
        accept_legacy_reserve=True,
    )
    sex = sex_from_identity(normalised["identity_number"], normalised["identity_kind"])
    birth_date = birth_date_from_identity(
        normalised["identity_number"], normalised["identity_kind"]
    )
    assert sex.index.equals(normalised.index)
    assert sex.tolist() == ["female", "male", "female", pd.NA]
    assert birth_date.tolist()[:3] == [
        pd.Timestamp("1920-01-01"),
        pd.Timestamp("1914-01-08"),
        pd.Timestamp("1945-08-29"),
    ]
    assert pd.isna(birth_date.iloc[3])


# --- HSA-id and organisationsnummer -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("SE2321000131-E000000000001", True),
        ("SE2321000131-a", True),
        ("SE2321000131-" + "A" * 18, True),
        ("SE2321000131-" + "A" * 19, False),
        ("se2321000131-E1", False),
        ("SE232100013-E1", False),
        ("SE23210001311-E1", False),
        ("SE2321000131E1", False),
        ("SE2321000131-", False),
        ("SE2321000131-Å1", False),
        ("SE2321000131-Eö", False),
        ("SE2321000131-E_1", False),
        ("SE2321000131-E 1", False),
        (" SE2321000131-E1", False),
        (None, False),
    ],
    ids=[
        "vgr-unit",
        "lower-case-suffix",
        "31-characters",
        "32-characters",
        "lower-case-country",
        "nine-digit-organisation",
        "eleven-digit-organisation",
        "no-dash",
        "empty-suffix",
        "a-ring",
        "o-umlaut",
        "underscore",
        "inner-space",
        "leading-space",
        "missing",
    ],
)
def test_is_valid_hsa_id(value: str | None, expected: bool) -> None:
    result = is_valid_hsa_id(pd.Series([value], index=[5]))
    assert result.dtype == bool
    assert result.index.tolist() == [5]
    assert bool(result.iloc[0]) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("232100-0131", True),
        ("2321000131", True),
        ("232100-0132", False),
        ("121212-1212", False),
        ("23210-00131", False),
        ("232100 0131", False),
        ("2321000131x", False),
        ("", False),
        (None, False),
    ],
    ids=[
        "vgr-with-dash",
        "vgr-digits-only",
        "wrong-check-digit",
        "third-digit-below-2",
        "dash-misplaced",
        "space",
        "trailing-letter",
        "empty",
        "missing",
    ],
)
def test_is_valid_organisationsnummer(value: str | None, expected: bool) -> None:
    result = is_valid_organisationsnummer(pd.Series([value], index=[5]))
    assert result.dtype == bool
    assert result.index.tolist() == [5]
    assert bool(result.iloc[0]) is expected
