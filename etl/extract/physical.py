"""The physical count: how many records a source holds, counted without its reader.

The extract stage proves every source record was read by counting them twice, by methods that
share no code: the format's reader (which fills ``ReadStats.records``) and this module, which
looks only at raw bytes in blocks of ``BLOCK_BYTES`` (bounded memory, no per-character Python
loops) or, for a table, asks the database for ``COUNT(*)``. When the two disagree the batch
stops (``landing.PhysicalCountError``). Nothing here imports a reader or ``records``.

What is one physical record, per format:

* ``delimited``: a record terminator outside double quotes, minus the header line. The
  terminator is the file's own, decided by its first line ending: ``CRLF`` or ``LF``; any other
  CR or LF is field content (the reader judges it). Quotes count by parity (an escaped ``""``
  adds two, so it changes nothing); an unterminated quote makes the rest of the file one record.
  A last record without terminator counts; so does an empty line (it is not a valid record, and
  the reader must say so rather than skip it).
* ``fixed_width``: record terminators as above, without quotes; no header.
* ``hl7v2``: ``MSH`` followed by a field separator (any byte but a letter, digit, CR, LF or an
  MLLP frame byte) at the start of the file or right after CR, LF or ``0x0B`` (an MLLP start
  block). Batch envelope segments (FHS, BHS, BTS, FTS) are not messages and do not count;
  neither does a bare ``MSH`` that ends the file (a cut file: the counts differ and it stops).
* ``xml``: start tags of the record element (the last step of ``record_path``, with or without a
  namespace prefix): ``<Name`` followed by whitespace, ``/`` or ``>``, outside comments and
  CDATA sections. Limits: the scan does not know depth, so an element of the same name at
  another depth counts too (the counts then differ and the batch stops: it fails safe), and a
  ``<Name`` inside a processing instruction or a DTD counts (the reader refuses DTDs).
* ``jsonl``: lines (ended by LF, the last one maybe not) holding anything but JSON whitespace.
* SQL: ``SELECT COUNT(*)`` on the table (``count_table``), in the caller's transaction.

Every format is read as bytes: the dataset's encoding must write ASCII as ASCII (every legacy
8-bit code page and UTF-8 do; UTF-16 does not and is refused). A UTF-8 byte order mark at the
start of a UTF-8 file is not content.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import sqlalchemy as sa

from etl.catalog import FileDataset, FileFormat

BLOCK_BYTES = 1 << 20
UTF8_BOM = codecs.BOM_UTF8
_QUOTE, _CR, _LF = ord('"'), ord("\r"), ord("\n")
# How far back a tag or an opening comment may straddle two blocks.
_XML_OVERLAP_BYTES = 1024


class PhysicalCount(NamedTuple):
    bytes: int
    records: int
    sha256: str


class _Blocks:
    """A file's blocks, hashed and measured on the way; a UTF-8 BOM is dropped from the first."""

    def __init__(self, path: Path, dataset: FileDataset) -> None:
        self.path = path
        self.digest = hashlib.sha256()
        self.bytes = 0
        self.is_utf8 = codecs.lookup(dataset.encoding).name in ("utf-8", "utf-8-sig")

    def __iter__(self) -> Iterator[bytes]:
        with self.path.open("rb") as handle:
            is_first = True
            while block := handle.read(BLOCK_BYTES):
                self.digest.update(block)
                self.bytes += len(block)
                if is_first and self.is_utf8:
                    block = block.removeprefix(UTF8_BOM)
                is_first = False
                if block:
                    yield block


def _require_ascii_compatible(dataset: FileDataset) -> None:
    if '\r\n"<>/MSH'.encode(dataset.encoding, errors="replace") != b'\r\n"<>/MSH':
        raise ValueError(
            f"{dataset.file}: encoding {dataset.encoding} does not write ASCII as ASCII; "
            "records cannot be counted from its bytes"
        )


def count_physical(path: Path, dataset: FileDataset) -> PhysicalCount:
    """Bytes, physical records and SHA-256 of one source file (see the module docstring)."""
    _require_ascii_compatible(dataset)
    blocks = _Blocks(path, dataset)
    counters = {
        FileFormat.DELIMITED: _count_delimited,
        FileFormat.FIXED_WIDTH: _count_lines,
        FileFormat.HL7V2: _count_hl7v2,
        FileFormat.XML: _count_xml,
        FileFormat.JSONL: _count_jsonl,
    }
    records = counters[dataset.format](iter(blocks), dataset)  # each reads every block
    return PhysicalCount(blocks.bytes, records, blocks.digest.hexdigest())


def count_table(connection: sa.Connection, table: str) -> int:
    """``SELECT COUNT(*)`` of a source table, on the caller's connection (and snapshot)."""
    return connection.execute(sa.select(sa.func.count()).select_from(sa.table(table))).scalar_one()


# --- delimited and fixed width ----------------------------------------------------------------


class _Terminated:
    """Counts terminators (``\\n`` or ``\\r\\n``) outside quotes across blocks."""

    def __init__(self, quoted: bool) -> None:
        self.quoted = quoted
        self.is_crlf: bool | None = None  # decided by the first LF of the file
        self.is_inside_quotes = False
        self.previous_byte = 0  # last byte of the previous block (a CR of a split CRLF)
        self.terminators = 0
        self.has_open_record = False  # bytes after the last terminator

    def feed(self, block: bytes) -> None:
        """Count the terminators of one (non-empty) block."""
        if self.is_crlf is None:
            first_lf = block.find(b"\n")
            if first_lf >= 0:
                before = block[first_lf - 1] if first_lf else self.previous_byte
                self.is_crlf = before == _CR
        crlf = bool(self.is_crlf)
        if not self.quoted or (not self.is_inside_quotes and b'"' not in block):
            if crlf:
                is_split = self.previous_byte == _CR and block[:1] == b"\n"
                self.terminators += block.count(b"\r\n") + is_split
                last = block.rfind(b"\r\n")
                last_end = last + 1 if last >= 0 else (0 if is_split else -1)
            else:
                self.terminators += block.count(b"\n")
                last_end = block.rfind(b"\n")
        else:
            data = np.frombuffer(block, dtype=np.uint8)
            # Only quotes and LFs matter: the quote state is followed over those positions.
            marks = np.flatnonzero((data == _QUOTE) | (data == _LF))
            is_quote = data[marks] == _QUOTE
            quotes_before = np.cumsum(is_quote, dtype=np.int64) - is_quote
            is_inside = ((quotes_before & 1) == 1) ^ self.is_inside_quotes
            ends = marks[~is_quote & ~is_inside]
            if crlf and len(ends):
                before = data[np.maximum(ends - 1, 0)]
                before[ends == 0] = self.previous_byte
                ends = ends[before == _CR]
            self.terminators += len(ends)
            self.is_inside_quotes ^= bool(is_quote.sum() & 1)
            last_end = int(ends[-1]) if len(ends) else -1
        self.has_open_record = last_end < len(block) - 1 if last_end >= 0 else True
        self.previous_byte = block[-1]

    @property
    def records(self) -> int:
        return self.terminators + self.has_open_record


def _count_terminated(blocks: Iterator[bytes], quoted: bool) -> int:
    counter = _Terminated(quoted)
    for block in blocks:
        counter.feed(block)
    return counter.records


def _count_delimited(blocks: Iterator[bytes], dataset: FileDataset) -> int:
    return max(_count_terminated(blocks, quoted=True) - 1, 0)  # the header line


def _count_lines(blocks: Iterator[bytes], dataset: FileDataset) -> int:
    return _count_terminated(blocks, quoted=False)


# --- HL7 v2 -----------------------------------------------------------------------------------

# A message header: MSH and a field separator, counted where the byte before it is a segment
# end or an MLLP start block. The file start is given a virtual LF.
_HEADER = re.compile(rb"MSH[^A-Za-z0-9\r\n\x0b\x1c]")
_MESSAGE_BOUNDARY = frozenset(b"\r\n\x0b")


def _count_hl7v2(blocks: Iterator[bytes], dataset: FileDataset) -> int:
    carry, messages = b"\n", 0
    for block in blocks:
        data = carry + block
        # Per header found (per record), never per byte. A header at 0 lies in the carry: the
        # previous block counted it already.
        messages += sum(
            1 for match in _HEADER.finditer(data, 1) if data[match.start() - 1] in _MESSAGE_BOUNDARY
        )
        carry = data[-4:]
    return messages


# --- XML --------------------------------------------------------------------------------------


def _xml_start_lines(blocks: Iterator[bytes], dataset: FileDataset) -> Iterator[int]:
    """The line of each record start tag, in file order."""
    local_name = (dataset.record_path or "").strip("/").split("/")[-1]
    name = local_name.rpartition(":")[2].encode(dataset.encoding)
    token = re.compile(rb"<!--|<!\[CDATA\[|<(?:[A-Za-z_][\w.\-]*:)?" + re.escape(name) + rb"[\s/>]")
    closing = {b"<!--": b"-->", b"<![CDATA[": b"]]>"}
    buffer = b""
    line, counted_to = 1, 0  # the line at buffer[counted_to]
    skip_until: bytes | None = None  # inside a comment or CDATA: its end
    for block in blocks:
        buffer += block
        position = 0
        while True:
            if skip_until is not None:
                end = buffer.find(skip_until, position)
                if end < 0:
                    position = max(position, len(buffer) - len(skip_until) + 1)
                    break
                position, skip_until = end + len(skip_until), None
            match = token.search(buffer, position)
            if match is None:
                position = max(position, len(buffer) - _XML_OVERLAP_BYTES)
                break
            found = match.group()
            if found in closing:
                skip_until = closing[found]
            else:
                line += buffer.count(b"\n", counted_to, match.start())
                counted_to = match.start()
                yield line
            position = match.end()
        line += buffer.count(b"\n", counted_to, position)
        buffer, counted_to = buffer[position:], 0


def _count_xml(blocks: Iterator[bytes], dataset: FileDataset) -> int:
    return sum(1 for _ in _xml_start_lines(blocks, dataset))


# --- JSON lines -------------------------------------------------------------------------------

_CONTENT = re.compile(rb"[^ \t\r\n]")
_BLANK_LINE = re.compile(
    rb"\n[ \t\r]*(?=\n)"
)  # on text after a LF: the LF ending a line, then a blank line


def _count_jsonl(blocks: Iterator[bytes], dataset: FileDataset) -> int:
    records, is_open_line_content = 0, False
    for block in blocks:
        first_end = block.find(b"\n")
        if first_end < 0:
            is_open_line_content = is_open_line_content or bool(_CONTENT.search(block))
            continue
        if is_open_line_content or _CONTENT.search(block, 0, first_end):
            records += 1
        last_end = block.rfind(b"\n")
        middle = block[first_end + 1 : last_end + 1]  # whole lines only
        records += middle.count(b"\n") - len(_BLANK_LINE.findall(b"\n" + middle))
        is_open_line_content = bool(_CONTENT.search(block, last_end + 1))
    return records + is_open_line_content


# --- where records start (only to explain a difference, after the counts disagree) ------------


def record_start_lines(path: Path, dataset: FileDataset) -> Iterator[int] | None:
    """The 1-based line where each physical record starts, in file order, or ``None`` for HL7
    v2 (its readers number segments, not lines). Lines end at the file's terminator (JSON
    lines and XML: LF). Slower than ``count_physical``: used only once the counts differ."""
    _require_ascii_compatible(dataset)
    if dataset.format is FileFormat.HL7V2:
        return None
    if dataset.format is FileFormat.XML:
        return _xml_start_lines(iter(_Blocks(path, dataset)), dataset)
    if dataset.format is FileFormat.JSONL:
        return _jsonl_start_lines(path, dataset)
    return _terminated_start_lines(path, dataset)


def _pieces(path: Path, dataset: FileDataset) -> Iterator[bytes]:
    """The file split after each LF (a UTF-8 BOM dropped)."""
    is_utf8 = codecs.lookup(dataset.encoding).name in ("utf-8", "utf-8-sig")
    with path.open("rb") as handle:
        for number, piece in enumerate(handle):
            yield piece.removeprefix(UTF8_BOM) if number == 0 and is_utf8 else piece


def _jsonl_start_lines(path: Path, dataset: FileDataset) -> Iterator[int]:
    for number, piece in enumerate(_pieces(path, dataset), start=1):
        if _CONTENT.search(piece):
            yield number


def _terminated_start_lines(path: Path, dataset: FileDataset) -> Iterator[int]:
    is_quoted = dataset.format is FileFormat.DELIMITED
    is_crlf: bool | None = None
    line, start, quotes = 0, None, 0
    is_header = is_quoted
    for piece in _pieces(path, dataset):
        if is_crlf is None and piece.endswith(b"\n"):
            is_crlf = piece.endswith(b"\r\n")
        if start is None:
            start = line + 1
        quotes += piece.count(b'"') if is_quoted else 0
        if not piece.endswith(b"\r\n" if is_crlf else b"\n"):
            continue  # a bare LF of a CRLF file, or the last piece
        line += 1
        if quotes % 2 == 0:
            if not is_header:
                yield start
            start, quotes, is_header = None, 0, False
    if start is not None and not is_header:
        yield start
