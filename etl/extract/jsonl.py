"""JSON lines (``format: jsonl``): one JSON object per line, one row per object.

Field paths are dotted key paths (``patient.id``, ``vaccine.atc``). Values become text as the
source wrote them: strings as they are, numbers as their JSON text (``1.50`` stays ``1.50``),
``true``/``false``, objects and arrays as compact JSON; ``null`` and an absent optional key
are NA.

A physical record is a line (ended by LF; a CR before it belongs to the ending) holding
anything but spaces, tabs and CRs; a byte order mark at the start of the file is not part of
the first line. Blank lines are skipped and not counted. Each record is one row, or one
unreadable row (``_read_error``, all values NA) naming the file, line and record:

- ``undecodable_bytes``: bytes the dataset's encoding cannot decode (the key path named);
- ``invalid_json``: not JSON, or JSON but not an object (an array, a string);
- ``nesting_too_deep``: more than ``shape.MAX_NESTING`` levels of objects and arrays;
- ``duplicate_key``: a key twice in one object (JSON parsers keep the last silently);
- ``lone_surrogate``: a ``\\ud800`` escape without its pair;
- ``control_character_in_field``: NUL or another control character, raw or escaped;
- ``unexpected_field`` / ``missing_field``: the record's keys do not match the declared paths
  (etl/extract/shape.py).

Why each line is parsed by the standard library rather than by pyarrow.json or pandas for a
whole chunk: both turn numbers into float64 (``1.50`` becomes ``1.5``, a 20-digit id loses
digits) and pyarrow refuses to read a number into a string column, while a migration must keep
values as the source wrote them. ``json.loads`` is C code and hands the exact text of every
number to ``parse_int``/``parse_float``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from etl.catalog import FileDataset
from etl.extract import shape
from etl.extract.records import ReadStats, Record, describe

INVALID_JSON = "invalid_json"
DUPLICATE_KEY = "duplicate_key"

_BLANK = " \t\r\n"
# Strings (an unterminated one runs to the end of the line) and brackets: enough to measure
# nesting without parsing, in linear time.
_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)
_BAD_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


class _Number(str):
    """A JSON number, kept as the text the source wrote."""


class _Duplicated(dict):
    """An object that named a key more than once (the first duplicate is kept aside)."""

    duplicate: str = ""


class _DuplicateKey(Exception):
    """Raised while parsing strictly: the record is unreadable, its path is looked up after."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise _DuplicateKey
    return value


def _recording_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) == len(pairs):
        return value
    duplicated = _Duplicated(pairs)
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            duplicated.duplicate = key
            break
        seen.add(key)
    return duplicated


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity: Python accepts them, JSON not


def _decoder(strict: bool, object_hook: Any) -> json.JSONDecoder:
    return json.JSONDecoder(
        parse_int=_Number,
        parse_float=_Number,
        parse_constant=_constant,
        object_pairs_hook=object_hook,
        strict=strict,
    )


_STRICT = _decoder(True, _object)
# Only to name the path of what makes a record unreadable: raw control characters allowed,
# duplicate keys recorded.
_LENIENT = _decoder(False, _recording_object)

# Escapes that can write a control character or a lone surrogate into a value (an escaped
# backslash before such letters only costs a closer look).
_RISKY_ESCAPE = re.compile(r"\\(?:[bf]|u00[01]|u007f|u00[89]|ud[89a-f])", re.IGNORECASE)


def _nesting(line: str) -> int:
    """How deep objects and arrays nest in a line, strings not counted."""
    depth = deepest = 0
    for token in _STRING_OR_BRACKET.findall(line):
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


def _segment(key: str) -> str:
    """A key as one segment of a dotted path: quoted when it could be mistaken for several."""
    if not key or "." in key:
        return json.dumps(key, ensure_ascii=False)
    return key


def _walk(value: Any, prefix: str, found: list[tuple[str, Any]]) -> None:
    """Every key path and every string of a parsed value (depth is bounded by the caller)."""
    if isinstance(value, dict):
        for key, item in value.items():
            path = prefix + _segment(key)
            found.append((path, key))
            _walk(item, path + ".", found)
    elif isinstance(value, list):
        for item in value:
            _walk(item, prefix.rstrip(".") + "[].", found)
    elif isinstance(value, str) and not isinstance(value, _Number):
        found.append((prefix.rstrip("."), value))


def _characters(record: dict[str, Any]) -> tuple[str, str] | None:
    """A lone surrogate or control character in a key or string value, with its path."""
    found: list[tuple[str, Any]] = []
    _walk(record, "", found)
    for path, text in found:
        match = _BAD_CHARACTER.search(text)
        if match:
            if shape.SURROGATES.match(match.group()):
                return (
                    shape.LONE_SURROGATE,
                    f"a \\u{ord(match.group()):04x} escape without its pair in {shape.shown(path)}",
                )
            return (
                shape.CONTROL_CHARACTER,
                f"U+{ord(match.group()):04X} in {shape.shown(path)}",
            )
    return None


def _duplicate(value: Any, prefix: str = "") -> str | None:
    if isinstance(value, _Duplicated):
        return prefix + _segment(value.duplicate)
    if isinstance(value, dict):
        for key, item in value.items():
            found = _duplicate(item, f"{prefix}{_segment(key)}.")
            if found:
                return found
    elif isinstance(value, list):
        for item in value:
            found = _duplicate(item, prefix.rstrip(".") + "[].")
            if found:
                return found
    return None


def _lenient(line: str) -> dict[str, Any] | None:
    """The line's object read leniently (raw control characters allowed), only to name paths."""
    if _nesting(line) > shape.MAX_NESTING:
        return None
    try:
        record = _LENIENT.decode(line)
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def _escaped_bytes_path(line: str) -> str:
    """Where undecodable bytes sit: a key path, or the column when they break the JSON."""
    record = _lenient(line)
    if record is not None:
        found: list[tuple[str, Any]] = []
        _walk(record, "", found)
        for path, text in found:
            if shape.ESCAPED_BYTES.search(text):
                return shape.shown(path)
    match = shape.ESCAPED_BYTES.search(line)
    return f"column {match.start() + 1 if match else 0}"


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, _Number):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "null" if value is None else "true or false"


class _Parsed(NamedTuple):
    record: dict[str, Any] | None
    reason: str = ""
    detail: str = ""


def _parse(line: str, encoding: str) -> _Parsed:
    """The line's object, or why it is unreadable (shape not judged yet)."""
    if shape.ESCAPED_BYTES.search(line):
        where = _escaped_bytes_path(line)
        return _Parsed(None, shape.UNDECODABLE_BYTES, f"bytes not valid {encoding} in {where}")
    control = shape.CONTROL_CHARACTERS.search(line)
    if control:  # raw; JSON forbids it in strings, but the reason is the character
        record = _lenient(line)
        found = _characters(record) if record is not None else None
        column = f"U+{ord(control.group()):04X} at column {control.start() + 1}"
        return _Parsed(None, shape.CONTROL_CHARACTER, found[1] if found else column)
    if line.count("{") + line.count("[") > shape.MAX_NESTING:
        depth = _nesting(line)
        if depth > shape.MAX_NESTING:
            detail = f"{depth} levels of objects and arrays, at most {shape.MAX_NESTING} read"
            return _Parsed(None, shape.NESTING_TOO_DEEP, detail)
    try:
        record = _STRICT.decode(line)
    except _DuplicateKey:
        lenient = _lenient(line)
        duplicate = _duplicate(lenient) if lenient is not None else None
        where = shape.shown(duplicate) if duplicate else "a key"
        return _Parsed(None, DUPLICATE_KEY, f"{where} more than once in one object")
    except json.JSONDecodeError as error:
        message = error.msg.removesuffix(" at")  # "Invalid control character at"
        return _Parsed(None, INVALID_JSON, f"{message} at column {error.colno}")
    except ValueError:
        return _Parsed(None, INVALID_JSON, "NaN or Infinity, which JSON does not have")
    except RecursionError:  # not expected after the nesting check; never a traceback
        return _Parsed(None, shape.NESTING_TOO_DEEP, "too deep to parse")
    if not isinstance(record, dict):
        return _Parsed(None, INVALID_JSON, f"{_kind(record)}, not an object")
    found = _characters(record) if _RISKY_ESCAPE.search(line) else None
    if found:
        return _Parsed(None, *found)
    return _Parsed(record)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # a _Number too
        return str(value)
    return _compact(value)


def _compact(value: Any) -> str:
    """Compact JSON that keeps each number's source text."""
    if isinstance(value, _Number):
        return str(value)
    if isinstance(value, dict):
        items = (f"{json.dumps(k, ensure_ascii=False)}:{_compact(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_compact(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False)


_ABSENT = object()


def _lookup(record: dict[str, Any], keys: list[str]) -> Any:
    """The value at a key path; ``_ABSENT`` when a key is missing or a parent not an object."""
    value: Any = record
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return _ABSENT
        value = value[key]
    return value


def leaves(record: dict[str, Any], prefix: str = "") -> list[tuple[str, bool]]:
    """Dotted paths of an object's values, each with whether the value is empty (``null``,
    ``{}``); nested objects are walked, arrays are values."""
    found = []
    for key, value in record.items():
        path = prefix + _segment(key)
        if isinstance(value, dict) and value:
            found += leaves(value, path + ".")
        else:
            found.append((path, value is None or value == {}))
    return found


def key_paths(record: dict[str, Any]) -> list[str]:
    """Dotted paths of an object's values; nested objects are walked, arrays are values."""
    return [path for path, _ in leaves(record)]


class _Line(NamedTuple):
    number: int  # 1-based line number in the file
    text: str  # without its line ending


def _lines(handle: TextIO) -> Iterator[_Line]:
    """The file's non-blank lines: the physical records."""
    for number, line in enumerate(handle, start=1):
        if number == 1:
            line = line.removeprefix("\ufeff")
        if line.strip(_BLANK):
            yield _Line(number, line.removesuffix("\n"))


def _open(path: Path, dataset: FileDataset) -> TextIO:
    # Lines end at LF only (a bare CR is JSON whitespace or damage, never a record end);
    # undecodable bytes arrive as lone surrogates (see shape.ESCAPED_BYTES).
    return path.open(encoding=dataset.encoding, errors="surrogateescape", newline="\n")


def read_records(path: Path, dataset: FileDataset, stats: ReadStats) -> Iterator[Record]:
    """One row per non-blank line of one file; see the module docstring for unreadable ones."""
    fields = dataset.fields
    paths = [(field.path or "").split(".") for field in fields]
    record_shape = shape.Shape(fields, ".")
    with _open(path, dataset) as handle:
        for line in _lines(handle):
            stats.records += 1
            ordinal = stats.records
            parsed = _parse(line.text, dataset.encoding)
            found = [] if parsed.record is None else [_lookup(parsed.record, k) for k in paths]
            problem = (
                (parsed.reason, parsed.detail)
                if parsed.record is None
                else record_shape.judge(
                    (value is not _ABSENT for value in found), leaves(parsed.record), stats
                )
            )
            if problem:
                stats.unreadable += 1
                reason, detail = problem
                error = describe(reason, path, line=line.number, record=ordinal, detail=detail)
                yield Record.unreadable(len(fields), error, ordinal, line.number)
            else:
                values = tuple(None if v is _ABSENT else _text(v) for v in found)
                yield Record(values, None, ordinal, line.number)


# --- schema drift at the top of a file (the check before anything is read) --------------------


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
            record = _parse(line.text, dataset.encoding).record
            if record is not None:
                objects += 1
                paths.update(dict.fromkeys(key_paths(record)))
            if lines >= limit:
                break
    return JsonSample(lines, objects, list(paths))
