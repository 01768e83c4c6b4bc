"""Luhn and date plausibility: the one implementation of each (``etl.identifiers``).

Tables of known answers, then hypothesis properties against reference implementations written
here independently: Luhn the textbook way (validate from the right, every second digit doubled),
calendar dates with ``datetime.date``. Hypothesis keeps no example database (``database=None``).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.identifiers import (
    is_calendar_date,
    is_luhn_valid,
    is_plausible_identity_date,
    luhn_check_digit,
    luhn_check_digits,
)

pytestmark = pytest.mark.unit


def digit_rows(*numbers: str) -> np.ndarray:
    return np.array([[int(d) for d in number] for number in numbers], dtype=np.int64)


def reference_is_luhn_valid(number: str) -> bool:
    """Textbook Luhn: from the rightmost digit, double every second one, sum digits, mod 10."""
    total = 0
    for position, character in enumerate(reversed(number)):
        digit = int(character)
        if position % 2 == 1:
            digit = sum(divmod(digit * 2, 10))
        total += digit
    return total % 10 == 0


def reference_check_digit(body: str) -> int:
    (digit,) = [d for d in range(10) if reference_is_luhn_valid(f"{body}{d}")]
    return digit


def reference_is_calendar_date(year: int, month: int, day: int) -> bool:
    try:
        dt.date(year, month, day)
    except ValueError:
        return False
    return True


# --- tables ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "is_valid"),
    [
        ("8112189876", True),  # Skatteverket's example personnummer 811218-9876
        ("2321000131", True),  # VGR's organisationsnummer 232100-0131
        ("8108297071", True),  # reservnummer 19810829M071: yymmdd, M=7, gg, C
        ("8112189877", False),  # check digit one off
        ("8112189786", False),  # two digits swapped
        ("0000000000", True),
    ],
    ids=["personnummer", "organisationsnummer", "vgr-reserve", "off-by-one", "swapped", "zeros"],
)
def test_luhn_validity_of_known_numbers(number, is_valid):
    assert bool(is_luhn_valid(digit_rows(number))[0]) is is_valid


def test_luhn_check_digits_of_a_matrix_are_those_of_each_row():
    bodies = ["811218987", "232100013", "810829707", "000000000", "000000007"]
    assert luhn_check_digits(digit_rows(*bodies)).tolist() == [6, 1, 1, 0, 5]
    assert [luhn_check_digit(body) for body in bodies] == [6, 1, 1, 0, 5]


@pytest.mark.parametrize(
    ("year", "month", "day", "expected"),
    [
        (2024, 2, 29, True),
        (2023, 2, 29, False),
        (1900, 2, 29, False),  # divisible by 100, not by 400
        (2000, 2, 29, True),  # divisible by 400
        (2026, 4, 31, False),
        (2026, 12, 31, True),
        (2026, 0, 10, False),
        (2026, 13, 10, False),
        (2026, 1, 0, False),
        (0, 1, 1, False),
    ],
    ids=[
        "leap-day",
        "no-leap-day",
        "1900-not-leap",
        "2000-leap",
        "31-april",
        "new-years-eve",
        "month-00",
        "month-13",
        "day-00",
        "year-0",
    ],
)
def test_calendar_dates(year, month, day, expected):
    result = is_calendar_date(np.array([year]), np.array([month]), np.array([day]))
    assert result.tolist() == [expected]


@pytest.mark.parametrize(
    ("month", "day", "expected"),
    [
        (1, 1, True),
        (12, 31, True),
        (2, 31, True),  # a shape test: 31 February looks like a date part
        (6, 61, True),  # samordningsnummer, day 1 + 60
        (6, 91, True),
        (6, 60, False),  # samordningsnummer of an unknown day: not shaped like a date
        (6, 32, False),
        (6, 92, False),
        (0, 10, False),
        (13, 10, False),
    ],
    ids=[
        "first",
        "last",
        "31-feb",
        "coordination-1",
        "coordination-31",
        "day-60",
        "day-32",
        "day-92",
        "month-00",
        "month-13",
    ],
)
def test_plausible_identity_dates(month, day, expected):
    assert is_plausible_identity_date(np.array([month]), np.array([day])).tolist() == [expected]
    assert bool(is_plausible_identity_date(month, day)) is expected  # scalars too


# --- properties against the references ---------------------------------------------------------


@settings(max_examples=300, deadline=None, database=None)
@given(bodies=st.lists(st.text("0123456789", min_size=9, max_size=9), min_size=1, max_size=40))
def test_luhn_check_digits_agree_with_the_textbook_rule(bodies):
    digits = luhn_check_digits(digit_rows(*bodies))
    assert digits.tolist() == [reference_check_digit(body) for body in bodies]
    assert [luhn_check_digit(body) for body in bodies] == digits.tolist()


@settings(max_examples=300, deadline=None, database=None)
@given(numbers=st.lists(st.text("0123456789", min_size=10, max_size=10), min_size=1, max_size=40))
def test_luhn_validity_agrees_with_the_textbook_rule(numbers):
    assert is_luhn_valid(digit_rows(*numbers)).tolist() == [
        reference_is_luhn_valid(number) for number in numbers
    ]


@settings(max_examples=500, deadline=None, database=None)
@given(
    dates=st.lists(
        st.tuples(st.integers(0, 9999), st.integers(-1, 14), st.integers(-1, 33)),
        min_size=1,
        max_size=40,
    )
)
def test_calendar_dates_agree_with_datetime(dates):
    year, month, day = (np.array(column) for column in zip(*dates, strict=True))
    assert is_calendar_date(year, month, day).tolist() == [
        reference_is_calendar_date(*date) for date in dates
    ]


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.tuples(st.integers(-1, 14), st.integers(-1, 99)), min_size=1, max_size=40))
def test_plausible_identity_dates_are_a_month_and_a_day_of_month_or_that_day_plus_60(pairs):
    month, day = (np.array(column) for column in zip(*pairs, strict=True))
    expected = [
        reference_is_calendar_date(2000, m, 1)
        and any(reference_is_calendar_date(2000, 1, d - offset) for offset in (0, 60))
        for m, d in pairs
    ]
    assert is_plausible_identity_date(month, day).tolist() == expected
