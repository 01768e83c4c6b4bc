"""The closed vocabulary of named transforms a mapping may use.

Each transform is a small, pure, vectorised function over pandas Series: it returns the core
values and, per row, either NA or the reason the value could not be mapped (the row is then
quarantined with that reason and the field named). Mappings refer to transforms by name; no
expression strings are evaluated at run time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from etl.core.ids import core_ids


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


@dataclass(frozen=True)
class TransformResult:
    values: pd.Series
    errors: pd.Series  # NA where fine, else a reason code such as ``unparseable_date``


@dataclass(frozen=True)
class TransformDefinition:
    name: str
    function: Callable[..., TransformResult]
    args_model: type[TransformArgs]
    summary: str


REGISTRY: dict[str, TransformDefinition] = {}


def transform(name: str, args_model: type[TransformArgs] = NoArgs):
    """Register a transform under ``name``; its docstring's first line documents it."""

    def register(function: Callable[..., TransformResult]) -> Callable[..., TransformResult]:
        summary = (function.__doc__ or "").strip().splitlines()[0]
        REGISTRY[name] = TransformDefinition(name, function, args_model, summary)
        return function

    return register


def no_errors(values: pd.Series) -> pd.Series:
    return pd.Series(pd.NA, index=values.index, dtype="string")


def errors_where(failed: pd.Series, reason: str) -> pd.Series:
    errors = no_errors(failed)
    errors[failed.fillna(False).astype(bool)] = reason
    return errors


def clean_text(values: pd.Series) -> pd.Series:
    """Strip whitespace; blank becomes NA."""
    stripped = values.astype("string").str.strip()
    return stripped.mask(stripped == "")


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
    return pd.to_numeric(
        normalised.where(normalised.str.fullmatch(r"[+-]?[0-9]+(\.[0-9]+)?")), errors="coerce"
    )


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

_FORMAT_WIDTHS = {"%Y": 4, "%y": 2, "%m": 2, "%d": 2, "%H": 2, "%M": 2, "%S": 2}


def _format_length(date_format: str) -> int:
    """Expected string length, so ``%m`` cannot silently accept one digit."""
    length = len(date_format)
    for directive, width in _FORMAT_WIDTHS.items():
        length += date_format.count(directive) * (width - 2)
    return length


def _parse_formats(cleaned: pd.Series, formats: list[str]) -> tuple[pd.Series, pd.Series]:
    """Parsed timestamps, and whether each was read with a two-digit-year format."""
    parsed = pd.Series(pd.NaT, index=cleaned.index, dtype="datetime64[ns]")
    two_digit_year = pd.Series(False, index=cleaned.index)
    lengths = cleaned.str.len()
    for date_format in formats:
        candidates = cleaned.where(parsed.isna() & (lengths == _format_length(date_format)))
        attempt = pd.to_datetime(candidates, format=date_format, errors="coerce")
        if "%y" in date_format:
            two_digit_year |= parsed.isna() & attempt.notna()
        parsed = parsed.fillna(attempt)
    return parsed, two_digit_year


class DateArgs(TransformArgs):
    formats: list[str]
    two_digit_years: Literal["past", "python"] = "past"
    future_years_allowed: int = Field(default=0, ge=0, le=50)  # planned dates, e.g. an end date


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
    """A date in one of the listed legacy formats; otherwise ``unparseable_date``."""
    cleaned = clean_text(values)
    parsed, two_digit_year = _parse_formats(cleaned, args.formats)
    parsed = _pivot_to_past(parsed, two_digit_year, args, context.reference_date)
    failed = cleaned.notna() & parsed.isna()
    return TransformResult(
        parsed.dt.date.astype("object").where(parsed.notna(), None),
        errors_where(failed, "unparseable_date"),
    )


class TimestampArgs(TransformArgs):
    formats: list[str] = ["%Y%m%d%H%M"]
    timezone: str = "Europe/Stockholm"


@transform("parse_legacy_timestamp", TimestampArgs)
def parse_legacy_timestamp(
    values: pd.Series, args: TimestampArgs, context: TransformContext
) -> TransformResult:
    """A local legacy timestamp (``YYYYMMDDHHmm``) as UTC; otherwise ``unparseable_date``."""
    cleaned = clean_text(values)
    parsed, _ = _parse_formats(cleaned, args.formats)
    # The repeated autumn hour cannot be told apart in legacy data: read it as standard time.
    standard_time = np.zeros(len(parsed), dtype=bool)
    localised = parsed.dt.tz_localize(
        args.timezone, ambiguous=standard_time, nonexistent="shift_forward"
    )
    failed = cleaned.notna() & parsed.isna()
    return TransformResult(localised.dt.tz_convert("UTC"), errors_where(failed, "unparseable_date"))


# --- codes ------------------------------------------------------------------------------------

ICD10_SE_PATTERN = r"[A-Z][0-9]{2}(\.[0-9]{1,2}[A-Z]?)?"
KVA_PATTERN = r"[A-Z]{3}[0-9]{2}|[A-Z]{2}[0-9]{3}"
ATC_PATTERN = r"[A-Z][0-9]{2}[A-Z]{2}[0-9]{2}"
NPU_PATTERN = r"NPU[0-9]{5}"


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


@transform("normalise_atc")
def normalise_atc(values: pd.Series, args: NoArgs, context: TransformContext) -> TransformResult:
    """ATC code at substance level (``A10BA02``); else ``invalid_code``."""
    return _with_pattern(clean_text(values).str.upper(), ATC_PATTERN, "invalid_code")


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
    """A local code translated through a ``mappings/crosswalks`` table; else ``unmapped_code``."""
    cleaned = clean_text(values).str.upper()
    table = context.crosswalks[args.crosswalk]
    mapped = cleaned.map(table, na_action="ignore").astype("string")
    if args.standard_pattern:
        is_standard = cleaned.str.fullmatch(args.standard_pattern).fillna(False)
        mapped = mapped.mask(is_standard, cleaned)
    failed = cleaned.notna() & mapped.isna()
    return TransformResult(mapped, errors_where(failed, "unmapped_code"))


# --- laboratory values (Swedish notation: decimal comma, ``<0,8``, ranges ``3,5-4,6``) --------

_COMPARATOR = r"^\s*([<>]=?)\s*"


@transform("lab_value_numeric")
def lab_value_numeric(
    values: pd.Series, args: NoArgs, context: TransformContext
) -> TransformResult:
    """The number in a lab result (``5,4`` gives 5.4, ``<0,8`` gives 0.8); text gives missing."""
    cleaned = clean_text(values)
    numbers = _decimal_comma_number(cleaned.str.replace(_COMPARATOR, "", regex=True))
    return TransformResult(numbers.astype("Float64"), no_errors(values))


@transform("lab_value_comparator")
def lab_value_comparator(
    values: pd.Series, args: NoArgs, context: TransformContext
) -> TransformResult:
    """The comparator of a lab result (``<``, ``>``, ``<=``, ``>=``) or missing."""
    comparator = clean_text(values).str.extract(_COMPARATOR, expand=False)
    return TransformResult(comparator.astype("string"), no_errors(values))


@transform("lab_value_text")
def lab_value_text(values: pd.Series, args: NoArgs, context: TransformContext) -> TransformResult:
    """A lab result that is not a number (``POS``, ``Neg``), kept as text; numbers give missing."""
    cleaned = clean_text(values)
    numbers = _decimal_comma_number(cleaned.str.replace(_COMPARATOR, "", regex=True))
    return TransformResult(cleaned.mask(numbers.notna()), no_errors(values))


class RangeArgs(TransformArgs):
    bound: Literal["low", "high"]


@transform("reference_range_bound", RangeArgs)
def reference_range_bound(
    values: pd.Series, args: RangeArgs, context: TransformContext
) -> TransformResult:
    """One bound of a reference range (``3,5-4,6``, ``<5``, ``>60``); else ``invalid_range``."""
    cleaned = clean_text(values).str.replace(" ", "", regex=False)
    parts = cleaned.str.extract(r"^(?P<low>[0-9]+(?:,[0-9]+)?)-(?P<high>[0-9]+(?:,[0-9]+)?)$")
    below = cleaned.str.extract(r"^<=?([0-9]+(?:,[0-9]+)?)$", expand=False)
    above = cleaned.str.extract(r"^>=?([0-9]+(?:,[0-9]+)?)$", expand=False)
    text_bound = parts[args.bound].fillna(below if args.bound == "high" else above)
    numbers = _decimal_comma_number(text_bound.astype("string"))
    readable = parts["low"].notna() | below.notna() | above.notna()
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
