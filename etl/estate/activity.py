"""Legacy activity between the full load and the cutover, simulated on a generated estate.

``simulate_activity(estate_dir, seed)`` changes ELVIS and Melior in place, as their users would in
the days after the full load, so the delta path has something real to carry:

- **ELVIS** (through SQLAlchemy, like ``write_elvis``): new care contacts; a newborn registered
  under a VGR reservnummer, with a care contact; a patient moves (new address); a patient dies;
  a booking is fulfilled and a referral received; cancelled bookings are purged and a
  registration made in error is deleted; and a patient registered under a reservnummer is
  identified: their personnummer is written beside the reserve number on the same row, which is
  how ELVIS links the two (``pnr`` and ``reservnr``). Not in an estate so large that everyone
  of that sex already holds one of Skatteverket's test personnummer (200,000 people do): the
  patient then stays unidentified this round, no number is made up, and nothing is listed.
- **Melior** (its cp1252 files rewritten record by record; untouched records keep their bytes):
  a new care contact with diagnoses, a new lab result, a patient dies, a diagnosis code is
  corrected, a care contact is blocked (spärr: its diagnoses, procedures and notes inherit the
  block in the core), a lab result entered in error and a warning are deleted.

Every change is one row of ``activity.csv`` (``system, dataset, source_key, change, what``;
appended, so repeated runs accumulate). ``change`` is ``new``, ``changed``, ``deleted`` or
``inherited``: the source row is unchanged but its core row changes with a row it takes a value
from. No identity numbers or names are in the file.

Only rows without a planted defect, test patients and planted identity conflicts are touched, so
each change has one predictable outcome in the core. The estate's other ground truth stays true:
``defects.csv`` row numbers move up past deleted rows, ``identity_truth.csv`` gains the newborn
and loses the deleted registration, ``manifest.json`` gets the new row counts and checksums.
Identity numbers: the identified patient's personnummer is a Skatteverket test number that no
one in the estate has; the newborn's number is a VGR reservnummer.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from etl.core.files import sha256_of as _sha256
from etl.estate.base import EXTRACT_DATE, MINUTES_PER_DAY, day_number, format_days, stream
from etl.estate.codes import ICD10_SE
from etl.estate.elvis import elvis_metadata
from etl.estate.identity_truth import IDENTITY_TRUTH_FILE, TRUTH_COLUMNS
from etl.estate.manifest import EstateManifest, GeneratedFile
from etl.estate.melior import ENCODING as MELIOR_ENCODING
from etl.estate.melior import FILES as MELIOR_FILES
from etl.estate.melior import KEYS as MELIOR_KEYS
from etl.estate.melior import NEWLINE, PATREG_FIELDS
from etl.estate.names import FEMALE_NAMES, MALE_NAMES, MUNICIPALITIES, STREETS, SURNAMES
from etl.estate.people import PERSONNUMMER_FILE, build_population, load_pool, vgr_reservnummer

ACTIVITY_FILE = "activity.csv"
ACTIVITY_COLUMNS = ["system", "dataset", "source_key", "change", "what"]
NEW, CHANGED, DELETED, INHERITED = "new", "changed", "deleted", "inherited"
DEFECTS_FILE = "defects.csv"
CANARY_FILE = "canaries.json"
# Rows Melior's care contacts lend their spärr to (mappings/melior: lookups on KONTAKTNR).
MELIOR_CONTACT_CHILDREN = ("diagnos", "atgard", "anteckning")
_VGR_RESERVE = re.compile(r"^\d{8}[KMX]\d{3}$")


@dataclass
class ActivityReport:
    """What one simulation changed: the records written to ``activity.csv``."""

    records: list[dict[str, str]] = field(default_factory=list)

    def add(self, system: str, dataset: str, keys: Iterable, change: str, what: str) -> None:
        for key in keys:
            self.records.append(
                {
                    "system": system,
                    "dataset": dataset,
                    "source_key": str(key),
                    "change": change,
                    "what": what,
                }
            )

    def counts(self) -> dict[str, int]:
        result: dict[str, int] = {}
        for record in self.records:
            name = f"{record['system']}.{record['change']}"
            result[name] = result.get(name, 0) + 1
        return dict(sorted(result.items()))


@dataclass
class _Truth:
    """The estate's ground truth, read once: what must not be touched, and what moves."""

    defects: pd.DataFrame
    identities: pd.DataFrame
    deleted_positions: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    new_identities: list[dict[str, str]] = field(default_factory=list)
    removed_identities: set[tuple[str, str, str]] = field(default_factory=set)

    def untouchable(self, system: str, dataset: str) -> set[str]:
        """Source keys with a planted defect or a planted identity conflict."""
        defects = self.defects
        keys = set(
            defects.loc[
                (defects["system"] == system) & (defects["dataset"] == dataset), "source_key"
            ]
        )
        identities = self.identities
        conflicted = (
            (identities["system"] == system)
            & (identities["dataset"] == dataset)
            & (identities["injected_conflict"].fillna("") != "")
        )
        return keys | set(identities.loc[conflicted, "source_key"])


# --- shared helpers ---------------------------------------------------------------------------


def _choose(rng: np.random.Generator, candidates: Iterable, count: int) -> list:
    """``count`` distinct candidates (fewer if there are not enough), in a stable order.

    Plain Python values (never numpy scalars), so any database driver takes them as keys.
    """
    values = candidates.tolist() if isinstance(candidates, pd.Series) else list(candidates)
    pool = sorted(set(values))
    if not pool:
        return []
    picked = rng.choice(len(pool), size=min(count, len(pool)), replace=False)
    return [pool[i] for i in sorted(picked)]


def _minutes_text(minutes: int) -> str:
    day = format_days(np.array([minutes // MINUTES_PER_DAY]), "YYYYMMDD")[0]
    in_day = minutes % MINUTES_PER_DAY
    return f"{day}{in_day // 60:02d}{in_day % 60:02d}"


def _day_text(day: int, fmt: str) -> str:
    return str(format_days(np.array([day]), fmt)[0])


class _Clock:
    """Moments inside the activity window: office hours on a five-minute grid."""

    def __init__(self, rng: np.random.Generator, first_day: int, days: int):
        self.rng, self.first_day, self.days = rng, first_day, days

    def day(self) -> int:
        return self.first_day + int(self.rng.integers(0, self.days))

    def minute(self) -> int:
        hour, five = int(self.rng.integers(8, 16)), int(self.rng.integers(0, 12))
        return self.day() * MINUTES_PER_DAY + hour * 60 + five * 5


def _new_address(rng: np.random.Generator) -> tuple[str, str, str]:
    """Street, postal code and town in the estate's own style."""
    name, prefixes, _weight, _site = MUNICIPALITIES[int(rng.integers(0, len(MUNICIPALITIES)))]
    prefix = prefixes[int(rng.integers(0, len(prefixes)))]
    street = f"{STREETS[int(rng.integers(0, len(STREETS)))]} {int(rng.integers(1, 121))}"
    return street, f"{prefix} {int(rng.integers(30, 99)):02d}", name


# --- ELVIS ------------------------------------------------------------------------------------


def _elvis_url(estate_dir: Path, manifest: EstateManifest, elvis_url: str | None) -> str:
    if elvis_url:
        return elvis_url
    if "{estate_dir}" in manifest.elvis_url:
        return manifest.elvis_url.format(estate_dir=estate_dir)
    raise ValueError(
        f"ELVIS of {estate_dir} is in {manifest.elvis_url}: pass its URL (with credentials), "
        "for example --elvis-url or VARDFLYTT_SOURCE_ELVIS_URL"
    )


def _unused_personnummer(
    estate_dir: Path, manifest: EstateManifest, taken: Iterable[str], birth_day: int, sex: str
) -> str | None:
    """A Skatteverket test personnummer no one in the estate has, near the given birth date;
    None when the estate uses every one of them (of that sex): only test numbers are given out,
    never a made-up number in the personnummer format."""
    population = build_population(manifest.patients, manifest.seed)
    used = {str(number)[-10:] for number in population.number}
    used |= {re.sub(r"\D", "", str(value))[-10:] for value in taken if value}
    canaries = estate_dir / CANARY_FILE
    if canaries.exists():  # canary estates give canaries pool numbers no one else has
        used |= {digits[-10:] for digits in re.findall(r"\d{10,12}", canaries.read_text("utf-8"))}
    pool = [number for number in load_pool(PERSONNUMMER_FILE).tolist() if number[-10:] not in used]
    if sex in ("M", "K"):
        pool = [n for n in pool if (int(n[10]) % 2 == 1) == (sex == "M")]
    if not pool:
        return None
    target = np.datetime64("1970-01-01") + np.timedelta64(birth_day, "D")

    def distance(number: str) -> int:
        try:
            born = np.datetime64(f"{number[:4]}-{number[4:6]}-{number[6:8]}")
        except ValueError:
            return 1 << 30
        return abs(int((born - target).astype(np.int64)))

    return min(pool, key=lambda number: (distance(number), number))


def _elvis_activity(
    estate_dir: Path,
    url: str,
    manifest: EstateManifest,
    truth: _Truth,
    rng: np.random.Generator,
    clock: _Clock,
    report: ActivityReport,
) -> None:
    _, tables = elvis_metadata()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            frames = {
                name: pd.read_sql(sa.select(table), connection) for name, table in tables.items()
            }
        changes = _plan_elvis(estate_dir, manifest, frames, truth, rng, clock, report)
        with engine.begin() as connection:
            for name, key_column, key, values in changes["update"]:
                table = tables[name]
                connection.execute(
                    table.update().where(table.c[key_column] == key).values(**values)
                )
            for name, rows in changes["insert"].items():
                if rows:
                    connection.execute(tables[name].insert(), rows)
            for name, key_column, keys in changes["delete"]:
                table = tables[name]
                connection.execute(table.delete().where(table.c[key_column].in_(keys)))
    finally:
        engine.dispose()


def _identify_reserve_patient(
    estate_dir: Path,
    manifest: EstateManifest,
    single: set[str],
    patient: pd.DataFrame,
    alive: pd.DataFrame,
    pick: Callable[[pd.Series, int], list[int]],
    report: ActivityReport,
) -> list[tuple[str, str, int, dict]]:
    """A patient registered under a VGR reservnummer only, and only once (``single``: the
    patient ids that are their person's only ELVIS registration), is identified: the update that
    writes their personnummer beside the reserve number."""
    reserve_only = alive[
        alive["pnr"].isna()
        & alive["reservnr"].fillna("").str.match(_VGR_RESERVE)
        & alive["patient_id"].astype(str).isin(single)
    ]
    updates: list[tuple[str, str, int, dict]] = []
    for patient_id in pick(reserve_only["patient_id"], 1):
        row = reserve_only[reserve_only["patient_id"] == patient_id].iloc[0]
        reserve = str(row["reservnr"])
        born = day_number(pd.Timestamp(reserve[:8]).date())
        number = _unused_personnummer(
            estate_dir, manifest, patient["pnr"].dropna(), born, str(row["kon"])
        )
        if number is None:  # every test personnummer is taken: not identified this round
            continue
        pnr = f"{number[:8]}-{number[8:]}"
        updates.append(("patient", "patient_id", patient_id, {"pnr": pnr}))
        report.add("elvis", "patient", [patient_id], CHANGED, "reservnummer_linked_to_personnummer")
    return updates


@dataclass
class _ElvisPlan:
    """ELVIS's planned changes: the rows to update, to insert and to delete."""

    updates: list[tuple[str, str, int, dict]] = field(default_factory=list)
    inserts: dict[str, list[dict]] = field(
        default_factory=lambda: {"patient": [], "vardkontakt": []}
    )
    deletes: list[tuple[str, str, list[int]]] = field(default_factory=list)

    def changes(self) -> dict:
        """The plan as ``_elvis_activity`` applies it: ``update``, ``insert`` and ``delete``."""
        return {"update": self.updates, "insert": self.inserts, "delete": self.deletes}


def _clean_elvis_rows(frame: pd.DataFrame, truth: _Truth, dataset: str, key: str) -> pd.DataFrame:
    """The rows of an ELVIS table without a planted defect or identity conflict."""
    bad = truth.untouchable("elvis", dataset)
    return frame[~frame[key].astype(str).isin(bad)]


def _single_registrations(truth: _Truth) -> set[str]:
    """The ELVIS patient ids that are their person's only ELVIS registration.

    A person first registered under a reserve number and later under their personnummer has
    two rows: only a person's single registration is identified, or deleted.
    """
    person_rows = truth.identities[
        (truth.identities["system"] == "elvis") & (truth.identities["dataset"] == "patient")
    ]
    rows_per_person = person_rows["person_key"].map(person_rows["person_key"].value_counts())
    return set(person_rows.loc[rows_per_person == 1, "source_key"])


def _plan_elvis_patient_changes(
    plan: _ElvisPlan,
    frames: dict[str, pd.DataFrame],
    patients: pd.DataFrame,
    alive: pd.DataFrame,
    single: set[str],
    pick: Callable[[pd.Series, int], list[int]],
    truth: _Truth,
    rng: np.random.Generator,
    clock: _Clock,
    report: ActivityReport,
) -> None:
    """A patient moves, a patient dies, and a registration made in error is deleted."""
    with_address = alive[
        alive["skyddad_identitet"].fillna("").eq("")
        & alive["adress"].notna()
        & alive["pnr"].notna()
    ]
    for patient_id in pick(with_address["patient_id"], 1):
        street, postal_code, town = _new_address(rng)
        values = {"adress": street, "postnr": postal_code, "postort": town}
        plan.updates.append(("patient", "patient_id", patient_id, values))
        report.add("elvis", "patient", [patient_id], CHANGED, "new_address")

    for patient_id in pick(alive.loc[alive["pnr"].notna(), "patient_id"], 1):
        death = _day_text(clock.day(), "YYYY-MM-DD")
        plan.updates.append(("patient", "patient_id", patient_id, {"avliden_datum": death}))
        report.add("elvis", "patient", [patient_id], CHANGED, "deceased")

    # Nothing refers to it, and it is the person's only ELVIS registration.
    referenced = (
        set(frames["vardkontakt"]["patient_id"])
        | set(frames["bokning"]["patient_id"])
        | set(frames["remiss"]["patient_id"])
    )
    unreferenced = patients[
        ~patients["patient_id"].isin(referenced) & patients["patient_id"].astype(str).isin(single)
    ]
    for patient_id in pick(unreferenced["patient_id"], 1):
        plan.deletes.append(("patient", "patient_id", [patient_id]))
        truth.removed_identities.add(("elvis", "patient", str(patient_id)))
        report.add("elvis", "patient", [patient_id], DELETED, "registered_in_error_deleted")


def _plan_elvis_new_contacts(
    plan: _ElvisPlan,
    contact: pd.DataFrame,
    contacts: pd.DataFrame,
    alive: pd.DataFrame,
    pick: Callable[[pd.Series, int], list[int]],
    clock: _Clock,
    report: ActivityReport,
) -> int:
    """New care contacts of living patients, each like their latest; the next free contact id.

    ``contact`` is the whole table, ``contacts`` its clean rows: a patient whose every care
    contact is clean has a template for a new one.
    """
    dirty_contacts = set(contact.loc[~contact.index.isin(contacts.index), "patient_id"])
    with_contacts = set(contacts["patient_id"]) - dirty_contacts
    next_contact = int(contact["kontakt_id"].max()) + 1
    for patient_id in pick(alive.loc[alive["patient_id"].isin(with_contacts), "patient_id"], 3):
        template = contacts[contacts["patient_id"] == patient_id].iloc[-1]
        start = clock.minute()
        plan.inserts["vardkontakt"].append(
            _elvis_contact(next_contact, patient_id, template, "BESOK", start, start + 30)
        )
        report.add("elvis", "vardkontakt", [next_contact], NEW, "new_care_contact")
        next_contact += 1
    return next_contact


def _unused_reservnummer(
    rng: np.random.Generator, taken: set[str], birth_day: int, sex: str
) -> str:
    """A VGR reservnummer for the birth day and sex that no ELVIS patient has (100 tries)."""
    return next(
        number
        for number in (
            vgr_reservnummer(rng, np.array([birth_day]), np.array([sex]))[0] for _ in range(100)
        )
        if number not in taken
    )


def _newborn_patient_row(
    rng: np.random.Generator, patient_id: int, reserve: str, sex: str, birth: int
) -> dict:
    """The newborn's ELVIS patient row: an address and names drawn, registered 20 minutes
    after the ``birth`` minute."""
    street, postal_code, town = _new_address(rng)
    given = FEMALE_NAMES if sex == "K" else MALE_NAMES
    return {
        "patient_id": patient_id,
        "pnr": None,
        "reservnr": reserve,
        "fornamn": given[int(rng.integers(0, len(given)))],
        "efternamn": SURNAMES[int(rng.integers(0, len(SURNAMES)))],
        "kon": sex,
        "fodelsedatum": _day_text(birth // MINUTES_PER_DAY, "YYYY-MM-DD"),
        "adress": street,
        "postnr": postal_code,
        "postort": town,
        "skyddad_identitet": None,
        "avliden_datum": None,
        "testpatient": "N",
        "registrerad_tid": _minutes_text(birth + 20),
    }


def _plan_elvis_newborn(
    plan: _ElvisPlan,
    frames: dict[str, pd.DataFrame],
    contacts: pd.DataFrame,
    next_contact: int,
    truth: _Truth,
    rng: np.random.Generator,
    clock: _Clock,
    report: ActivityReport,
) -> None:
    """A newborn registered under a VGR reservnummer, with a care contact from its birth."""
    patient = frames["patient"]
    # New ids come after every id any ELVIS table refers to, so no planted dangling reference
    # becomes resolvable by accident (as etl.estate.identity_truth does).
    newborn_id = 1 + max(
        int(patient["patient_id"].max()),
        *(
            int(frame["patient_id"].max())
            for frame in (frames["vardkontakt"], frames["bokning"], frames["remiss"])
            if len(frame)
        ),
    )
    birth = clock.minute()
    sex = "K" if rng.random() < 0.5 else "M"
    taken = set(patient["reservnr"].dropna())
    reserve = _unused_reservnummer(rng, taken, birth // MINUTES_PER_DAY, sex)
    plan.inserts["patient"].append(_newborn_patient_row(rng, newborn_id, reserve, sex, birth))
    report.add("elvis", "patient", [newborn_id], NEW, "newborn_registered_under_reservnummer")
    truth.new_identities.append(
        {
            "system": "elvis",
            "dataset": "patient",
            "source_key": str(newborn_id),
            "person_key": _new_person_key(truth),
            "injected_conflict": "",
        }
    )
    template = contacts.iloc[int(rng.integers(0, len(contacts)))]
    plan.inserts["vardkontakt"].append(
        _elvis_contact(
            next_contact, newborn_id, template, "INSKRIVNING", birth + 20, birth + 3 * 1440
        )
    )
    report.add("elvis", "vardkontakt", [next_contact], NEW, "new_care_contact_newborn")


def _plan_elvis_bookings_and_referrals(
    plan: _ElvisPlan,
    frames: dict[str, pd.DataFrame],
    patients: pd.DataFrame,
    truth: _Truth,
    rng: np.random.Generator,
    report: ActivityReport,
) -> None:
    """A booking is fulfilled, cancelled bookings are purged and a referral is received."""
    bookings = _clean_elvis_rows(frames["bokning"], truth, "bokning", "bokning_id")
    bookings = bookings[bookings["patient_id"].isin(patients["patient_id"])]
    for booking_id in _choose(rng, bookings.loc[bookings["status"] == "BOKAD", "bokning_id"], 1):
        plan.updates.append(("bokning", "bokning_id", booking_id, {"status": "GENOMFORD"}))
        report.add("elvis", "bokning", [booking_id], CHANGED, "booking_fulfilled")
    cancelled = _choose(rng, bookings.loc[bookings["status"] == "AVBOKAD", "bokning_id"], 2)
    if cancelled:
        plan.deletes.append(("bokning", "bokning_id", cancelled))
        report.add("elvis", "bokning", cancelled, DELETED, "cancelled_booking_purged")

    referrals = _clean_elvis_rows(frames["remiss"], truth, "remiss", "remiss_id")
    referrals = referrals[referrals["patient_id"].isin(patients["patient_id"])]
    for referral_id in _choose(
        rng, referrals.loc[referrals["status"] == "SKICKAD", "remiss_id"], 1
    ):
        plan.updates.append(("remiss", "remiss_id", referral_id, {"status": "MOTTAGEN"}))
        report.add("elvis", "remiss", [referral_id], CHANGED, "referral_received")


def _record_elvis_deleted_positions(
    plan: _ElvisPlan, frames: dict[str, pd.DataFrame], truth: _Truth
) -> None:
    """ELVIS is read in key order: a deleted row moves every later row up by one."""
    for name, key_column, keys in plan.deletes:
        ordered = np.sort(frames[name][key_column].to_numpy())
        positions = np.searchsorted(ordered, np.array(keys)) + 1
        truth.deleted_positions.setdefault(("elvis", name), []).extend(positions.tolist())


def _plan_elvis(
    estate_dir: Path,
    manifest: EstateManifest,
    frames: dict[str, pd.DataFrame],
    truth: _Truth,
    rng: np.random.Generator,
    clock: _Clock,
    report: ActivityReport,
) -> dict:
    """Decide ELVIS's activity on the tables as read; nothing is written here."""
    patient, contact = frames["patient"], frames["vardkontakt"]
    plan = _ElvisPlan()
    patients = _clean_elvis_rows(patient, truth, "patient", "patient_id")
    patients = patients[patients["testpatient"] == "N"]
    alive = patients[patients["avliden_datum"].isna()]
    contacts = _clean_elvis_rows(contact, truth, "vardkontakt", "kontakt_id")
    busy: set[int] = set()

    def pick(candidates: pd.Series, count: int) -> list[int]:
        chosen = _choose(rng, set(candidates.tolist()) - busy, count)
        busy.update(chosen)
        return chosen

    single = _single_registrations(truth)
    plan.updates += _identify_reserve_patient(
        estate_dir, manifest, single, patient, alive, pick, report
    )
    _plan_elvis_patient_changes(
        plan, frames, patients, alive, single, pick, truth, rng, clock, report
    )
    next_contact = _plan_elvis_new_contacts(plan, contact, contacts, alive, pick, clock, report)
    _plan_elvis_newborn(plan, frames, contacts, next_contact, truth, rng, clock, report)
    _plan_elvis_bookings_and_referrals(plan, frames, patients, truth, rng, report)
    _record_elvis_deleted_positions(plan, frames, truth)
    return plan.changes()


def _elvis_contact(key, patient_id, template, kind: str, start: int, end: int) -> dict:
    return {
        "kontakt_id": int(key),
        "patient_id": int(patient_id),
        "vardenhet_id": int(template["vardenhet_id"]),
        "personal_id": int(template["personal_id"]),
        "kontakttyp": kind,
        "start_tid": _minutes_text(start),
        "slut_tid": _minutes_text(end),
        "sparr": "N",
    }


def _new_person_key(truth: _Truth) -> str:
    known = truth.identities["person_key"].tolist() + [
        record["person_key"] for record in truth.new_identities
    ]
    numbers = [int(key[1:]) for key in known if key[1:].isdigit()]
    return f"P{max(numbers, default=0) + 1:07d}"


# --- Melior -----------------------------------------------------------------------------------


@dataclass
class _MeliorFile:
    """One Melior file as records of decoded text (bytes kept exactly, via surrogateescape)."""

    path: Path
    header: str | None
    records: list[str]

    @classmethod
    def read(cls, path: Path, has_header: bool) -> _MeliorFile:
        text = path.read_bytes().decode(MELIOR_ENCODING, errors="surrogateescape")
        if not text.endswith(NEWLINE):
            raise ValueError(f"{path}: expected records ending in CRLF")
        lines = text[: -len(NEWLINE)].split(NEWLINE) if text != NEWLINE else []
        header = lines.pop(0) if has_header else None
        records: list[str] = []
        for line in lines:
            # A quoted value may hold a line break: a record is complete when its quotes pair up.
            if records and records[-1].count('"') % 2 == 1:
                records[-1] += NEWLINE + line
            else:
                records.append(line)
        parsed = cls(path, header, records)
        if parsed.text() != text:
            raise ValueError(f"{path}: records do not read back to the same bytes")
        return parsed

    def text(self) -> str:
        lines = ([self.header] if self.header is not None else []) + self.records
        return "".join(line + NEWLINE for line in lines)

    def write(self) -> None:
        self.path.write_bytes(self.text().encode(MELIOR_ENCODING, errors="surrogateescape"))

    @property
    def columns(self) -> list[str]:
        return (self.header or "").split(";")

    def key(self, index: int) -> str:
        return self.records[index].split(";", 1)[0].strip()

    def keys(self) -> list[str]:
        return [self.key(i) for i in range(len(self.records))]

    def row(self, index: int) -> dict[str, str]:
        values = next(csv.reader(io.StringIO(self.records[index], newline=""), delimiter=";"))
        return dict(zip(self.columns, values, strict=True))

    def frame(self) -> pd.DataFrame:
        reader = csv.reader(io.StringIO(NEWLINE.join(self.records), newline=""), delimiter=";")
        return pd.DataFrame(list(reader), columns=self.columns, dtype=object)

    def encode(self, values: dict[str, str]) -> str:
        """A record as Melior writes it: a value is quoted only when it has to be."""
        fields = []
        for column in self.columns:
            value = values[column]
            if any(character in value for character in ';"\r\n'):
                value = '"' + value.replace('"', '""') + '"'
            fields.append(value)
        return ";".join(fields)


def _patreg_offset(name: str) -> tuple[int, int]:
    start = 0
    for field_name, width in PATREG_FIELDS:
        if field_name == name:
            return start, width
        start += width
    raise KeyError(name)


def _melior_new_contact(
    files: dict[str, _MeliorFile],
    report: ActivityReport,
    rng: np.random.Generator,
    clock: _Clock,
    next_key: dict[str, int],
    contacts: pd.DataFrame,
    diagnoses: pd.DataFrame,
    patnr: str,
) -> None:
    """A new care contact of ``patnr`` (like their latest), with one or two new diagnoses."""
    template = contacts[contacts["PATNR"] == patnr].iloc[-1]
    start = clock.minute()
    contact_key = str(next_key["kontakt"])
    next_key["kontakt"] += 1
    files["kontakt"].records.append(
        files["kontakt"].encode(
            {
                "KONTAKTNR": contact_key,
                "PATNR": patnr,
                "ENHET_HSA": template["ENHET_HSA"],
                "INSKRIVNING": _minutes_text(start),
                "UTSKRIVNING": _minutes_text(start + 45),
                "KONTAKTTYP": "ÖPPENVÅRD",
                "SPARR": "N",
            }
        )
    )
    report.add("melior", "kontakt", [contact_key], NEW, "new_care_contact")
    doctor = diagnoses.loc[diagnoses["PATNR"] == patnr, "LAKARE_HSA"].iloc[-1]
    for position in range(int(rng.integers(1, 3))):
        code, text = ICD10_SE[int(rng.integers(0, len(ICD10_SE)))]
        diagnosis_key = str(next_key["diagnos"])
        next_key["diagnos"] += 1
        files["diagnos"].records.append(
            files["diagnos"].encode(
                {
                    "DIAGNOSNR": diagnosis_key,
                    "PATNR": patnr,
                    "KONTAKTNR": contact_key,
                    "DIAGNOSKOD": code,
                    "DIAGNOSTEXT": text,
                    "DIAGNOSDATUM": _day_text(start // MINUTES_PER_DAY, "DD.MM.YYYY"),
                    "HUVUDDIAGNOS": "J" if position == 0 else "N",
                    "LAKARE_HSA": doctor,
                }
            )
        )
        report.add("melior", "diagnos", [diagnosis_key], NEW, "new_diagnosis")


@dataclass
class _MeliorState:
    """Melior's files as read, the patients that may be touched, and what is already touched."""

    files: dict[str, _MeliorFile]
    frames: dict[str, pd.DataFrame]
    truth: _Truth
    patient_keys: list[str]
    clean_patients: set[str]
    alive: set[str]
    busy_patients: set[str] = field(default_factory=set)
    busy_rows: set[tuple[str, str]] = field(default_factory=set)

    def clean(self, name: str) -> pd.DataFrame:
        """The dataset's rows without a planted defect, of patients without one."""
        frame = self.frames[name]
        bad = self.truth.untouchable("melior", name)
        return frame[~frame[MELIOR_KEYS[name]].isin(bad) & frame["PATNR"].isin(self.clean_patients)]


def _read_melior_state(folder: Path, truth: _Truth) -> _MeliorState:
    """Read Melior's files and find the clean patients, and the living ones among them."""
    files = {
        name: _MeliorFile.read(folder / filename, has_header=name != "patient")
        for name, filename in MELIOR_FILES.items()
    }
    frames = {name: file.frame() for name, file in files.items() if name != "patient"}
    patreg = files["patient"]
    patnr_start, patnr_width = _patreg_offset("PATNR")
    death_start, death_width = _patreg_offset("AVLIDEN")
    patient_keys = [r[patnr_start : patnr_start + patnr_width].strip() for r in patreg.records]

    clean_patients = set(patient_keys) - truth.untouchable("melior", "patient")
    alive = {
        key
        for key, record in zip(patient_keys, patreg.records, strict=True)
        if key in clean_patients and not record[death_start : death_start + death_width].strip()
    }
    return _MeliorState(files, frames, truth, patient_keys, clean_patients, alive)


def _block_melior_contact(
    state: _MeliorState, rng: np.random.Generator, report: ActivityReport
) -> pd.DataFrame:
    """A care contact blocked (spärr), whose diagnoses, procedures and notes are all clean;
    the clean care contacts."""
    files, truth = state.files, state.truth
    contacts = state.clean("kontakt")
    children = {name: state.frames[name] for name in MELIOR_CONTACT_CHILDREN}
    child_counts = pd.concat([frame["KONTAKTNR"] for frame in children.values()]).value_counts()
    dirty_children = set()
    for name, frame in children.items():
        bad = truth.untouchable("melior", name)
        dirty_children |= set(frame.loc[frame[MELIOR_KEYS[name]].isin(bad), "KONTAKTNR"])
    blockable = contacts[
        (contacts["SPARR"] == "N")
        & contacts["KONTAKTNR"].isin(child_counts.index)
        & ~contacts["KONTAKTNR"].isin(dirty_children)
    ]
    for contact_key in _choose(rng, blockable["KONTAKTNR"], 1):
        index = files["kontakt"].keys().index(contact_key)
        values = files["kontakt"].row(index)
        values["SPARR"] = "J"
        files["kontakt"].records[index] = files["kontakt"].encode(values)
        state.busy_patients.add(values["PATNR"])
        report.add("melior", "kontakt", [contact_key], CHANGED, "care_contact_blocked")
        for name, frame in children.items():
            keys = frame.loc[frame["KONTAKTNR"] == contact_key, MELIOR_KEYS[name]].tolist()
            state.busy_rows.update((name, key) for key in keys)
            report.add("melior", name, keys, INHERITED, "inherits_care_contact_block")
    return contacts


def _correct_melior_diagnosis(
    state: _MeliorState, rng: np.random.Generator, report: ActivityReport
) -> pd.DataFrame:
    """A diagnosis code corrected to another valid ICD-10-SE code; the clean diagnoses that
    were candidates (those not already touched)."""
    diagnosis_file = state.files["diagnos"]
    diagnoses = state.clean("diagnos")
    diagnoses = diagnoses[
        ~diagnoses["DIAGNOSNR"].isin([key for name, key in state.busy_rows if name == "diagnos"])
    ]
    for diagnosis_key in _choose(rng, diagnoses["DIAGNOSNR"], 1):
        index = diagnosis_file.keys().index(diagnosis_key)
        values = diagnosis_file.row(index)
        written = values["DIAGNOSKOD"].replace(".", "").upper()
        options = [(c, t) for c, t in ICD10_SE if c.replace(".", "") != written]
        code, text = options[int(rng.integers(0, len(options)))]
        values["DIAGNOSKOD"], values["DIAGNOSTEXT"] = code, text
        diagnosis_file.records[index] = diagnosis_file.encode(values)
        state.busy_rows.add(("diagnos", diagnosis_key))
        report.add("melior", "diagnos", [diagnosis_key], CHANGED, "diagnosis_code_corrected")
    return diagnoses


def _melior_patient_dies(
    state: _MeliorState, rng: np.random.Generator, clock: _Clock, report: ActivityReport
) -> None:
    """A living patient not yet touched dies: the death date written into PATREG."""
    patreg = state.files["patient"]
    death_start, death_width = _patreg_offset("AVLIDEN")
    for patnr in _choose(rng, state.alive - state.busy_patients, 1):
        index = state.patient_keys.index(patnr)
        record = patreg.records[index]
        death = _day_text(clock.day(), "YYYYMMDD").ljust(death_width)
        patreg.records[index] = record[:death_start] + death + record[death_start + death_width :]
        state.busy_patients.add(patnr)
        report.add("melior", "patient", [patnr], CHANGED, "deceased")


def _melior_new_contacts(
    state: _MeliorState,
    contacts: pd.DataFrame,
    diagnoses: pd.DataFrame,
    rng: np.random.Generator,
    clock: _Clock,
    report: ActivityReport,
) -> dict[str, int]:
    """New care contacts with diagnoses, for living patients with clean contacts and
    diagnoses; the next free key of each dataset that gets new rows."""
    frames = state.frames
    next_key = {name: _next_key(frames, name) for name in ("kontakt", "diagnos", "labsvar")}
    with_history = (
        (set(contacts["PATNR"]) & set(diagnoses["PATNR"]) & state.alive)
        - state.busy_patients
        - set(frames["kontakt"].loc[~frames["kontakt"].index.isin(contacts.index), "PATNR"])
    )
    for patnr in _choose(rng, with_history, 2):
        state.busy_patients.add(patnr)
        _melior_new_contact(state.files, report, rng, clock, next_key, contacts, diagnoses, patnr)
    return next_key


def _melior_new_lab_result(
    state: _MeliorState,
    next_key: dict[str, int],
    rng: np.random.Generator,
    clock: _Clock,
    report: ActivityReport,
) -> None:
    """A new lab result: a living patient's earlier analysis, taken again."""
    results = state.clean("labsvar")
    results = results[results["PATNR"].isin(state.alive - state.busy_patients)]
    for result_key in _choose(rng, results["SVARSNR"], 1):
        values = dict(results[results["SVARSNR"] == result_key].iloc[0])
        key = str(next_key["labsvar"])
        values.update({"SVARSNR": key, "PROVTAGNINGSTID": _minutes_text(clock.minute())})
        state.files["labsvar"].records.append(state.files["labsvar"].encode(values))
        state.busy_patients.add(values["PATNR"])
        state.busy_rows.add(("labsvar", result_key))
        report.add("melior", "labsvar", [key], NEW, "new_lab_result")


def _melior_deletions(
    state: _MeliorState, rng: np.random.Generator, report: ActivityReport
) -> None:
    """Deleted: a lab result entered in error, a warning no longer valid."""
    for name, what in (
        ("labsvar", "lab_result_entered_in_error_deleted"),
        ("varning", "warning_deleted"),
    ):
        rows = state.clean(name)
        rows = rows[~rows["PATNR"].isin(state.busy_patients)]
        taken = {key for dataset, key in state.busy_rows if dataset == name}
        for key in _choose(rng, set(rows[MELIOR_KEYS[name]]) - taken, 1):
            index = state.files[name].keys().index(key)
            state.truth.deleted_positions.setdefault(("melior", name), []).append(index + 1)
            del state.files[name].records[index]
            report.add("melior", name, [key], DELETED, what)


def _melior_activity(
    folder: Path, truth: _Truth, rng: np.random.Generator, clock: _Clock, report: ActivityReport
) -> None:
    """Melior's activity, written record by record into its files."""
    state = _read_melior_state(folder, truth)
    contacts = _block_melior_contact(state, rng, report)
    diagnoses = _correct_melior_diagnosis(state, rng, report)
    _melior_patient_dies(state, rng, clock, report)
    next_key = _melior_new_contacts(state, contacts, diagnoses, rng, clock, report)
    _melior_new_lab_result(state, next_key, rng, clock, report)
    _melior_deletions(state, rng, report)
    for file in state.files.values():
        file.write()


def _next_key(frames: dict[str, pd.DataFrame], name: str) -> int:
    """After every key of the dataset and every value pointing at it, as the estate numbers."""
    key = MELIOR_KEYS[name]
    values = list(frames[name][key])
    if name == "kontakt":
        values += [v for child in MELIOR_CONTACT_CHILDREN for v in frames[child]["KONTAKTNR"]]
    numbers = [int(v) for v in values if str(v).strip().isdigit()]
    return max(numbers, default=0) + 1


# --- ground truth -----------------------------------------------------------------------------


def _read_truth(estate_dir: Path) -> _Truth:
    defects = pd.read_csv(estate_dir / DEFECTS_FILE, dtype=str, keep_default_na=False)
    identities = pd.read_csv(estate_dir / IDENTITY_TRUTH_FILE, dtype=str, keep_default_na=False)
    return _Truth(defects, identities)


def _write_truth(estate_dir: Path, truth: _Truth) -> None:
    defects = truth.defects.copy()
    if truth.deleted_positions and len(defects):
        row = defects["row_number"].astype(int)
        for (system, dataset), positions in truth.deleted_positions.items():
            mine = (defects["system"] == system) & (defects["dataset"] == dataset)
            before = np.searchsorted(np.sort(np.array(positions)), row[mine].to_numpy())
            row[mine] = row[mine] - before
        defects["row_number"] = row.astype(str)
        defects.to_csv(estate_dir / DEFECTS_FILE, index=False, lineterminator="\n")
    identities = truth.identities
    gone = identities.apply(
        lambda r: (r["system"], r["dataset"], r["source_key"]) in truth.removed_identities, axis=1
    )
    identities = pd.concat(
        [identities[~gone], pd.DataFrame(truth.new_identities, columns=TRUTH_COLUMNS)],
        ignore_index=True,
    )
    identities.to_csv(estate_dir / IDENTITY_TRUTH_FILE, index=False, lineterminator="\n")


def _write_activity(estate_dir: Path, report: ActivityReport) -> Path:
    path = estate_dir / ACTIVITY_FILE
    is_new = not path.exists()
    with path.open("a", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=ACTIVITY_COLUMNS, lineterminator="\n")
        if is_new:
            writer.writeheader()
        writer.writerows(report.records)
    return path


def _data_rows(path: Path) -> int:
    with path.open(encoding="utf-8", newline="") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


def _update_manifest(estate_dir: Path, manifest: EstateManifest, report: ActivityReport) -> None:
    """Row counts and checksums as the estate now is; activity.csv listed among the files."""
    delta: dict[tuple[str, str], int] = {}
    for record in report.records:
        step = {NEW: 1, DELETED: -1}.get(record["change"], 0)
        key = (record["system"], record["dataset"])
        delta[key] = delta.get(key, 0) + step
    for (system, dataset), step in delta.items():
        manifest.row_counts[system][dataset] += step
    for item in manifest.files:
        path = estate_dir / item.path
        if item.system == "melior" and item.dataset:
            item.rows = manifest.row_counts["melior"][item.dataset]
            item.sha256 = _sha256(path)
        elif item.path in (DEFECTS_FILE, IDENTITY_TRUTH_FILE):
            item.rows = _data_rows(path)
            item.sha256 = _sha256(path)
    activity = estate_dir / ACTIVITY_FILE
    manifest.files = [item for item in manifest.files if item.path != ACTIVITY_FILE]
    manifest.files.append(
        GeneratedFile(path=ACTIVITY_FILE, rows=_data_rows(activity), sha256=_sha256(activity))
    )
    manifest.write(estate_dir)


def simulate_activity(
    estate_dir: Path, seed: int = 42, elvis_url: str | None = None, days: int = 7
) -> ActivityReport:
    """Change ELVIS and Melior of the estate in place as days of legacy use would.

    The activity happens in the ``days`` after the estate's extract date, so a delta run with an
    as-of date at least that late sees none of it in the future.
    """
    estate_dir = Path(estate_dir)
    manifest = EstateManifest.read(estate_dir)
    url = _elvis_url(estate_dir, manifest, elvis_url)
    truth = _read_truth(estate_dir)
    rng = stream(seed, "activity")
    first_day = day_number(manifest.extract_date or EXTRACT_DATE) + 1
    clock = _Clock(rng, first_day, days)
    report = ActivityReport()
    _elvis_activity(estate_dir, url, manifest, truth, rng, clock, report)
    _melior_activity(estate_dir / "melior", truth, rng, clock, report)
    _write_truth(estate_dir, truth)
    _write_activity(estate_dir, report)
    _update_manifest(estate_dir, manifest, report)
    return report
