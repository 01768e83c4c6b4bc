"""HL7 v2 message archives (``format: hl7v2``): one row per message, or per ``row_segment``.

**Messages.** A physical record is a message. It starts at ``MSH`` followed by its field
separator (any character that is no letter, digit, space or control character) at the start
of the file (after a byte order mark), after any line terminator (CR, LF or CRLF) or right after
an MLLP start block (``0x0B``). Every CR, LF and CRLF ends a segment, whichever the file started
with, so a line starting ``MSH|`` always starts a new message and a changed terminator never
merges messages. ``is_message_start`` is that rule; the physical count of the extract stage
applies the same rule to the raw bytes. An MLLP end block (``0x1C``) and a batch envelope
segment (FHS/BHS/BTS/FTS, never a record) end the current message. Text outside any message
(before the first MSH, between MLLP frames, after an envelope segment) is *stray*: each
stretch becomes one unreadable row with no record ordinal, counted in ``ReadStats.stray``.
Lines of nothing but spaces and tabs are skipped everywhere. ``ReadStats.records`` counts
messages, ``ReadStats.unreadable`` the unreadable ones: rows with ``_read_error`` are
``unreadable + stray``.

**Rows.** ``Record.record`` is the message's ordinal in the file and ``Record.line`` the line
where its MSH is; the rows of one message (one per ``row_segment``) share both.
Field paths are ``SEG.field[.component[.subcomponent]]`` (``MSH.10``, ``PID.3.1``, ``OBX.5``):

* ``SEG`` is the row segment itself when it is the ``row_segment``; otherwise the nearest
  ``SEG`` before the row segment in the same message (so each OBX row carries its own OBR),
  otherwise the first ``SEG`` of the message.
* A component path reads the first repetition of the field. A path that stops above the
  leaves gives that part as written, separators kept: ``OBX.5`` is the whole field (all its
  repetitions), ``MSH.9`` is ``ORU^R01``. Escape sequences are decoded in every leaf:
  ``\\F\\ \\S\\ \\R\\ \\E\\ \\T\\`` (and ``\\P\\``) give the message's separators,
  ``\\Xhh..\\`` bytes in the dataset's encoding, ``\\.br\\ \\.sp\\ \\.ce\\`` line breaks,
  ``\\.sk\\`` spaces; highlighting ``\\H\\ \\N\\`` and ``\\.fi\\ \\.nf\\ \\.in\\ \\.ti\\``
  are layout and give nothing.
* A missing segment, field or component is NA; so is an empty one, since HL7 v2 does not tell
  an empty field from an absent one, and so is ``""`` (HL7's explicit null).

Each message is split with the separators its own MSH declares (HL7 allows that); a message
whose separators differ from the file's first message is counted in ``unknown_fields`` as
``separators:<MSH.1 and MSH.2>``.

**Unreadable messages** become one row with all values NA and ``_read_error`` written by
``records.describe`` (reason, file, line, record, and the segment or field path, never a value):

* ``invalid_hl7_message``: MSH.2 does not declare four or five distinct encoding characters; a
  line inside the message is not a segment (it may be the rest of a field cut by a stray line
  break: a cut value must not pass as a whole one); an MLLP start block inside a line; no
  message type in MSH.9. Stray text has this reason too.
* ``unexpected_message_type``: MSH.9 is not in ``message_types``.
* ``missing_row_segment``: no ``row_segment`` in a message of a declared type;
  ``missing_segment``: no segment carrying a key column.
* In a field the mapping reads (and MSH.9): ``invalid_escape`` (unknown, unterminated or
  undecodable escape sequence: character-set switches ``\\C..\\``/``\\M..\\`` and local
  ``\\Z..\\`` escapes cannot be decoded faithfully, so they are refused too),
  ``undecodable_bytes`` (bytes the dataset's encoding does not define: the file is decoded
  with ``surrogateescape`` so they are told apart from text instead of becoming U+FFFD) and
  ``control_character_in_field`` (NUL and other C0 controls except TAB, and DEL; MLLP block
  characters are framing). Fields the mapping does not read are not decoded.

**Drift over the whole file.** For every message of a declared type whose layout parses,
``unknown_fields`` counts per segment name the messages carrying a segment the mapping does
not read, and, as ``missing:<SEG>``, the messages lacking a segment it does read.

Why not python-hl7 any more (no longer a dependency): its unescape
drops unknown or unterminated escapes silently and logs the field's text, and it builds a
container tree for every segment. Splitting only the fields the mapping reads, with the
message's own separators, is cheaper and lets each bad field be named.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from etl.catalog import FileDataset, MappingError
from etl.extract.records import ReadStats, Record, describe

INVALID_MESSAGE = "invalid_hl7_message"
UNEXPECTED_TYPE = "unexpected_message_type"
MISSING_ROW_SEGMENT = "missing_row_segment"
MISSING_SEGMENT = "missing_segment"
INVALID_ESCAPE = "invalid_escape"
UNDECODABLE_BYTES = "undecodable_bytes"
CONTROL_CHARACTER = "control_character_in_field"

START_BLOCK, END_BLOCK = "\x0b", "\x1c"  # MLLP framing
_PATH = re.compile(r"([A-Z][A-Z0-9]{2})\.([1-9]\d*)(?:\.([1-9]\d*)(?:\.([1-9]\d*))?)?")
_FRAMING = re.compile("([\x0b\x1c])")
_ENVELOPE = {"FHS", "BHS", "BTS", "FTS"}
# In raw field text: C0 controls but TAB (CR and LF end lines; 0x0B and 0x1C are framing), DEL,
# and the lone surrogates surrogateescape makes of undecodable bytes.
_BAD_RAW = re.compile("[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")
# In text decoded from \X..\ escapes: line breaks written as escapes are text.
_BAD_DECODED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+")
_COUNT = re.compile(r"[+-]?\d{0,3}")  # at most 999 lines or spaces


def is_message_start(text: str) -> bool:
    """Whether text at a line start (or after an MLLP start block) starts a message."""
    return len(text) > 3 and text.startswith("MSH") and _is_separator(text[3])


def _is_separator(character: str) -> bool:
    return not character.isalnum() and character.isprintable() and not character.isspace()


class FieldPath(NamedTuple):
    segment: str
    field: int
    component: int | None
    subcomponent: int | None

    def __str__(self) -> str:
        numbers = (self.field, self.component, self.subcomponent)
        return ".".join([self.segment, *(str(n) for n in numbers if n is not None)])


def field_paths(dataset: FileDataset) -> list[FieldPath]:
    """The dataset's field paths, parsed; a malformed one is a mapping error naming the field."""
    paths = []
    for declared in dataset.fields:
        match = _PATH.fullmatch(declared.path or "")
        if match is None:
            raise MappingError(
                f"dataset file {dataset.file}: field '{declared.name}': path '{declared.path}' is "
                "not SEG.field[.component[.subcomponent]], e.g. PID.3.1"
            )
        segment, *numbers = match.groups()
        # _PATH requires the field number; only component and subcomponent are optional
        paths.append(FieldPath(segment, *(int(n) if n else None for n in numbers)))  # type: ignore[arg-type]
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


# --- from text to messages --------------------------------------------------------------------


@dataclass(slots=True)
class _Message:
    line: int  # where its MSH is
    segments: list[tuple[int, str]]  # (line, text), the MSH first
    problem: str | None = None  # framing that makes it unreadable


class _Stray(NamedTuple):
    line: int  # where the stray text starts


@dataclass
class _Held:
    """The message being read and the stray text seen since, until they are complete."""

    message: _Message | None = None
    stray: int | None = None  # the line where the stray text starts

    def flush(self) -> Iterator[_Message | _Stray]:
        """The message held, then the stray text held; neither is held after."""
        if self.message is not None:
            yield self.message
            self.message = None
        if self.stray is not None:
            yield _Stray(self.stray)
            self.stray = None


def _units(handle: TextIO) -> Iterator[_Message | _Stray]:
    """Messages and stretches of stray text, in file order."""
    held = _Held()
    for number, line in enumerate(handle, 1):
        body = line.rstrip("\r\n")  # newline="": at most one terminator, at the end
        if number == 1:
            body = body.removeprefix("\ufeff")
        pieces = _FRAMING.split(body) if START_BLOCK in body or END_BLOCK in body else (body,)
        may_start = True  # at the line start, or right after a start block
        had_text = False
        for piece in pieces:
            if piece in (START_BLOCK, END_BLOCK):
                if held.message is not None and piece == START_BLOCK and had_text:
                    held.message.problem = f"MLLP start block inside line {number}"
                yield from held.flush()
                may_start = piece == START_BLOCK
            elif piece:
                yield from _text(held, number, piece, may_start)
                may_start, had_text = False, True
    yield from held.flush()


def _text(held: _Held, number: int, piece: str, may_start: bool) -> Iterator[_Message | _Stray]:
    """A piece of text of line ``number`` (between framing blocks): a message's first segment,
    an envelope segment, a segment of the message held, or stray text."""
    if may_start and is_message_start(piece):
        yield from held.flush()
        held.message = _Message(number, [(number, piece)])
    elif may_start and _is_envelope(piece):
        yield from held.flush()
    elif not piece.strip(" \t"):
        pass  # a blank line, wherever it is, holds nothing to lose
    elif held.message is not None:
        held.message.segments.append((number, piece))
    elif held.stray is None:
        held.stray = number


def _is_envelope(text: str) -> bool:
    return text[:3] in _ENVELOPE and (len(text) == 3 or _is_separator(text[3]))


def _open(path: Path, dataset: FileDataset) -> TextIO:
    # newline="": lines end at CR, LF or CRLF and keep their ending. surrogateescape: a byte the
    # encoding does not define stays recognisable (U+DC80..U+DCFF), never a silent U+FFFD.
    return path.open(encoding=dataset.encoding, errors="surrogateescape", newline="")


# --- fields -----------------------------------------------------------------------------------


class _FieldError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason, self.detail = reason, detail


class _Delimiters(NamedTuple):
    field: str
    component: str
    repetition: str
    escape: str
    subcomponent: str
    truncation: str | None
    encoding_characters: str  # MSH.2 as written


def _delimiters(separator: str, encoding_characters: str) -> _Delimiters | None:
    """The separators MSH.1 and MSH.2 declare, or None if they are not usable."""
    characters = separator + encoding_characters
    if len(encoding_characters) not in (4, 5) or len(set(characters)) != len(characters):
        return None
    if not all(_is_separator(character) for character in encoding_characters):
        return None
    component, repetition, escape, subcomponent = tuple(encoding_characters[:4])
    truncation = encoding_characters[4:] or None
    return _Delimiters(
        separator, component, repetition, escape, subcomponent, truncation, encoding_characters
    )


@lru_cache(maxsize=64)
def _segment_pattern(separator: str) -> re.Pattern[str]:
    return re.compile(rf"[A-Z][A-Z0-9]{{2}}(?:{re.escape(separator)}|$)")


_FORMATTING = {".br": "\n", ".ce": "\n", ".fi": "", ".nf": "", "H": "", "N": ""}


def _unescape(text: str, delimiters: _Delimiters, encoding: str, where: str) -> str:
    """Text with its escape sequences decoded; an unknown or unterminated one is an error."""
    escape = delimiters.escape
    mapped = {
        "F": delimiters.field,
        "S": delimiters.component,
        "R": delimiters.repetition,
        "E": escape,
        "T": delimiters.subcomponent,
    }
    if delimiters.truncation:
        mapped["P"] = delimiters.truncation
    forbidden = set(delimiters[:5])
    parts: list[str] = []
    pending = bytearray()  # consecutive \X..\ bytes, decoded together (multi-byte characters)

    position = 0
    while (start := text.find(escape, position)) >= 0:
        end = text.find(escape, start + 1)
        sequence = text[start + 1 : end] if end >= 0 else ""
        if end < 0 or forbidden.intersection(sequence):
            raise _FieldError(INVALID_ESCAPE, f"unterminated escape sequence in {where}")
        if start > position:
            _decode_pending(pending, parts, encoding, where)
            parts.append(text[position:start])
        position = end + 1
        if sequence[:1] == "X" and _HEX.fullmatch(sequence, 1):
            pending += bytes.fromhex(sequence[1:])
            continue
        _decode_pending(pending, parts, encoding, where)
        parts.append(_escaped(sequence, mapped, where))
    _decode_pending(pending, parts, encoding, where)
    parts.append(text[position:])
    return "".join(parts)


def _decode_pending(pending: bytearray, parts: list[str], encoding: str, where: str) -> None:
    """The hex-escaped bytes pending, decoded together onto ``parts``; none are pending after."""
    if pending:
        try:
            decoded = pending.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            raise _FieldError(
                INVALID_ESCAPE, f"hex escape not valid {encoding} in {where}"
            ) from None
        if _BAD_DECODED.search(decoded):
            raise _FieldError(CONTROL_CHARACTER, f"control character in {where}")
        parts.append(decoded)
        pending.clear()


def _escaped(sequence: str, mapped: dict[str, str], where: str) -> str:
    """The text an escape sequence (other than a hex one) stands for; an error if unknown."""
    if sequence in mapped:
        return mapped[sequence]
    if sequence in _FORMATTING:
        return _FORMATTING[sequence]
    if sequence[:3] in (".sp", ".sk", ".in", ".ti") and _COUNT.fullmatch(sequence, 3):
        count = int(sequence[3:].lstrip("+") or "1") if sequence[3:4] != "-" else 0
        return {".sp": "\n", ".sk": " "}.get(sequence[:3], "") * count
    if sequence[:1] in ("C", "M", "Z") and len(sequence) > 1:
        raise _FieldError(INVALID_ESCAPE, f"character set or local escape sequence in {where}")
    raise _FieldError(INVALID_ESCAPE, f"unknown escape sequence in {where}")


def _child(text: str, separator: str, number: int) -> str | None:
    parts = text.split(separator, number)
    return parts[number - 1] if number <= len(parts) else None


def _value(
    fields: list[str] | None,
    path: FieldPath,
    delimiters: _Delimiters,
    encoding: str,
    line: int,
) -> str | None:
    """The text a path selects in one split segment, checked and decoded."""
    if fields is None:
        return None
    if path.segment == "MSH":
        if path.field <= 2:  # the separators themselves, as written
            return delimiters.field if path.field == 1 else delimiters.encoding_characters
        index = path.field - 1
    else:
        index = path.field
    if index >= len(fields):
        return None
    field_text = fields[index]
    text: str | None = field_text
    if path.component is not None:
        text = _child(
            field_text.split(delimiters.repetition, 1)[0], delimiters.component, path.component
        )
        if text is not None and path.subcomponent is not None:
            text = _child(text, delimiters.subcomponent, path.subcomponent)
    if not text or text == '""':
        return None
    bad = _BAD_RAW.search(text)
    if bad is not None:
        where = f"{path} (line {line})"
        if "\ud800" <= bad.group() <= "\udfff":
            raise _FieldError(UNDECODABLE_BYTES, f"undecodable bytes in {where}")
        raise _FieldError(CONTROL_CHARACTER, f"control character in {where}")
    if delimiters.escape in text:
        text = _unescape(text, delimiters, encoding, f"{path} (line {line})")
    return text or None


# --- from a message to rows -------------------------------------------------------------------


_MESSAGE_CODE = FieldPath("MSH", 9, 1, None)
_TRIGGER_EVENT = FieldPath("MSH", 9, 2, None)
_TYPE_NAME = re.compile(r"[A-Z0-9]{3}")  # what a message type looks like, safe to name


class _Spec:
    """What reading one dataset needs, worked out once."""

    def __init__(self, dataset: FileDataset) -> None:
        self.dataset = dataset
        self.paths = field_paths(dataset)
        self.wanted = declared_segments(dataset)
        self.header_fields = max(self.wanted.get("MSH", 0), _MESSAGE_CODE.field)
        self.row_segment = dataset.row_segment
        self.declared_types = [t.partition("^")[::2] for t in dataset.message_types]
        by_column = {f.name: path for f, path in zip(dataset.fields, self.paths, strict=True)}
        self.key_segments: dict[str, str] = {}
        for column in dataset.key:
            path = by_column.get(column)
            if path is not None and path.segment != "MSH":
                self.key_segments.setdefault(path.segment, column)

    def is_declared(self, code: str, event: str) -> bool:
        return any(
            code == declared_code and declared_event in ("", event)
            for declared_code, declared_event in self.declared_types
        )


class _Layout(NamedTuple):
    delimiters: _Delimiters
    header: list[str]  # MSH split (MSH.2 at index 1)
    names: list[str]  # segment names, the MSH first


def _layout(message: _Message, header_fields: int) -> _Layout | str:
    """The message's separators, header fields and segment names, or why it cannot be read."""
    if message.problem:
        return message.problem
    header = message.segments[0][1]
    separator = header[3]
    fields = header.split(separator, header_fields + 1)
    delimiters = _delimiters(separator, fields[1])
    if delimiters is None:
        return "MSH.2 does not declare four or five distinct encoding characters"
    is_segment = _segment_pattern(separator).match
    names = ["MSH"]
    for line, text in message.segments[1:]:
        if text.startswith("MSH") or not is_segment(text):
            return f"line {line} is not a segment"
        names.append(text[:3])
    return _Layout(delimiters, fields, names)


def _message_type(layout: _Layout, encoding: str, line: int) -> tuple[str, str]:
    """MSH.9's message code and trigger event ("" when absent)."""
    header, delimiters = layout.header, layout.delimiters
    code = _value(header, _MESSAGE_CODE, delimiters, encoding, line)
    event = _value(header, _TRIGGER_EVENT, delimiters, encoding, line)
    return code or "", event or ""


class _FileReader:
    """Reads the messages of one file; keeps what the file's statistics need across them."""

    def __init__(self, path: Path, spec: _Spec, stats: ReadStats) -> None:
        self.path, self.spec, self.stats = path, spec, stats
        self.width = len(spec.paths)
        self.encoding = spec.dataset.encoding
        self.first_separators: str | None = None

    def stray(self, unit: _Stray) -> Record:
        self.stats.stray += 1
        error = describe(
            INVALID_MESSAGE, self.path, line=unit.line, detail="text outside any message"
        )
        return Record.unreadable(self.width, error, None, unit.line)

    def message(self, message: _Message, ordinal: int) -> list[Record]:
        self.stats.records += 1
        try:
            return self._rows(message, ordinal)
        except _FieldError as error:
            return [self._unreadable(message, ordinal, error.reason, error.detail)]

    def _unreadable(self, message: _Message, ordinal: int, reason: str, detail: str) -> Record:
        self.stats.unreadable += 1
        error = describe(reason, self.path, line=message.line, record=ordinal, detail=detail)
        return Record.unreadable(self.width, error, ordinal, message.line)

    def _check_separators(self, delimiters: _Delimiters) -> None:
        """Separators other than the file's first message's are counted as drift."""
        separators = delimiters.field + delimiters.encoding_characters
        if self.first_separators is None:
            self.first_separators = separators
        elif separators != self.first_separators:
            self.stats.unknown_fields[f"separators:{separators}"] += 1

    def _check_type(self, layout: _Layout, message: _Message) -> None:
        """A message without a type, or of a type the dataset does not declare, is refused."""
        code, event = _message_type(layout, self.encoding, message.line)
        if not code:
            raise _FieldError(INVALID_MESSAGE, "no message type in MSH.9")
        if not self.spec.is_declared(code, event):
            # A shifted header could put any text in MSH.9: only a type-shaped one is named.
            is_type_shaped = _TYPE_NAME.fullmatch(code) and _TYPE_NAME.fullmatch(event or "ADT")
            named = code + (f"^{event}" if event else "") if is_type_shaped else "MSH.9"
            raise _FieldError(UNEXPECTED_TYPE, f"{named} is not a declared message type")

    def _positions(self, names: list[str]) -> dict[str, list[int]]:
        """Where each segment type is in the message; unknown and missing segments are counted,
        and a missing row or key segment is refused."""
        spec, stats = self.spec, self.stats
        positions: dict[str, list[int]] = {}
        for position, name in enumerate(names):
            positions.setdefault(name, []).append(position)
        for name in positions:
            if name not in spec.wanted and name != "MSH":
                stats.unknown_fields[name] += 1
        missing = [name for name in spec.wanted if name not in positions]
        for name in missing:
            stats.unknown_fields[f"missing:{name}"] += 1
        if spec.row_segment and spec.row_segment in missing:
            raise _FieldError(MISSING_ROW_SEGMENT, f"no {spec.row_segment} segment")
        for name in missing:
            if name in spec.key_segments:
                raise _FieldError(
                    MISSING_SEGMENT, f"no {name} segment (key {spec.key_segments[name]})"
                )
        return positions

    def _rows(self, message: _Message, ordinal: int) -> list[Record]:
        spec = self.spec
        layout = _layout(message, spec.header_fields)
        if isinstance(layout, str):
            raise _FieldError(INVALID_MESSAGE, layout)
        delimiters, header, names = layout
        self._check_separators(delimiters)
        self._check_type(layout, message)
        positions = self._positions(names)

        split: dict[int, list[str]] = {0: header}

        def fields_of(position: int) -> list[str]:
            if position not in split:
                text = message.segments[position][1]
                split[position] = text.split(delimiters.field, spec.wanted[text[:3]] + 1)
            return split[position]

        rows: list[int | None] = list(positions[spec.row_segment]) if spec.row_segment else [None]
        records = []
        for row in rows:
            values: list[Any] = []
            for path in spec.paths:
                position = _segment_for(positions, spec.row_segment, path.segment, row)
                if position is None:
                    values.append(None)
                    continue
                line = message.segments[position][0]
                values.append(_value(fields_of(position), path, delimiters, self.encoding, line))
            records.append(Record(tuple(values), None, ordinal, message.line))
        return records


def _segment_for(
    positions: dict[str, list[int]], row_segment: str | None, name: str, row: int | None
) -> int | None:
    """The segment ``name`` of a row: the row's own segment, else the nearest one of that type
    before it, else the first one in the message."""
    found = positions.get(name)
    if not found:
        return None
    if row is not None:
        if name == row_segment:
            return row
        before = bisect_left(found, row)
        if before:
            return found[before - 1]
    return found[0]


def read_records(path: Path, dataset: FileDataset, stats: ReadStats) -> Iterator[Record]:
    """Rows of every message of one file, in message order; ``stats`` is filled in as it goes."""
    reader = _FileReader(path, _Spec(dataset), stats)
    ordinal = 0
    with _open(path, dataset) as handle:
        for unit in _units(handle):
            if isinstance(unit, _Stray):
                yield reader.stray(unit)
            else:
                ordinal += 1
                yield from reader.message(unit, ordinal)


# --- schema drift -----------------------------------------------------------------------------


class ArchiveSample(NamedTuple):
    messages: int  # messages (and stretches of stray text) looked at
    message_types: list[str]  # types seen, in order of first appearance
    declared_messages: int  # messages of a declared type that parse
    segments: set[str]  # segment types in those messages


def sample(path: Path, dataset: FileDataset, limit: int) -> ArchiveSample:
    """What the first ``limit`` messages of an archive hold; reads no further.

    For the quick check before anything is read; the reader checks every message's layout.
    """
    spec = _Spec(dataset)
    messages, declared = 0, 0
    types: dict[str, None] = {}
    segments: set[str] = set()
    with _open(path, dataset) as handle:
        for unit in _units(handle):
            messages += 1
            layout = _layout(unit, spec.header_fields) if isinstance(unit, _Message) else None
            if isinstance(layout, _Layout):
                try:
                    code, event = _message_type(layout, spec.dataset.encoding, unit.line)
                except _FieldError:
                    code, event = "", ""
                types[f"{code}^{event}"] = None
                if code and spec.is_declared(code, event):
                    declared += 1
                    segments.update(layout.names)
            if messages >= limit:
                break
    return ArchiveSample(messages, list(types), declared, segments)
