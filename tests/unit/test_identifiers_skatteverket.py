"""Every Skatteverket test number, judged against a plain reference reading of its rules.

The folder is the project's copy of Skatteverket's published test numbers (DOMAIN.md). Each file
is one list of twelve-digit numbers; which list says the kind. The expected sex and birth date
come from ``reference_reading`` below, written from Skatteverket's rules one number at a time
with ``datetime``, not from the vectorised code under test. Property tests then check the rules
on numbers hypothesis makes up in memory; they keep no example database (``database=None``), so
no made-up number that might belong to a real person is ever written to disk.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import etl
from etl.identifiers import (
    IdentityKind,
    birth_date_from_identity,
    luhn_check_digit,
    normalise_identity,
    normalise_identity_one,
    sex_from_identity,
)

pytestmark = pytest.mark.unit

REFERENCE_DATE = datetime.date(2026, 11, 25)
TEST_ID_DIRECTORY = Path(etl.__file__).parent / "estate" / "data"
# Which list holds which kind: the file name says it.
KIND_OF_FILE = {
    "skatteverket_personnummer.txt": IdentityKind.PERSONNUMMER.value,
    "skatteverket_samordningsnummer.txt": IdentityKind.SAMORDNINGSNUMMER.value,
}
TEST_ID_FILES = sorted(TEST_ID_DIRECTORY.glob("skatteverket_*.txt"))


def reference_reading(number: str, kind: str) -> tuple[str, datetime.date | None]:
    """Sex and birth date of a 12-digit number, read one rule at a time.

    Sex: the 9th digit of the 10-digit form (11th of 12), odd for men. Birth date: the date part,
    day minus 60 for a samordningsnummer, or none when that is not a calendar date (month 00,
    day 00, 31 April...).
    """
    sex = "male" if int(number[10]) % 2 == 1 else "female"
    day = int(number[6:8]) - (60 if kind == IdentityKind.SAMORDNINGSNUMMER.value else 0)
    try:
        birth = datetime.date(int(number[:4]), int(number[4:6]), day)
    except ValueError:
        birth = None
    return sex, birth


def test_the_folder_holds_both_lists() -> None:
    assert [path.name for path in TEST_ID_FILES] == sorted(KIND_OF_FILE)


@pytest.mark.parametrize("path", TEST_ID_FILES, ids=lambda path: path.stem)
def test_every_number_has_its_kind_sex_and_birth_date(path: Path) -> None:
    kind = KIND_OF_FILE[path.name]
    numbers = path.read_text(encoding="ascii").split()
    assert numbers and all(len(n) == 12 and n.isdigit() for n in numbers)
    expected = [reference_reading(number, kind) for number in numbers]

    result = normalise_identity(pd.Series(numbers), reference_date=REFERENCE_DATE)
    sex = sex_from_identity(result["identity_number"], result["identity_kind"])
    birth = birth_date_from_identity(result["identity_number"], result["identity_kind"])

    assert result["error"].isna().all(), result["error"].value_counts().to_dict()
    assert (result["identity_kind"] == kind).all()
    assert result["identity_number"].tolist() == numbers
    assert sex.tolist() == [s for s, _ in expected]
    got_birth = [None if pd.isna(b) else b.date() for b in birth]
    assert got_birth == [b for _, b in expected]


def test_the_samordningsnummer_list_has_date_parts_that_are_no_date() -> None:
    """The cases the rules must not reject: unknown month, unknown day, no such day."""
    numbers = (TEST_ID_DIRECTORY / "skatteverket_samordningsnummer.txt").read_text().split()
    kind = IdentityKind.SAMORDNINGSNUMMER.value
    without_date = [n for n in numbers if reference_reading(n, kind)[1] is None]
    assert any(n[4:6] == "00" for n in without_date)
    assert any(n[6:8] == "60" for n in without_date)
    assert any(n[4:8] == "0491" for n in without_date)
    assert any(n[4:8] in {"0290", "0291"} for n in without_date)


# --- properties -------------------------------------------------------------------------------


@st.composite
def nine_digits(draw: st.DrawFn, serial: st.SearchStrategy[int] | None = None) -> str:
    """``yymmddnnn`` with month 01-12 and a day (1-28, or 61-88 for a samordningsnummer) that
    exists in every month of every year; serial 001-999 unless another strategy is given."""
    year = draw(st.integers(0, 99))
    month = draw(st.integers(1, 12))
    day = draw(st.integers(1, 28)) + draw(st.sampled_from([0, 60]))
    number = draw(serial if serial is not None else st.integers(1, 999))
    return f"{year:02d}{month:02d}{day:02d}{number:03d}"


def normalise(*values: str) -> pd.DataFrame:
    return normalise_identity(pd.Series(values), reference_date=REFERENCE_DATE)


def ten_digit_form(nine: str) -> str:
    return nine + str(luhn_check_digit(nine))


@settings(max_examples=100, deadline=None, database=None)
@given(nine=nine_digits())
def test_a_luhn_correct_number_on_a_real_date_is_accepted(nine: str) -> None:
    """Days 1-28 exist in every month of every year; serial not 000: valid in any century."""
    number, kind, error = normalise_identity_one(ten_digit_form(nine), REFERENCE_DATE)
    assert error is None
    assert number is not None and number.endswith(ten_digit_form(nine)[2:])
    coordination = int(nine[4:6]) > 60
    assert kind == (
        IdentityKind.SAMORDNINGSNUMMER.value if coordination else IdentityKind.PERSONNUMMER.value
    )


@settings(max_examples=100, deadline=None, database=None)
@given(
    nine=nine_digits(),
    position=st.integers(min_value=0, max_value=9),
    shift=st.integers(min_value=1, max_value=9),
)
def test_changing_any_one_digit_is_rejected(nine: str, position: int, shift: int) -> None:
    """Luhn catches every single-digit change; whatever else fails first, the number is rejected."""
    digits = list(ten_digit_form(nine))
    digits[position] = str((int(digits[position]) + shift) % 10)
    changed = "".join(digits)
    result = normalise(changed, "19" + changed)
    assert result["identity_number"].isna().all()
    assert result["error"].notna().all()


@settings(max_examples=100, deadline=None, database=None)
@given(nine=nine_digits(serial=st.just(0)))
@example(nine="900101000")
def test_serial_000_is_rejected_even_with_a_right_check_digit(nine: str) -> None:
    ten = ten_digit_form(nine)
    result = normalise(
        ten, ten[:6] + "-" + ten[6:], ten[:6] + "+" + ten[6:], "20" + ten, "19" + ten
    )
    assert result["identity_number"].isna().all()
    assert (result["error"] == "invalid_serial_number").all()


@settings(max_examples=100, deadline=None, database=None)
@given(
    birth=st.dates(min_value=datetime.date(1850, 1, 1), max_value=REFERENCE_DATE),
    reference=st.dates(min_value=datetime.date(1990, 1, 1), max_value=datetime.date(2090, 12, 31)),
)
def test_plus_means_turning_100_in_the_reference_year(
    birth: datetime.date, reference: datetime.date
) -> None:
    """The century read from a 10-digit form is the one Skatteverket's separator rule wrote."""
    assume(birth <= reference and reference.year - birth.year < 200)
    separator = "+" if reference.year - birth.year >= 100 else "-"
    nine = birth.strftime("%y%m%d") + "000"  # serial 000: never anyone's number
    ten = ten_digit_form(nine)
    # Serial 000 is rejected, so read the century through the interim form, which shares it.
    interim = f"{ten[:6]}{separator}T{ten[7:]}"
    number, kind, error = normalise_identity_one(interim, reference)
    assert (kind, error) == (IdentityKind.INTERIMSNUMMER.value, None)
    assert number is not None and int(number[:4]) == birth.year
