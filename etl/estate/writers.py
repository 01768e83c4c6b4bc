"""Writers for the legacy formats of the estate: SQLite, delimited, fixed width, HL7 v2, XML, JSONL.

Each writes a ``Dataset`` in row order, so data row ``i + 1`` of the written source is row ``i``
of the dataset (for SQL: rows are inserted in key order, which is how they are read back).
Text may carry surrogate-escaped raw bytes (planted undecodable bytes); file writers encode with
``surrogateescape`` so they come out as the raw byte.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np

import etl.core.encodings  # noqa: F401  (registers iso646_se)
from etl.estate.base import Dataset, int_text
from etl.estate.planting import RAW_RECORD

CRLF = "\r\n"


def as_text(values: np.ndarray) -> np.ndarray:
    """A column as text, ``None`` as the empty string."""
    if values.dtype != object:
        return int_text(values)
    return np.array(["" if v is None else str(v) for v in values.tolist()], dtype=object)


# --- SQL --------------------------------------------------------------------------------------


def write_sqlite(path: Path, tables: dict[str, tuple[Dataset, list[str]]]) -> None:
    """One SQLite file; integer columns become INTEGER, everything else TEXT. No constraints:
    legacy databases hold dangling references."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    connection = sqlite3.connect(path)
    try:
        for table, (ds, columns) in tables.items():
            types = ["INTEGER" if ds.columns[c].dtype != object else "TEXT" for c in columns]
            declared = ", ".join(f'"{c}" {t}' for c, t in zip(columns, types, strict=True))
            connection.execute(f'CREATE TABLE "{table}" ({declared})')
            values = [ds.columns[c].tolist() for c in columns]
            marks = ", ".join("?" for _ in columns)
            connection.executemany(
                f'INSERT INTO "{table}" VALUES ({marks})', list(zip(*values, strict=True))
            )
        connection.commit()
    finally:
        connection.close()


# --- delimited and fixed width ----------------------------------------------------------------


def _quote(values: np.ndarray, delimiter: str) -> np.ndarray:
    out = values.copy()
    for i, value in enumerate(values.tolist()):
        if delimiter in value or '"' in value or "\r" in value or "\n" in value:
            out[i] = '"' + value.replace('"', '""') + '"'
    return out


def write_delimited(
    path: Path,
    ds: Dataset,
    columns: list[str],
    encoding: str,
    delimiter: str = ";",
    newline: str = CRLF,
) -> None:
    """A header line, then one line per row; values quoted only when they need it."""
    values = [_quote(as_text(ds.columns[c]), delimiter).tolist() for c in columns]
    lines = map(delimiter.join, zip(*values, strict=True))
    body = newline.join([delimiter.join(columns), *lines]) + newline
    _write(path, body, encoding)


def write_fixed_width(
    path: Path, ds: Dataset, fields: list[tuple[str, int]], encoding: str, newline: str = CRLF
) -> None:
    """One record per line, each field cut or space-padded to its width; no header."""
    parts = [
        [value[:width].ljust(width) for value in as_text(ds.columns[name]).tolist()]
        for name, width in fields
    ]
    body = "".join("".join(record) + newline for record in zip(*parts, strict=True))
    _write(path, body, encoding)


def _write(path: Path, text: str, encoding: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding, errors="surrogateescape"))


# --- HL7 v2 -----------------------------------------------------------------------------------

HL7_ENCODING_CHARACTERS = "^~\\&"


def hl7_escape(value: str) -> str:
    """Escape HL7 delimiters inside a value (``\\F\\`` for ``|`` and so on)."""
    if not any(ch in value for ch in "|^~\\&"):
        return value
    return (
        value.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("~", "\\R\\")
        .replace("&", "\\T\\")
    )


def segment(name: str, fields: dict[int, str | list[str]]) -> str:
    """One segment: ``fields`` by HL7 field number (components as a list). No terminator."""
    if name == "MSH":
        raise ValueError("use msh() for the header segment")
    width = max(fields) if fields else 0
    parts = [name] + [""] * width
    for number, value in fields.items():
        if isinstance(value, list):
            parts[number] = "^".join(hl7_escape(v) for v in value).rstrip("^")
        else:
            parts[number] = hl7_escape(value)
    return "|".join(parts)


def msh(
    sending_application: str,
    sending_facility: str,
    timestamp: str,
    message_type: str,
    control_id: str,
) -> str:
    """The header segment (MSH.1 is the field separator itself, MSH.2 the encoding characters)."""
    fields = [
        "MSH",
        HL7_ENCODING_CHARACTERS,
        hl7_escape(sending_application),
        hl7_escape(sending_facility),
        "VARDFLYTT",
        "VGR",
        timestamp,
        "",
        message_type,
        control_id,
        "P",
        "2.5",
    ]
    return "|".join(fields)


def write_hl7(path: Path, messages: list[str], encoding: str = "iso-8859-1") -> None:
    """A message archive: each message's segments end with ``\\r``; messages follow each other."""
    _write(path, "".join(messages), encoding)


def hl7_messages(
    ds: Dataset, group_column: str, render: Callable[[Dataset, np.ndarray], str]
) -> list[str]:
    """Messages from rows: consecutive rows sharing ``group_column`` form one message.

    Rows holding a raw (unreadable) record are written as that text, one message each.
    """
    raw = ds.columns.get(RAW_RECORD)
    groups = ds.columns[group_column]
    messages: list[str] = []
    start = 0
    m = len(ds)
    while start < m:
        if raw is not None and raw[start] is not None:
            messages.append(raw[start])
            start += 1
            continue
        stop = start + 1
        while stop < m and groups[stop] == groups[start] and (raw is None or raw[stop] is None):
            stop += 1
        messages.append(render(ds, np.arange(start, stop)))
        start = stop
    return messages


# --- XML --------------------------------------------------------------------------------------


def write_xml(
    path: Path,
    ds: Dataset,
    record_path: str,
    paths: dict[str, str],
    encoding: str = "iso-8859-1",
) -> None:
    """``<Root><Record ...>...</Record>...</Root>`` for ``record_path`` ``Root/Record``.

    ``paths`` maps columns to ``@attr``, ``Child``, ``Child/Grandchild`` or ``Child/@attr``, in
    document order. A missing value leaves an attribute out and writes an element empty, so
    every record carries every element (exports do). Raw records are written as they are.
    """
    root, record = record_path.split("/")
    lines = [f'<?xml version="1.0" encoding="{encoding.upper()}"?>', f"<{root}>"]
    raw = ds.columns.get(RAW_RECORD)
    for row in range(len(ds)):
        if raw is not None and raw[row] is not None:
            lines.append(raw[row])
            continue
        lines.append(_xml_record(record, {c: ds.columns[c][row] for c in paths}, paths))
    lines.append(f"</{root}>")
    _write(path, "\n".join(lines) + "\n", encoding)


def _xml_record(record: str, values: dict[str, object], paths: dict[str, str]) -> str:
    attributes = []
    children: dict[str, dict[str, list[str]]] = {}  # child -> {"attrs": [...], "body": [...]}
    for column, where in paths.items():
        value = values[column]
        text = "" if value is None else str(value)
        if where.startswith("@"):
            if value is not None:
                attributes.append(f" {where[1:]}={quoteattr(text)}")
            continue
        child, _, rest = where.partition("/")
        parts = children.setdefault(child, {"attrs": [], "body": []})
        if not rest:
            parts["body"].append(escape(text))
        elif rest.startswith("@"):
            if value is not None:
                parts["attrs"].append(f" {rest[1:]}={quoteattr(text)}")
        else:
            parts["body"].append(f"<{rest}>{escape(text)}</{rest}>" if text else f"<{rest}/>")
    body = "".join(
        f"<{child}{''.join(p['attrs'])}>{''.join(p['body'])}</{child}>"
        if "".join(p["body"])
        else f"<{child}{''.join(p['attrs'])}/>"
        for child, p in children.items()
    )
    return f"  <{record}{''.join(attributes)}>{body}</{record}>"


# --- JSON lines -------------------------------------------------------------------------------


def write_jsonl(path: Path, ds: Dataset, paths: dict[str, str], encoding: str = "utf-8") -> None:
    """One JSON object per line; ``paths`` maps columns to dotted key paths. Missing values are
    ``null`` (the key is always there); every other value is a JSON string, as exported."""
    raw = ds.columns.get(RAW_RECORD)
    texts = {column: ds.columns[column] for column in paths}
    lines = []
    for row in range(len(ds)):
        if raw is not None and raw[row] is not None:
            lines.append(raw[row])
            continue
        document: dict = {}
        for column, where in paths.items():
            value = texts[column][row]
            node = document
            *parents, leaf = where.split(".")
            for parent in parents:
                node = node.setdefault(parent, {})
            node[leaf] = None if value is None else str(value)
        lines.append(json.dumps(document, ensure_ascii=False, separators=(",", ":")))
    _write(path, "\n".join(lines) + "\n", encoding)
