"""ELVIS, the care administration system: six tables, built as arrays and loaded with SQLAlchemy.

The same SQLAlchemy Core code loads SQLite (default), MariaDB or PostgreSQL. Key columns
(``*_id``) are integers; everything else is text, because the legacy columns hold mixed formats.
Rows are inserted in key order, which is the export order ``row_number`` refers to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sqlalchemy as sa

from etl.estate.base import (
    EXTRACT_DAY,
    MINUTES_PER_DAY,
    Dataset,
    explode,
    format_days,
    format_minutes,
    pick,
    stream,
    where_none,
    window_draw,
)
from etl.estate.codes import REFERRAL_QUESTIONS
from etl.estate.organisation import (
    VGR_ORGANISATIONSNUMMER,
    Organisation,
    choose_staff,
    choose_units,
)
from etl.estate.people import (
    AMBIGUOUS_UNTIL,
    CENTENARIAN_BEFORE,
    KIND_RESERVNUMMER,
    Population,
)

CHUNK_ROWS = 5000
PATIENT_ID_BASE = 10_001
UNIT_ID_BASE = 101
STAFF_ID_BASE = 5_001
CONTACT_ID_BASE = 500_001
BOOKING_ID_BASE = 2_000_001
REFERRAL_ID_BASE = 4_000_001

CONTACTS_PER_PATIENT = 4.0
BOOKINGS_PER_PATIENT = 3.0
REFERRALS_PER_PATIENT = 0.5
# Every table in utf8mb4 on MariaDB and MySQL (other dialects ignore these).
_TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"}


def _text(length: int | None = None) -> sa.types.TypeEngine:
    return sa.String(length) if length else sa.Text()


def _id(name: str, primary: bool = False) -> sa.Column:
    return sa.Column(name, sa.Integer(), primary_key=primary, autoincrement=False)


def _register_tables(metadata: sa.MetaData) -> dict[str, sa.Table]:
    """ELVIS's registers: patients, care units and staff."""
    return {
        "patient": sa.Table(
            "patient",
            metadata,
            _id("patient_id", primary=True),
            sa.Column("pnr", _text(32)),
            sa.Column("reservnr", _text(32)),
            sa.Column("fornamn", _text(100)),
            sa.Column("efternamn", _text(100)),
            sa.Column("kon", _text(8)),
            sa.Column("fodelsedatum", _text(32)),
            sa.Column("adress", _text(200)),
            sa.Column("postnr", _text(16)),
            sa.Column("postort", _text(100)),
            sa.Column("skyddad_identitet", _text(16)),
            sa.Column("avliden_datum", _text(32)),
            sa.Column("testpatient", _text(8)),
            sa.Column("registrerad_tid", _text(32)),
            **_TABLE_OPTIONS,
        ),
        "vardenhet": sa.Table(
            "vardenhet",
            metadata,
            _id("vardenhet_id", primary=True),
            sa.Column("hsa_id", _text(64)),
            sa.Column("namn", _text(200)),
            sa.Column("organisationsnummer", _text(32)),
            sa.Column("sjukhus", _text(64)),
            **_TABLE_OPTIONS,
        ),
        "personal": sa.Table(
            "personal",
            metadata,
            _id("personal_id", primary=True),
            sa.Column("hsa_id", _text(64)),
            sa.Column("fornamn", _text(100)),
            sa.Column("efternamn", _text(100)),
            sa.Column("yrkeskod", _text(16)),
            _id("vardenhet_id"),
            **_TABLE_OPTIONS,
        ),
    }


def _activity_tables(metadata: sa.MetaData) -> dict[str, sa.Table]:
    """ELVIS's activity: care contacts, bookings and referrals."""
    return {
        "vardkontakt": sa.Table(
            "vardkontakt",
            metadata,
            _id("kontakt_id", primary=True),
            _id("patient_id"),
            _id("vardenhet_id"),
            _id("personal_id"),
            sa.Column("kontakttyp", _text(32)),
            sa.Column("start_tid", _text(32)),
            sa.Column("slut_tid", _text(32)),
            sa.Column("sparr", _text(8)),
            **_TABLE_OPTIONS,
        ),
        "bokning": sa.Table(
            "bokning",
            metadata,
            _id("bokning_id", primary=True),
            _id("patient_id"),
            _id("vardenhet_id"),
            sa.Column("bokad_tid", _text(32)),
            sa.Column("langd_min", _text(16)),
            sa.Column("status", _text(32)),
            **_TABLE_OPTIONS,
        ),
        "remiss": sa.Table(
            "remiss",
            metadata,
            _id("remiss_id", primary=True),
            _id("patient_id"),
            _id("fran_vardenhet_id"),
            sa.Column("till_hsa_id", _text(64)),
            sa.Column("skickad_datum", _text(32)),
            sa.Column("prioritet", _text(32)),
            sa.Column("status", _text(32)),
            sa.Column("fragestallning", _text()),
            **_TABLE_OPTIONS,
        ),
    }


def elvis_metadata() -> tuple[sa.MetaData, dict[str, sa.Table]]:
    """The six ELVIS tables. No foreign keys: the legacy data has dangling references."""
    metadata = sa.MetaData()
    tables = {**_register_tables(metadata), **_activity_tables(metadata)}
    return metadata, tables


# --- building ---------------------------------------------------------------------------------


def identity_forms(rng: np.random.Generator, number: np.ndarray) -> np.ndarray:
    """Personnummer/samordningsnummer in the mixed forms ELVIS really holds.

    12 digits, ``YYMMDD-NNNC``, ``YYMMDDNNNC``, ``YYYYMMDD-NNNC``; ``+`` for people born before
    1920 (100 or older); sometimes with surrounding spaces. People born 1920-1932 are always
    written with the century, since a 10-digit form is ambiguous around the 100th birthday.
    """
    n = len(number)
    number = number.astype(object)
    year = number.astype("U4").astype(np.int64)
    form = rng.choice(4, size=n, p=[0.40, 0.30, 0.10, 0.20])
    ambiguous = (year >= CENTENARIAN_BEFORE) & (year <= AMBIGUOUS_UNTIL)
    form = np.where(ambiguous & ((form == 1) | (form == 2)), 0, form)
    centenarian = year < CENTENARIAN_BEFORE
    form = np.where(centenarian & (form == 2), 1, form)
    sep = np.where(centenarian, "+", "-").astype(object)
    date8 = number.astype("U8").astype(object)
    date6 = np.array([s[2:8] for s in number], dtype=object)
    tail = np.array([s[8:] for s in number], dtype=object)
    forms = np.select(
        [form == 0, form == 1, form == 2],
        [number, date6 + sep + tail, date6 + tail],
        default=date8 + "-" + tail,
    ).astype(object)
    spaces = rng.random(n)
    forms = np.where(spaces < 0.01, " " + forms, forms)
    forms = np.where((spaces >= 0.01) & (spaces < 0.025), forms + " ", forms)
    forms = np.where((spaces >= 0.025) & (spaces < 0.03), " " + forms + "  ", forms)
    return forms.astype(object)


def birth_date_forms(
    rng: np.random.Generator, birth_day: np.ndarray, year: np.ndarray
) -> np.ndarray:
    form = rng.choice(3, size=len(birth_day), p=[0.6, 0.25, 0.15])
    form = np.where((form == 1) & (year <= AMBIGUOUS_UNTIL), 0, form)
    return np.select(
        [form == 0, form == 1],
        [format_days(birth_day, "YYYY-MM-DD"), format_days(birth_day, "YYMMDD")],
        default=format_days(birth_day, "DD.MM.YYYY"),
    ).astype(object)


def _patient_dataset(
    rng: np.random.Generator, pop: Population, members: np.ndarray, patient_id: np.ndarray
) -> Dataset:
    """The patient table of the ``members`` (in patient id order), test patients marked."""
    n = len(members)
    kind = pop.kind[members]
    number = pop.number[members]
    reserve_only = kind == KIND_RESERVNUMMER
    pnr = np.full(n, None, dtype=object)
    pnr[~reserve_only] = identity_forms(rng, number[~reserve_only])
    reservnr = np.where(reserve_only, number, pop.old_reserve[members]).astype(object)

    test = pop.test_patient[members]
    given = pop.given[members].copy()
    family = pop.family[members].copy()
    tolvan = rng.random(n) < 0.5
    given[test] = np.where(tolvan[test], "Tolvan", "Test")
    family[test] = np.where(tolvan[test], "Tolvansson", "Testpatient")

    protected = pop.protected[members]
    hidden = protected == "SKYDD"  # skyddad folkbokföring: no address on file
    dead = pop.dead[members]
    death = np.where(dead, pop.death_day[members], 0)
    death_text = np.where(
        rng.random(n) < 0.8, format_days(death, "YYYY-MM-DD"), format_days(death, "YYYYMMDD")
    )
    registered = window_draw(rng, pop.first_day[members], pop.first_day[members])

    patient = Dataset(
        "elvis",
        "patient",
        "patient_id",
        {
            "patient_id": patient_id[members],
            "pnr": pnr,
            "reservnr": reservnr,
            "fornamn": given,
            "efternamn": family,
            "kon": pop.sex[members].astype(object),
            "fodelsedatum": birth_date_forms(rng, pop.birth_day[members], pop.birth_year[members]),
            "adress": where_none(hidden, pop.street[members]),
            "postnr": where_none(hidden, pop.postnr[members]),
            "postort": where_none(hidden, pop.postort[members]),
            "skyddad_identitet": protected.astype(object),
            "avliden_datum": where_none(~dead, death_text),
            "testpatient": np.where(test, "J", "N").astype(object),
            "registrerad_tid": format_minutes(registered),
        },
    )
    test_rows = np.flatnonzero(test)
    patient.mark(test_rows, "test_patient", "testpatient")
    return patient


def _organisation_datasets(org: Organisation) -> tuple[Dataset, Dataset]:
    """The care unit and staff tables, straight from the organisation."""
    n_units = len(org.unit_hsa)
    vardenhet = Dataset(
        "elvis",
        "vardenhet",
        "vardenhet_id",
        {
            "vardenhet_id": UNIT_ID_BASE + np.arange(n_units),
            "hsa_id": org.unit_hsa,
            "namn": org.unit_name,
            "organisationsnummer": np.full(n_units, VGR_ORGANISATIONSNUMMER, dtype=object),
            "sjukhus": np.array(org.site_names, dtype=object)[org.unit_site],
        },
    )
    n_staff = len(org.staff_hsa)
    personal = Dataset(
        "elvis",
        "personal",
        "personal_id",
        {
            "personal_id": STAFF_ID_BASE + np.arange(n_staff),
            "hsa_id": org.staff_hsa,
            "fornamn": org.staff_given,
            "efternamn": org.staff_family,
            "yrkeskod": org.staff_profession,
            "vardenhet_id": UNIT_ID_BASE + org.staff_unit,
        },
    )
    return vardenhet, personal


def build_elvis(
    pop: Population, org: Organisation, seed: int
) -> tuple[dict[str, Dataset], np.ndarray]:
    """The six datasets, and the patient_id of every person (-1 when not in ELVIS)."""
    rng = stream(seed, "elvis")
    members = np.flatnonzero(pop.in_elvis)
    # Patient ids follow registration order, as they would in a running system.
    members = members[np.lexsort((members, pop.first_day[members]))]
    patient_id = np.full(len(pop), -1, dtype=np.int64)
    patient_id[members] = PATIENT_ID_BASE + np.arange(len(members))

    patient = _patient_dataset(rng, pop, members, patient_id)
    vardenhet, personal = _organisation_datasets(org)

    # Activity only for real (non-test) patients.
    active = members[~pop.test_patient[members]]
    vardkontakt = _contacts(rng, pop, org, active, patient_id)
    bokning = _bookings(rng, pop, org, active, patient_id)
    remiss = _referrals(rng, pop, org, active, patient_id)
    datasets = {
        "patient": patient,
        "vardenhet": vardenhet,
        "personal": personal,
        "vardkontakt": vardkontakt,
        "bokning": bokning,
        "remiss": remiss,
    }
    return datasets, patient_id


def _per_person(
    rng: np.random.Generator, pop: Population, people: np.ndarray, rate: float
) -> np.ndarray:
    counts = rng.poisson(rate * pop.activity[people])
    owner, _ = explode(counts)
    return people[owner]


def _contacts(rng, pop: Population, org: Organisation, people, patient_id) -> Dataset:
    person = _per_person(rng, pop, people, CONTACTS_PER_PATIENT)
    m = len(person)
    unit = choose_units(rng, org, pop.home_site[person])
    staff = choose_staff(rng, org, unit)
    kind = pick(rng, ["BESOK", "TELEFON", "INSKRIVNING", "HEMBESOK"], m, p=[0.6, 0.2, 0.15, 0.05])
    start = window_draw(rng, pop.first_day[person], pop.last_day[person])
    length = np.select(
        [kind == "BESOK", kind == "TELEFON", kind == "INSKRIVNING"],
        [
            rng.integers(3, 19, m) * 5,
            rng.integers(1, 5, m) * 5,
            rng.integers(1, 15, m) * MINUTES_PER_DAY + rng.integers(0, 48, m) * 30,
        ],
        default=rng.integers(6, 19, m) * 5,
    )
    end_cap = (pop.last_day[person] + 1) * MINUTES_PER_DAY - 1
    end = np.minimum(start + length, end_cap)
    ongoing = (kind == "INSKRIVNING") & (start + length > end_cap) & ~pop.dead[person]
    order = np.argsort(start, kind="stable")
    ds = Dataset(
        "elvis",
        "vardkontakt",
        "kontakt_id",
        {
            "kontakt_id": np.zeros(m, dtype=np.int64),
            "patient_id": patient_id[person],
            "vardenhet_id": UNIT_ID_BASE + unit,
            "personal_id": STAFF_ID_BASE + staff,
            "kontakttyp": kind,
            "start_tid": format_minutes(start),
            "slut_tid": where_none(ongoing, format_minutes(end)),
            "sparr": np.where(rng.random(m) < 0.02, "J", "N").astype(object),
        },
    )
    ds.take(order)
    ds.columns["kontakt_id"] = CONTACT_ID_BASE + np.arange(m)
    return ds


def _bookings(rng, pop: Population, org: Organisation, people, patient_id) -> Dataset:
    person = _per_person(rng, pop, people, BOOKINGS_PER_PATIENT)
    m = len(person)
    unit = choose_units(rng, org, pop.home_site[person])
    when = window_draw(rng, pop.first_day[person], pop.last_day[person], office_hours=1.0)
    recent = when >= (EXTRACT_DAY - 30) * MINUTES_PER_DAY
    status = np.where(
        recent,
        "BOKAD",
        pick(rng, ["GENOMFORD", "AVBOKAD", "UTEBLIVEN"], m, p=[0.8, 0.12, 0.08]),
    ).astype(object)
    order = np.argsort(when, kind="stable")
    ds = Dataset(
        "elvis",
        "bokning",
        "bokning_id",
        {
            "bokning_id": np.zeros(m, dtype=np.int64),
            "patient_id": patient_id[person],
            "vardenhet_id": UNIT_ID_BASE + unit,
            "bokad_tid": format_minutes(when),
            "langd_min": pick(
                rng, ["15", "20", "30", "45", "60"], m, p=[0.2, 0.2, 0.35, 0.15, 0.1]
            ),
            "status": status,
        },
    )
    ds.take(order)
    ds.columns["bokning_id"] = BOOKING_ID_BASE + np.arange(m)
    return ds


def _referrals(rng, pop: Population, org: Organisation, people, patient_id) -> Dataset:
    person = _per_person(rng, pop, people, REFERRALS_PER_PATIENT)
    m = len(person)
    n_units = len(org.unit_hsa)
    unit = choose_units(rng, org, pop.home_site[person])
    target = (unit + 1 + rng.integers(0, n_units - 1, m)) % n_units
    sent = window_draw(rng, pop.first_day[person], pop.last_day[person]) // MINUTES_PER_DAY
    order = np.argsort(sent, kind="stable")
    ds = Dataset(
        "elvis",
        "remiss",
        "remiss_id",
        {
            "remiss_id": np.zeros(m, dtype=np.int64),
            "patient_id": patient_id[person],
            "fran_vardenhet_id": UNIT_ID_BASE + unit,
            "till_hsa_id": org.unit_hsa[target],
            "skickad_datum": format_days(sent, "YYYY-MM-DD"),
            "prioritet": pick(rng, ["NORMAL", "FÖRTUR", "AKUT"], m, p=[0.7, 0.2, 0.1]),
            "status": pick(
                rng,
                ["SKICKAD", "MOTTAGEN", "BEDÖMD", "AVSLUTAD", "AVVISAD"],
                m,
                p=[0.1, 0.15, 0.2, 0.5, 0.05],
            ),
            "fragestallning": pick(rng, REFERRAL_QUESTIONS, m),
        },
    )
    ds.take(order)
    ds.columns["remiss_id"] = REFERRAL_ID_BASE + np.arange(m)
    return ds


# --- loading ----------------------------------------------------------------------------------


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _records(ds: Dataset, columns: list[str], start: int, stop: int) -> list[dict]:
    lists = [ds.columns[name][start:stop].tolist() for name in columns]
    return [dict(zip(columns, row, strict=True)) for row in zip(*lists, strict=True)]


def write_elvis(datasets: dict[str, Dataset], url: str) -> None:
    """Drop and create the six tables at ``url`` and bulk-insert the rows in key order."""
    metadata, tables = elvis_metadata()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            metadata.drop_all(connection, checkfirst=True)
            metadata.create_all(connection)
        for name, table in tables.items():
            ds = datasets[name]
            columns = [column.name for column in table.columns]
            with engine.begin() as connection:
                for start in range(0, len(ds), CHUNK_ROWS):
                    rows = _records(ds, columns, start, start + CHUNK_ROWS)
                    connection.execute(table.insert(), rows)
    finally:
        engine.dispose()


def count_rows(url: str) -> dict[str, int]:
    """Rows per ELVIS table at ``url`` (for checks)."""
    _, tables = elvis_metadata()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                name: connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                for name, table in tables.items()
            }
    finally:
        engine.dispose()
