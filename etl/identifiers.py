"""Swedish identity numbers: parse, validate and normalise them, vectorised over pandas.

- **Personnummer** (Skatteverket): ``YYMMDD-NNNC``, stored as 12 digits ``YYYYMMDDNNNC``. The
  separator becomes ``+`` from the year the person turns 100. ``C`` is a Luhn check digit over the
  10-digit form, never over the century. The 9th digit (of 10) is odd for men, even for women.
  Since 2009 the date part may differ from the true birth date, so it is never compared with a
  separate birth-date field.
- **Samordningsnummer** (coordination number): built like a personnummer, day of month + 60.
  Skatteverket issues them with month 00 or day 60 (day 00) when the birth date is not known, and
  its own test list holds numbers whose date part is no calendar date at all (31 April, 30 and 31
  February). So a samordningsnummer needs month 00-12 and day field 60-91, nothing more; its birth
  date is the date part only when that is a whole calendar date, otherwise unknown (NaT), and the
  number stays valid.
- **Serial number** (digits 7-9 of the 10-digit form): ``000`` is never issued, so a number with
  it is invalid even when its check digit is right.
- **Century of a 10-digit form**: ``+`` means the person turns 100 or more in the reference
  date's year (Skatteverket switches the separator at the start of that year), ``-`` or none
  that they turn less than 100; always relative to the reference date, never today.
- **Interimsnummer** (interim number): a date part and a serial with one letter in it
  (``19800101-T123``), issued by other bodies (universities, some care providers) for people
  without a personnummer. Its own kind, never a personnummer or reservnummer, and never a
  patient's primary identity. The VGR reservnummer shape (``yyyymmdd`` + K/M/X + 3 digits, no
  separator) is read as a reservnummer first.
- **Reservnummer** (temporary id when no personnummer is known). VGR's format is
  ``yyyymmddGggC``: ``G`` is K (woman), M (man) or X (unknown), ``gg`` 06-79 (odd men, even
  women) or 80-89 for unknown sex, ``C`` a Luhn digit over ``yymmddGgg`` with K=5, M=7, X=8.
  Older, non-conforming reserve numbers are kept only as linked identifiers, never as valid ones.

Also the region's own reserve numbers for patients without any Swedish number
(:func:`issue_reservnummer`: reproducible, never a personnummer), foreign identifiers kept as
secondary ones (:func:`normalise_foreign_identifier`), HSA-id and organisationsnummer
predicates. Every function works on whole Series (string operations and digit matrices), so a
million rows cost a handful of array operations; issuing reserve numbers, which needs a keyed
hash per row, runs only over the few patients without a Swedish number.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from collections.abc import Collection
from enum import StrEnum
from typing import cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.core.text_columns import arrow_text


class IdentityKind(StrEnum):
    PERSONNUMMER = "personnummer"
    SAMORDNINGSNUMMER = "samordningsnummer"
    RESERVNUMMER_VGR = "reservnummer_vgr"
    # Older non-conforming reserve numbers: kept as a linked identifier, never treated as valid.
    RESERVNUMMER_LEGACY = "reservnummer_legacy"
    # A VGR reservnummer this migration issued (issue_reservnummer) to a patient without any
    # Swedish number. Its own kind so that identity resolution never links two systems through
    # it: no legacy system has ever seen the number.
    RESERVNUMMER_VGR_ISSUED = "reservnummer_vgr_issued"
    INTERIMSNUMMER = "interimsnummer"
    # Foreign identifiers: secondary only, with the issuing country beside them.
    FOREIGN_PASSPORT = "foreign_passport"
    FOREIGN_EU_HEALTH_CARD = "foreign_eu_health_card"
    FOREIGN_NATIONAL_ID = "foreign_national_id"
    FOREIGN_PERSONAL_NUMBER = "foreign_personal_number"


# Kinds that can be a patient's primary identity: a Swedish number the patient really has, or
# the reserve number the region issued. Legacy, interim and foreign numbers are kept as linked
# secondary identifiers only.
PRIMARY_KINDS = frozenset(
    {
        IdentityKind.PERSONNUMMER,
        IdentityKind.SAMORDNINGSNUMMER,
        IdentityKind.RESERVNUMMER_VGR,
        IdentityKind.RESERVNUMMER_VGR_ISSUED,
    }
)
FOREIGN_KINDS = frozenset(
    {
        IdentityKind.FOREIGN_PASSPORT,
        IdentityKind.FOREIGN_EU_HEALTH_CARD,
        IdentityKind.FOREIGN_NATIONAL_ID,
        IdentityKind.FOREIGN_PERSONAL_NUMBER,
    }
)


FHIR_SYSTEMS: dict[IdentityKind, str] = {
    IdentityKind.PERSONNUMMER: "http://electronichealth.se/identifier/personnummer",
    IdentityKind.SAMORDNINGSNUMMER: "http://electronichealth.se/identifier/samordningsnummer",
    IdentityKind.RESERVNUMMER_VGR: "urn:vardflytt:reservnummer:vgr",
    IdentityKind.RESERVNUMMER_LEGACY: "urn:vardflytt:legacy-reservnummer",
    IdentityKind.RESERVNUMMER_VGR_ISSUED: "urn:vardflytt:reservnummer:vgr",
    IdentityKind.INTERIMSNUMMER: "urn:vardflytt:interimsnummer",
    IdentityKind.FOREIGN_PASSPORT: "urn:vardflytt:foreign:passport",
    IdentityKind.FOREIGN_EU_HEALTH_CARD: "urn:vardflytt:foreign:eu-health-card",
    IdentityKind.FOREIGN_NATIONAL_ID: "urn:vardflytt:foreign:national-id",
    IdentityKind.FOREIGN_PERSONAL_NUMBER: "urn:vardflytt:foreign:personal-number",
}

ERROR_INVALID_FORMAT = "invalid_format"
ERROR_INVALID_CHECK_DIGIT = "invalid_check_digit"
ERROR_INVALID_DATE = "invalid_date"
ERROR_INVALID_SERIAL = "invalid_serial_number"
ERROR_MISSING_ISSUER = "missing_issuer"
ERROR_INVALID_ISSUER = "invalid_issuer"

# [0-9] rather than \d: \d also matches non-ASCII digits such as Arabic-Indic ones.
_PERSONAL_PATTERN = (
    r"^(?P<century>[0-9]{2})?(?P<date>[0-9]{6})(?P<separator>[-+]?)(?P<serial>[0-9]{4})$"
)
_VGR_RESERVE_PATTERN = (
    r"^(?P<century>[0-9]{2})(?P<date>[0-9]{6})(?P<sex_letter>[KMX])"
    r"(?P<sex_digits>[0-9]{2})(?P<check>[0-9])$"
)
# One of the letters interim issuers use, in one of the first three places of the serial, then a
# digit. No check digit is verified: the issuers' rules differ and are not all public.
_INTERIM_LETTER = "[TRSUWXJKLMN]"
_INTERIM_PATTERN = (
    r"^(?P<century>[0-9]{2})?(?P<date>[0-9]{6})(?P<separator>[-+]?)"
    rf"(?P<serial>{_INTERIM_LETTER}[0-9]{{2}}|[0-9]{_INTERIM_LETTER}[0-9]|[0-9]{{2}}{_INTERIM_LETTER})"
    r"(?P<check>[0-9])$"
)
# The groups of the patterns above that may take no part in a match (none of them matches
# empty text): where RE2 gives empty text for one, pandas gives a missing value.
_OPTIONAL_GROUPS = frozenset({"century"})
_VGR_LETTER_DIGITS = {"K": "5", "M": "7", "X": "8"}


def _extract(text: pd.Series, pattern: str) -> pd.DataFrame:
    """``text.str.extract(pattern)`` for the patterns above (named groups, ASCII classes only),
    by Arrow's RE2 in one call; pandas runs Python's ``re`` value by value. A column holding a
    line break (Python's ``$`` also matches before a final one) is left to pandas."""
    array = arrow_text(text)  # Arrow-backed text, so a ``StringDtype``
    dtype = cast(pd.StringDtype, text.dtype)
    if array is None or dtype.na_value is not pd.NA:  # the ``string`` dtype only, not ``str``
        return text.str.extract(pattern)
    if pc.any(pc.match_substring(array, "\n")).as_py():
        return text.str.extract(pattern)
    found = pc.extract_regex(array, pattern)
    groups = sorted(re.compile(pattern).groupindex.items(), key=lambda item: item[1])
    columns = {}
    for name, number in groups:
        values = pc.struct_field(found, [number - 1])
        if name in _OPTIONAL_GROUPS:
            values = pc.if_else(pc.equal(values, ""), pa.scalar(None, values.type), values)
        columns[name] = pd.Series(
            pd.arrays.ArrowStringArray(values.cast(pa.large_string())),
            index=text.index,
            dtype=dtype,
        )
    return pd.DataFrame(columns, index=text.index)


_CENTURY_CODES = {"8": 18, "9": 19, "0": 20}
_HSA_ID_PATTERN = r"SE[0-9]{10}-[A-Za-z0-9]+"
_HSA_ID_MAX_LENGTH = 31
_ORGANISATIONSNUMMER_PATTERN = r"[0-9]{6}-?[0-9]{4}"
_COORDINATION_DAY_OFFSET = 60
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


# --- Luhn and dates: the one implementation of each, vectorised ----------------------------------


def luhn_check_digits(digits: np.ndarray) -> np.ndarray:
    """Luhn check digit of each row of an ``(n, width)`` digit matrix.

    Weights 2,1,2,1,... from the left and the digit sums of the products, as Skatteverket
    computes it over the 10-digit personnummer (never the century), the VGR reservnummer's
    ``yymmddGgg`` and the organisationsnummer.
    """
    weights = np.resize([2, 1], digits.shape[1])
    products = digits * weights
    total = (products // 10 + products % 10).sum(axis=1)
    check_digits: np.ndarray = (10 - total % 10) % 10
    return check_digits


def is_luhn_valid(digits: np.ndarray) -> np.ndarray:
    """Whether the last column of each row is the Luhn check digit of the columns before it."""
    is_valid: np.ndarray = luhn_check_digits(digits[:, :-1]) == digits[:, -1]
    return is_valid


def luhn_check_digit(digits: str) -> int:
    """One string's Luhn check digit (:func:`luhn_check_digits` over a one-row matrix)."""
    if not digits or not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"expected a non-empty string of digits, got {digits!r}")
    return int(luhn_check_digits(_digit_matrix(np.array([digits]), len(digits)))[0])


def is_calendar_date(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Whether each ``(year, month, day)`` is a date of the proleptic Gregorian calendar."""
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    days_in_month = _DAYS_IN_MONTH[np.clip(month, 1, 12) - 1] + ((month == 2) & leap)
    is_date: np.ndarray = month_ok & (day >= 1) & (day <= days_in_month) & (year >= 1)
    return is_date


def is_plausible_identity_date(month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Month 1-12 and day 1-31, or 61-91 (a samordningsnummer's day + 60); arrays or scalars.

    The shape test that finds what looks like an identity number in text or reports; validity
    is :func:`normalise_identity`'s, which knows the calendar and the samordningsnummer's
    unknown month and day.
    """
    month_ok = (month >= 1) & (month <= 12)
    return month_ok & (((day >= 1) & (day <= 31)) | ((day >= 61) & (day <= 91)))


# --- Swedish identity numbers -----------------------------------------------------------------


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

    personal = _extract(text, _PERSONAL_PATTERN)
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
        vgr_rows = _normalise_vgr_reserve(
            _extract(upper, _VGR_RESERVE_PATTERN),
            reserve_candidates,
            identity_number,
            identity_kind,
            error,
        )
        interim_candidates = reserve_candidates & ~vgr_rows
        if interim_candidates.any():
            interim = _extract(text[interim_candidates].str.upper(), _INTERIM_PATTERN)
            _normalise_interim(
                interim,
                reference_date,
                interim_candidates,
                identity_number,
                identity_kind,
                error,
            )
        if accept_legacy_reserve:
            # Anything that failed here and is not digit-shaped is an old reserve number: it is
            # kept so that it can be linked to the real identity later, but never as valid.
            # (A malformed interim number is one of them: its issuer's rules are not ours.)
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


# --- reserve numbers the region issues, foreign identifiers -----------------------------------

# The key of the derivation. Not a secret (the core stores each patient's source key next to the
# number): it separates this derivation from every other keyed hash, and its version is part of
# it because changing it would change every number issued before.
RESERVE_DERIVATION_KEY = b"vardflytt/reservnummer/vgr/v1"
# Places for ``gg`` per sex letter in VGR's scheme: odd 07-79 men, even 06-78 women, 80-89 unknown.
_RESERVE_SLOTS = {
    "M": tuple(range(7, 80, 2)),
    "K": tuple(range(6, 80, 2)),
    "X": tuple(range(80, 90)),
}
_SEX_LETTERS = {"male": "M", "female": "K"}
ERROR_RESERVE_WITHOUT_BIRTH_DATE = "reserve_number_needs_birth_date"
ERROR_RESERVE_EXHAUSTED = "reserve_numbers_exhausted"


def issue_reservnummer(
    system: str,
    source_keys: pd.Series,
    birth_dates: pd.Series,
    sexes: pd.Series,
    taken: Collection[str] = frozenset(),
    previous: dict[str, str] | None = None,
) -> pd.DataFrame:
    """VGR reservnummer ``yyyymmddGggC`` for patients without any Swedish number.

    Reproducible without randomness: each row's preferred ``gg`` comes from a keyed hash
    (HMAC-SHA256) of system and source key, so the same source row gets the same number run
    after run. Rows that want the same place (same birth date and sex) take it in the order of
    their hashes, never their order in the file, each moving on to the next free place; numbers
    in ``taken`` (already in use) are never issued. The letter makes it impossible for the number
    to be a personnummer. ``previous`` holds the numbers issued before, by source key: a row
    keeps its number while its birth date and sex still fit it. Returns ``identity_number`` and
    ``error`` (``reserve_number_needs_
    birth_date`` without a birth date, ``reserve_numbers_exhausted`` when every place of that
    date and sex is in use) on the index of ``source_keys``.

    The keyed hash has no vector form; it runs only over the few patients that need a number.
    """
    birth = pd.to_datetime(birth_dates, errors="coerce")
    letters = sexes.astype("string").map(_SEX_LETTERS).fillna("X")
    number = pd.Series(pd.NA, index=source_keys.index, dtype="string")
    error = pd.Series(pd.NA, index=source_keys.index, dtype="string")
    error[birth.isna().to_numpy()] = ERROR_RESERVE_WITHOUT_BIRTH_DATE
    candidates = pd.DataFrame(
        {
            "key": source_keys.astype("string"),
            "date": birth.dt.strftime("%Y%m%d"),
            "letter": letters,
        }
    )[birth.notna().to_numpy()]
    previous = previous or {}
    kept = [
        previous.get(key) is not None and previous[key][:9] == date + letter
        for key, date, letter in zip(
            candidates["key"], candidates["date"], candidates["letter"], strict=True
        )
    ]
    for index, key in zip(candidates.index[kept], candidates["key"][kept], strict=True):
        number[index] = previous[key]
    candidates = candidates[[not keep for keep in kept]].copy()
    candidates["digest"] = [
        hmac.new(RESERVE_DERIVATION_KEY, f"{system}\x1f{key}".encode(), hashlib.sha256).digest()
        for key in candidates["key"]
    ]
    # In use: ``taken`` (read, never copied: it holds every number of the core and of the
    # entity's chunks so far), the numbers issued before, and those this call issues.
    before = set(previous.values())
    issued_here: set[str] = set()
    for group_key, group in candidates.sort_values(["digest", "key"]).groupby(
        ["date", "letter"], sort=True
    ):
        date, letter = cast("tuple[str, str]", group_key)
        slots = _RESERVE_SLOTS[letter]
        for index, digest in zip(group.index, group["digest"], strict=True):
            start = int.from_bytes(digest[:8], "big") % len(slots)
            for step in range(len(slots)):
                issued = _vgr_number(date, letter, slots[(start + step) % len(slots)])
                if issued not in taken and issued not in before and issued not in issued_here:
                    issued_here.add(issued)
                    number[index] = issued
                    break
            else:
                error[index] = ERROR_RESERVE_EXHAUSTED
    return pd.DataFrame({"identity_number": number, "error": error})


def _vgr_number(date: str, letter: str, sex_digits: int) -> str:
    """``yyyymmdd`` + letter + ``gg`` + the Luhn digit over ``yymmdd``, the letter's digit, gg."""
    body = f"{date[2:]}{_VGR_LETTER_DIGITS[letter]}{sex_digits:02d}"
    return f"{date}{letter}{sex_digits:02d}{luhn_check_digit(body)}"


_FOREIGN_NUMBER_PATTERN = r"[A-Z0-9][A-Z0-9/-]{1,39}"
# ISO 3166-1 alpha-2, or alpha-3 (passports' machine-readable zone uses alpha-3).
_COUNTRY_PATTERN = r"[A-Z]{2,3}"


def normalise_foreign_identifier(values: pd.Series, issuer_countries: pd.Series) -> pd.DataFrame:
    """A foreign identifier (passport, EU health card, ...) and the country that issued it.

    The number is kept as issued, upper case without blanks; other countries' check rules are
    not ours to apply. Returns ``identity_number``, ``issuer_country`` and ``error`` (NA for a
    blank value; ``invalid_format``, ``missing_issuer`` or ``invalid_issuer`` otherwise).
    """
    if not issuer_countries.index.equals(values.index):
        raise ValueError("issuer_countries must have the same index as values")
    number = values.astype("string").str.upper().str.replace(r"\s+", "", regex=True)
    number = number.where(number != "")
    country = issuer_countries.astype("string").str.strip().str.upper()
    country = country.where(country != "")
    present = number.notna()
    error = pd.Series(pd.NA, index=values.index, dtype="string")
    bad_country = present & country.notna() & ~country.str.fullmatch(_COUNTRY_PATTERN).fillna(False)
    error = error.mask(bad_country, ERROR_INVALID_ISSUER)
    error = error.mask(present & country.isna(), ERROR_MISSING_ISSUER)
    bad_number = present & ~number.str.fullmatch(_FOREIGN_NUMBER_PATTERN).fillna(False)
    error = error.mask(bad_number, ERROR_INVALID_FORMAT)
    valid = present & error.isna()
    return pd.DataFrame(
        {
            "identity_number": number.where(valid).astype("string"),
            "issuer_country": country.where(valid).astype("string"),
            "error": error,
        }
    )


def sex_from_identity(identity_number: pd.Series, kind: pd.Series) -> pd.Series:
    """``male``/``female``/``unknown`` from canonical identity numbers; NA for other kinds.

    Interim, legacy and foreign numbers carry no sex rule that is the same for every issuer.
    """
    identity_number = identity_number.astype("string")
    kind = kind.astype("string")
    personal = kind.isin([IdentityKind.PERSONNUMMER, IdentityKind.SAMORDNINGSNUMMER])
    reserve = kind.isin([IdentityKind.RESERVNUMMER_VGR, IdentityKind.RESERVNUMMER_VGR_ISSUED])
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
    # numpy's stubs leave None out of ArrayLike; the result is an object array.
    sex = np.select(conditions, choices, default=None).astype(object)  # type: ignore[call-overload]
    return pd.Series(pd.array(sex, dtype="string"), index=identity_number.index, name="sex")


def birth_date_from_identity(identity_number: pd.Series, kind: pd.Series) -> pd.Series:
    """Date part of canonical identity numbers (samordningsnummer: day minus 60); NaT otherwise.

    This is the date the number encodes, which since 2009 may differ from the true birth date.
    A samordningsnummer whose date part is no calendar date (month 00, day 60, 31 April) gives
    NaT: the birth date is unknown, and the number is still valid.
    """
    identity_number = identity_number.astype("string")
    kind = kind.astype("string")
    dated = kind.isin(
        [
            IdentityKind.PERSONNUMMER,
            IdentityKind.SAMORDNINGSNUMMER,
            IdentityKind.RESERVNUMMER_VGR,
            IdentityKind.RESERVNUMMER_VGR_ISSUED,
            IdentityKind.INTERIMSNUMMER,
        ]
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
        valid[shaped] = is_luhn_valid(digits) & (digits[:, 2] >= 2)
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

    check_digit_ok = is_luhn_valid(digits)
    # A samordningsnummer's date part need not be a calendar date (Skatteverket's own test list
    # has month 00, day 60 and 31 April); a personnummer's must be one.
    coordination_date_ok = (month <= 12) & (day <= 31) & (year >= 1)
    date_ok = np.where(coordination, coordination_date_ok, is_calendar_date(year, month, day))
    serial_ok = (digits[:, 6:9] != 0).any(axis=1)

    row_error = np.full(len(parts), None, dtype=object)
    row_error[~date_ok] = ERROR_INVALID_DATE
    row_error[~serial_ok] = ERROR_INVALID_SERIAL
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
    # numpy's stubs leave None out of ArrayLike; these are object arrays.
    identity_number[rows] = np.where(valid, canonical, None)  # type: ignore[call-overload]
    identity_kind[rows] = np.where(valid, kind, None)  # type: ignore[call-overload]
    error[rows] = row_error


def _normalise_vgr_reserve(
    parts: pd.DataFrame,
    rows: np.ndarray,
    identity_number: np.ndarray,
    identity_kind: np.ndarray,
    error: np.ndarray,
) -> np.ndarray:
    """Fill the result arrays for values that may be VGR reservnummer (others stay as they are).

    Returns which of all rows had the VGR shape (valid or not).
    """
    shaped = np.zeros(len(rows), dtype=bool)
    matched = parts["date"].notna().to_numpy(dtype=bool)
    if not matched.any():
        return shaped
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
        luhn_check_digits(_digit_matrix(luhn_text, 9)) == parts["check"].astype(int).to_numpy()
    )

    date_digits = _digit_matrix((parts["century"] + parts["date"]).to_numpy(dtype=object), 8)
    year = _two_digit_number(date_digits, 0) * 100 + _two_digit_number(date_digits, 2)
    date_ok = is_calendar_date(
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
    # numpy's stubs leave None out of ArrayLike; these are object arrays.
    identity_number[positions] = np.where(valid, canonical, None)  # type: ignore[call-overload]
    identity_kind[positions] = np.where(valid, IdentityKind.RESERVNUMMER_VGR.value, None)  # type: ignore[call-overload]
    error[positions] = row_error
    shaped[positions] = True
    return shaped


def _normalise_interim(
    parts: pd.DataFrame,
    reference_date: datetime.date,
    rows: np.ndarray,
    identity_number: np.ndarray,
    identity_kind: np.ndarray,
    error: np.ndarray,
) -> None:
    """Fill the result arrays for interim-shaped values; the date part must be a calendar date."""
    matched = parts["date"].notna().to_numpy(dtype=bool)
    if not matched.any():
        return
    parts = parts[matched]
    date_digits = _digit_matrix(parts["date"].to_numpy(dtype=object), 6)
    year_in_century = _two_digit_number(date_digits, 0)
    month = _two_digit_number(date_digits, 2)
    day = _two_digit_number(date_digits, 4)
    explicit = parts["century"].notna().to_numpy(dtype=bool)
    century = np.where(explicit, parts["century"].fillna("0").astype(int).to_numpy(), 0)
    centenarian = (parts["separator"] == "+").to_numpy(dtype=bool)
    year = np.where(
        explicit,
        century * 100 + year_in_century,
        _infer_year(year_in_century, month, day, centenarian, reference_date),
    )
    valid = is_calendar_date(year, month, day)
    canonical = (
        pd.Series(year.astype(str), dtype="string").str.zfill(4)
        + parts["date"].str[2:].reset_index(drop=True)
        + parts["serial"].reset_index(drop=True)
        + parts["check"].reset_index(drop=True)
    ).to_numpy(dtype=object)
    positions = np.flatnonzero(rows)[matched]
    # numpy's stubs leave None out of ArrayLike; these are object arrays.
    identity_number[positions] = np.where(valid, canonical, None)  # type: ignore[call-overload]
    identity_kind[positions] = np.where(valid, IdentityKind.INTERIMSNUMMER.value, None)  # type: ignore[call-overload]
    error[positions] = np.where(valid, None, ERROR_INVALID_DATE)  # type: ignore[call-overload]


def _infer_year(
    year_in_century: np.ndarray,
    month: np.ndarray,
    day: np.ndarray,
    centenarian: np.ndarray,
    reference_date: datetime.date,
) -> np.ndarray:
    """The birth year of a 10-digit form, relative to the reference date (never today).

    Skatteverket changes the separator to ``+`` at the start of the year a person turns 100.
    So ``+``: the latest year ending in ``yy`` at least 100 years before the reference year.
    ``-`` (or none): the latest such year not after the reference year; when that puts the date
    after the reference date the person is not born yet, so the separator was written before
    the person's 100th year (legacy data keeps old forms) and the year is a century earlier.
    """
    reference = reference_date.year * 10000 + reference_date.month * 100 + reference_date.day
    year = (reference_date.year // 100) * 100 + year_in_century
    year = year - 100 * (year > reference_date.year)
    after_reference = year * 10000 + month * 100 + day > reference
    birth_year: np.ndarray = np.where(centenarian, year - 100, year - 100 * after_reference)
    return birth_year


def _century_code_text(century: pd.Series) -> pd.Series:
    """Century codes as stripped text, whether they arrive as text, integers or floats."""
    if pd.api.types.is_numeric_dtype(century):
        century = century.astype("Int64")
    text = century.astype("string").str.strip()
    return text.where(text != "")


def _digit_matrix(strings: np.ndarray, width: int) -> np.ndarray:
    """ASCII digit strings of equal width as an (n, width) integer matrix."""
    if len(strings) == 0:
        return np.zeros((0, width), dtype=np.int64)
    raw = np.asarray(strings).astype(f"S{width}").view(np.uint8).reshape(-1, width)
    return raw.astype(np.int64) - ord("0")


def _two_digit_number(digits: np.ndarray, start: int) -> np.ndarray:
    number: np.ndarray = digits[:, start] * 10 + digits[:, start + 1]
    return number
