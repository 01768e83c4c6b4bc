"""Swedish identity numbers: parse, validate and normalise them, vectorised over pandas.

- **Personnummer** (Skatteverket): ``YYMMDD-NNNC``, stored as 12 digits ``YYYYMMDDNNNC``. The
  separator becomes ``+`` from the year the person turns 100. ``C`` is a Luhn check digit over the
  10-digit form, never over the century. The 9th digit (of 10) is odd for men, even for women.
  Since 2009 the date part may differ from the true birth date, so it is never compared with a
  separate birth-date field.
- **Samordningsnummer** (coordination number): built like a personnummer, day of month + 60.
  Skatteverket issues them with month 00 or day 60 (day 00) when the birth date is not known,
  so those parts are accepted; any other date part must be a calendar date.
- **Reservnummer** (temporary id when no personnummer is known). VGR's format is
  ``yyyymmddGggC``: ``G`` is K (woman), M (man) or X (unknown), ``gg`` 06-79 (odd men, even
  women) or 80-89 for unknown sex, ``C`` a Luhn digit over ``yymmddGgg`` with K=5, M=7, X=8.
  Older, non-conforming reserve numbers are kept only as linked identifiers, never as valid ones.

Also HSA-id and organisationsnummer predicates. Every function works on whole Series (string
operations and digit matrices), so a million rows cost a handful of array operations.
"""

from __future__ import annotations

import datetime
from enum import StrEnum

import numpy as np
import pandas as pd


class IdentityKind(StrEnum):
    PERSONNUMMER = "personnummer"
    SAMORDNINGSNUMMER = "samordningsnummer"
    RESERVNUMMER_VGR = "reservnummer_vgr"
    # Older non-conforming reserve numbers: kept as a linked identifier, never treated as valid.
    RESERVNUMMER_LEGACY = "reservnummer_legacy"


FHIR_SYSTEMS: dict[IdentityKind, str] = {
    IdentityKind.PERSONNUMMER: "http://electronichealth.se/identifier/personnummer",
    IdentityKind.SAMORDNINGSNUMMER: "http://electronichealth.se/identifier/samordningsnummer",
    IdentityKind.RESERVNUMMER_VGR: "urn:vardflytt:reservnummer:vgr",
    IdentityKind.RESERVNUMMER_LEGACY: "urn:vardflytt:legacy-reservnummer",
}

ERROR_INVALID_FORMAT = "invalid_format"
ERROR_INVALID_CHECK_DIGIT = "invalid_check_digit"
ERROR_INVALID_DATE = "invalid_date"

# [0-9] rather than \d: \d also matches non-ASCII digits such as Arabic-Indic ones.
_PERSONAL_PATTERN = (
    r"^(?P<century>[0-9]{2})?(?P<date>[0-9]{6})(?P<separator>[-+]?)(?P<serial>[0-9]{4})$"
)
_VGR_RESERVE_PATTERN = (
    r"^(?P<century>[0-9]{2})(?P<date>[0-9]{6})(?P<sex_letter>[KMX])"
    r"(?P<sex_digits>[0-9]{2})(?P<check>[0-9])$"
)
_VGR_LETTER_DIGITS = {"K": "5", "M": "7", "X": "8"}
_CENTURY_CODES = {"8": 18, "9": 19, "0": 20}
_HSA_ID_PATTERN = r"SE[0-9]{10}-[A-Za-z0-9]+"
_HSA_ID_MAX_LENGTH = 31
_ORGANISATIONSNUMMER_PATTERN = r"[0-9]{6}-?[0-9]{4}"
_COORDINATION_DAY_OFFSET = 60
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def luhn_check_digit(digits: str) -> int:
    """Luhn check digit: weights 2,1,2,1,... from the left, digit sums of the products."""
    if not digits or not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"expected a non-empty string of digits, got {digits!r}")
    return int(_luhn_check_digits(_digit_matrix(np.array([digits]), len(digits)))[0])


def normalise_identity(
    values: pd.Series,
    century: pd.Series | None = None,
    *,
    reference_date: datetime.date,
    accept_legacy_reserve: bool = False,
) -> pd.DataFrame:
    """Parse identity numbers into canonical 12-character form, kind and error code.

    Returns columns ``identity_number``, ``identity_kind`` and ``error`` (all string dtype) on the
    index of ``values``. Missing or blank input gives NA in all three. ``century`` holds one-digit
    century codes (8 = 18xx, 9 = 19xx, 0 = 20xx) that decide the century of 10-digit values; a
    missing code falls back to the separator rule. With ``accept_legacy_reserve`` any other
    non-blank value that is not shaped as a 10/12-digit number becomes a legacy reserve number.
    """
    if century is not None and not century.index.equals(values.index):
        raise ValueError("century must have the same index as values")
    text = values.astype("string").str.strip()
    present = (text.notna() & (text != "")).to_numpy(dtype=bool)

    size = len(text)
    identity_number = np.full(size, None, dtype=object)
    identity_kind = np.full(size, None, dtype=object)
    error = np.full(size, None, dtype=object)
    error[present] = ERROR_INVALID_FORMAT

    personal = text.str.extract(_PERSONAL_PATTERN)
    personal_rows = present & personal["date"].notna().to_numpy(dtype=bool)
    if personal_rows.any():
        century_codes = None
        if century is not None:
            century_codes = _century_code_text(century)[personal_rows].to_numpy(dtype=object)
        _normalise_personal(
            personal[personal_rows],
            century_codes,
            reference_date,
            personal_rows,
            identity_number,
            identity_kind,
            error,
        )

    reserve_candidates = present & ~personal_rows
    if reserve_candidates.any():
        upper = text[reserve_candidates].str.upper()
        _normalise_vgr_reserve(
            upper.str.extract(_VGR_RESERVE_PATTERN),
            reserve_candidates,
            identity_number,
            identity_kind,
            error,
        )
        if accept_legacy_reserve:
            # Anything that failed here and is not digit-shaped is an old reserve number: it is
            # kept so that it can be linked to the real identity later, but never as valid.
            legacy = reserve_candidates & pd.notna(error)
            identity_number[legacy] = text[legacy].str.upper().to_numpy(dtype=object)
            identity_kind[legacy] = IdentityKind.RESERVNUMMER_LEGACY.value
            error[legacy] = None

    return pd.DataFrame(
        {
            "identity_number": pd.array(identity_number, dtype="string"),
            "identity_kind": pd.array(identity_kind, dtype="string"),
            "error": pd.array(error, dtype="string"),
        },
        index=values.index,
    )


def normalise_identity_one(
    value: str | None,
    reference_date: datetime.date,
    century: str | None = None,
    accept_legacy_reserve: bool = False,
) -> tuple[str | None, str | None, str | None]:
    """Scalar form of :func:`normalise_identity`: ``(identity_number, kind, error)``."""
    values = pd.Series([value], dtype="string")
    centuries = None if century is None else pd.Series([century], dtype="string")
    row = normalise_identity(
        values,
        centuries,
        reference_date=reference_date,
        accept_legacy_reserve=accept_legacy_reserve,
    ).iloc[0]
    number, kind, error = (None if pd.isna(item) else str(item) for item in row)
    return number, kind, error


def sex_from_identity(identity_number: pd.Series, kind: pd.Series) -> pd.Series:
    """``male``/``female``/``unknown`` from canonical identity numbers; NA for other kinds."""
    identity_number = identity_number.astype("string")
    kind = kind.astype("string")
    personal = kind.isin([IdentityKind.PERSONNUMMER, IdentityKind.SAMORDNINGSNUMMER])
    reserve = kind == IdentityKind.RESERVNUMMER_VGR
    # The sex digit is the 9th of the 10-digit form, i.e. the 11th of the 12.
    sex_digit = identity_number.str[10]
    sex_letter = identity_number.str[8]
    conditions = [
        (personal & sex_digit.isin(list("13579"))).fillna(False).to_numpy(dtype=bool),
        (personal & sex_digit.isin(list("02468"))).fillna(False).to_numpy(dtype=bool),
        (reserve & (sex_letter == "M")).fillna(False).to_numpy(dtype=bool),
        (reserve & (sex_letter == "K")).fillna(False).to_numpy(dtype=bool),
        (reserve & (sex_letter == "X")).fillna(False).to_numpy(dtype=bool),
    ]
    choices = ["male", "female", "male", "female", "unknown"]
    sex = np.select(conditions, choices, default=None).astype(object)
    return pd.Series(pd.array(sex, dtype="string"), index=identity_number.index, name="sex")


def birth_date_from_identity(identity_number: pd.Series, kind: pd.Series) -> pd.Series:
    """Date part of canonical identity numbers (samordningsnummer: day minus 60); NaT otherwise.

    This is the date the number encodes, which since 2009 may differ from the true birth date.
    """
    identity_number = identity_number.astype("string")
    kind = kind.astype("string")
    dated = kind.isin(
        [IdentityKind.PERSONNUMMER, IdentityKind.SAMORDNINGSNUMMER, IdentityKind.RESERVNUMMER_VGR]
    ).fillna(False)
    coordination = (kind == IdentityKind.SAMORDNINGSNUMMER).fillna(False)
    day = pd.to_numeric(identity_number.str[6:8], errors="coerce")
    day = day - _COORDINATION_DAY_OFFSET * coordination.astype(int)
    day_text = day.astype("Int64").astype("string").str.zfill(2)
    date_text = (identity_number.str[:6] + day_text).where(dated)
    return pd.to_datetime(date_text, format="%Y%m%d", errors="coerce").rename("birth_date")


def is_valid_hsa_id(values: pd.Series) -> pd.Series:
    """``SE`` + 10-digit organisation number + ``-`` + ASCII letters/digits, at most 31 chars."""
    text = values.astype("string")
    valid = text.str.fullmatch(_HSA_ID_PATTERN) & (text.str.len() <= _HSA_ID_MAX_LENGTH)
    return valid.fillna(False).astype(bool)


def is_valid_organisationsnummer(values: pd.Series) -> pd.Series:
    """10 digits (optionally ``NNNNNN-NNNN``), Luhn-valid, third digit at least 2."""
    text = values.astype("string")
    shaped = text.str.fullmatch(_ORGANISATIONSNUMMER_PATTERN).fillna(False).to_numpy(dtype=bool)
    valid = np.zeros(len(text), dtype=bool)
    if shaped.any():
        digits = _digit_matrix(text[shaped].str.replace("-", "", regex=False).to_numpy(), 10)
        # Third digit >= 2 keeps an organisation number from ever looking like a date.
        valid[shaped] = _luhn_valid(digits) & (digits[:, 2] >= 2)
    return pd.Series(valid, index=values.index)


def _normalise_personal(
    parts: pd.DataFrame,
    century_codes: np.ndarray | None,
    reference_date: datetime.date,
    rows: np.ndarray,
    identity_number: np.ndarray,
    identity_kind: np.ndarray,
    error: np.ndarray,
) -> None:
    """Fill the result arrays for values shaped as 10 or 12 digits (with optional separator)."""
    ten_digits = (parts["date"] + parts["serial"]).to_numpy(dtype=object)
    digits = _digit_matrix(ten_digits, 10)
    year_in_century = _two_digit_number(digits, 0)
    month = _two_digit_number(digits, 2)
    day_field = _two_digit_number(digits, 4)
    coordination = day_field >= _COORDINATION_DAY_OFFSET
    day = day_field - _COORDINATION_DAY_OFFSET * coordination

    # Century: explicit 4-digit year first, then a legacy century code, then the separator rule.
    century = np.full(len(parts), -1)
    explicit = parts["century"].notna().to_numpy(dtype=bool)
    century[explicit] = parts["century"][explicit].astype(int).to_numpy()
    bad_century_code = np.zeros(len(parts), dtype=bool)
    if century_codes is not None:
        coded = ~explicit & pd.notna(century_codes)
        mapped = pd.Series(century_codes[coded], dtype=object).map(_CENTURY_CODES).to_numpy()
        known = pd.notna(mapped)
        coded_positions = np.flatnonzero(coded)
        century[coded_positions[known]] = mapped[known].astype(int)
        bad_century_code[coded_positions[~known]] = True
    inferred = century < 0
    centenarian = (parts["separator"] == "+").to_numpy(dtype=bool)
    year = np.where(
        inferred,
        _infer_year(year_in_century, month, day, centenarian, reference_date),
        century * 100 + year_in_century,
    )

    check_digit_ok = _luhn_valid(digits)
    # Samordningsnummer may leave month or day unknown (00); check the rest of the date.
    unknown_month = coordination & (month == 0)
    unknown_day = coordination & (day == 0)
    date_ok = _is_calendar_date(
        year, np.where(unknown_month, 1, month), np.where(unknown_day, 1, day)
    )

    row_error = np.full(len(parts), None, dtype=object)
    row_error[~date_ok] = ERROR_INVALID_DATE
    row_error[~check_digit_ok] = ERROR_INVALID_CHECK_DIGIT
    row_error[bad_century_code] = ERROR_INVALID_FORMAT
    valid = pd.isna(row_error)

    canonical = (
        pd.Series(year.astype(str), dtype="string").str.zfill(4)
        + pd.Series(ten_digits, dtype="string").str[2:]
    ).to_numpy(dtype=object)
    kind = np.where(
        coordination, IdentityKind.SAMORDNINGSNUMMER.value, IdentityKind.PERSONNUMMER.value
    ).astype(object)
    identity_number[rows] = np.where(valid, canonical, None)
    identity_kind[rows] = np.where(valid, kind, None)
    error[rows] = row_error


def _normalise_vgr_reserve(
    parts: pd.DataFrame,
    rows: np.ndarray,
    identity_number: np.ndarray,
    identity_kind: np.ndarray,
    error: np.ndarray,
) -> None:
    """Fill the result arrays for values that may be VGR reservnummer (others stay as they are)."""
    matched = parts["date"].notna().to_numpy(dtype=bool)
    if not matched.any():
        return
    parts = parts[matched]
    sex_letter = parts["sex_letter"].to_numpy(dtype=object)
    sex_number = parts["sex_digits"].astype(int).to_numpy()
    odd = sex_number % 2 == 1
    in_person_range = (sex_number >= 6) & (sex_number <= 79)
    sex_ok = np.select(
        [sex_letter == "M", sex_letter == "K", sex_letter == "X"],
        [in_person_range & odd, in_person_range & ~odd, (sex_number >= 80) & (sex_number <= 89)],
        default=False,
    )

    # Luhn over yymmddGgg with the letter as a digit, compared with C.
    luhn_text = (
        parts["date"] + parts["sex_letter"].map(_VGR_LETTER_DIGITS) + parts["sex_digits"]
    ).to_numpy(dtype=object)
    check_digit_ok = (
        _luhn_check_digits(_digit_matrix(luhn_text, 9)) == parts["check"].astype(int).to_numpy()
    )

    date_digits = _digit_matrix((parts["century"] + parts["date"]).to_numpy(dtype=object), 8)
    year = _two_digit_number(date_digits, 0) * 100 + _two_digit_number(date_digits, 2)
    date_ok = _is_calendar_date(
        year, _two_digit_number(date_digits, 4), _two_digit_number(date_digits, 6)
    )

    row_error = np.full(len(parts), None, dtype=object)
    row_error[~date_ok] = ERROR_INVALID_DATE
    row_error[~check_digit_ok] = ERROR_INVALID_CHECK_DIGIT
    row_error[~sex_ok] = ERROR_INVALID_FORMAT
    valid = pd.isna(row_error)

    canonical = (
        parts["century"]
        + parts["date"]
        + parts["sex_letter"]
        + parts["sex_digits"]
        + parts["check"]
    ).to_numpy(dtype=object)
    positions = np.flatnonzero(rows)[matched]
    identity_number[positions] = np.where(valid, canonical, None)
    identity_kind[positions] = np.where(valid, IdentityKind.RESERVNUMMER_VGR.value, None)
    error[positions] = row_error


def _infer_year(
    year_in_century: np.ndarray,
    month: np.ndarray,
    day: np.ndarray,
    centenarian: np.ndarray,
    reference_date: datetime.date,
) -> np.ndarray:
    """Latest year ending in ``yy`` whose date is not after the reference date (age < 100).

    With ``+`` the person is 100 or older, which is the same choice moved back one century.
    """
    reference = reference_date.year * 10000 + reference_date.month * 100 + reference_date.day
    year = (reference_date.year // 100) * 100 + year_in_century
    after_reference = year * 10000 + month * 100 + day > reference
    year = year - 100 * after_reference
    return year - 100 * centenarian


def _century_code_text(century: pd.Series) -> pd.Series:
    """Century codes as stripped text, whether they arrive as text, integers or floats."""
    if pd.api.types.is_numeric_dtype(century):
        century = century.astype("Int64")
    text = century.astype("string").str.strip()
    return text.where(text != "")


def _is_calendar_date(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    days_in_month = _DAYS_IN_MONTH[np.clip(month, 1, 12) - 1] + ((month == 2) & leap)
    return month_ok & (day >= 1) & (day <= days_in_month) & (year >= 1)


def _digit_matrix(strings: np.ndarray, width: int) -> np.ndarray:
    """ASCII digit strings of equal width as an (n, width) integer matrix."""
    if len(strings) == 0:
        return np.zeros((0, width), dtype=np.int64)
    raw = np.asarray(strings).astype(f"S{width}").view(np.uint8).reshape(-1, width)
    return raw.astype(np.int64) - ord("0")


def _two_digit_number(digits: np.ndarray, start: int) -> np.ndarray:
    return digits[:, start] * 10 + digits[:, start + 1]


def _luhn_check_digits(digits: np.ndarray) -> np.ndarray:
    """Luhn check digit for each row of a digit matrix (weights 2,1,2,1,... from the left)."""
    weights = np.resize([2, 1], digits.shape[1])
    products = digits * weights
    total = (products // 10 + products % 10).sum(axis=1)
    return (10 - total % 10) % 10


def _luhn_valid(digits: np.ndarray) -> np.ndarray:
    """Whether the last column is the Luhn check digit of the columns before it."""
    return _luhn_check_digits(digits[:, :-1]) == digits[:, -1]
