"""HL7 v2 message archives (``format: hl7v2``): one row per message, or per ``row_segment``.

Parsing uses python-hl7 (PyPI ``hl7``) rather than hl7apy. Both are on PyPI and maintained;
python-hl7 is small, pure Python and without dependencies, and tolerant: it splits a message by
the separators its MSH declares and never checks it against a version's message structure.
Legacy archives hold messages that no HL7 version validates (local Z-segments, missing required
fields, odd MSH-12 versions); hl7apy either rejects those or, tolerant, still builds a full
typed tree from its version tables, which costs more and adds nothing to text extraction.
python-hl7 also decodes escape sequences (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``, ``\\Xhh\\``,
``\\.br\\``) with the separators each message declares.

The archive is streamed line by line. Segments end with ``\\r``; ``\\r\\n`` and ``\\n`` are
accepted too. In a file whose first segment ends with a bare ``\\r`` (the standard), a bare
``\\n`` belongs to the text of a field rather than ending the segment. Messages are framed by
MLLP (``\\x0b`` ... ``\\x1c\\r``) or simply follow one another, each starting at its ``MSH``
segment; batch envelopes (FHS/BHS/BTS/FTS) are skipped. The dataset's ``encoding`` decides how
bytes become text (MSH-18 is not trusted); undecodable bytes become U+FFFD.

Field paths are ``SEG.field[.component[.subcomponent]]`` (``MSH.10``, ``PID.3.1``, ``OBX.5``):

* ``SEG`` is the row segment itself when it is the ``row_segment``; otherwise the nearest
  ``SEG`` before the row segment in the same message (so each OBX row carries its own OBR),
  otherwise the first ``SEG`` of the message.
* A component path reads the first repetition of the field. A path that stops above the
  leaves gives that part as written, separators kept: ``OBX.5`` is the whole field (all its
  repetitions), ``MSH.9`` is ``ORU^R01``. Escape sequences are decoded in every leaf.
* A missing segment, field or component is NA; so is an empty one, since HL7 v2 does not tell
  an empty field from an absent one, and so is ``""`` (HL7's explicit null).

A message whose type is not in ``message_types`` becomes one row with ``_read_error`` set to
``unexpected_message_type``; a message that cannot be parsed (no usable MSH, a line that is not
a segment, text outside any message) becomes one row with ``invalid_hl7_message``; a message of
a declared type without any ``row_segment`` becomes one row with ``missing_row_segment``.
A line inside a message that is not a segment makes the whole message invalid: it may be the
rest of a field cut by a stray line break, and a cut value must not pass as a whole one.
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple, TextIO

import hl7
import hl7.util

from etl.catalog import FileDataset, MappingError
from etl.extract.records import ReadStats, Record

INVALID_MESSAGE = "invalid_hl7_message"
UNEXPECTED_TYPE = "unexpected_message_type"
MISSING_ROW_SEGMENT = "missing_row_segment"

_PATH = re.compile(r"([A-Z][A-Z0-9]{2})\.([1-9]\d*)(?:\.([1-9]\d*)(?:\.([1-9]\d*))?)?")
_SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{2}")
_FRAMING = re.compile("([\x0b\x1c])")  # MLLP start block, end block
_ENVELOPE = {"FHS", "BHS", "BTS", "FTS"}
_BOUNDARY = None  # in the segment stream: a message ends here (MLLP frame, envelope)


class _WithholdValues(logging.Filter):
    """python-hl7 logs the whole field when an escape sequence is unknown: patient text."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = "HL7 v2 escape sequence not understood (value withheld)", ()
        return True


hl7.util.logger.addFilter(_WithholdValues())


class FieldPath(NamedTuple):
    segment: str
    field: int
    component: int | None
    subcomponent: int | None


def field_paths(dataset: FileDataset) -> list[FieldPath]:
    """The dataset's field paths, parsed; a malformed one is a mapping error naming the field."""
    paths = []
    for field in dataset.fields:
        match = _PATH.fullmatch(field.path or "")
        if match is None:
            raise MappingError(
                f"dataset file {dataset.file}: field '{field.name}': path '{field.path}' is not "
                "SEG.field[.component[.subcomponent]], e.g. PID.3.1"
            )
        segment, *numbers = match.groups()
        paths.append(FieldPath(segment, *(int(n) if n else None for n in numbers)))
    return paths


def declared_segments(dataset: FileDataset) -> dict[str, int]:
    """Segment types the spec reads (its field paths' and the row segment), with the last
    field read in each."""
    last_field: dict[str, int] = {}
    for path in field_paths(dataset):
        last_field[path.segment] = max(last_field.get(path.segment, 0), path.field)
    if dataset.row_segment:
        last_field.setdefault(dataset.row_segment, 0)
    return last_field


# --- from bytes to messages -------------------------------------------------------------------


def _segments(handle: TextIO) -> Iterator[str | None]:
    """Segment texts in file order, and ``_BOUNDARY`` where an MLLP frame starts or ends."""
    bare_cr_ends_segments = None
    broken = ""  # a segment cut by a bare LF, in a file whose segments end with CR
    for number, line in enumerate(handle):
        if number == 0:
            line = line.removeprefix("\ufeff")
        if line.endswith("\r\n"):
            body, ending = line[:-2], "\r\n"
        elif line.endswith(("\r", "\n")):
            body, ending = line[:-1], line[-1]
        else:
            body, ending = line, ""
        if bare_cr_ends_segments is None and ending:
            bare_cr_ends_segments = ending == "\r"
        if bare_cr_ends_segments and ending == "\n":
            if broken or body.strip():  # else a blank line between messages
                broken += body + "\n"
            continue
        body, broken = broken + body, ""
        for piece in _FRAMING.split(body):
            if piece in ("\x0b", "\x1c"):
                yield _BOUNDARY
            elif piece.strip():
                yield piece.lstrip("\n")  # a segment starts with its name, never a line break
    if broken.strip():
        yield broken


def _messages(segments: Iterable[str | None]) -> Iterator[list[str] | None]:
    """Each message's segments; ``None`` for a stretch of text outside any message."""
    current: list[str] | None = None
    has_stray_text = False
    for segment in segments:
        starts_message = segment is not _BOUNDARY and segment.startswith("MSH")
        if segment is _BOUNDARY or starts_message or segment[:3] in _ENVELOPE:
            if current is not None:
                yield current
            elif has_stray_text:
                yield None
            current, has_stray_text = ([segment] if starts_message else None), False
        elif current is not None:
            current.append(segment)
        else:
            has_stray_text = True
    if current is not None:
        yield current
    elif has_stray_text:
        yield None


def _open(path: Path, dataset: FileDataset) -> TextIO:
    # newline="": lines split at CR, LF or CRLF and keep their ending, so it can be judged.
    return path.open(encoding=dataset.encoding, errors="replace", newline="")


# --- from a message to rows -------------------------------------------------------------------


def _is_segment_line(line: str, field_separator: str) -> bool:
    return bool(_SEGMENT_NAME.match(line)) and (len(line) == 3 or line[3] == field_separator)


def _parse(segments: list[str], wanted: dict[str, int] | None = None) -> hl7.Message | None:
    """The message, or ``None`` if it cannot be parsed.

    ``wanted`` maps the segment types that are read to the last field read in each: parsing is
    most of the cost, so other segments, and fields past those, are left out of the parse.
    """
    header = segments[0]
    separator = header[3] if len(header) > 3 else ""
    if len(header) < 8 or not _is_segment_line(header, separator):
        return None
    if not all(_is_segment_line(line, separator) for line in segments[1:]):
        return None
    if wanted is not None:
        segments = [header] + [
            separator.join(line.split(separator, wanted[line[:3]] + 1)[: wanted[line[:3]] + 1])
            for line in segments[1:]
            if line[:3] in wanted
        ]
    try:
        return hl7.parse("\r".join(segments))
    except Exception:  # the parser's failures are not all typed: any of them is a bad message
        return None


_MESSAGE_CODE = FieldPath("MSH", 9, 1, None)
_TRIGGER_EVENT = FieldPath("MSH", 9, 2, None)


def _message_type(message: hl7.Message) -> tuple[str, str]:
    header = message[0]
    return _value(header, _MESSAGE_CODE) or "", _value(header, _TRIGGER_EVENT) or ""


def _is_declared(code: str, event: str, dataset: FileDataset) -> bool:
    for declared in dataset.message_types:
        declared_code, _, declared_event = declared.partition("^")
        if declared_code == code and declared_event in ("", event):
            return True
    return False


def _text(segment: hl7.Segment, node) -> str:
    if isinstance(node, str):
        return hl7.util.unescape(segment, node)
    return node.separator.join(_text(segment, part) for part in node)


def _child(node, number: int):
    """The ``number``-th (1-based) part of a parsed node; a plain value is its own first part."""
    if isinstance(node, str):
        return node if number == 1 else None
    return node[number - 1] if number <= len(node) else None


def _value(segment: hl7.Segment | None, path: FieldPath) -> str | None:
    if segment is None or path.field >= len(segment):
        return None
    node = segment[path.field]
    if path.segment == "MSH" and path.field in (1, 2):  # the separators themselves
        return str(node)
    if path.component is not None:
        node = _child(_child(node, 1), path.component)
        if node is not None and path.subcomponent is not None:
            node = _child(node, path.subcomponent)
    if node is None:
        return None
    value = _text(segment, node)
    return None if value in ("", '""') else value


def _rows(message: hl7.Message, dataset: FileDataset, paths: list[FieldPath]) -> list[Record]:
    names = [str(segment[0]) for segment in message]
    positions: dict[str, list[int]] = {}
    for position, name in enumerate(names):
        positions.setdefault(name, []).append(position)

    def segment_for(name: str, row_position: int | None) -> hl7.Segment | None:
        found = positions.get(name)
        if not found:
            return None
        if row_position is not None:
            if name == dataset.row_segment:
                return message[row_position]
            before = bisect_left(found, row_position)
            if before:
                return message[found[before - 1]]
        return message[found[0]]

    if dataset.row_segment:
        row_positions: list[int | None] = list(positions.get(dataset.row_segment, []))
        if not row_positions:
            return [Record.unreadable(len(paths), MISSING_ROW_SEGMENT)]
    else:
        row_positions = [None]
    return [
        Record(tuple(_value(segment_for(p.segment, row), p) for p in paths))
        for row in row_positions
    ]


def _records_of(
    segments: list[str] | None,
    dataset: FileDataset,
    paths: list[FieldPath],
    wanted: dict[str, int],
) -> list[Record]:
    message = _parse(segments, wanted) if segments else None
    if message is None:
        return [Record.unreadable(len(paths), INVALID_MESSAGE)]
    code, event = _message_type(message)
    if not code:
        return [Record.unreadable(len(paths), INVALID_MESSAGE)]
    if not _is_declared(code, event, dataset):
        return [Record.unreadable(len(paths), UNEXPECTED_TYPE)]
    try:
        return _rows(message, dataset, paths)
    except Exception:  # e.g. a malformed escape sequence the library cannot decode
        return [Record.unreadable(len(paths), INVALID_MESSAGE)]


def read_records(path: Path, dataset: FileDataset, stats: ReadStats) -> Iterator[Record]:
    """Rows of every message of one file, in message order; stray text is counted apart."""
    paths = field_paths(dataset)
    wanted = declared_segments(dataset)
    with _open(path, dataset) as handle:
        for segments in _messages(_segments(handle)):
            if segments is None:
                stats.stray += 1
                ordinal = None
            else:
                stats.records += 1
                ordinal = stats.records
            rows = _records_of(segments, dataset, paths, wanted)
            if ordinal is not None and any(row.read_error for row in rows):
                stats.unreadable += 1
            for row in rows:
                yield row._replace(record=ordinal)


# --- schema drift -----------------------------------------------------------------------------


class ArchiveSample(NamedTuple):
    messages: int  # messages (and stretches of stray text) looked at
    message_types: list[str]  # types seen, in order of first appearance
    declared_messages: int  # messages of a declared type that parse
    segments: set[str]  # segment types in those messages


def sample(path: Path, dataset: FileDataset, limit: int) -> ArchiveSample:
    """What the first ``limit`` messages of an archive hold; reads no further."""
    messages, declared = 0, 0
    types: dict[str, None] = {}
    segments: set[str] = set()
    with _open(path, dataset) as handle:
        for lines in _messages(_segments(handle)):
            messages += 1
            message = _parse(lines) if lines else None
            if message is not None:
                code, event = _message_type(message)
                types[f"{code}^{event}"] = None
                if code and _is_declared(code, event, dataset):
                    declared += 1
                    segments.update(str(segment[0]) for segment in message)
            if messages >= limit:
                break
    return ArchiveSample(messages, list(types), declared, segments)
