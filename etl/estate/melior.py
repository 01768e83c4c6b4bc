"""Melior, the hospital journal: a fixed-width patient register and ``;``-delimited exports.

All files are Windows-1252 with CRLF line endings. Delimited files have a header row and quote
a value with ``"`` only when it contains ``;``, ``"`` or a line break. Values may carry raw bytes
(surrogate-escaped, ``\\udc81`` -> byte 0x81) so that undecodable bytes can be planted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from etl.estate.base import (
    MINUTES_PER_DAY,
    Dataset,
    explode,
    format_days,
    format_minutes,
    int_text,
    pick,
    pick_child,
    stream,
    window_draw,
)
from etl.estate.codes import (
    ANALYTES,
    DOSAGES,
    DRUGS,
    ICD10_SE,
    KVA_MEDICAL,
    KVA_SURGICAL,
    LAB_LOCAL_NAMES,
    LAB_LOCAL_TO_NPU,
    NOTE_SENTENCES,
    NOTE_TYPES,
    WARNINGS,
)
from etl.estate.organisation import Organisation, choose_staff, choose_units
from etl.estate.people import Population

ENCODING = "cp1252"
NEWLINE = "\r\n"

# Widths exactly as mappings/melior/system.yaml declares them.
PATREG_FIELDS: list[tuple[str, int]] = [
    ("PATNR", 8),
    ("SEKEL", 1),
    ("PNR", 10),
    ("EFTERNAMN", 30),
    ("FORNAMN", 30),
    ("KON", 1),
    ("SKYDD", 1),
    ("AVLIDEN", 8),
]
FILES: dict[str, str] = {
    "patient": "PATREG.DAT",
    "kontakt": "KONTAKT.TXT",
    "diagnos": "DIAGNOS.TXT",
    "atgard": "ATGARD.TXT",
    "labsvar": "LABSVAR.TXT",
    "lakemedel": "LAKEMEDEL.TXT",
    "anteckning": "ANTECKNING.TXT",
    "varning": "VARNING.TXT",
}
KEYS: dict[str, str] = {
    "patient": "PATNR",
    "kontakt": "KONTAKTNR",
    "diagnos": "DIAGNOSNR",
    "atgard": "ATGARDSNR",
    "labsvar": "SVARSNR",
    "lakemedel": "ORDINATIONSNR",
    "anteckning": "ANTECKNINGSNR",
    "varning": "VARNINGSNR",
}

PATNR_BASE = 20_000_001
KEY_BASES = {
    "kontakt": 300_001,
    "diagnos": 1_000_001,
    "atgard": 2_000_001,
    "labsvar": 4_000_001,
    "lakemedel": 6_000_001,
    "anteckning": 7_000_001,
    "varning": 8_000_001,
}
RATES = {
    "kontakt": 2.0,
    "diagnos": 3.0,
    "atgard": 1.0,
    "labsvar": 8.0,
    "lakemedel": 2.0,
    "anteckning": 2.0,
    "varning": 0.3,
}
_SKYDD = {"": "", "SEKR": "S", "SKYDD": "F", "FING": "G"}
_SEKEL = {"18": "8", "19": "9", "20": "0"}


def build_melior(
    pop: Population, org: Organisation, seed: int
) -> tuple[dict[str, Dataset], np.ndarray]:
    """The eight datasets, and the PATNR of every person (-1 when not in Melior)."""
    rng = stream(seed, "melior")
    members = np.flatnonzero(pop.in_melior)
    members = members[np.lexsort((members, pop.first_day[members]))]
    n = len(members)
    patnr = np.full(len(pop), -1, dtype=np.int64)
    patnr[members] = PATNR_BASE + np.arange(n)

    number = pop.number[members]
    dead = pop.dead[members]
    patient = Dataset(
        "melior",
        "patient",
        "PATNR",
        {
            "PATNR": patnr[members],
            "SEKEL": np.array([_SEKEL[s[:2]] for s in number], dtype=object),
            "PNR": np.array([s[2:] for s in number], dtype=object),
            "EFTERNAMN": np.array([s[:30] for s in pop.family[members]], dtype=object),
            "FORNAMN": np.array([s[:30] for s in pop.given[members]], dtype=object),
            "KON": pop.sex[members].astype(object),
            "SKYDD": np.array([_SKYDD[s] for s in pop.protected[members]], dtype=object),
            "AVLIDEN": np.where(
                dead, format_days(np.where(dead, pop.death_day[members], 0), "YYYYMMDD"), ""
            ).astype(object),
        },
    )

    people = members
    kontakt, contact_person, contact_start, contact_unit, contact_key = _contacts(
        rng, pop, org, people, patnr
    )
    # Children of contacts: grouped per person so a row can pick one of its person's contacts.
    by_person = np.argsort(contact_person, kind="stable")
    counts = np.bincount(contact_person, minlength=len(pop))
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])

    def linked(person: np.ndarray) -> np.ndarray:
        """Index of a contact of each row's person (in generation order), or -1."""
        child = pick_child(rng, person, first, counts)
        return np.where(child >= 0, by_person[np.maximum(child, 0)], -1)

    context = _Context(rng, pop, org, patnr, linked, contact_start, contact_unit, contact_key)
    datasets = {
        "patient": patient,
        "kontakt": kontakt,
        "diagnos": _diagnoses(context, people),
        "atgard": _procedures(context, people),
        "labsvar": _lab_results(context, people),
        "lakemedel": _medication(context, people),
        "anteckning": _notes(context, people),
        "varning": _warnings(context, people),
    }
    return datasets, patnr


class _Context:
    def __init__(self, rng, pop, org, patnr, linked, contact_start, contact_unit, contact_key):
        self.rng: np.random.Generator = rng
        self.pop: Population = pop
        self.org: Organisation = org
        self.patnr = patnr
        self.linked = linked
        self.contact_start = contact_start
        self.contact_unit = contact_unit
        self.contact_key = contact_key

    def rows(self, people: np.ndarray, dataset: str) -> np.ndarray:
        counts = self.rng.poisson(RATES[dataset] * self.pop.activity[people])
        owner, _ = explode(counts)
        return people[owner]

    def contact_or_window(self, person: np.ndarray):
        """A linked contact per row (or -1), its start time, its unit and its key text."""
        contact = self.linked(person)
        has = contact >= 0
        safe = np.maximum(contact, 0)
        own = window_draw(self.rng, self.pop.first_day[person], self.pop.last_day[person])
        when = np.where(has, self.contact_start[safe], own)
        unit = np.where(
            has,
            self.contact_unit[safe],
            choose_units(self.rng, self.org, self.pop.home_site[person]),
        )
        # numpy's stubs refuse the None and fall back to one-argument np.where (a tuple).
        key = np.where(has, self.contact_key[safe], None).astype(object)  # type: ignore[attr-defined]
        return when, unit, key

    def finish(self, name: str, columns: dict[str, np.ndarray], when: np.ndarray) -> Dataset:
        """Sort rows by time and number them: keys grow with time, as in the running system."""
        m = len(when)
        key = KEYS[name]
        ds = Dataset("melior", name, key, {key: np.zeros(m, dtype=np.int64), **columns})
        ds.take(np.argsort(when, kind="stable"))
        ds.columns[key] = KEY_BASES[name] + np.arange(m)
        return ds


def _contacts(rng, pop: Population, org: Organisation, people, patnr):
    counts = rng.poisson(RATES["kontakt"] * pop.activity[people])
    owner, _ = explode(counts)
    person = people[owner]
    m = len(person)
    unit = choose_units(rng, org, pop.home_site[person])
    kind = pick(rng, ["ÖPPENVÅRD", "SLUTENVÅRD", "AKUT", "DAGVÅRD"], m, p=[0.55, 0.2, 0.15, 0.1])
    start = window_draw(rng, pop.first_day[person], pop.last_day[person], office_hours=0.7)
    length = np.select(
        [kind == "SLUTENVÅRD", kind == "AKUT"],
        [
            rng.integers(1, 15, m) * MINUTES_PER_DAY + rng.integers(0, 48, m) * 30,
            rng.integers(2, 24, m) * 30,
        ],
        default=rng.integers(3, 37, m) * 5,
    )
    end_cap = (pop.last_day[person] + 1) * MINUTES_PER_DAY - 1
    end = np.minimum(start + length, end_cap)
    ongoing = (kind == "SLUTENVÅRD") & (start + length > end_cap) & ~pop.dead[person]
    order = np.argsort(start, kind="stable")
    key = np.empty(m, dtype=np.int64)
    key[order] = KEY_BASES["kontakt"] + np.arange(m)
    ds = Dataset(
        "melior",
        "kontakt",
        "KONTAKTNR",
        {
            "KONTAKTNR": key,
            "PATNR": patnr[person],
            "ENHET_HSA": org.unit_hsa[unit],
            "INSKRIVNING": format_minutes(start),
            "UTSKRIVNING": np.where(ongoing, "", format_minutes(end)).astype(object),
            "KONTAKTTYP": kind,
            "SPARR": np.where(rng.random(m) < 0.02, "J", "N").astype(object),
        },
    )
    ds.take(order)
    return ds, person, start, unit, int_text(key)


def icd_notation(rng: np.random.Generator, codes: np.ndarray) -> np.ndarray:
    """ICD-10-SE codes as legacy data writes them: with or without the dot, sometimes lower-case."""
    m = len(codes)
    undotted = np.array([c.replace(".", "") for c in codes], dtype=object)
    written = np.where(rng.random(m) < 0.3, undotted, codes).astype(object)
    lower = rng.random(m) < 0.1
    written[lower] = np.array([c.lower() for c in written[lower]], dtype=object)
    return written


def _diagnoses(ctx: _Context, people) -> Dataset:
    rng, org = ctx.rng, ctx.org
    person = ctx.rows(people, "diagnos")
    m = len(person)
    when, unit, contact_key = ctx.contact_or_window(person)
    chosen = rng.integers(0, len(ICD10_SE), m)
    codes = np.array([c for c, _ in ICD10_SE], dtype=object)[chosen]
    texts = np.array([t for _, t in ICD10_SE], dtype=object)[chosen]
    texts = np.where(rng.random(m) < 0.05, "", texts).astype(object)
    doctor = choose_staff(rng, org, unit, doctors_only=True)
    columns = {
        "PATNR": ctx.patnr[person],
        "KONTAKTNR": contact_key,
        "DIAGNOSKOD": icd_notation(rng, codes),
        "DIAGNOSTEXT": texts,
        "DIAGNOSDATUM": format_days(when // MINUTES_PER_DAY, "DD.MM.YYYY"),
        "HUVUDDIAGNOS": np.where(rng.random(m) < 0.4, "J", "N").astype(object),
        "LAKARE_HSA": org.staff_hsa[doctor],
    }
    return ctx.finish("diagnos", columns, when)


def _procedures(ctx: _Context, people) -> Dataset:
    rng, org = ctx.rng, ctx.org
    person = ctx.rows(people, "atgard")
    m = len(person)
    when, unit, contact_key = ctx.contact_or_window(person)
    surgical = rng.random(m) < 0.5
    codes = np.where(surgical, pick(rng, KVA_SURGICAL, m), pick(rng, KVA_MEDICAL, m)).astype(object)
    columns = {
        "PATNR": ctx.patnr[person],
        "KONTAKTNR": contact_key,
        "KVA_KOD": codes,
        "ATGARDSDATUM": format_days(when // MINUTES_PER_DAY, "YYYY-MM-DD"),
        "ENHET_HSA": org.unit_hsa[unit],
    }
    return ctx.finish("atgard", columns, when)


def format_decimal(values: np.ndarray, decimals: int) -> np.ndarray:
    """Numbers in Swedish notation (decimal comma)."""
    return np.array([f"{v:.{decimals}f}".replace(".", ",") for v in values], dtype=object)


def lab_values(rng: np.random.Generator, analyte_index: np.ndarray, female: np.ndarray):
    """RESULTAT and REFERENSINTERVALL per row, in Swedish notation."""
    m = len(analyte_index)
    result = np.empty(m, dtype=object)
    reference = np.empty(m, dtype=object)
    for i, analyte in enumerate(ANALYTES):
        rows = np.flatnonzero(analyte_index == i)
        if not len(rows):
            continue
        if analyte.lognormal:
            values = analyte.centre * np.exp(rng.normal(0, analyte.spread, len(rows)))
        else:
            values = rng.normal(analyte.centre, analyte.spread, len(rows))
        step = 10.0**-analyte.decimals
        values = np.maximum(np.round(values, analyte.decimals), step)
        text = format_decimal(values, analyte.decimals)
        if analyte.below is not None:
            below_text = (
                "<" + format_decimal(np.array([analyte.below]), 1 if analyte.below < 1 else 0)[0]
            )
            text = np.where(values < analyte.below, below_text, text)
        if analyte.above is not None:
            text = np.where(values > analyte.above, f">{analyte.above:g}", text)
        result[rows] = text
        reference[rows] = analyte.reference
        if analyte.code == "NPU02319":  # Hb reference differs by sex
            reference[rows] = np.where(female[rows], "117-153", "134-170")
    return result, reference


def _lab_results(ctx: _Context, people) -> Dataset:
    rng, pop, org = ctx.rng, ctx.pop, ctx.org
    person = ctx.rows(people, "labsvar")
    m = len(person)
    when = window_draw(rng, pop.first_day[person], pop.last_day[person], office_hours=0.75)
    weights = np.array([3, 2, 1.5, 2.5, 2.5, 2.5, 3, 0.8, 1, 1, 1, 1.2, 0.6])
    analyte_index = rng.choice(len(ANALYTES), size=m, p=weights / weights.sum())
    codes = np.array([a.code for a in ANALYTES], dtype=object)[analyte_index]
    names = np.array([a.name for a in ANALYTES], dtype=object)[analyte_index]
    units = np.array([a.unit for a in ANALYTES], dtype=object)[analyte_index]
    result, reference = lab_values(rng, analyte_index, pop.sex[person] == "K")

    # Some labs send their own local codes (all of these are in the crosswalk).
    npu_to_local = {npu: local for local, npu in LAB_LOCAL_TO_NPU.items()}
    local_code = np.array([npu_to_local.get(c) for c in codes], dtype=object)
    use_local = np.not_equal(local_code, None) & (rng.random(m) < 0.15)
    codes = np.where(use_local, local_code, codes).astype(object)
    names[use_local] = np.array([LAB_LOCAL_NAMES[c] for c in codes[use_local]], dtype=object)

    columns = {
        "PATNR": ctx.patnr[person],
        "PROVTAGNINGSTID": format_minutes(when),
        "ANALYSKOD": codes,
        "ANALYSNAMN": names,
        "RESULTAT": result,
        "ENHET": units,
        "REFERENSINTERVALL": reference,
        "LABB": org.site_labs[pop.home_site[person]],
    }
    return ctx.finish("labsvar", columns, when)


def _medication(ctx: _Context, people) -> Dataset:
    rng, pop = ctx.rng, ctx.pop
    person = ctx.rows(people, "lakemedel")
    m = len(person)
    start = window_draw(rng, pop.first_day[person], pop.last_day[person]) // MINUTES_PER_DAY
    end = start + rng.integers(7, 366, m)
    open_ended = (rng.random(m) < 0.4) | (end > pop.last_day[person])
    drug = rng.integers(0, len(DRUGS), m)
    columns = {
        "PATNR": ctx.patnr[person],
        "ATC": np.array([d[0] for d in DRUGS], dtype=object)[drug],
        "NPLID": np.array([d[1] for d in DRUGS], dtype=object)[drug],
        "PREPARAT": np.array([d[2] for d in DRUGS], dtype=object)[drug],
        "DOSERING": pick(rng, DOSAGES, m),
        "STARTDATUM": format_days(start, "YYMMDD"),
        "SLUTDATUM": np.where(open_ended, "", format_days(end, "YYMMDD")).astype(object),
    }
    return ctx.finish("lakemedel", columns, start * MINUTES_PER_DAY)


def note_texts(rng: np.random.Generator, m: int) -> np.ndarray:
    """One to three sentences, joined by a space or a line break (CRLF)."""
    sentences = [pick(rng, NOTE_SENTENCES, m) for _ in range(3)]
    count = rng.integers(1, 4, m)
    seps = [np.where(rng.random(m) < 0.3, NEWLINE, " ").astype(object) for _ in range(2)]
    text = sentences[0].copy()
    text = np.where(count >= 2, text + seps[0] + sentences[1], text)
    text = np.where(count >= 3, text + seps[1] + sentences[2], text)
    return text.astype(object)


def _notes(ctx: _Context, people) -> Dataset:
    rng, pop = ctx.rng, ctx.pop
    person = ctx.rows(people, "anteckning")
    m = len(person)
    when, _, contact_key = ctx.contact_or_window(person)
    cap = (pop.last_day[person] + 1) * MINUTES_PER_DAY - 1
    when = np.minimum(when + rng.integers(0, 121, m) * 5, cap)
    columns = {
        "PATNR": ctx.patnr[person],
        "KONTAKTNR": contact_key,
        "TID": format_minutes(when),
        "ANTECKNINGSTYP": pick(rng, NOTE_TYPES, m),
        "TEXT": note_texts(rng, m),
    }
    return ctx.finish("anteckning", columns, when)


def _warnings(ctx: _Context, people) -> Dataset:
    rng, pop = ctx.rng, ctx.pop
    person = ctx.rows(people, "varning")
    m = len(person)
    when = window_draw(rng, pop.first_day[person], pop.last_day[person])
    chosen = rng.integers(0, len(WARNINGS), m)
    columns = {
        "PATNR": ctx.patnr[person],
        "TYP": np.array([w[0] for w in WARNINGS], dtype=object)[chosen],
        "KOD": np.array([w[1] for w in WARNINGS], dtype=object)[chosen],
        "BESKRIVNING": np.array([w[2] for w in WARNINGS], dtype=object)[chosen],
        "REGISTRERAD": format_days(when // MINUTES_PER_DAY, "DD.MM.YYYY"),
    }
    return ctx.finish("varning", columns, when)


# --- writing ----------------------------------------------------------------------------------


def _as_text(values: np.ndarray) -> np.ndarray:
    if values.dtype != object:
        return int_text(values)
    out = values.copy()
    out[np.equal(out, None)] = ""
    return out


def _quote(values: np.ndarray) -> np.ndarray:
    """Quote values holding ``;``, ``"`` or a line break (checked on the whole column first)."""
    joined = "\x00".join(values.tolist())
    if not any(ch in joined for ch in ';"\r\n'):
        return values
    out = values.copy()
    for i, value in enumerate(values.tolist()):
        if ";" in value or '"' in value or "\r" in value or "\n" in value:
            out[i] = '"' + value.replace('"', '""') + '"'
    return out


def encode_delimited(ds: Dataset, columns: list[str]) -> bytes:
    values = [_quote(_as_text(ds.columns[name])).tolist() for name in columns]
    lines = map(";".join, zip(*values, strict=True))
    body = NEWLINE.join([";".join(columns), *lines]) + NEWLINE
    return body.encode(ENCODING, errors="surrogateescape")


def encode_fixed_width(ds: Dataset) -> bytes:
    fields = [
        [value[:width].ljust(width) for value in _as_text(ds.columns[name]).tolist()]
        for name, width in PATREG_FIELDS
    ]
    body = "".join("".join(parts) + NEWLINE for parts in zip(*fields, strict=True))
    return body.encode(ENCODING, errors="surrogateescape")


def write_melior(datasets: dict[str, Dataset], folder: Path) -> list[Path]:
    """Write every Melior file (columns in each dataset's order, as system.yaml lists them)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, filename in FILES.items():
        ds = datasets[name]
        data = (
            encode_fixed_width(ds) if name == "patient" else encode_delimited(ds, list(ds.columns))
        )
        path = folder / filename
        path.write_bytes(data)
        written.append(path)
    return written
