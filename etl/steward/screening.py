"""Screening steward text (justifications) for identity numbers and patients' names.

Steward views show every justification, so one must name no patient. The text is first
normalised the way a reader sees it, not the way it was typed: Unicode NFKC, every dash
(U+2010-U+2015, U+2212, U+FE63, U+FF0D) read as ``-``, every space (no-break, thin, U+2000-U+200A,
U+202F, U+3000, ...) read as a space, zero-width characters and soft hyphens dropped. Then:

* **anything shaped like a Swedish identity number** is refused: digit groups separated by
  spaces, dashes, ``+``, ``.`` or ``/`` ("19 12 12-1212", "191212 1212") whose digits, taken
  together, make 10 or 12 digits with a plausible date (day 61-91 for a samordningsnummer), and
  VGR reserve numbers (8 digits, K/M/X, 3 digits);
* **the batch's own patients** are looked for by keyed hash: the names and identity numbers of
  the patients of the batches the decision is about (from the landing zone, so quarantined
  patients count, and from the core's staged and loaded rows) are hashed with the project's
  pseudonym key (HMAC-SHA256, ``etl/core/pseudonym.py``) and compared with the hashes of the
  text's words, word pairs and digit groups. The plain values live only in memory while hashed;
  nothing here stores or logs them, and a refusal says why without repeating the text.

A name part shorter than ``MIN_NAME_PART`` letters ("Bo", "Per", "Jan", "Eva") is looked for
only as part of the whole name ("Per Holm"): alone, it is too often an ordinary word ("2 rows
per clinic", "jan 2026").
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from etl.identifiers import is_plausible_identity_date

if TYPE_CHECKING:
    from pathlib import Path

    import sqlalchemy as sa

    from etl.settings import Settings

IDENTITY_REFUSAL = (
    "the justification contains what looks like an identity number (steward views show it); "
    "refer to the row by its handle or pseudonym instead. Nothing was recorded"
)
NAME_REFUSAL = (
    "the justification contains a patient's name from this batch (steward views show it); "
    "refer to documents and roles, not people. Nothing was recorded"
)

MIN_NAME_PART = 4
MAX_NAME_WORDS = 3  # word runs looked up as a whole name: "anna", "anna svensson", "anna k lund"

DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d\u058a\u1806\u2e3a\u2e3b\u30fc"
SPACES = (
    "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u202f\u205f\u3000\t\n\r\v\f\u0085\u2028\u2029"
)
INVISIBLE = "\u00ad\u180e\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff"
_TRANSLATION: dict[int, str | None] = {ord(c): "-" for c in DASHES}
_TRANSLATION |= {ord(c): " " for c in SPACES}
_TRANSLATION |= {ord(c): None for c in INVISIBLE}

# Digit groups, each separated from the next by spaces, dashes, +, . or / (nothing else).
_SEPARATOR = r"[ \-+./]+"
_DIGIT_RUN = re.compile(rf"(?<![0-9])[0-9]+(?:{_SEPARATOR}[0-9]+)*(?![0-9])")
_GROUP = re.compile(r"[0-9]+")
_RESERVE_NUMBER = re.compile(
    rf"(?<![0-9A-Za-z])(?:[0-9](?:{_SEPARATOR})?){{8}}[KMXkmx](?:(?:{_SEPARATOR})?[0-9]){{3}}"
    r"(?![0-9])"
)
_TOKEN = re.compile(r"[0-9A-Za-z]+")
_WORD = re.compile(r"[^\W\d_]+")


def normalise(text: str) -> str:
    """The text as a reader sees it: NFKC, one kind of dash and space, nothing invisible, and
    digits of any script as ASCII digits."""
    text = unicodedata.normalize("NFKC", text).translate(_TRANSLATION)
    if not text.isascii():
        text = "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in text)
    # NFKC can itself produce a character of the sets above (U+2011 becomes U+2010).
    text = text.translate(_TRANSLATION)
    return re.sub(r" {2,}", " ", text)


def digit_candidates(text: str) -> Iterator[str]:
    """Every 10- or 12-digit string made of consecutive digit groups of one run (normalised text):
    "19 12 12-1212" gives "1912121212"."""
    for run in _DIGIT_RUN.finditer(text):
        groups = _GROUP.findall(run.group())
        for start in range(len(groups)):
            digits = ""
            for group in groups[start:]:
                digits += group
                if len(digits) > 12:
                    break
                if len(digits) in (10, 12):
                    yield digits


def _is_plausible_date(month: str, day: str) -> bool:
    # elementwise over arrays; plain ints are 0-d arrays to numpy
    return bool(is_plausible_identity_date(int(month), int(day)))  # type: ignore[arg-type]


def is_identity_number_shape(digits: str) -> bool:
    """10 digits (YYMMDDNNNN) or 12 (CCYYMMDDNNNN, century 18-20) with a plausible date."""
    if len(digits) == 12:
        return digits[:2] in {"18", "19", "20"} and _is_plausible_date(digits[4:6], digits[6:8])
    if len(digits) == 10:
        return _is_plausible_date(digits[2:4], digits[4:6])
    return False


def has_identity_number(text: str) -> bool:
    """Whether the (raw) text holds something shaped like a Swedish identity number."""
    normalised = normalise(text)
    if _RESERVE_NUMBER.search(normalised):
        return True
    return any(is_identity_number_shape(d) for d in digit_candidates(normalised))


WITHHELD = "[identity number withheld]"


def withhold_identity_numbers(text: str) -> str:
    """The text as a reader sees it (``normalise``), with every run of digits that makes an
    identity number, and every reserve number, replaced by ``WITHHELD``.

    For free text that is already decided elsewhere and cannot be refused here (an approver's
    note answered in Airflow): the note is kept, the number is not. Fails closed: if anything
    identity-shaped were still left, nothing of the text is kept."""
    normalised = _RESERVE_NUMBER.sub(WITHHELD, normalise(text))

    def withhold(run: re.Match) -> str:
        shaped = any(is_identity_number_shape(d) for d in digit_candidates(run.group()))
        return WITHHELD if shaped else run.group()

    withheld = _DIGIT_RUN.sub(withhold, normalised)
    return WITHHELD if has_identity_number(withheld) else withheld


# --- the batch's own patients, by keyed hash --------------------------------------------------


def _fold(text: str) -> str:
    """Names compared the way people misspell them: case, accents and hyphens do not count."""
    decomposed = unicodedata.normalize("NFKD", normalise(text).casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_WORD.findall(plain))


def identity_forms(value: str) -> set[str]:
    """An identity number's comparable forms: letters and digits only, upper case; a 12-digit
    number also without its century (people write both)."""
    compact = "".join(_TOKEN.findall(normalise(value))).upper()
    if not compact:
        return set()
    forms = {compact}
    if compact.isdigit() and len(compact) == 12:
        forms.add(compact[2:])
    return forms


@dataclass
class PatientHashes:
    """Keyed hashes of a batch's patients' names and identity numbers (never the values)."""

    key: bytes
    names: set[bytes] = field(default_factory=set)
    identities: set[bytes] = field(default_factory=set)

    def _hash(self, kind: str, value: str) -> bytes:
        return hmac.new(self.key, f"screen\x1f{kind}\x1f{value}".encode(), hashlib.sha256).digest()

    def add_name(self, *parts: str | None) -> None:
        """One patient's name: given and family name (either may be missing)."""
        folded = [_fold(part) for part in parts if part]
        folded = [part for part in folded if part]
        for part in folded:
            self.names.add(self._hash("name", part))
            for word in part.split():
                if len(word) >= MIN_NAME_PART:
                    self.names.add(self._hash("name", word))
        if len(folded) > 1:
            self.names.add(self._hash("name", " ".join(folded)))
            self.names.add(self._hash("name", " ".join(reversed(folded))))

    def add_identity(self, value: str | None) -> None:
        for form in identity_forms(value or ""):
            self.identities.add(self._hash("identity", form))

    def names_in(self, text: str) -> bool:
        words = _fold(text).split()
        for size in range(1, MAX_NAME_WORDS + 1):
            for start in range(len(words) - size + 1):
                candidate = " ".join(words[start : start + size])
                if size == 1 and len(candidate) < MIN_NAME_PART:
                    continue
                if self._hash("name", candidate) in self.names:
                    return True
        return False

    def identities_in(self, text: str) -> bool:
        normalised = normalise(text)
        candidates = set(digit_candidates(normalised))
        candidates |= {t.upper() for t in _TOKEN.findall(normalised) if len(t) >= 5}
        candidates |= {m.group() for m in _RESERVE_NUMBER.finditer(normalised)}
        forms = {form for candidate in candidates for form in identity_forms(candidate)}
        return any(self._hash("identity", form) in self.identities for form in forms)


def screen(text: str, patients: PatientHashes | None = None) -> str | None:
    """Why the text may not be recorded (a refusal naming no value), or ``None`` if it may."""
    if has_identity_number(text) or (patients is not None and patients.identities_in(text)):
        return IDENTITY_REFUSAL
    if patients is not None and patients.names_in(text):
        return NAME_REFUSAL
    return None


def hashes_of(
    key: bytes, names: Iterable[tuple[str | None, ...]], identities: Iterable[str | None]
) -> PatientHashes:
    patients = PatientHashes(key)
    for name in names:
        patients.add_name(*name)
    for identity in identities:
        patients.add_identity(identity)
    return patients


# --- reading the batch's patients -------------------------------------------------------------

NAME_TARGETS = ("given_name", "family_name")


def load_batch_patients(
    settings: Settings, batches: Iterable[tuple[str, str]], user_name: str
) -> PatientHashes:
    """Keyed hashes of the names and identity numbers of the patients of ``(system, batch_id)``
    batches: the landed patient dataset (every patient, quarantined ones too) and the core's
    staged and loaded patient rows of the batch. The read is access-logged first."""
    import pyarrow.parquet as pq

    from etl.core.audit import record_access
    from etl.core.database import core_engine
    from etl.core.pseudonym import pseudonym_key

    patients = PatientHashes(pseudonym_key(settings))
    batches = sorted(set(batches))
    if not batches:
        return patients
    sources = {
        (system, batch_id): _landed_patient_columns(settings, system)
        for system, batch_id in batches
    }
    engine = core_engine(settings.resolved_core_url)
    for system, batch_id in batches:
        landed = None
        dataset, name_columns, identity_columns = sources[(system, batch_id)]
        if dataset is not None:
            path = _landed_file(settings, batch_id, system, dataset)
            landed = path if path.is_file() else None
        rows = pq.ParquetFile(landed).metadata.num_rows if landed else 0
        rows += _core_patient_rows(engine, system, batch_id)
        # Log the access before reading (Patientdatalagen): who, which batch, how many rows.
        record_access(
            settings, "steward_screen", system, batch_id, rows, "patient", user_name=user_name
        )
        if landed is not None:
            _add_landed_patients(patients, landed, name_columns, identity_columns)
        _add_core_patients(patients, engine, system, batch_id)
    return patients


def _landed_file(settings: Settings, batch_id: str, system: str, dataset: str) -> Path:
    """The batch's landed file of ``dataset``; from an s3:// storage root, this host's copy of
    that one file (etl/core/storage.py), never the rest of the batch."""
    from etl.batch import BatchPaths
    from etl.core import storage

    if settings.is_remote_storage and settings.landing_dir is None:
        key = f"{storage.landing_key(batch_id, system)}/landed"
        return storage.readable(settings, key, only=[f"{dataset}.parquet"]) / f"{dataset}.parquet"
    return BatchPaths.of(settings, batch_id, system).landed_file(dataset)


def _core_patient_rows(engine: sa.Engine, system: str, batch_id: str) -> int:
    """The batch's patient and patient identifier rows in the core, loaded and staged."""
    import sqlalchemy as sa

    from etl.core.tables import ENTITY_TABLES, STAGED_TABLES

    rows = 0
    with engine.connect() as connection:
        for tables in (ENTITY_TABLES, STAGED_TABLES):
            for entity in ("patient", "patient_identifier"):
                table = tables[entity]
                rows += connection.execute(
                    sa.select(sa.func.count())
                    .select_from(table)
                    .where((table.c.batch_id == batch_id) & (table.c.source_system == system))
                ).scalar_one()
    return rows


def _add_landed_patients(
    patients: PatientHashes,
    landed: Path,
    name_columns: Sequence[str],
    identity_columns: Sequence[str],
) -> None:
    """The names and identity numbers of the landed patient dataset."""
    import pyarrow.parquet as pq

    available = set(pq.read_schema(landed).names)
    wanted = [c for c in (*name_columns, *identity_columns) if c in available]
    if wanted:
        frame = pq.read_table(landed, columns=list(dict.fromkeys(wanted))).to_pydict()
        names = [frame[c] for c in name_columns if c in frame]
        for values in zip(*names, strict=True):
            patients.add_name(*(str(v) for v in values if v is not None))
        for column in identity_columns:
            for value in frame.get(column, []):
                patients.add_identity(None if value is None else str(value))
        del frame


def _add_core_patients(
    patients: PatientHashes, engine: sa.Engine, system: str, batch_id: str
) -> None:
    """The names and identity numbers of the batch's patient rows in the core (loaded and
    staged), and of its patient identifiers."""
    import sqlalchemy as sa

    from etl.core.tables import ENTITY_TABLES, STAGED_TABLES

    with engine.connect() as connection:
        for tables in (ENTITY_TABLES, STAGED_TABLES):
            patient = tables["patient"]
            for given, family, identity in connection.execute(
                sa.select(
                    patient.c.given_name, patient.c.family_name, patient.c.identity_number
                ).where((patient.c.batch_id == batch_id) & (patient.c.source_system == system))
            ):
                patients.add_name(given, family)
                patients.add_identity(identity)
            identifier = tables["patient_identifier"]
            for (identity,) in connection.execute(
                sa.select(identifier.c.identity_number).where(
                    (identifier.c.batch_id == batch_id) & (identifier.c.source_system == system)
                )
            ):
                patients.add_identity(identity)


def _landed_patient_columns(
    settings: Settings, system: str
) -> tuple[str | None, list[str], list[str]]:
    """The system's patient dataset, its name columns and its identity-number columns."""
    from etl.pipeline import catalog

    try:
        mapping = catalog(settings).system(system).entities.get("patient")
    except Exception:  # an unknown or broken mapping: the core rows are still screened
        return None, [], []
    if mapping is None:
        return None, [], []
    names = [
        source
        for target in NAME_TARGETS
        for column in mapping.columns
        if column.target == target
        for source in column.source_columns
    ]
    identities = [identifier.source for identifier in mapping.identifiers]
    return mapping.dataset, names, identities
