"""XML exports (``format: xml``): one row per record element at ``record_path``.

``record_path`` is the path of the repeated record element from the root (``Export/Undersokning``).
Field paths are relative to the record: elements (``Datum``, ``Patient/Pnr``) or attributes
(``@id``, ``Patient/@typ``); the value is the element's text (with that of any child elements)
or the attribute's value, stripped. An absent optional element or attribute is NA.
Names are compared without namespace prefixes.

Why records are cut out of the text before they are parsed: an XML parser (expat, behind
ElementTree, iterparse and defusedxml alike) stops for good at the first well-formedness error,
so one unescaped ``&`` in one free-text field would cost the whole export. The file is streamed
through a small scanner that follows the markup outside the records (tags, comments,
processing instructions) and cuts out each record's text, start tag to end tag; each record is
then parsed on its own. A record that does not parse, or whose end tag is missing (the next
record starts first), becomes one row with ``_read_error = invalid_xml_record`` and the file
carries on. What cannot be isolated stops the file with ``BrokenFileError`` naming the file
and line: tags that do not match outside the records, a file that ends inside an element.

Entity expansion ("billion laughs", external entities): a DTD is refused outright, also a
``BrokenFileError``. That is enough: entities can only be declared in a DTD, a DTD may only
stand before the root element, and every record is parsed as a document of its own starting
at its start tag, so no declaration can reach the parser (expat rejects a ``<!DOCTYPE`` inside
a record as not well-formed). defusedxml would guard the same door with a parser written in
Python; the standard library's C parser is used instead.

Limits, for record elements only: they must not contain an element of their own name, nor
their own end tag inside a comment or CDATA section.

Bytes are decoded with the dataset's ``encoding`` (the prolog's ``encoding`` is ignored: the
parser is fed text). Memory holds one read block and the record being cut out, never the file.

A physical record is an element at ``record_path``; ``Record.line`` is the line of its start
tag. A record that cannot be read is one unreadable row (``_read_error``, all values NA)
naming the file, line and record, and the file carries on:

- ``invalid_xml_record``: not well-formed, or its end tag is missing;
- ``undecodable_bytes``: bytes the encoding cannot decode (the field path named);
- ``control_character_in_field``: a control character XML forbids (NUL...) or a C1 control;
- ``nesting_too_deep``: more than ``shape.MAX_NESTING`` levels of elements;
- ``duplicate_element``: a declared field's element more than once (the first would win);
- ``unexpected_field`` / ``missing_field``: the record's paths do not match the declared ones
  (etl/extract/shape.py).

An element that stands where records stand (a sibling of the records) under another name is
not silently skipped: it is one unreadable row outside any record (``unexpected_element``,
``ReadStats.stray``), so a record element renamed mid-file is seen.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, TextIO
from xml.etree.ElementTree import Element, ParseError, fromstring
from xml.parsers.expat import ErrorString

from etl.catalog import FileDataset, SourceField
from etl.extract import shape
from etl.extract.records import BrokenFileError, ReadStats, Record, describe

INVALID_RECORD = "invalid_xml_record"
DUPLICATE_ELEMENT = "duplicate_element"
UNEXPECTED_ELEMENT = "unexpected_element"

READ_BLOCK_CHARACTERS = 1 << 20
MAX_MARKUP_CHARACTERS = 1 << 20  # one tag, comment or processing instruction outside records
MAX_RECORD_CHARACTERS = 64 << 20  # a record this large has lost its end tag

_NAME = r"[^\s/>!?\"'=<]+"
_START_TAG = re.compile(rf"<({_NAME})((?:\s+[^\s=/>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*)\s*(/?)>")
_END_TAG = re.compile(rf"</({_NAME})\s*>")
_SKIPPED = re.compile(r"<!--.*?-->|<\?.*?\?>|<!\[CDATA\[.*?\]\]>", re.DOTALL)
_NAMESPACE_DECLARATION = re.compile(r"""(xmlns(?::[^\s=]+)?)\s*=\s*("[^"]*"|'[^']*')""")

# Stand-ins for characters XML cannot carry, so that the record still parses and the field
# holding them can be named: noncharacters, which no name may contain.
_CONTROL_MARK = "\ufdd0"
_BYTES_MARK = "\ufdd1"


class _Open(NamedTuple):
    name: str  # as written, with any prefix
    local_name: str
    namespaces: dict[str, str]  # xmlns declarations on this element


class _Cut(NamedTuple):
    """An element cut out of the file: a record, or a stray sibling of the records."""

    text: str | None  # None: the end tag is missing (the next one starts first)
    line: int  # line of the start tag
    is_record: bool


def _local(name: str) -> str:
    return name.rpartition("}")[2].rpartition(":")[2]


class _Scanner:
    """Walks one file's markup outside the records and cuts out each record's text."""

    def __init__(self, handle: TextIO, path: Path, record_path: str) -> None:
        self.handle, self.path = handle, path
        self.record_parts = [_local(part) for part in record_path.strip("/").split("/")]
        self.buffer = ""
        self.lines_before = 0  # newlines in the text already dropped from the buffer
        # Newlines in buffer[:counted_to]: records are met in order, so each line of the
        # buffer is counted once, not once per record.
        self.counted_to = 0
        self.lines_counted = 0
        self.is_at_end = False
        self.is_first_block = True
        self.open: list[_Open] = []
        self.element_paths: dict[str, None] = {}  # paths seen down to the record's depth

    def line_at(self, index: int) -> int:
        if index < self.counted_to:
            return self.lines_before + self.buffer.count("\n", 0, index) + 1
        self.lines_counted += self.buffer.count("\n", self.counted_to, index)
        self.counted_to = index
        return self.lines_before + self.lines_counted + 1

    def _read_more(self, keep_from: int) -> bool:
        """Drop the buffer before ``keep_from`` (which becomes 0) and read a block."""
        dropped = self.buffer.count("\n", 0, keep_from)
        self.lines_before += dropped
        if self.counted_to >= keep_from:
            self.counted_to -= keep_from
            self.lines_counted -= dropped
        else:
            self.counted_to = self.lines_counted = 0
        self.buffer = self.buffer[keep_from:]
        if self.is_at_end:
            return False
        block = self.handle.read(READ_BLOCK_CHARACTERS)
        if self.is_first_block:
            block, self.is_first_block = block.removeprefix("\ufeff"), False
        if not block:
            self.is_at_end = True
            return False
        self.buffer += block
        return True

    def _broken(self, index: int, problem: str) -> BrokenFileError:
        return BrokenFileError(
            f"{self.path}: line {self.line_at(index)}: {problem}; the export cannot be read past "
            "this point (a broken export, not a bad record). Ask for a new export."
        )

    def _markup_at(self, start: int) -> tuple[int, str, re.Match | None]:
        """The markup construct starting at ``start`` (reading on until it is complete)."""
        while True:
            if self.buffer.startswith("<!DOCTYPE", start):
                return start, "doctype", None
            for kind, pattern in (("skip", _SKIPPED), ("end", _END_TAG), ("start", _START_TAG)):
                match = pattern.match(self.buffer, start)
                if match:
                    return start, kind, match
            if len(self.buffer) - start > MAX_MARKUP_CHARACTERS or not self._read_more(start):
                return start, "malformed", None
            start = 0

    def records(self) -> Iterator[_Cut]:
        """Each record's text, and each stray element standing where records stand."""
        position = 0
        while True:
            start = self.buffer.find("<", position)
            if start < 0:
                if not self._read_more(len(self.buffer)):
                    break
                position = 0
                continue
            start, kind, match = self._markup_at(start)
            if kind == "doctype":
                raise self._broken(start, "a DTD (<!DOCTYPE>) is refused: it can declare entities")
            if kind == "malformed":
                raise self._broken(start, "malformed markup outside any record")
            assert match is not None
            position = match.end()
            if kind == "end":
                self._close(start, match)
            elif kind == "start":
                cut, position = self._start_tag(start, match, position)
                if cut is not None:
                    yield cut
        if self.open:
            raise self._broken(len(self.buffer), f"the file ends inside <{self.open[-1].name}>")

    def _close(self, start: int, match: re.Match[str]) -> None:
        """An end tag: it closes the element open last, or the file is broken."""
        if not self.open or self.open[-1].name != match.group(1):
            expected = f"</{self.open[-1].name}>" if self.open else "nothing"
            raise self._broken(start, f"</{match.group(1)}> where {expected} was due")
        self.open.pop()

    def _start_tag(
        self, start: int, match: re.Match[str], position: int
    ) -> tuple[_Cut | None, int]:
        """A start tag: a record (or a stray element where records stand) is cut out whole;
        any other element is opened. Returns the cut, if any, and where to go on scanning."""
        name, attributes, self_closing = match.groups()
        parts = [element.local_name for element in self.open] + [_local(name)]
        if len(parts) <= len(self.record_parts):
            self.element_paths.setdefault("/".join(parts), None)
        is_record = parts == self.record_parts
        is_stray = (
            not is_record
            and len(parts) == len(self.record_parts)
            and parts[:-1] == self.record_parts[:-1]
        )
        if is_record or is_stray:
            line = self.line_at(start)
            if self_closing:
                return _Cut(match.group(0), line, is_record), position
            text, position = self._cut_record(start, name, position)
            return _Cut(text, line, is_record), position
        if not self_closing:
            namespaces = dict(_NAMESPACE_DECLARATION.findall(attributes))
            self.open.append(_Open(name, _local(name), namespaces))
        return None, position

    def _cut_record(self, start: int, name: str, search_from: int) -> tuple[str | None, int]:
        """The record's text from ``start`` to its end tag; where to go on scanning."""
        tag = re.compile(rf"<(/?){re.escape(name)}(?=[\s/>])")
        while True:
            match = tag.search(self.buffer, search_from)
            if match and not match.group(1):  # the next record starts: this one lost its end tag
                return None, match.start()
            if match:
                close = self.buffer.find(">", match.end())
                if close >= 0:
                    return self.buffer[start : close + 1], close + 1
                resume = match.start()
            else:  # look again from just before the end: a tag may straddle two blocks
                resume = max(len(self.buffer) - len(name) - 2, search_from)
            if len(self.buffer) - start > MAX_RECORD_CHARACTERS:
                raise self._broken(start, f"a <{name}> record larger than 64 MiB (no end tag?)")
            search_from = resume - start
            if not self._read_more(start):
                line = self.line_at(0)  # the record's first line: the buffer now starts there
                raise self._broken(
                    len(self.buffer), f"the file ends inside the <{name}> record of line {line}"
                )
            start = 0

    def parse(self, text: str) -> Element:
        """The record as an element with namespaces removed; ``ParseError`` if it does not
        parse (positions relative to the record's first line)."""
        namespaces: dict[str, str] = {}
        for element in self.open:
            namespaces.update(element.namespaces)
        if namespaces:
            declarations = " ".join(f"{key}={value}" for key, value in namespaces.items())
            record = fromstring(f"<r {declarations}>{text}</r>")[0]
        else:
            record = fromstring(text)
        if namespaces or "xmlns" in text:  # else no name can carry a namespace
            for node in record.iter():
                node.tag = _local(node.tag)
                if any("}" in key for key in node.attrib):
                    node.attrib = {_local(k): v for k, v in node.attrib.items()}
        return record


def _open(path: Path, dataset: FileDataset) -> TextIO:
    # Undecodable bytes arrive as lone surrogates (see shape.ESCAPED_BYTES); line ends are
    # normalised as an XML parser does, so line numbers are the parser's.
    return path.open(encoding=dataset.encoding, errors="surrogateescape")


def _split_path(path: str) -> tuple[str, str]:
    """``Patient/@typ`` into the element path ``Patient`` and the attribute ``typ``."""
    element_path, _, attribute = path.partition("@")
    return element_path.strip("/"), attribute


def _value(target: Element | None, attribute: str) -> str | None:
    """The value of a field in the element its path leads to (``None``: no such element)."""
    if target is None:
        return None
    if attribute:
        value = target.get(attribute)
        return None if value is None else value.strip()
    if not len(target):
        return (target.text or "").strip()
    return "".join(target.itertext()).strip()


def _depth(record: Element) -> int:
    """Levels of elements in the record (itself 1), counted without recursion."""
    deepest, stack = 0, [(record, 1)]
    while stack:
        element, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth <= shape.MAX_NESTING:
            stack.extend((child, depth + 1) for child in element)
    return deepest


def _texts(record: Element) -> Iterator[tuple[str, str]]:
    """Every text of a record (element text, text after a child, attribute value) with the
    path it belongs to. Depth is bounded by the caller."""

    def walk(element: Element, path: str) -> Iterator[tuple[str, str]]:
        prefix = f"{path}/" if path else ""
        yield path or "the record element", element.text or ""
        for name, value in element.attrib.items():
            yield f"{prefix}@{name}", value
        for child in element:
            yield from walk(child, prefix + child.tag)
            yield path or "the record element", child.tail or ""

    return walk(record, "")


def leaves(record: Element) -> list[tuple[str, bool]]:
    """Leaf element paths and attribute paths of a record, in document order, each with
    whether it is empty. An empty element holding attributes only is not a field."""
    found = [(f"@{name}", False) for name in record.attrib]

    def walk(element: Element, prefix: str) -> None:
        for child in element:
            path = prefix + child.tag
            attributes = child.attrib
            for name in attributes:
                found.append((f"{path}/@{name}", False))
            if len(child):
                walk(child, path + "/")
                continue
            is_empty = not (child.text and child.text.strip())
            if not (is_empty and attributes):
                found.append((path, is_empty))

    walk(record, "")
    return found


def record_paths(record: Element) -> list[str]:
    """Leaf element paths and attribute paths of a record, in document order."""
    return list(dict.fromkeys(path for path, _ in leaves(record)))


class _Reader:
    """Turns the cut-out records of one file into rows."""

    def __init__(self, path: Path, dataset: FileDataset, scanner: _Scanner) -> None:
        self.path, self.dataset, self.scanner = path, dataset, scanner
        self.fields: list[SourceField] = dataset.fields
        self.paths = [_split_path(field.path or "") for field in self.fields]
        self.shape = shape.Shape(self.fields, "/")

    def row(self, cut: _Cut, stats: ReadStats) -> Record:
        ordinal = stats.records if cut.is_record else None
        if cut.is_record:
            record, problem = self.parse(cut)
        else:
            record, where = None, self.scanner.record_parts[-1]
            problem = UNEXPECTED_ELEMENT, f"another element where <{where}> records stand"
        if record is not None:
            # Each field's elements, found once: for doubles, presence and the value.
            found = [record.findall(path) if path else [record] for path, _ in self.paths]
            problem = self._doubled(found) or self.shape.judge(
                (
                    bool(elements) and (not attribute or attribute in elements[0].attrib)
                    for elements, (_, attribute) in zip(found, self.paths, strict=True)
                ),
                leaves(record),
                stats,
            )
            if problem is None:
                values = tuple(
                    _value(elements[0] if elements else None, attribute)
                    for elements, (_, attribute) in zip(found, self.paths, strict=True)
                )
                return Record(values, None, ordinal, cut.line)
        reason, detail = problem or (INVALID_RECORD, "")
        error = describe(reason, self.path, line=cut.line, record=ordinal, detail=detail)
        return Record.unreadable(len(self.fields), error, ordinal, cut.line)

    def _doubled(self, found: list[list[Element]]) -> tuple[str, str] | None:
        """A declared field's element more than once: which one would win is a guess."""
        for field, elements, (path, _) in zip(self.fields, found, self.paths, strict=True):
            if len(elements) > 1:
                detail = f"{shape.shown(path)} more than once (field {field.name})"
                return DUPLICATE_ELEMENT, detail
        return None

    def parse(self, cut: _Cut) -> tuple[Element | None, tuple[str, str] | None]:
        """The record's element, or why it cannot be read whatever its fields."""
        if cut.text is None:
            return None, (INVALID_RECORD, "no end tag before the next record starts")
        text = cut.text
        # Marks already in the source cannot be told from ours: then no field is named.
        can_name = _CONTROL_MARK not in text and _BYTES_MARK not in text
        undecodable = shape.ESCAPED_BYTES.search(text) is not None
        control = shape.CONTROL_CHARACTERS.search(text) is not None
        if undecodable:
            text = shape.ESCAPED_BYTES.sub(_BYTES_MARK, text)
        if control:
            text = shape.CONTROL_CHARACTERS.sub(_CONTROL_MARK, text)
        try:
            record = self.scanner.parse(text)
        except ParseError as error:
            line = cut.line + error.position[0] - 1
            if undecodable:
                return None, (shape.UNDECODABLE_BYTES, self._bytes(f"markup on line {line}"))
            if control:
                return None, (
                    shape.CONTROL_CHARACTER,
                    f"a control character in markup, line {line}",
                )
            return None, (INVALID_RECORD, f"{ErrorString(error.code)} on line {line}")
        if text.count("<") > shape.MAX_NESTING and _depth(record) > shape.MAX_NESTING:
            return None, (shape.NESTING_TOO_DEEP, f"over {shape.MAX_NESTING} levels of elements")
        if undecodable or control:
            mark = _BYTES_MARK if undecodable else _CONTROL_MARK
            found = (path for path, value in _texts(record) if mark in value)
            where = shape.shown(next(found, "the record")) if can_name else "the record"
            if undecodable:
                return None, (shape.UNDECODABLE_BYTES, self._bytes(where))
            return None, (shape.CONTROL_CHARACTER, f"a control character in {where}")
        return record, None

    def _bytes(self, where: str) -> str:
        return f"bytes not valid {self.dataset.encoding} in {where}"


def read_records(path: Path, dataset: FileDataset, stats: ReadStats) -> Iterator[Record]:
    """One row per record element of one file (and per stray element where records stand)."""
    with _open(path, dataset) as handle:
        scanner = _Scanner(handle, path, dataset.record_path or "")
        reader = _Reader(path, dataset, scanner)
        for cut in scanner.records():
            if cut.is_record:
                stats.records += 1
            else:
                stats.stray += 1
            row = reader.row(cut, stats)
            if row.read_error is not None:
                stats.unreadable += cut.is_record
            yield row


# --- schema drift at the top of a file (the check before anything is read) --------------------


class XmlSample(NamedTuple):
    records: int  # records looked at, readable or not
    paths: list[str]  # element and attribute paths in the readable ones
    element_paths: list[str]  # element paths seen down to the record's depth


def sample(path: Path, dataset: FileDataset, limit: int) -> XmlSample:
    """What the first ``limit`` records hold; reads on only until a record is found."""
    records = 0
    paths: dict[str, None] = {}
    with _open(path, dataset) as handle:
        scanner = _Scanner(handle, path, dataset.record_path or "")
        reader = _Reader(path, dataset, scanner)
        for cut in scanner.records():
            if not cut.is_record:
                continue
            records += 1
            record, _ = reader.parse(cut)
            if record is not None:
                paths.update(dict.fromkeys(record_paths(record)))
            if records >= limit:
                break
    return XmlSample(records, list(paths), list(scanner.element_paths))
