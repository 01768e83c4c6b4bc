"""Time is exact (``parse_legacy_timestamp``, ``parse_legacy_date``) as tables.

Instants (``Z`` or an offset) convert to UTC exactly; local legacy times use the declared zone
(Europe/Stockholm unless declared), with the spring gap and autumn fold of 2025 and 2026 either
quarantined or resolved by the declared rule and flagged, never shifted silently. Date-only
targets take the Swedish local date of an instant. Each case: args, the written value, and the
expected value, error and warning (``None`` means none).
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from etl.core.vocabulary import REGISTRY, TransformContext, format_problem

pytestmark = pytest.mark.unit

CONTEXT = TransformContext(system="demo", reference_date=dt.date(2026, 11, 25))
ISO = {"formats": ["ISO8601"]}
HL7 = {"formats": ["%Y%m%d%H%M%S%z", "%Y%m%d%H%M%S", "%Y%m%d%H%M"]}
ISO_SECONDS = {"formats": ["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"]}
LOCAL = {"formats": ["%Y-%m-%d %H:%M"]}
GAP_AS_STANDARD = {**LOCAL, "on_nonexistent": "standard_time"}
FOLD_AS_STANDARD = {**LOCAL, "on_ambiguous": "standard_time"}
FOLD_AS_SUMMER = {**LOCAL, "on_ambiguous": "summer_time"}


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def run(name: str, raw: list, args: dict):
    definition = REGISTRY[name]
    values = pd.Series(raw, dtype="object")
    return definition.function(values, definition.args_model.model_validate(args), CONTEXT)


def cell(value):
    return None if pd.isna(value) else value


TIMESTAMPS = [
    # instants: Z and offsets are read as such
    ("z", ISO, "2025-07-01T10:00:00Z", utc("2025-07-01 10:00"), None, None),
    ("z-in-winter", ISO, "2025-01-15T11:00:00Z", utc("2025-01-15 11:00"), None, None),
    ("plus-one", ISO, "2025-01-15T12:00:00+01:00", utc("2025-01-15 11:00"), None, None),
    ("plus-two", ISO, "2025-07-01T12:00:00+02:00", utc("2025-07-01 10:00"), None, None),
    ("minus-five", ISO, "2025-07-01T05:00:00-05:00", utc("2025-07-01 10:00"), None, None),
    ("compact-offset", ISO, "2025-07-01T12:00:00+0200", utc("2025-07-01 10:00"), None, None),
    ("hours-only-offset", ISO, "2025-07-01T12:00:00+02", utc("2025-07-01 10:00"), None, None),
    (
        "fraction-and-z",
        ISO,
        "2025-07-01T10:00:00.123456Z",
        utc("2025-07-01 10:00:00.123456"),
        None,
        None,
    ),
    (
        "fraction-comma",
        ISO,
        "2025-07-01T12:00:00,5+02:00",
        utc("2025-07-01 10:00:00.5"),
        None,
        None,
    ),
    (
        "nanoseconds",
        ISO_SECONDS,
        "2025-07-01T10:00:00.123456789Z",
        utc("2025-07-01 10:00:00.123456789"),
        None,
        None,
    ),
    ("strptime-z", ISO_SECONDS, "2025-07-01T10:00:00Z", utc("2025-07-01 10:00"), None, None),
    (
        "strptime-offset",
        ISO_SECONDS,
        "2025-07-01T12:00:00+02:00",
        utc("2025-07-01 10:00"),
        None,
        None,
    ),
    ("hl7-offset", HL7, "20250701120000+0200", utc("2025-07-01 10:00"), None, None),
    ("hl7-z", HL7, "20250701100000Z", utc("2025-07-01 10:00"), None, None),
    ("hl7-local-falls-back", HL7, "20250701120000", utc("2025-07-01 10:00"), None, None),
    # an instant inside the local gap or fold is exact: nothing to resolve
    ("z-during-spring-gap", ISO, "2025-03-30T01:30:00Z", utc("2025-03-30 01:30"), None, None),
    ("offset-during-fold-1", ISO, "2025-10-26T02:30:00+02:00", utc("2025-10-26 00:30"), None, None),
    ("offset-during-fold-2", ISO, "2025-10-26T02:30:00+01:00", utc("2025-10-26 01:30"), None, None),
    ("leap-day-z", ISO, "2024-02-29T23:30:00Z", utc("2024-02-29 23:30"), None, None),
    ("leap-day-offset", ISO, "2028-02-29T00:30:00+01:00", utc("2028-02-28 23:30"), None, None),
    # local times in Europe/Stockholm
    ("local-iso-summer", ISO, "2025-07-01T12:00:00", utc("2025-07-01 10:00"), None, None),
    ("local-winter", LOCAL, "2026-01-15 12:00", utc("2026-01-15 11:00"), None, None),
    ("local-leap-day", LOCAL, "2024-02-29 12:00", utc("2024-02-29 11:00"), None, None),
    ("not-a-leap-day", LOCAL, "2025-02-29 12:00", None, "unparseable_date", None),
    # 2025: spring forward 30 March 02:00 -> 03:00, fall back 26 October 03:00 -> 02:00
    ("2025-before-gap", LOCAL, "2025-03-30 01:59", utc("2025-03-30 00:59"), None, None),
    ("2025-gap", LOCAL, "2025-03-30 02:30", None, "nonexistent_local_time", None),
    (
        "2025-gap-declared",
        GAP_AS_STANDARD,
        "2025-03-30 02:30",
        utc("2025-03-30 01:30"),
        None,
        "nonexistent_local_time_resolved",
    ),
    ("2025-after-gap", LOCAL, "2025-03-30 03:00", utc("2025-03-30 01:00"), None, None),
    ("2025-before-fold", LOCAL, "2025-10-26 01:59", utc("2025-10-25 23:59"), None, None),
    ("2025-fold", LOCAL, "2025-10-26 02:30", None, "ambiguous_local_time", None),
    (
        "2025-fold-as-standard",
        FOLD_AS_STANDARD,
        "2025-10-26 02:30",
        utc("2025-10-26 01:30"),
        None,
        "ambiguous_local_time_resolved",
    ),
    (
        "2025-fold-as-summer",
        FOLD_AS_SUMMER,
        "2025-10-26 02:30",
        utc("2025-10-26 00:30"),
        None,
        "ambiguous_local_time_resolved",
    ),
    ("2025-after-fold", LOCAL, "2025-10-26 03:00", utc("2025-10-26 02:00"), None, None),
    # 2026: spring forward 29 March, fall back 25 October
    ("2026-gap", LOCAL, "2026-03-29 02:00", None, "nonexistent_local_time", None),
    ("2026-gap-end", LOCAL, "2026-03-29 02:59", None, "nonexistent_local_time", None),
    (
        "2026-gap-declared",
        GAP_AS_STANDARD,
        "2026-03-29 02:15",
        utc("2026-03-29 01:15"),
        None,
        "nonexistent_local_time_resolved",
    ),
    ("2026-not-a-gap-a-week-early", LOCAL, "2026-03-22 02:30", utc("2026-03-22 01:30"), None, None),
    ("2026-fold", LOCAL, "2026-10-25 02:00", None, "ambiguous_local_time", None),
    (
        "2026-fold-as-standard",
        FOLD_AS_STANDARD,
        "2026-10-25 02:45",
        utc("2026-10-25 01:45"),
        None,
        "ambiguous_local_time_resolved",
    ),
    (
        "2026-fold-as-summer",
        FOLD_AS_SUMMER,
        "2026-10-25 02:45",
        utc("2026-10-25 00:45"),
        None,
        "ambiguous_local_time_resolved",
    ),
    (
        "2026-gap-is-fine-in-utc",
        {**LOCAL, "timezone": "UTC"},
        "2026-03-29 02:30",
        utc("2026-03-29 02:30"),
        None,
        None,
    ),
    # what is not a time
    ("z-with-a-local-format", LOCAL, "2025-07-01 12:00Z", None, "unparseable_date", None),
    ("offset-out-of-range", ISO, "2025-07-01T12:00:00+25:00", None, "unparseable_date", None),
    ("offset-on-a-bare-date", ISO, "2025-07-01Z", None, "unparseable_date", None),
    ("words", ISO, "i morse", None, "unparseable_date", None),
    ("blank", ISO, "  ", None, None, None),
]


@pytest.mark.parametrize(
    ("args", "raw", "value", "error", "warning"),
    [pytest.param(*case[1:], id=case[0]) for case in TIMESTAMPS],
)
def test_timestamp(args, raw, value, error, warning):
    result = run("parse_legacy_timestamp", [raw], args)
    assert cell(result.values.iloc[0]) == value
    assert cell(result.errors.iloc[0]) == error
    assert cell(result.warnings.iloc[0]) == warning
    assert str(result.values.dt.tz) == "UTC"


def test_timestamp_cases_in_one_series_give_the_same_results():
    """Vectorised: one series of every case that shares args gives the table's answers."""
    for args in (ISO, LOCAL, HL7, GAP_AS_STANDARD, FOLD_AS_SUMMER):
        cases = [case for case in TIMESTAMPS if case[1] == args]
        result = run("parse_legacy_timestamp", [case[2] for case in cases], args)
        for position, (name, _, _, value, error, warning) in enumerate(cases):
            got = (
                cell(result.values.iloc[position]),
                cell(result.errors.iloc[position]),
                cell(result.warnings.iloc[position]),
            )
            assert got == (value, error, warning), name


DATES = [
    # the Swedish local date of an instant, not its UTC date
    ("new-year-z", ISO, "2025-12-31T23:30:00Z", dt.date(2026, 1, 1)),
    ("new-year-eve-z", ISO, "2025-12-31T22:30:00Z", dt.date(2025, 12, 31)),
    ("summer-midnight-z", ISO, "2025-06-30T22:30:00Z", dt.date(2025, 7, 1)),
    ("minus-five-evening", ISO, "2025-06-30T20:00:00-05:00", dt.date(2025, 7, 1)),
    ("plus-two-own-date", ISO, "2025-07-01T00:30:00+02:00", dt.date(2025, 7, 1)),
    ("leap-day-from-utc", ISO, "2024-02-28T23:30:00Z", dt.date(2024, 2, 29)),
    ("local-date-time-keeps-its-date", ISO, "2025-12-31T23:30:00", dt.date(2025, 12, 31)),
    ("bare-date", ISO, "2024-02-29", dt.date(2024, 2, 29)),
    (
        "declared-zone",
        {**ISO, "timezone": "America/New_York"},
        "2026-01-01T03:00:00Z",
        dt.date(2025, 12, 31),
    ),
    ("strptime-offset", {"formats": ["%Y%m%d%H%M%z"]}, "202512312330+0000", dt.date(2026, 1, 1)),
]


@pytest.mark.parametrize(
    ("args", "raw", "expected"), [pytest.param(*case[1:], id=case[0]) for case in DATES]
)
def test_date_of_an_instant_is_the_swedish_local_date(args, raw, expected):
    result = run("parse_legacy_date", [raw], args)
    assert result.values.iloc[0] == expected
    assert type(result.values.iloc[0]) is dt.date
    assert pd.isna(result.errors.iloc[0])


@pytest.mark.parametrize(
    ("date_format", "fragments"),
    [
        ("%Y-%m-%dT%H:%M:%SZ", ["'Z' as literal text", "'%Y-%m-%dT%H:%M:%S%z'"]),
        ("%Y-%m-%d'T'%H:%M:%S'Z'", ["'Z' as literal text", "'%Y-%m-%dT%H:%M:%S%z'"]),
        ("%Y-%m-%dT%H:%M:%S+01:00", ["'+01:00' as literal text", "'%Y-%m-%dT%H:%M:%S%z'"]),
        ("%Y%m%d%H%M%S+0100", ["'+0100' as literal text", "'%Y%m%d%H%M%S%z'"]),
        ("%Y-%m-%d %H:%M UTC", ["'UTC' as literal text"]),
        ("%Y-%m-%dT%H:%M:%S%Z", ["'%Z'", "'%z'"]),
        ("%z %Y-%m-%d", ["must end the format"]),
    ],
)
def test_format_reading_an_offset_as_text_is_refused_with_the_fix(date_format, fragments):
    problem = format_problem(date_format)
    assert problem is not None
    for fragment in fragments:
        assert fragment in problem


@pytest.mark.parametrize(
    "date_format", ["%Y%m%d%H%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z", "ISO8601", "%d.%m.%Y"]
)
def test_formats_that_read_time_correctly_pass(date_format):
    assert format_problem(date_format) is None
