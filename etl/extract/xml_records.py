"""XML exports (``format: xml``): one row per record element at ``record_path``.

``record_path`` is the path of the repeated record element from the root (``Export/Undersokning``).
Field paths are relative to the record: elements (``Datum``, ``Patient/Pnr``) or attributes
(``@id``, ``Patient/@typ``); the value is the element's text (with that of any child elements)
or the attribute's value, stripped. A missing element or attribute is NA; the first match wins.
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
parser is fed text), undecodable bytes and characters XML forbids (control characters) become
U+FFFD, so the row is quarantined as undecodable rather than failing the file. Memory holds
one read block and the record being cut out, never the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, TextIO
from xml.etree.ElementTree import Element, ParseError, fromstring

from etl.catalog import FileDataset
from etl.extract.records import BrokenFileError, ReadStats, Record

INVALID_RECORD = "invalid_xml_record"

READ_BLOCK_CHARACTERS = 1 << 20
MAX_MARKUP_CHARACTERS = 1 << 20  # one tag, comment or processing instruction outside records
MAX_RECORD_CHARACTERS = 64 << 20  # a record this large has lost its end tag

_NAME = r"[^\s/>!?\"'=<]+"
_START_TAG = re.compile(rf"<({_NAME})((?:\s+[^\s=/>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*)\s*(/?)>")
_END_TAG = re.compile(rf"</({_NAME})\s*>")
_SKIPPED = re.compile(r"<!--.*?-->|<\?.*?\?>|<!\[CDATA\[.*?\]\]>", re.DOTALL)
_NAMESPACE_DECLARATION = re.compile(r"""(xmlns(?::[^\s=]+)?)\s*=\s*("[^"]*"|'[^']*')""")
_NOT_XML_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class _Open(NamedTuple):
    name: str  # as written, with any prefix
    local_name: str
    namespaces: dict[str, str]  # xmlns declarations on this element


def _local(name: str) -> str:
    return name.rpartition("}")[2].rpartition(":")[2]


class _Scanner:
    """Walks one file's markup outside the records and cuts out each record's text."""

    def __init__(self, handle: TextIO, path: Path, record_path: str) -> None:
        self.handle, self.path = handle, path
        self.record_parts = [_local(part) for part in record_path.strip("/").split("/")]
        self.buffer = ""
        self.lines_before = 0  # newlines in the text already dropped from the buffer
        self.is_at_end = False
        self.is_first_block = True
        self.open: list[_Open] = []
        self.element_paths: dict[str, None] = {}  # paths seen down to the record's depth

    def line_at(self, index: int) -> int:
        return self.lines_before + self.buffer.count("\n", 0, index) + 1

    def _read_more(self, keep_from: int) -> bool:
        """Drop the buffer before ``keep_from`` (which becomes 0) and read a block."""
        self.lines_before += self.buffer.count("\n", 0, keep_from)
        self.buffer = self.buffer[keep_from:]
        if self.is_at_end:
            return False
        block = self.handle.read(READ_BLOCK_CHARACTERS)
        if self.is_first_block:
            block, self.is_first_block = block.removeprefix("\ufeff"), False
        if not block:
            self.is_at_end = True
            return False
        self.buffer += _NOT_XML_CHARACTER.sub("\ufffd", block)
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

    def records(self) -> Iterator[str | None]:
        """Each record's text; ``None`` for a record whose end tag is missing."""
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
                if not self.open or self.open[-1].name != match.group(1):
                    expected = f"</{self.open[-1].name}>" if self.open else "nothing"
                    raise self._broken(start, f"</{match.group(1)}> where {expected} was due")
                self.open.pop()
            elif kind == "start":
                name, attributes, self_closing = match.groups()
                parts = [element.local_name for element in self.open] + [_local(name)]
                if len(parts) <= len(self.record_parts):
                    self.element_paths.setdefault("/".join(parts), None)
                if parts == self.record_parts:
                    if self_closing:
                        yield match.group(0)
                    else:
                        text, position = self._cut_record(start, name, position)
                        yield text
                elif not self_closing:
                    namespaces = dict(_NAMESPACE_DECLARATION.findall(attributes))
                    self.open.append(_Open(name, _local(name), namespaces))
        if self.open:
            raise self._broken(len(self.buffer), f"the file ends inside <{self.open[-1].name}>")

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

    def parse(self, text: str | None) -> Element | None:
        """The record as an element with namespaces removed, or ``None`` if it does not parse."""
        if text is None:
            return None
        namespaces: dict[str, str] = {}
        for element in self.open:
            namespaces.update(element.namespaces)
        try:
            if namespaces:
                declarations = " ".join(f"{key}={value}" for key, value in namespaces.items())
                record = fromstring(f"<r {declarations}>{text}</r>")[0]
            else:
                record = fromstring(text)
        except ParseError:
            return None
        if namespaces or "xmlns" in text:  # else no name can carry a namespace
            for element in record.iter():
                element.tag = _local(element.tag)
                if any("}" in key for key in element.attrib):
                    element.attrib = {_local(k): v for k, v in element.attrib.items()}
        return record


def _open(path: Path, dataset: FileDataset) -> TextIO:
    return path.open(encoding=dataset.encoding, errors="replace")


def _split_path(path: str) -> tuple[str, str]:
    """``Patient/@typ`` into the element path ``Patient`` and the attribute ``typ``."""
    element_path, _, attribute = path.partition("@")
    return element_path.strip("/"), attribute


def _value(record: Element, element_path: str, attribute: str) -> str | None:
    target = record.find(element_path) if element_path else record
    if target is None:
        return None
    if attribute:
        value = target.get(attribute)
        return None if value is None else value.strip()
    if not len(target):
        return (target.text or "").strip()
    return "".join(target.itertext()).strip()


def read_records(path: Path, dataset: FileDataset, stats: ReadStats) -> Iterator[Record]:
    """One row per record element of one file."""
    paths = [_split_path(field.path or "") for field in dataset.fields]
    with _open(path, dataset) as handle:
        scanner = _Scanner(handle, path, dataset.record_path or "")
        for text in scanner.records():
            stats.records += 1
            record = scanner.parse(text)
            if record is None:
                stats.unreadable += 1
                yield Record.unreadable(len(paths), INVALID_RECORD, stats.records)
            else:
                yield Record(tuple(_value(record, *p) for p in paths), None, stats.records)


# --- schema drift -----------------------------------------------------------------------------


def record_paths(record: Element) -> list[str]:
    """Leaf element paths and attribute paths of a record, in document order."""
    found = [f"@{name}" for name in record.attrib]

    def walk(element: Element, prefix: str) -> None:
        for child in element:
            path = prefix + child.tag
            found.extend(f"{path}/@{name}" for name in child.attrib)
            if len(child):
                walk(child, path + "/")
            elif (child.text or "").strip() or not child.attrib:
                found.append(path)  # an empty element holding attributes only is not a field

    walk(record, "")
    return list(dict.fromkeys(found))


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
        for text in scanner.records():
            records += 1
            record = scanner.parse(text)
            if record is not None:
                paths.update(dict.fromkeys(record_paths(record)))
            if records >= limit:
                break
    return XmlSample(records, list(paths), list(scanner.element_paths))
