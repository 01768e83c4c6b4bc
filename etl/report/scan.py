"""Scan an unseen source and draft its mappings: ``vardflytt new-system NAME --from DIR|URL``.

In the spirit of a scan-then-map tool (OHDSI's WhiteRabbit): the scan reads a folder of legacy
files or the tables behind a database URL, read-only, and infers per dataset what
``system.yaml`` needs: for files the encoding, delimited or fixed width, the delimiter, a header
line, columns or field widths; for every dataset the row count, candidate keys (columns whose
values are all present and distinct) and each column's value shapes, masked as in every report
(digits as 9, letters as A, rare shapes hidden, identity-number-like columns flagged, never a
value). It then writes a draft ``system.yaml`` (checked by the same model that checks mappings)
and one commented stub per dataset for an engineer to map and review. Nothing is guessed
silently: every inference is written beside what it decided, as a comment to review.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import yaml

from etl.report.masking import MIN_COUNT, identity_like, shapes

SAMPLE_BYTES = 1 << 20  # the first MiB of a file decides its layout
# Tried in order: a file that decodes as UTF-8 is UTF-8; otherwise the legacy Windows code page,
# unless its bytes are those of the DOS one (box drawing, ä as 0x84 and ö as 0x94).
_DOS_LETTERS = {0x84, 0x94, 0x86, 0x8E, 0x99, 0x8F}
_DELIMITERS = ";|\t,"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DATA_SUFFIXES = {".txt", ".dat", ".csv", ".tsv", ".del", ".exp"}


class ScanError(ValueError):
    """The source cannot be scanned as given; the message says what to do."""


@dataclass
class ColumnScan:
    name: str
    filled: int
    distinct: int
    shapes: list[tuple[str, int]]
    identity_like: bool
    # Every value a digit, no whitespace, at most 32 characters: a number or code, which may
    # serve as a row key (names and free text never: keys appear in reports and logs).
    code_like: bool = True


@dataclass
class DatasetScan:
    name: str
    rows: int
    columns: list[ColumnScan]
    candidate_keys: list[str]
    file: str | None = None
    table: str | None = None
    layout: str | None = None  # delimited | fixed_width
    encoding: str | None = None
    delimiter: str | None = None
    header: bool = False
    widths: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _encoding(sample: bytes) -> tuple[str, str]:
    try:
        sample.decode("utf-8")
        return "utf-8", "decodes as UTF-8"
    except UnicodeDecodeError:
        pass
    dos = sum(sample.count(bytes([b])) for b in _DOS_LETTERS)
    windows = sum(sample.count(bytes([b])) for b in (0xE4, 0xF6, 0xE5, 0xC4, 0xD6, 0xC5))
    if dos > windows:
        return "cp850", f"not UTF-8; {dos} bytes of DOS code page Swedish letters"
    return "cp1252", "not UTF-8; Windows code page (Swedish letters as ISO 8859-1 bytes)"


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _delimiter(text: str) -> tuple[str, int, float] | None:
    """The delimiter, the usual number of fields per line (quotes respected: a delimiter inside
    a quoted value does not count) and the share of sampled lines with exactly that many: the
    candidate found most consistently (a share of at least 0.9: notes with line breaks or broken
    rows may spoil a few lines, never most)."""
    import collections
    import itertools

    best = None
    sample = text[:SAMPLE_BYTES]
    for candidate in _DELIMITERS:
        records = csv.reader(io.StringIO(sample), delimiter=candidate)  # quoted line breaks too
        counts = collections.Counter(len(row) for row in itertools.islice(records, 1000) if row)
        if not counts:
            continue
        usual, lines_with_it = counts.most_common(1)[0]
        share = lines_with_it / counts.total()
        if usual > 1 and share >= 0.9 and (best is None or (share, usual) > (best[2], best[1])):
            best = (candidate, usual, share)
    return best


def _has_header(fields: list[str], second: list[str] | None) -> bool:
    names = all(_NAME.match(value.strip()) for value in fields if value.strip())
    differs = second is None or any(
        a.strip() != b.strip() and (any(ch.isdigit() for ch in b) or not b.strip())
        for a, b in zip(fields, second, strict=False)
    )
    return bool(fields) and names and differs


def _fixed_widths(lines: list[str]) -> list[int]:
    """Field widths of a fixed-width file: runs of columns that are blank on every line end a
    field (a field's padding), and a change from blank to text starts the next."""
    width = max(len(line) for line in lines)
    padded = [line.ljust(width) for line in lines[:500]]
    blank = [all(line[i] == " " for line in padded) for i in range(width)]
    starts = [0] + [i for i in range(1, width) if blank[i - 1] and not blank[i]]
    return [b - a for a, b in zip(starts, [*starts[1:], width], strict=True)]


def _frame_of_file(path: Path) -> tuple[pd.DataFrame, DatasetScan]:
    raw = path.read_bytes()
    encoding, why = _encoding(raw[:SAMPLE_BYTES])
    text = raw.decode(encoding, errors="replace")
    lines = _lines(text)
    if not lines:
        raise ScanError(f"{path}: empty file; remove it from the folder or export it again")
    scan = DatasetScan(name=_dataset_name(path), rows=0, columns=[], candidate_keys=[])
    scan.file, scan.encoding = path.name, encoding
    scan.notes.append(f"encoding {encoding}: {why}")
    found = _delimiter(text)
    if found is not None:
        delimiter, usual, share = found
        parsed = list(csv.reader(io.StringIO(text), delimiter=delimiter))
        parsed = [row for row in parsed if any(value.strip() for value in row)]
        rows = [row for row in parsed if len(row) == usual]
        if len(rows) < len(parsed):
            scan.notes.append(
                f"{len(parsed) - len(rows)} record(s) do not have {usual} fields (line breaks "
                "inside a value, or broken rows): left out of this scan, quarantined by a run"
            )
        scan.layout, scan.delimiter = "delimited", delimiter
        scan.header = _has_header(rows[0], rows[1] if len(rows) > 1 else None)
        names = (
            [c.strip().upper() for c in rows[0]]
            if scan.header
            else [f"COL{i + 1}" for i in range(len(rows[0]))]
        )
        body = rows[1:] if scan.header else rows
        scan.notes.append(
            f"delimited by {delimiter!r} ({len(names)} columns on {share:.0%} of lines); "
            + ("first line is a header" if scan.header else "no header line: columns named COLn")
        )
        frame = pd.DataFrame(body, columns=names, dtype="string")
    else:
        widths = _fixed_widths(lines)
        scan.layout, scan.widths = "fixed_width", widths
        names = [f"FIELD{i + 1}" for i in range(len(widths))]
        offsets = [sum(widths[:i]) for i in range(len(widths))]
        text_rows = pd.Series(lines, dtype="string")
        frame = pd.DataFrame(
            {
                name: text_rows.str.slice(o, o + w).str.strip()
                for name, o, w in zip(names, offsets, widths, strict=True)
            }
        )
        scan.notes.append(
            f"fixed width: no delimiter on every line; {len(widths)} fields from blank padding "
            "columns (review the widths against the export's description)"
        )
    return frame.replace("", pd.NA), scan


def _dataset_name(path: Path) -> str:
    name = re.sub(r"[^a-z0-9]+", "_", path.stem.lower()).strip("_")
    return name if name and name[0].isalpha() else f"d_{name}"


def _profile(frame: pd.DataFrame, scan: DatasetScan) -> DatasetScan:
    """Row count, candidate keys and masked shapes per column (vectorised)."""
    scan.rows = len(frame)
    for name in frame.columns:
        values = frame[name]
        present = values.dropna()
        array = pa.array(present.astype(str).to_numpy(), pa.string())
        counted = pd.Series(shapes(array).to_pylist()).value_counts()
        shown = [(str(shape), int(n)) for shape, n in counted.items() if n >= MIN_COUNT][:5]
        scan.columns.append(
            ColumnScan(
                name=str(name),
                filled=len(present),
                distinct=int(present.nunique()),
                shapes=shown,
                identity_like=bool(len(array)) and float(identity_like(array).mean()) > 0.5,
                code_like=bool(present.str.contains(r"\d").all())
                and not bool(present.str.contains(r"\s").any())
                and int(present.str.len().max() or 0) <= 32,
            )
        )
    # Row keys appear in reports and logs: never free text, never an identity number.
    keyable = [c for c in scan.columns if c.code_like and not c.identity_like]
    scan.candidate_keys = [
        c.name for c in keyable if scan.rows and c.filled == scan.rows == c.distinct
    ]
    if not scan.candidate_keys and scan.rows and keyable:
        # A key with duplicates (a legacy export's typical defect): the best one, said so.
        near = max(keyable, key=lambda c: (c.filled == scan.rows, c.distinct))
        if near.filled == scan.rows and near.distinct >= 0.95 * scan.rows:
            scan.candidate_keys = [near.name]
            scan.notes.append(
                f"no column is distinct on every row; {near.name} is on all but "
                f"{scan.rows - near.distinct} (duplicate keys, quarantined by a run): chosen"
            )
    return scan


def scan_folder(folder: Path) -> list[DatasetScan]:
    if not folder.is_dir():
        raise ScanError(f"{folder} is not a folder; pass the folder holding the export's files")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in DATA_SUFFIXES)
    if not files:
        raise ScanError(
            f"{folder}: no data files ({', '.join(sorted(DATA_SUFFIXES))}); HL7 and XML exports "
            "are described by hand (see mappings/_archetypes)"
        )
    return [_profile(*_frame_of_file(path)) for path in files]


def scan_database(url: str, limit: int = 100_000) -> list[DatasetScan]:
    """Tables of a database, read-only (etl.extract.readers.read_only_engine, on a host the
    operator allowed): columns, primary keys, and a profile of up to ``limit`` rows per table
    (the row count is the table's own)."""
    import sqlalchemy as sa

    from etl.core.residency import check_database_url
    from etl.extract.readers import read_only_engine

    check_database_url(url, "new-system --from")
    engine = read_only_engine(url)
    scans = []
    with engine.connect() as connection:
        inspector = sa.inspect(connection)
        for table in sorted(inspector.get_table_names()):
            quoted = connection.dialect.identifier_preparer.quote(table)
            query = sa.select(sa.text("*")).select_from(sa.table(table)).limit(limit)
            frame = pd.read_sql(query, connection).astype("string")
            scan = DatasetScan(
                name=_dataset_name(Path(table)), rows=0, columns=[], candidate_keys=[]
            )
            scan.table = table
            _profile(frame, scan)
            scan.rows = int(
                connection.execute(sa.text(f"SELECT count(*) FROM {quoted}")).scalar_one()
            )
            primary = inspector.get_pk_constraint(table).get("constrained_columns") or []
            if primary:
                scan.candidate_keys = list(primary)
                scan.notes.append(f"primary key {primary}")
            scans.append(scan)
    engine.dispose()
    return scans


def _dataset_yaml(scan: DatasetScan) -> dict[str, object]:
    key = scan.candidate_keys[:1] or [scan.columns[0].name]
    if scan.table is not None:
        return {"table": scan.table, "key": key, "columns": [c.name for c in scan.columns]}
    entry: dict[str, object] = {
        "file": scan.file,
        "format": scan.layout,
        "encoding": scan.encoding,
        "key": key,
    }
    if scan.layout == "delimited":
        entry["delimiter"] = scan.delimiter
        entry["columns"] = [c.name for c in scan.columns]
    else:
        entry["fields"] = [
            {"name": c.name, "width": w} for c, w in zip(scan.columns, scan.widths, strict=True)
        ]
    return entry


def _comments(scan: DatasetScan) -> list[str]:
    lines = [f"# {scan.name}: {scan.rows} rows; " + "; ".join(scan.notes)]
    keys = scan.candidate_keys
    lines.append(
        f"#   key: {keys[0] if keys else 'NONE FOUND'}"
        + (f" (candidates: {', '.join(keys)})" if len(keys) > 1 else "")
        + ("" if keys else " - no column is filled and distinct on every row: choose one")
    )
    for column in scan.columns:
        shown = ", ".join(f"{shape} x{n}" for shape, n in column.shapes) or "(rare shapes hidden)"
        flag = (
            "  IDENTITY NUMBERS: never a key, map through 'identifiers'"
            if column.identity_like
            else ""
        )
        lines.append(
            f"#   {column.name}: {column.filled}/{scan.rows} filled, {column.distinct} distinct; "
            f"shapes {shown}{flag}"
        )
    return lines


def draft(name: str, source: str, scans: list[DatasetScan], out: Path) -> list[Path]:
    """Write ``out/system.yaml`` and a commented stub per dataset; returns the files written.

    The draft is checked by the mapping model before it is written (fail early, not at run)."""
    from etl.catalog import SystemSpec

    is_database = any(s.table for s in scans)
    env = f"VARDFLYTT_SOURCE_{name.upper()}_{'URL' if is_database else 'PATH'}"
    connection = {"url_env": env} if is_database else {"path_env": env}
    spec = {
        "system": name,
        "title": f"{name} (drafted by vardflytt new-system; review every line)",
        "format": "sql" if is_database else "files",
        "connection": connection,
        "datasets": {scan.name: _dataset_yaml(scan) for scan in scans},
    }
    SystemSpec.model_validate(spec)
    out.mkdir(parents=True, exist_ok=True)
    header = [
        f"# Drafted by `vardflytt new-system {name}` from a scan of the source ({len(scans)} "
        "datasets). Review every inference below, then map entities (see README, Adding a "
        f"source system). The source is read from ${env}.",
        *(line for scan in scans for line in _comments(scan)),
    ]
    system_file = out / "system.yaml"
    system_file.write_text(
        "\n".join(header) + "\n" + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )
    written = [system_file]
    for scan in scans:
        stub = out / f"{scan.name}.yaml.draft"
        columns = "\n".join(f"#   - {{target: ?, source: {c.name}}}" for c in scan.columns)
        stub.write_text(
            f"# Stub for dataset '{scan.name}' of {name}: rename to <core entity>.yaml (patient, "
            "encounter, diagnosis, ...), map each column to a target, or delete this file.\n"
            f"# dataset: {scan.name}\n# columns:\n{columns}\n",
            encoding="utf-8",
        )
        written.append(stub)
    return written
