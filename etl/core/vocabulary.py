"""The closed vocabulary of named transforms a mapping may use.

Each transform is a small, pure, vectorised function over pandas Series: it returns the core
values and, per row, either NA or the reason the value could not be mapped (the row is then
quarantined with that reason and the field named). Mappings refer to transforms by name; no
expression strings are evaluated at run time.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator

from etl.core import code_systems
from etl.core.ids import core_ids
from etl.core.text_columns import (
    extract_group,
    extract_where_possible,
    missing_text,
    plain_decimals,
    replace_where_possible,
    stripped_or_missing,
    text_where,
)


class TransformArgs(BaseModel):
    """Arguments of a transform, as written under ``args:`` in a mapping file."""

    model_config = ConfigDict(extra="forbid")


class NoArgs(TransformArgs):
    pass


@dataclass(frozen=True)
class TransformContext:
    """What a transform may know besides its input: never the clock, never a database."""

    system: str
    reference_date: dt.date
    crosswalks: dict[str, dict[str, str]] = field(default_factory=dict)
    # Per crosswalk, codes only a ``proposed`` row maps, refused while approved rows are required
    # (``VARDFLYTT_REQUIRE_APPROVED_CODES``); empty when they are not.
    unapproved: dict[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class TransformResult:
    values: pd.Series
    errors: pd.Series  # NA where fine, else a reason code such as ``unparseable_date``
    # NA where fine, else a reason the row loads but is flagged for review (a resolved DST fold)
    warnings: pd.Series | None = None


@dataclass(frozen=True)
class TransformDefinition:
    name: str
    function: Callable[..., TransformResult]
    args_model: type[TransformArgs]
    summary: str


REGISTRY: dict[str, TransformDefinition] = {}


def transform(
    name: str, args_model: type[TransformArgs] = NoArgs
) -> Callable[[Callable[..., TransformResult]], Callable[..., TransformResult]]:
    """Register a transform under ``name``; its docstring's first line documents it."""

    def register(function: Callable[..., TransformResult]) -> Callable[..., TransformResult]:
        summary = (function.__doc__ or "").strip().splitlines()[0]
        REGISTRY[name] = TransformDefinition(name, function, args_model, summary)
        return function

    return register


def no_errors(values: pd.Series) -> pd.Series:
    return missing_text(values.index)


def errors_where(failed: pd.Series, reason: str) -> pd.Series:
    return text_where(failed.fillna(False).astype(bool).to_numpy(), reason, failed.index)


def clean_text(values: pd.Series) -> pd.Series:
    """Strip whitespace; blank becomes NA."""
    return stripped_or_missing(values)


def _with_pattern(values: pd.Series, pattern: str, reason: str) -> TransformResult:
    is_valid = values.str.fullmatch(pattern)
    failed = values.notna() & ~is_valid.fillna(False)
    return TransformResult(values.mask(failed), errors_where(failed, reason))


# --- text and numbers -------------------------------------------------------------------------


@transform("text")
def text(values: pd.Series, args: NoArgs, context: TransformContext) -> TransformResult:
    """Trimmed text; blank becomes missing."""
    cleaned = clean_text(values)
    return TransformResult(cleaned, no_errors(cleaned))


@transform("upper_text")
def upper_text(values: pd.Series, args: NoArgs, context: TransformContext) -> TransformResult:
    """Trimmed, upper-cased text; blank becomes missing."""
    cleaned = clean_text(values).str.upper()
    return TransformResult(cleaned, no_errors(cleaned))


class ConstantArgs(TransformArgs):
    value: str | int | float | bool | None


@transform("constant", ConstantArgs)
def constant(values: pd.Series, args: ConstantArgs, context: TransformContext) -> TransformResult:
    """The same value on every row (the source column is ignored)."""
    result = pd.Series([args.value] * len(values), index=values.index)
    return TransformResult(result, no_errors(values))


@transform("integer")
def integer(values: pd.Series, args: NoArgs, context: TransformContext) -> TransformResult:
    """A whole number; anything else is ``invalid_number``."""
    cleaned = clean_text(values)
    numbers = pd.to_numeric(cleaned.where(cleaned.str.fullmatch(r"[+-]?[0-9]+")), errors="coerce")
    failed = cleaned.notna() & numbers.isna()
    return TransformResult(numbers.astype("Int64"), errors_where(failed, "invalid_number"))


def _decimal_comma_number(cleaned: pd.Series) -> pd.Series:
    normalised = cleaned.str.replace(" ", "", regex=False).str.replace(",", ".", regex=False)
    return plain_decimals(normalised)


@transform("decimal_comma")
def decimal_comma(values: pd.Series, args: NoArgs, context: TransformContext) -> TransformResult:
    """A decimal number written with a decimal comma (``5,4``) or point."""
    cleaned = clean_text(values)
    numbers = _decimal_comma_number(cleaned)
    failed = cleaned.notna() & numbers.isna()
    return TransformResult(numbers.astype("Float64"), errors_where(failed, "invalid_number"))


class YesNoArgs(TransformArgs):
    true_values: list[str] = ["J", "JA", "Y", "1", "S"]
    false_values: list[str] = ["N", "NEJ", "0"]
    missing_is: bool | None = False


@transform("yes_no", YesNoArgs)
def yes_no(values: pd.Series, args: YesNoArgs, context: TransformContext) -> TransformResult:
    """A J/N style flag as a boolean; an unknown letter is ``invalid_value``."""
    cleaned = clean_text(values).str.upper()
    result = pd.Series(pd.NA, index=values.index, dtype="boolean")
    result[cleaned.isin([v.upper() for v in args.true_values]).fillna(False)] = True
    result[cleaned.isin([v.upper() for v in args.false_values]).fillna(False)] = False
    failed = cleaned.notna() & result.isna()
    if args.missing_is is not None:
        result = result.mask(cleaned.isna(), args.missing_is)
    return TransformResult(result, errors_where(failed, "invalid_value"))


class MapValuesArgs(TransformArgs):
    values: dict[str, str | bool | None]
    default: str | None = None


@transform("map_values", MapValuesArgs)
def map_values(
    values: pd.Series, args: MapValuesArgs, context: TransformContext
) -> TransformResult:
    """A closed set of legacy values mapped to core values; others are ``invalid_value``."""
    cleaned = clean_text(values)
    lookup = {key.strip(): value for key, value in args.values.items()}
    result = cleaned.map(lookup, na_action="ignore")
    known = cleaned.isin(list(lookup)).fillna(False)
    failed = cleaned.notna() & ~known
    if args.default is not None:
        result = result.mask(cleaned.isna(), args.default)
    return TransformResult(result.astype("object"), errors_where(failed, "invalid_value"))


# --- dates and times --------------------------------------------------------------------------
#
# A written time is either an instant (it names its offset: ``Z``, ``+01:00``, ``-0500``) or a
# local wall-clock time in the source's declared zone. An instant converts to UTC exactly; a local
# time is placed in its zone, where the spring gap (02:30 on the last Sunday of March does not
# exist in Stockholm) and the autumn fold (02:30 on the last Sunday of October happens twice) are
# counted and handled by the mapping's declared rule, never shifted silently.

ISO8601 = "ISO8601"  # any ISO 8601 date or date-time; with Z or an offset it is an instant
LOCAL_TIMEZONE = "Europe/Stockholm"
_FORMAT_WIDTHS = {"%Y": 4, "%y": 2, "%m": 2, "%d": 2, "%H": 2, "%M": 2, "%S": 2}
_OFFSET = r"(?P<offset>Z|[+-][0-9]{2}(?::?[0-9]{2})?)"
_ISO_BODY = (
    r"(?P<body>[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]{1,9})?)?)?)"
)
_LITERAL_OFFSET = re.compile(r"Z|[+-][0-9]{2}:?[0-9]{2}|UTC|GMT")


def format_problem(date_format: str) -> str | None:
    """Why a declared date format would misread a time, with the fix; None when it is fine.

    A ``Z`` or an offset written as literal text matches the value but drops its meaning: the
    instant is then read as local time and shifted by one or two hours.
    """
    if date_format == ISO8601:
        return None
    if "%Z" in date_format:
        return (
            f"format '{date_format}' uses '%Z' (a zone name); write '%z', which reads 'Z' and "
            "offsets such as +01:00, or use 'ISO8601'"
        )
    literal = re.sub(r"%.", "", date_format)
    found = _LITERAL_OFFSET.search(literal) or re.search("'", literal)
    if found:
        fixed = re.sub(r"'?Z'?$|'?[+-][0-9]{2}:?[0-9]{2}'?$", "%z", date_format).replace("'", "")
        return (
            f"format '{date_format}' reads {found.group(0)!r} as literal text, so the offset is "
            f"ignored and the instant is taken as local time; write '{fixed}' or 'ISO8601'"
        )
    if "%z" in date_format and not date_format.endswith("%z"):
        return f"format '{date_format}': '%z' (the offset) must end the format"
    return None


def _check_formats(formats: list[str]) -> list[str]:
    problems = [problem for problem in map(format_problem, formats) if problem]
    if problems:
        raise ValueError("; ".join(problems))
    return formats


def _check_timezone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone '{name}' (an IANA name such as Europe/Stockholm)"
        ) from None
    return name


def _length_matches(values: pd.Series, date_format: str) -> pd.Series:
    """Whether each value has the format's length, so ``%m`` cannot silently accept one digit."""
    length = len(date_format) - 2 * date_format.count("%f")
    for directive, width in _FORMAT_WIDTHS.items():
        length += date_format.count(directive) * (width - 2)
    lengths = values.str.len()
    if "%f" in date_format:  # one to nine digits of fraction
        return (lengths >= length + 1) & (lengths <= length + 9)
    return lengths == length


def _offset_minutes(offsets: pd.Series) -> pd.Series:
    """Minutes east of UTC of ``Z``, ``+01``, ``+0100`` or ``-05:00``; NA if absent or invalid."""
    offsets = offsets.astype("string")
    digits = offsets.str.replace(":", "", regex=False).str[1:]
    hours = pd.to_numeric(digits.str[:2], errors="coerce").astype("Float64")
    minutes = pd.to_numeric(digits.str[2:4].replace("", "0"), errors="coerce").astype("Float64")
    sign = offsets.str[0].map({"+": 1.0, "-": -1.0}, na_action="ignore").astype("Float64")
    total = sign * (hours * 60 + minutes)
    plausible = ((hours <= 14) & (minutes < 60)).fillna(False).astype(bool)
    is_utc = (offsets == "Z").fillna(False).astype(bool)
    # pandas-stubs refuse pd.NA as the replacement of Series.where
    return total.where(plausible, pd.NA).mask(is_utc, 0.0)  # type: ignore[call-overload,no-any-return]


# Directives read from ASCII digits at a fixed width by :func:`read_with_format`, with the
# values that are certainly valid: a year inside datetime64[ns] (1677-09-21 .. 2262-04-11) whole.
_DIGIT_FIELDS = {
    "%Y": (4, 1678, 2261),
    "%y": (2, 0, 99),  # 69-99 in the 1900s, 00-68 in the 2000s, as pandas' strptime reads it
    "%m": (2, 1, 12),
    "%d": (2, 1, 31),
    "%H": (2, 0, 23),
    "%M": (2, 0, 59),
    "%S": (2, 0, 59),
}
# Literal characters of such a format (a space in a format reads any run of white space in
# pandas, so only a value with exactly the format's characters takes the digit path).
_DIGIT_FORMAT_LITERALS = frozenset("-./: T")
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _digit_fields(date_format: str) -> list[tuple[str, int, int]] | None:
    """``(directive or literal, start, width)`` of a format made of fixed-width digit fields
    and plain separators (``%Y%m%d%H%M``, ``%d.%m.%Y``); None for any other format."""
    parts, position, index = [], 0, 0
    while index < len(date_format):
        piece = date_format[index : index + 2]
        if piece in _DIGIT_FIELDS:
            width = _DIGIT_FIELDS[piece][0]
            index += 2
        elif date_format[index] in _DIGIT_FORMAT_LITERALS:
            piece, width = date_format[index], 1
            index += 1
        else:
            return None
        parts.append((piece, position, width))
        position += width
    return parts


def _fixed_width_bytes(text: pa.Array, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of exactly ``width`` bytes as a ``(rows, width)`` uint8 array (others as zeros),
    and which rows those are."""
    fits = pc.fill_null(pc.equal(pc.binary_length(text), width), False)
    filler = pa.scalar("\0" * width, type=text.type)
    filled = pc.if_else(fits, text, filler)
    offsets_type = np.int64 if pa.types.is_large_string(filled.type) else np.int32
    offsets = np.frombuffer(filled.buffers()[1], dtype=offsets_type)
    offsets = offsets[filled.offset : filled.offset + len(filled) + 1]
    data = np.frombuffer(filled.buffers()[2], dtype=np.uint8)
    start = int(offsets[0]) if len(offsets) else 0
    rows = data[start : start + len(filled) * width].reshape(len(filled), width)
    return rows, np.asarray(fits, dtype=bool)


def read_with_format(body: pd.Series, date_format: str) -> pd.Series:
    """``pd.to_datetime(body, format=date_format, errors="coerce")`` as ``datetime64[ns]``.

    pandas reads each value through its strptime, value by value. For a format of fixed-width
    digit fields, a value of exactly the format's digits and separators with every field in its
    valid range (a real calendar day) is read here from its bytes in one pass; every other value
    (what pandas might read some other way, or refuse) is still read by pandas.
    """
    fields = _digit_fields(date_format)
    if fields is None or not len(body):
        return pd.to_datetime(body, format=date_format, errors="coerce").astype("datetime64[ns]")
    width = sum(part[2] for part in fields)
    text = pa.array(body.array)
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    if not pa.types.is_string(text.type) and not pa.types.is_large_string(text.type):
        return pd.to_datetime(body, format=date_format, errors="coerce").astype("datetime64[ns]")
    rows, certain = _fixed_width_bytes(text, width)
    # Column-major, as each byte's distance from "0" (uint8: a byte below "0" wraps above 9):
    # every position is then one contiguous row of the rows' bytes, which numpy compares and
    # sums far faster than a narrow column of the row-major bytes.
    offsets = np.ascontiguousarray(rows.T) - np.uint8(ord("0"))
    numbers = {}
    for piece, start, size in fields:
        if piece in _DIGIT_FIELDS:
            value = np.zeros(len(rows), dtype=np.int64)
            for position in range(start, start + size):
                digit = offsets[position]
                certain &= digit <= 9
                value = value * 10 + digit
            _, lowest, highest = _DIGIT_FIELDS[piece]
            certain &= (value >= lowest) & (value <= highest)
            numbers[piece] = value
        else:
            certain &= offsets[start] == np.uint8((ord(piece) - ord("0")) % 256)
    year = numbers.get("%Y", np.full(len(rows), 1900))
    if "%y" in numbers:
        year = numbers["%y"] + np.where(numbers["%y"] <= 68, 2000, 1900)
    month = numbers.get("%m", np.ones(len(rows), dtype=np.int64))
    day = numbers.get("%d", np.ones(len(rows), dtype=np.int64))
    if "%Y" not in numbers and "%y" not in numbers:  # pandas' default year (1900) is not read
        certain[:] = False
    is_leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    days = _DAYS_IN_MONTH[np.clip(month, 1, 12)] + ((month == 2) & is_leap)
    certain &= day <= days
    months = (np.where(certain, year, 1970) - 1970) * 12 + np.where(certain, month, 1) - 1
    dates = months.astype("datetime64[M]").astype("datetime64[D]") + np.where(certain, day - 1, 0)
    nanoseconds = dates.astype("datetime64[ns]").astype(np.int64)
    for piece, unit in (("%H", 3600), ("%M", 60), ("%S", 1)):
        if piece in numbers:
            nanoseconds = nanoseconds + numbers[piece] * unit * 1_000_000_000
    result = np.where(certain, nanoseconds, np.iinfo(np.int64).min).view("datetime64[ns]")
    read = pd.Series(result, index=body.index)
    rest = ~certain & body.notna().to_numpy(dtype=bool)
    if rest.any():
        by_pandas = pd.to_datetime(body[rest], format=date_format, errors="coerce")
        read[rest] = by_pandas.astype("datetime64[ns]").to_numpy()
    return read


@dataclass(frozen=True)
class ParsedTimes:
    written: pd.Series  # the wall-clock date-time as written (naive)
    offset: pd.Series  # minutes east of UTC where the value names its offset, else NA (local)
    two_digit_year: pd.Series  # read with a ``%y`` format


def _parse_formats(cleaned: pd.Series, formats: list[str]) -> ParsedTimes:
    """Each value read with the first listed format it matches exactly."""
    written = pd.Series(pd.NaT, index=cleaned.index, dtype="datetime64[ns]")
    offset = pd.Series(pd.NA, index=cleaned.index, dtype="Float64")
    two_digit_year = pd.Series(False, index=cleaned.index)
    for date_format in formats:
        candidates = cleaned.where(written.isna())
        if not candidates.notna().any():
            break  # every value read (or none to read): the formats left would change nothing
        body_format = date_format.removesuffix("%z")
        if date_format == ISO8601:
            parts = candidates.str.extract(f"^{_ISO_BODY}{_OFFSET}?$")
            body = parts["body"].where(parts["offset"].isna() | (parts["body"].str.len() > 10))
            body = body.str.replace(",", ".", regex=False)
            attempt = pd.to_datetime(body, format=ISO8601, errors="coerce")
        elif body_format != date_format:
            parts = candidates.str.extract(f"^(?P<body>.*?){_OFFSET}$")
            body = parts["body"].where(_length_matches(parts["body"], body_format).fillna(False))
            attempt = pd.to_datetime(body, format=body_format, errors="coerce")
        else:  # a local time: no offset to read
            body = candidates.where(_length_matches(candidates, date_format).fillna(False))
            attempt = read_with_format(body, date_format)
            read = attempt.notna()
            written = written.mask(read, attempt.astype("datetime64[ns]"))
            if "%y" in date_format:
                two_digit_year |= read
            continue
        minutes = _offset_minutes(parts["offset"])
        read = attempt.notna() & (parts["offset"].isna() | minutes.notna())
        written = written.mask(read, attempt.astype("datetime64[ns]"))
        offset = offset.mask(read, minutes)
        if "%y" in date_format:
            two_digit_year |= read
    return ParsedTimes(written, offset, two_digit_year)


def _instants_in_utc(parsed: ParsedTimes) -> pd.Series:
    """UTC of the values that name their offset (NaT for local times)."""
    shift = pd.to_timedelta(parsed.offset.astype("float64"), unit="min")
    return (parsed.written - shift).where(parsed.offset.notna()).dt.tz_localize("UTC")


class DateArgs(TransformArgs):
    formats: list[str]
    two_digit_years: Literal["past", "python"] = "past"
    future_years_allowed: int = Field(default=0, ge=0, le=50)  # planned dates, e.g. an end date
    # The calendar whose date an instant (a value with Z or an offset) falls on.
    timezone: str = LOCAL_TIMEZONE

    @field_validator("formats")
    @classmethod
    def _formats_read_offsets(cls, formats: list[str]) -> list[str]:
        return _check_formats(formats)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        return _check_timezone(name)


def _pivot_to_past(
    parsed: pd.Series, two_digit_year: pd.Series, args: DateArgs, today: dt.date
) -> pd.Series:
    """A ``YYMMDD`` date after the reference date (plus allowed future) is a century earlier."""
    if args.two_digit_years != "past":
        return parsed
    horizon = pd.Timestamp(today) + pd.DateOffset(years=args.future_years_allowed)
    too_late = two_digit_year & (parsed > horizon)
    return parsed.mask(too_late, parsed - pd.DateOffset(years=100))


@transform("parse_legacy_date", DateArgs)
def parse_legacy_date(
    values: pd.Series, args: DateArgs, context: TransformContext
) -> TransformResult:
    """A date in one of the listed legacy formats; otherwise ``unparseable_date``.

    A value that is an instant (``2025-12-31T23:30:00Z``) gives its date in the declared zone
    (Swedish by default: 1 January 2026 here), never the UTC date.
    """
    cleaned = clean_text(values)
    parsed = _parse_formats(cleaned, args.formats)
    written = _pivot_to_past(parsed.written, parsed.two_digit_year, args, context.reference_date)
    dates = written
    is_instant = parsed.offset.notna()
    if is_instant.any():  # else every date is as written
        local = _instants_in_utc(parsed).dt.tz_convert(args.timezone).dt.tz_localize(None)
        dates = written.mask(is_instant, local.astype("datetime64[ns]"))
    failed = cleaned.notna() & dates.isna()
    return TransformResult(
        dates.dt.date.astype("object").where(dates.notna(), None),
        errors_where(failed, "unparseable_date"),
    )


class TimestampArgs(TransformArgs):
    formats: list[str] = ["%Y%m%d%H%M"]
    timezone: str = LOCAL_TIMEZONE  # the zone of values that name no offset
    # 02:30 on the last Sunday of March never happened in Stockholm. ``standard_time`` reads it
    # as if the clock had not been put forward yet (02:30 CET, 01:30 UTC); the row is flagged.
    on_nonexistent: Literal["quarantine", "standard_time"] = "quarantine"
    # 02:30 on the last Sunday of October happened twice. ``standard_time`` takes the second
    # (CET), ``summer_time`` the first (CEST); the row is flagged.
    on_ambiguous: Literal["quarantine", "standard_time", "summer_time"] = "quarantine"

    @field_validator("formats")
    @classmethod
    def _formats_read_offsets(cls, formats: list[str]) -> list[str]:
        return _check_formats(formats)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        return _check_timezone(name)


@transform("parse_legacy_timestamp", TimestampArgs)
def parse_legacy_timestamp(
    values: pd.Series, args: TimestampArgs, context: TransformContext
) -> TransformResult:
    """A legacy date-time as UTC: offsets exactly, local times in the declared zone.

    Errors: ``unparseable_date``; by the declared rules ``nonexistent_local_time`` (spring gap)
    and ``ambiguous_local_time`` (autumn fold). A gap or fold resolved by a stated rule loads
    with a warning (``nonexistent_local_time_resolved``, ``ambiguous_local_time_resolved``).
    """
    cleaned = clean_text(values)
    parsed = _parse_formats(cleaned, args.formats)
    local = parsed.written.where(parsed.offset.isna())
    placed, in_gap, in_fold = _placed_in_zone(local, args)
    result = placed.dt.tz_convert("UTC")
    if parsed.offset.notna().any():  # else no instant to fill in
        result = result.fillna(_instants_in_utc(parsed))

    errors = errors_where(cleaned.notna() & parsed.written.isna(), "unparseable_date")
    warnings = no_errors(values)
    for problem, rule, reason in (
        (in_gap, args.on_nonexistent, "nonexistent_local_time"),
        (in_fold, args.on_ambiguous, "ambiguous_local_time"),
    ):
        if not problem.any():
            continue
        if rule == "quarantine":
            errors = errors.mask(problem, reason)
        else:
            warnings = warnings.mask(problem, f"{reason}_resolved")
    result = result.mask(errors.notna())
    return TransformResult(result.astype("datetime64[ns, UTC]"), errors, warnings)


def _placed_in_zone(
    local: pd.Series, args: TimestampArgs
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Local wall-clock times placed in the declared zone by the declared rules, and which of
    them fell in the spring gap and which in the autumn fold.

    A time in neither has one placement whatever the rules: one strict placement (NaT for the
    gap and the fold) places those, and only the few it leaves out are placed rule by rule."""
    strict = local.dt.tz_localize(args.timezone, ambiguous="NaT", nonexistent="NaT")
    uncertain = local.notna() & strict.isna()
    in_gap = pd.Series(False, index=local.index)
    in_fold = pd.Series(False, index=local.index)
    if not uncertain.any():
        return strict, in_gap, in_fold
    edge = local[uncertain]
    count = len(edge)
    put_forward = pd.Timedelta(hours=1)  # read a time in the gap as standard time
    as_standard = edge.dt.tz_localize(
        args.timezone, ambiguous=np.zeros(count, dtype=bool), nonexistent=put_forward
    )
    as_summer = edge.dt.tz_localize(
        args.timezone, ambiguous=np.ones(count, dtype=bool), nonexistent=put_forward
    )
    in_standard_time = edge.dt.tz_localize(
        args.timezone, ambiguous=np.zeros(count, dtype=bool), nonexistent="NaT"
    )
    in_gap[uncertain] = in_standard_time.isna().to_numpy(dtype=bool)
    in_fold[uncertain] = (as_standard != as_summer).to_numpy(dtype=bool)
    chosen = as_summer if args.on_ambiguous == "summer_time" else as_standard
    return strict.mask(uncertain, chosen), in_gap, in_fold


# --- codes ------------------------------------------------------------------------------------

# The shapes live with the code systems (etl/core/code_systems.py), which recognise them too.
ICD10_SE_PATTERN = code_systems.ICD10_SE_PATTERN
KVA_PATTERN = code_systems.KVA_PATTERN
ATC_PATTERN = code_systems.ATC_PATTERN
NPU_PATTERN = code_systems.NPU_PATTERN


@transform("normalise_icd10_se")
def normalise_icd10_se(
    values: pd.Series, args: NoArgs, context: TransformContext
) -> TransformResult:
    """ICD-10-SE code, dotted and upper-case (``I219`` becomes ``I21.9``); else ``invalid_code``."""
    cleaned = clean_text(values).str.upper().str.replace(" ", "", regex=False)
    dotted = cleaned.str.replace(r"^([A-Z][0-9]{2})([0-9])", r"\1.\2", regex=True)
    return _with_pattern(dotted, ICD10_SE_PATTERN, "invalid_code")


@transform("normalise_kva")
def normalise_kva(values: pd.Series, args: NoArgs, context: TransformContext) -> TransformResult:
    """KVÅ procedure code (3 letters + 2 digits or 2 letters + 3 digits); else ``invalid_code``."""
    return _with_pattern(clean_text(values).str.upper(), KVA_PATTERN, "invalid_code")


class AtcArgs(TransformArgs):
    # Only codes of this ATC group (``J07``: vaccines); a well-formed code of another group is
    # as wrong for the column as a malformed one.
    group: str | None = Field(default=None, pattern=r"^[A-Z]([0-9]{2}([A-Z]{1,2})?)?$")


@transform("normalise_atc", AtcArgs)
def normalise_atc(values: pd.Series, args: AtcArgs, context: TransformContext) -> TransformResult:
    """ATC code at substance level (``A10BA02``), of ``group`` when given; else ``invalid_code``."""
    pattern = ATC_PATTERN
    if args.group is not None:  # the group's own characters, then the rest of the shape
        pattern = re.escape(args.group) + _ATC_TAIL[len(args.group)]
    return _with_pattern(clean_text(values).str.upper(), pattern, "invalid_code")


# The shape of a substance-level ATC code after a group prefix of 1, 3, 4 or 5 characters.
_ATC_TAIL = {
    1: r"[0-9]{2}[A-Z]{2}[0-9]{2}",
    3: r"[A-Z]{2}[0-9]{2}",
    4: r"[A-Z][0-9]{2}",
    5: r"[0-9]{2}",
}


@transform("normalise_npl_id")
def normalise_npl_id(values: pd.Series, args: NoArgs, context: TransformContext) -> TransformResult:
    """NPL-id: 14 digits; else ``invalid_code``."""
    return _with_pattern(clean_text(values), r"[0-9]{14}", "invalid_code")


@transform("hsa_id")
def hsa_id(values: pd.Series, args: NoArgs, context: TransformContext) -> TransformResult:
    """HSA-id: ``SE`` + organisation number + ``-`` + alphanumerics, at most 31 characters."""
    cleaned = clean_text(values).str.upper()
    result = _with_pattern(cleaned, r"SE[0-9]{10}-[A-Z0-9]+", "invalid_hsa_id")
    too_long = result.values.str.len() > 31
    return TransformResult(
        result.values.mask(too_long), result.errors.mask(too_long.fillna(False), "invalid_hsa_id")
    )


class MapCodeArgs(TransformArgs):
    crosswalk: str
    standard_pattern: str | None = None  # codes already in the target system pass unchanged


@transform("map_code", MapCodeArgs)
def map_code(values: pd.Series, args: MapCodeArgs, context: TransformContext) -> TransformResult:
    """A local code translated through a ``mappings/crosswalks`` table; else ``unmapped_code``.

    ``unapproved_code`` when only a proposed row maps it and approved rows are required."""
    cleaned = clean_text(values).str.upper()
    table = context.crosswalks[args.crosswalk]
    mapped = cleaned.map(table, na_action="ignore").astype("string")
    unapproved = context.unapproved.get(args.crosswalk)
    is_unapproved = None
    if unapproved:
        is_unapproved = cleaned.isin(unapproved) & mapped.notna()
        mapped = mapped.mask(is_unapproved)
    if args.standard_pattern:
        is_standard = cleaned.str.fullmatch(args.standard_pattern).fillna(False)
        mapped = mapped.mask(is_standard, cleaned)
        if is_unapproved is not None:
            is_unapproved &= ~is_standard
    failed = cleaned.notna() & mapped.isna()
    errors = errors_where(failed, "unmapped_code")
    if is_unapproved is not None:
        errors = errors.mask(is_unapproved & failed, "unapproved_code")
    return TransformResult(mapped, errors)


# --- laboratory values (Swedish notation: decimal comma, ``<0,8``, ranges ``3,5-4,6``) --------

_COMPARATOR = r"^\s*([<>]=?)\s*"
_COMPARATOR_SIGNS = "<>"  # a value without either has no comparator to read or remove


def _without_comparator(cleaned: pd.Series) -> pd.Series:
    return replace_where_possible(cleaned, _COMPARATOR, "", _COMPARATOR_SIGNS)


@transform("lab_value_numeric")
def lab_value_numeric(
    values: pd.Series, args: NoArgs, context: TransformContext
) -> TransformResult:
    """The number in a lab result (``5,4`` gives 5.4, ``<0,8`` gives 0.8); text gives missing."""
    cleaned = clean_text(values)
    numbers = _decimal_comma_number(_without_comparator(cleaned))
    return TransformResult(numbers.astype("Float64"), no_errors(values))


@transform("lab_value_comparator")
def lab_value_comparator(
    values: pd.Series, args: NoArgs, context: TransformContext
) -> TransformResult:
    """The comparator of a lab result (``<``, ``>``, ``<=``, ``>=``) or missing."""
    comparator = extract_where_possible(clean_text(values), _COMPARATOR, _COMPARATOR_SIGNS)
    return TransformResult(comparator.astype("string"), no_errors(values))


@transform("lab_value_text")
def lab_value_text(values: pd.Series, args: NoArgs, context: TransformContext) -> TransformResult:
    """A lab result that is not a number (``POS``, ``Neg``), kept as text; numbers give missing."""
    cleaned = clean_text(values)
    numbers = _decimal_comma_number(_without_comparator(cleaned))
    return TransformResult(cleaned.mask(numbers.notna()), no_errors(values))


class RangeArgs(TransformArgs):
    bound: Literal["low", "high"]


@transform("reference_range_bound", RangeArgs)
def reference_range_bound(
    values: pd.Series, args: RangeArgs, context: TransformContext
) -> TransformResult:
    """One bound of a reference range (``3,5-4,6``, ``<5``, ``>60``); else ``invalid_range``."""
    cleaned = clean_text(values).str.replace(" ", "", regex=False)
    # Only the wanted bound of a range is extracted: one group gives a column, where two would
    # give a frame that pandas builds value by value (most of this transform's time).
    number = r"[0-9]+(?:,[0-9]+)?"
    low, high = (
        (f"(?P<low>{number})", number) if args.bound == "low" else (number, f"(?P<high>{number})")
    )
    of_range = extract_group(cleaned, f"^{low}-{high}$")
    below = extract_group(cleaned, r"^<=?([0-9]+(?:,[0-9]+)?)$")
    above = extract_group(cleaned, r"^>=?([0-9]+(?:,[0-9]+)?)$")
    text_bound = of_range.fillna(below if args.bound == "high" else above)
    numbers = _decimal_comma_number(text_bound.astype("string"))
    readable = of_range.notna() | below.notna() | above.notna()
    failed = cleaned.notna() & ~readable
    return TransformResult(numbers.astype("Float64"), errors_where(failed, "invalid_range"))


# --- references between rows ------------------------------------------------------------------


class ReferenceArgs(TransformArgs):
    entity: str
    system: str | None = None  # defaults to the mapping's own system


@transform("reference_id", ReferenceArgs)
def reference_id(
    values: pd.Series, args: ReferenceArgs, context: TransformContext
) -> TransformResult:
    """The core id of the row this source key points at (same derivation as that row's own id)."""
    cleaned = clean_text(values)
    ids = core_ids(args.system or context.system, args.entity, cleaned).mask(cleaned.isna())
    return TransformResult(ids, no_errors(values))


def transform_names() -> list[str]:
    return sorted(REGISTRY)


def describe(name: str, args: dict[str, Any] | None = None) -> str:
    """One line for the generated mapping documentation."""
    summary = REGISTRY[name].summary
    return f"{name}({', '.join(f'{k}={v}' for k, v in (args or {}).items())}): {summary}"
