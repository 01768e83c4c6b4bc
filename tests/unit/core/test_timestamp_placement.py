"""``parse_legacy_timestamp`` places local times in their zone with one strict placement and
places only the spring gap's and autumn fold's times rule by rule, and ``parse_legacy_date``
converts instants only when a value is one: the same values, errors and warnings as the old
code (kept here as the reference), on generated times around the clock changes, with offsets,
blanks and words among them."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.core import vocabulary
from etl.core.vocabulary import (
    REGISTRY,
    DateArgs,
    TimestampArgs,
    TransformContext,
    TransformResult,
    _instants_in_utc,
    _parse_formats,
    _pivot_to_past,
    clean_text,
    errors_where,
    no_errors,
)

pytestmark = pytest.mark.unit

CONTEXT = TransformContext(system="demo", reference_date=dt.date(2026, 11, 25))


def _reference_timestamps(values: pd.Series, args: TimestampArgs) -> TransformResult:
    """The old way: every local time placed three ways (standard, summer, strict)."""
    cleaned = clean_text(values)
    parsed = _parse_formats(cleaned, args.formats)
    local = parsed.written.where(parsed.offset.isna())
    count = len(local)
    put_forward = pd.Timedelta(hours=1)
    as_standard = local.dt.tz_localize(
        args.timezone, ambiguous=np.zeros(count, dtype=bool), nonexistent=put_forward
    )
    as_summer = local.dt.tz_localize(
        args.timezone, ambiguous=np.ones(count, dtype=bool), nonexistent=put_forward
    )
    strict = local.dt.tz_localize(
        args.timezone, ambiguous=np.zeros(count, dtype=bool), nonexistent="NaT"
    )
    in_gap = local.notna() & strict.isna()
    in_fold = local.notna() & (as_standard != as_summer).fillna(False)
    placed = as_summer if args.on_ambiguous == "summer_time" else as_standard
    result = placed.dt.tz_convert("UTC").fillna(_instants_in_utc(parsed))
    errors = errors_where(cleaned.notna() & parsed.written.isna(), "unparseable_date")
    warnings = no_errors(values)
    for problem, rule, reason in (
        (in_gap, args.on_nonexistent, "nonexistent_local_time"),
        (in_fold, args.on_ambiguous, "ambiguous_local_time"),
    ):
        if rule == "quarantine":
            errors = errors.mask(problem, reason)
        else:
            warnings = warnings.mask(problem, f"{reason}_resolved")
    result = result.mask(errors.notna())
    return TransformResult(result.astype("datetime64[ns, UTC]"), errors, warnings)


# Local hours around each clock change of 2025 and 2026, in Stockholm and in New York.
CHANGES = [
    dt.datetime(2025, 3, 30, 2),
    dt.datetime(2025, 10, 26, 2),
    dt.datetime(2026, 3, 29, 2),
    dt.datetime(2026, 10, 25, 2),
    dt.datetime(2026, 3, 8, 2),
    dt.datetime(2026, 11, 1, 1),
]


@st.composite
def written(draw) -> str | None:
    kind = draw(st.sampled_from(["near_change", "any", "offset", "junk", "missing"]))
    if kind == "missing":
        return draw(st.sampled_from([None, "", "  "]))
    if kind == "junk":
        return draw(st.sampled_from(["i morse", "2026-13-01 00:00", "2026-02-30 12:00", "x"]))
    if kind == "near_change":
        moment = draw(st.sampled_from(CHANGES)) + dt.timedelta(minutes=draw(st.integers(-90, 150)))
    else:
        moment = draw(st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2200, 1, 1)))
    text = moment.strftime("%Y-%m-%d %H:%M")
    if kind == "offset":
        text = moment.strftime("%Y-%m-%dT%H:%M:%S") + draw(st.sampled_from(["Z", "+01:00"]))
    return text


ARGS = st.builds(
    dict,
    formats=st.sampled_from([["%Y-%m-%d %H:%M"], ["ISO8601"], ["%Y-%m-%d %H:%M", "ISO8601"]]),
    timezone=st.sampled_from(["Europe/Stockholm", "America/New_York", "UTC"]),
    on_nonexistent=st.sampled_from(["quarantine", "standard_time"]),
    on_ambiguous=st.sampled_from(["quarantine", "standard_time", "summer_time"]),
)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(written(), max_size=30), args=ARGS, start=st.integers(0, 3))
def test_timestamps_are_placed_as_before(values, args, start):
    series = pd.Series(values, dtype="object", index=pd.RangeIndex(start, start + len(values)))
    parsed_args = TimestampArgs.model_validate(args)
    expected = _reference_timestamps(series, parsed_args)
    found = REGISTRY["parse_legacy_timestamp"].function(series, parsed_args, CONTEXT)
    pd.testing.assert_series_equal(found.values, expected.values)
    pd.testing.assert_series_equal(found.errors, expected.errors)
    assert found.warnings is not None and expected.warnings is not None
    pd.testing.assert_series_equal(found.warnings, expected.warnings)


def test_the_reference_is_the_registered_transform():
    assert REGISTRY["parse_legacy_timestamp"].function is vocabulary.parse_legacy_timestamp


def _reference_dates(values: pd.Series, args: DateArgs) -> TransformResult:
    """The old way: every date converted from an instant, whether any value was one or not."""
    cleaned = clean_text(values)
    parsed = _parse_formats(cleaned, args.formats)
    written = _pivot_to_past(parsed.written, parsed.two_digit_year, args, CONTEXT.reference_date)
    local = _instants_in_utc(parsed).dt.tz_convert(args.timezone).dt.tz_localize(None)
    dates = written.mask(parsed.offset.notna(), local.astype("datetime64[ns]"))
    failed = cleaned.notna() & dates.isna()
    return TransformResult(
        dates.dt.date.astype("object").where(dates.notna(), None),
        errors_where(failed, "unparseable_date"),
    )


DATE_ARGS = st.builds(
    dict,
    formats=st.sampled_from([["%Y-%m-%d %H:%M"], ["ISO8601"], ["%y%m%d", "ISO8601"]]),
    timezone=st.sampled_from(["Europe/Stockholm", "America/New_York"]),
)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.one_of(written(), st.sampled_from(["991231", "250101", "680229"]))),
    args=DATE_ARGS,
)
def test_dates_are_read_as_before(values, args):
    series = pd.Series(values, dtype="object")
    parsed_args = DateArgs.model_validate(args)
    expected = _reference_dates(series, parsed_args)
    found = REGISTRY["parse_legacy_date"].function(series, parsed_args, CONTEXT)
    pd.testing.assert_series_equal(found.values, expected.values)
    pd.testing.assert_series_equal(found.errors, expected.errors)
