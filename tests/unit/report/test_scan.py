"""`vardflytt new-system`: the scan of an unseen export and the draft it writes.

The exports here are written byte by byte by the test (not by the estate generator): code pages,
quoted delimiters and line breaks, fixed widths, a duplicated key, a database table; and random
delimited tables from hypothesis. The draft must validate and must never hold a value.
"""

from __future__ import annotations

import sqlite3

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from etl.catalog import SystemSpec
from etl.cli import app
from etl.report.scan import ScanError, draft, scan_database, scan_folder

pytestmark = pytest.mark.unit

PERSONNUMMER = "19121212-1212"  # Skatteverket's test number
NAME = "Öberg"


def _pnr(n: int) -> str:
    return f"1980{n % 12 + 1:02d}{n % 28 + 1:02d}-{n:04d}"


def _export(folder):
    folder.mkdir()
    notes = (
        "NOTNR;PATNR;TEXT\r\n"
        '1;100;"Mår bättre; äter"\r\n'
        '2;101;"Två rader\r\nandra raden"\r\n'
        '3;100;"Kontroll om tre månader"\r\n'
        '3;102;"Samma nummer igen"\r\n'  # a duplicated key, as legacy exports have
    )
    for n in range(4, 80):
        notes += f'{n};{100 + n};"Anteckning {n}"\r\n'
    (folder / "NOTES.TXT").write_bytes(notes.encode("cp850"))
    fixed = "".join(
        f"{10000 + n:<8}{PERSONNUMMER if n == 3 else _pnr(n):<15}"
        f"{NAME + chr(97 + n % 26) + chr(97 + n // 26):<20}K\n"
        for n in range(60)
    )
    (folder / "PATREG.DAT").write_bytes(fixed.encode("cp1252"))
    piped = "".join(f"A{n}|{n * 3}|2024-01-{n % 28 + 1:02d}\n" for n in range(50))
    (folder / "lab.csv").write_text(piped, encoding="utf-8")
    return folder


def test_a_folder_export_is_scanned_as_it_is(tmp_path):
    scans = {scan.name: scan for scan in scan_folder(_export(tmp_path / "export"))}
    notes, patients, lab = scans["notes"], scans["patreg"], scans["lab"]
    assert (notes.layout, notes.delimiter, notes.encoding, notes.header) == (
        "delimited",
        ";",
        "cp850",
        True,
    )
    assert [c.name for c in notes.columns] == ["NOTNR", "PATNR", "TEXT"]
    assert notes.rows == 80  # the quoted line break and the quoted ; are one record each
    # TEXT is distinct on every row, but free text is never a key (keys appear in reports).
    assert notes.candidate_keys == ["NOTNR"] and any("all but 1" in n for n in notes.notes)
    assert (patients.layout, patients.encoding, patients.widths) == (
        "fixed_width",
        "cp1252",
        [8, 15, 20, 1],
    )
    # FIELD2 (identity numbers) and FIELD3 (names) are distinct too, but never keys.
    assert patients.candidate_keys == ["FIELD1"]
    assert [c.identity_like for c in patients.columns] == [False, True, False, False]
    assert (lab.delimiter, lab.header, lab.encoding) == ("|", False, "utf-8")
    assert [c.name for c in lab.columns] == ["COL1", "COL2", "COL3"] and lab.rows == 50


def test_the_draft_validates_and_holds_no_value(tmp_path):
    scans = scan_folder(_export(tmp_path / "export"))
    written = draft("clinic", str(tmp_path / "export"), scans, tmp_path / "mappings" / "clinic")
    system = tmp_path / "mappings" / "clinic" / "system.yaml"
    assert system in written and len(written) == 4
    spec = SystemSpec.model_validate(yaml.safe_load(system.read_text(encoding="utf-8")))
    assert spec.datasets["patreg"].fields[1].width == 15  # type: ignore[union-attr]
    assert spec.connection.path_env == "VARDFLYTT_SOURCE_CLINIC_PATH"
    everything = "".join(path.read_text(encoding="utf-8") for path in written)
    for value in (PERSONNUMMER, "1212121212", NAME, "bättre", "Kontroll"):
        assert value not in everything
    assert "IDENTITY NUMBERS" in everything and "99999999-9999" in everything


def test_a_database_is_scanned_read_only_with_its_primary_keys(tmp_path, monkeypatch):
    database = tmp_path / "legacy.sqlite"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE patient (patnr INTEGER PRIMARY KEY, pnr TEXT, namn TEXT)")
        connection.executemany(
            "INSERT INTO patient VALUES (?, ?, ?)",
            [(n, f"19{n:010d}", f"{NAME}{n}") for n in range(1, 40)],
        )
    before = database.read_bytes()
    [scan] = scan_database(f"sqlite:///{database}")
    assert (scan.table, scan.rows, scan.candidate_keys) == ("patient", 39, ["patnr"])
    assert database.read_bytes() == before
    written = draft("legacy", "sqlite:///x", [scan], tmp_path / "out")
    assert "url_env: VARDFLYTT_SOURCE_LEGACY_URL" in written[0].read_text(encoding="utf-8")


def test_the_command_refuses_a_bad_name_an_existing_draft_and_an_empty_folder(tmp_path):
    runner = CliRunner()
    export = _export(tmp_path / "export")
    bad = runner.invoke(app, ["new-system", "Bad-Name", "--from", str(export)])
    assert bad.exit_code == 2
    out = tmp_path / "drafted"
    first = runner.invoke(app, ["new-system", "clinic", "--from", str(export), "--out", str(out)])
    assert first.exit_code == 0, first.output and "notes: 80 rows" in first.output
    again = runner.invoke(app, ["new-system", "clinic", "--from", str(export), "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScanError, match="no data files"):
        scan_folder(tmp_path / "empty")


CELL = st.text(alphabet="abcdefghijklmnopqrstuvwxyzåäö0123456789 -.", min_size=1, max_size=12)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    delimiter=st.sampled_from([";", "|", "\t", ","]),
    width=st.integers(min_value=2, max_value=7),
    rows=st.integers(min_value=1, max_value=60),
    data=st.data(),
)
def test_any_delimited_table_is_read_back_with_its_shape(
    tmp_path_factory, delimiter, width, rows, data
):
    folder = tmp_path_factory.mktemp("random")
    header = [f"C{i}" for i in range(width)]
    body = [
        [str(r)] + [data.draw(CELL).strip() or "x" for _ in range(width - 1)] for r in range(rows)
    ]
    text = "\r\n".join(delimiter.join(row) for row in [header, *body]) + "\r\n"
    (folder / "T.TXT").write_bytes(text.encode(data.draw(st.sampled_from(["utf-8", "cp1252"]))))
    [scan] = scan_folder(folder)
    assert (scan.layout, scan.delimiter, scan.header) == ("delimited", delimiter, True)
    assert [c.name for c in scan.columns] == header and scan.rows == rows
    assert "C0" in scan.candidate_keys
