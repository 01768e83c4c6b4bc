"""Steward reports over a real run: Melior on the small estate -> profile, coverage and docs.

The canary check uses the estate itself: every identity number and every name in Melior's
PATREG.DAT must be absent from every report, in every form it could be written.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import re
from itertools import pairwise

import pytest
from rich.console import Console

from etl import pipeline
from etl.report.coverage import coverage_report, coverage_tables, write_coverage
from etl.report.docs import write_docs
from etl.report.profile import profile_system, profile_tables, write_profile
from etl.report.validation import batch_report_folder
from etl.settings import Settings

pytestmark = pytest.mark.integration

AS_OF = dt.date(2026, 7, 1)
BATCH = "melior-report-test"
CENTURY = {"8": "18", "9": "19", "0": "20"}  # Melior's one-digit century (SEKEL)


def _patient_register(settings) -> list[dict[str, str]]:
    """PATREG.DAT parsed with the widths and encoding its system.yaml declares."""
    spec = pipeline.catalog(settings).system("melior").spec.datasets["patient"]
    records = []
    with (settings.resolved_estate_dir / "melior" / spec.file).open(encoding=spec.encoding) as f:
        for line in f:
            record, start = {}, 0
            for field in spec.fields:
                record[field.name] = line[start : start + field.width].strip()
                start += field.width
            records.append(record)
    return records


def _identity_forms(record: dict[str, str]) -> list[str]:
    ten = record["PNR"]
    if not re.fullmatch(r"[0-9]{10}", ten):  # a planted malformed number: look for it as is
        return [ten] if len(ten) >= 6 else []
    full = CENTURY.get(record["SEKEL"], "19") + ten
    return [ten, full, f"{ten[:6]}-{ten[6:]}", f"{ten[:6]}+{ten[6:]}", f"{full[:8]}-{full[8:]}"]


def _names(record: dict[str, str]) -> list[str]:
    names = {record["EFTERNAMN"], record["FORNAMN"]}
    names |= {part for name in list(names) for part in re.split(r"[\s-]+", name)}
    return sorted(name for name in names if len(name) >= 2)


def _leaks_by_search(text: str, numbers: set[str], names: set[str]) -> list[str]:
    """What ``_leaks`` computes, one regular-expression search per value (slow: the reference)."""
    found = [n for n in numbers if re.search(rf"(?<![0-9]){re.escape(n)}(?![0-9])", text)]
    found += [n for n in names if re.search(rf"(?<!\w){re.escape(n)}(?!\w)", text)]
    return sorted(found)


NUMBER_FORM = re.compile(r"[0-9]+(?:[-+][0-9]+)?")
DIGIT_RUN = re.compile(r"[0-9]+")
WORD_RUN = re.compile(r"\w+")


def _leaks(text: str, numbers: set[str], names: set[str]) -> list[str]:
    r"""The numbers found in ``text`` with no digit either side, the names with no word character
    either side: ``re.search(rf"(?<![0-9]){re.escape(n)}(?![0-9])", text)`` per number and
    ``(?<!\w)...(?!\w)`` per name (``_leaks_by_search``), computed in one pass over the text
    instead of one search per value (thousands of values times every report page took a minute).

    A number of digits with at most one ``-`` or ``+`` inside matches exactly where it equals a
    maximal run of digits, or two runs joined by that one sign; a name of word characters only,
    where it equals a maximal run of word characters. Any other value is searched as before."""
    runs = [(m.start(), m.end()) for m in DIGIT_RUN.finditer(text)]
    candidates = {text[start:end] for start, end in runs}
    candidates |= {
        text[start:after_end]
        for (start, end), (after_start, after_end) in pairwise(runs)
        if after_start == end + 1 and text[end] in "-+"
    }
    words = set(WORD_RUN.findall(text))
    found = []
    for n in numbers:
        if NUMBER_FORM.fullmatch(n):
            if n in candidates:
                found.append(n)
        elif re.search(rf"(?<![0-9]){re.escape(n)}(?![0-9])", text):
            found.append(n)
    for n in names:
        if WORD_RUN.fullmatch(n):
            if n in words:
                found.append(n)
        elif re.search(rf"(?<!\w){re.escape(n)}(?!\w)", text):
            found.append(n)
    return sorted(found)


@pytest.fixture(scope="module")
def reports(small_estate, tmp_path_factory):
    """One run of Melior and its reports for the module (the tests only read them)."""
    folder = tmp_path_factory.mktemp("report_melior")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VARDFLYTT_HOME", str(folder / "home"))
        patch.setenv("VARDFLYTT_ESTATE_DIR", str(small_estate))
        patch.setenv("VARDFLYTT_CORE_URL", f"sqlite:///{folder / 'core.sqlite'}")
        yield _reports(Settings())


def _reports(settings: Settings):
    report = pipeline.run_system("melior", BATCH, AS_OF, settings=settings)
    assert report.is_reconciled
    catalog = pipeline.catalog(settings)

    profile = profile_system(settings, catalog, "melior", BATCH)
    profile_json, profile_html = write_profile(settings, profile)
    coverage = coverage_report(settings, catalog, [BATCH])
    coverage_json = write_coverage(coverage, settings.home / "reports" / "coverage.json")
    docs = write_docs(catalog, settings.home / "docs")
    buffer = io.StringIO()
    console = Console(file=buffer, width=400, color_system=None)
    for table in [*profile_tables(profile), *coverage_tables(coverage)]:
        console.print(table)

    texts = {"terminal": buffer.getvalue()}
    for path in [profile_json, profile_html, coverage_json, *docs]:
        texts[path.name] = path.read_text("utf-8")
    texts["profile (decoded json)"] = json.dumps(
        json.loads(texts[profile_json.name]), ensure_ascii=False
    )
    texts["profile (unescaped html)"] = html.unescape(texts[profile_html.name])
    # The run wrote the batch's validation report (summary and GX Data Docs) by itself.
    validation = batch_report_folder(settings, BATCH)
    pages = sorted(validation.rglob("*.html")) + sorted(validation.glob("summary.*"))
    assert len(pages) > 5 and (validation / "data_docs" / "index.html") in pages
    for path in pages:
        text = path.read_text("utf-8")
        texts[f"validation {path.relative_to(validation)}"] = text
        texts[f"validation {path.relative_to(validation)} (unescaped)"] = html.unescape(text)
    return settings, profile, coverage, texts


def test_no_identity_number_or_name_from_the_register_reaches_a_report(reports):
    settings, _, _, texts = reports
    register = _patient_register(settings)
    assert len(register) >= 300
    numbers = {form for record in register for form in _identity_forms(record)}
    names = {name for record in register for name in _names(record)}
    assert len(numbers) > 1000 and len(names) > 50
    some_number, some_name = sorted(numbers)[0], sorted(names)[0]
    dashed = next(n for n in sorted(numbers) if "-" in n)
    assert _leaks(f"a {some_number}; {some_name}. ({dashed})", numbers, names) == sorted(
        {some_number, some_name, dashed}
    )  # the detector itself works
    # ... and finds what one search per value finds, values glued to digits and letters included
    probe = f"7{some_number} {dashed}1 x{some_name} {some_name}_ {some_number}-{some_name}"
    assert _leaks(probe, numbers, names) == _leaks_by_search(probe, numbers, names)
    for output, text in texts.items():
        assert not _leaks(text, numbers, names), (
            f"{output} shows {_leaks(text, numbers, names)[:5]}"
        )
    # The control: the check would see values, because safe values are shown.
    assert "NPU19748" in texts["terminal"] and "ÖPPENVÅRD" in texts["terminal"]


def test_profile_masks_what_the_mappings_call_sensitive(reports):
    _, profile, _, _ = reports
    columns = {(d.dataset, c.column): c for d in profile.datasets for c in d.columns}
    for key in [
        ("patient", "PNR"),
        ("patient", "SEKEL"),
        ("patient", "EFTERNAMN"),
        ("patient", "FORNAMN"),
        ("diagnos", "DIAGNOSTEXT"),
        ("lakemedel", "DOSERING"),
        ("anteckning", "TEXT"),
        ("varning", "BESKRIVNING"),
        ("kontakt", "PATNR"),
        ("kontakt", "KONTAKTNR"),
    ]:
        assert columns[key].is_masked and not columns[key].top_values, key
    assert {s.value for s in columns[("patient", "PNR")].shapes} >= {"9999999999"}
    assert not columns[("labsvar", "ANALYSKOD")].is_masked
    assert columns[("labsvar", "PROVTAGNINGSTID")].inferred_type.value == "timestamp-like"
    assert columns[("diagnos", "DIAGNOSDATUM")].inferred_type.value == "date-like"


def test_coverage_counts_exactly_the_planted_unmapped_codes(reports, small_estate):
    _, _, coverage, _ = reports
    with (small_estate / "defects.csv").open(encoding="utf-8", newline="") as handle:
        planted = [
            row
            for row in csv.DictReader(handle)
            if row["system"] == "melior" and row["defect_class"] == "unmapped_code"
        ]
    assert planted
    melior = next(system for system in coverage.systems if system.system == "melior")
    assert melior.column_share == 1.0
    (batch,) = melior.batches
    entities = {entity.entity: entity for entity in batch.entities}
    assert entities["observation"].unmapped_code_rows == len(planted)
    assert entities["observation"].extracted_from == "batch_accounting"
    assert batch.unmapped_code_rows == len(planted)
    assert batch.extracted_rows == sum(e.extracted_rows for e in batch.entities)
