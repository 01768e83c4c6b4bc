"""JSON lines (``format: jsonl``): one JSON object per line, one row per object.

Field paths are dotted key paths (``patient.id``, ``vaccine.atc``). Values become text as the
source wrote them: strings as they are, numbers as their JSON text (``1.50`` stays ``1.50``),
``true``/``false``, objects and arrays as compact JSON; ``null`` and a missing key are NA.
A line that is not a JSON object becomes one row with ``_read_error = invalid_json``; blank
lines are skipped.

Why each line is parsed by the standard library rather than by pyarrow.json or pandas for a
whole chunk: both turn numbers into float64 (``1.50`` becomes ``1.5``, a 20-digit id loses
digits) and pyarrow refuses to read a number into a string column, while a migration must keep
values as the source wrote them. ``json.loads`` is C code and hands the exact text of every
number to ``parse_int``/``parse_float``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from etl.catalog import FileDataset
from etl.extract.records import ReadStats, Record

INVALID_JSON = "invalid_json"


class _Number(str):
    """A JSON number, kept as the text the source wrote."""


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity: Python accepts them, JSON not


def _parse(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line, parse_int=_Number, parse_float=_Number, parse_constant=_constant)
    except ValueError:  # json.JSONDecodeError is a ValueError
        return None
    return value if isinstance(value, dict) else None


def _compact(value: Any) -> str:
    """Compact JSON that keeps each number's source text."""
    if isinstance(value, _Number):
        return str(value)
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(
                f"{json.dumps(k, ensure_ascii=False)}:{_compact(v)}" for k, v in value.items()
            )
            + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(_compact(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # a _Number too
        return str(value)
    return _compact(value)


def _lookup(record: dict[str, Any], keys: list[str]) -> Any:
    value: Any = record
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _lines(handle: TextIO) -> Iterator[str]:
    for number, line in enumerate(handle):
        if number == 0:
            line = line.removeprefix("\ufeff")
        if line.strip(" \t\r\n"):  # JSON whitespace: the physical count's notion of blank
            yield line


def _open(path: Path, dataset: FileDataset) -> TextIO:
    # Lines end at LF only, as the physical count has them; a CR is JSON whitespace.
    return path.open(encoding=dataset.encoding, errors="replace", newline="\n")


def read_records(path: Path, dataset: FileDataset, stats: ReadStats) -> Iterator[Record]:
    """One row per non-blank line of one file."""
    paths = [(field.path or "").split(".") for field in dataset.fields]
    with _open(path, dataset) as handle:
        for line in _lines(handle):
            stats.records += 1
            record = _parse(line)
            if record is None:
                stats.unreadable += 1
                yield Record.unreadable(len(paths), INVALID_JSON, stats.records)
            else:
                yield Record(
                    tuple(_text(_lookup(record, keys)) for keys in paths), None, stats.records
                )


# --- schema drift -----------------------------------------------------------------------------


def key_paths(record: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of an object's values; nested objects are walked, arrays are values."""
    found = []
    for key, value in record.items():
        if isinstance(value, dict) and value:
            found += key_paths(value, f"{prefix}{key}.")
        else:
            found.append(f"{prefix}{key}")
    return found


class JsonSample(NamedTuple):
    lines: int  # non-blank lines looked at
    objects: int  # of which JSON objects
    paths: list[str]


def sample(path: Path, dataset: FileDataset, limit: int) -> JsonSample:
    """Key paths of the first ``limit`` objects; reads no further."""
    lines, objects = 0, 0
    paths: dict[str, None] = {}
    with _open(path, dataset) as handle:
        for line in _lines(handle):
            lines += 1
            record = _parse(line)
            if record is not None:
                objects += 1
                paths.update(dict.fromkeys(key_paths(record)))
            if lines >= limit:
                break
    return JsonSample(lines, objects, list(paths))
