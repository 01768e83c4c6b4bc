"""Delimited and fixed-width text exports, one row per physical record (``read_records``).

What one physical record is (the same rules as the independent count in ``etl.extract.physical``):

* The terminator is the file's own, decided by its first line ending: ``CRLF`` if the first LF
  follows a CR, else ``LF``. Only that terminator ends a record; any other CR or LF is content.
* Delimited: a terminator ends a record only outside double quotes. Quotes pair by parity (an
  escaped ``""`` is two quotes), so a quote that is never closed makes the rest of the file one
  record (``unterminated_quote``). The first record is the header (checked as schema drift by
  ``readers.check_file_schema``; not a record here). Fixed width: quotes are plain text.
* A last record without terminator counts; an empty line is a record (and not a valid one).
  A UTF-8 byte order mark at the start of the file is not content.

No silent repair: a record is one unreadable row (all values ``None``, ``_read_error`` written
by ``records.describe``, never with values in it) when it has the wrong number of fields
(delimited, RFC 4180: ``""`` escapes a quote, a quoted field may hold the delimiter; a quote
anywhere else is ``invalid_quoting``), the wrong width (fixed width: never padded or cut), a C0
control character in a field (NUL, a bare CR, a bare LF in a CRLF file, ...; free-text columns
may hold tabs and line breaks written CRLF or as the file's own terminator, keys may not), bytes
the declared encoding cannot decode, or a literal U+FFFD. Readable values are exactly the source
text: empty fields are ``""`` and fixed-width fields keep their spaces (the transform judges
them), as the pandas readers did.

Speed: the file is decoded in blocks of ``BLOCK_BYTES`` (``surrogateescape``, so an undecodable
byte is a lone surrogate that names itself). Each block is first checked as bytes (control
bytes, a strict decode, U+FFFD); its records are split, counted and cut into fields by C code
(``str.split``/``str.count`` over lists, ``itemgetter`` of slices, a regex search only over a
suspect block's records); only records holding a quote or flagged by those checks are judged
one by one. ``read_frames`` yields exactly the frames ``records.frames`` makes of
``read_records``, but judges only the flagged records a one-record regex cannot tell readable
(``readable_record``: exactly ``judge``'s rule, free-text breaks included) and cuts the readable
records of a block in one pass of Arrow's CSV reader (or Arrow string slices for fixed width), so
no Python object is made per value: the extract stage should use it.
Memory: a block plus the longest record; a record longer than ``MAX_RECORD_CHARS`` is skipped
without being held (``record_too_long``, or ``unterminated_quote`` when it runs to the end).
Encodings: any Python codec; a control byte is checked in the bytes only for UTF-8 and one-byte
code pages (others are always searched as text).
"""

from __future__ import annotations

import codecs
import csv
import functools
import re
import sys
from collections.abc import Iterator, Sequence
from itertools import accumulate, compress, count, groupby, pairwise, repeat
from operator import contains, itemgetter, not_
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pa_compute
import pyarrow.csv as pa_csv

from etl.catalog import FileDataset, FileFormat
from etl.extract.records import READ_ERROR, ReadStats, Record, describe

UNTERMINATED_QUOTE = "unterminated_quote"
INVALID_QUOTING = "invalid_quoting"
INVALID_FIELD_COUNT = "invalid_field_count"
INVALID_RECORD_WIDTH = "invalid_record_width"
RECORD_TOO_LONG = "record_too_long"
CONTROL_CHARACTER = "control_character_in_field"
UNDECODABLE_BYTES = "undecodable_bytes"
REPLACEMENT_CHARACTER = "replacement_character"

BLOCK_BYTES = 1 << 20
_TERMINATOR_BLOCK_BYTES = 1 << 14
MAX_RECORD_CHARS = 1 << 24
BYTE_ORDER_MARK = "\ufeff"
# Joins a block's records for the one regex search; any character the search does not match.
_JOIN = "\x7f"


class _Overlong(NamedTuple):
    """A record longer than ``MAX_RECORD_CHARS``, skipped without being held."""

    line_feeds: int  # LFs inside it (its lines - 1)
    open_quote_line_feeds: int | None  # ends inside quotes (at end of file): LFs before that quote


# --- physical records ---------------------------------------------------------------------------


class _Text(NamedTuple):
    text: str
    is_suspect: bool  # may hold a control character besides CR/LF, an undecodable byte, U+FFFD
    # May hold a control character besides CR/LF (and the delimiter): when not, a suspect text
    # holds only undecodable bytes or U+FFFD, found by ``_Reader.escapes`` (one-byte code pages).
    has_controls: bool = True


_C0_BYTES = bytes(range(0x20))


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    """``re.compile``, kept for the process: a file's patterns depend only on its dataset's
    spec, and the longest take 10-20 ms to compile (``re``'s own cache of 512 patterns is
    shared with every other module, and the pipeline's transforms go through it quickly)."""
    return re.compile(pattern)


def _is_ascii_compatible(encoding: str) -> bool:
    """Whether a control byte (0x00-0x1F) is exactly what decodes to a control character, so
    that a block's control characters can be counted in its bytes."""
    name = codecs.lookup(encoding).name
    if name in ("utf-8", "utf-8-sig"):
        return True
    table = bytes(range(256)).decode(encoding, errors="replace")
    if len(table) != 256:  # not a one-byte code page: no shortcut
        return False
    return all((ord(character) < 0x20) == (byte < 0x20) for byte, character in enumerate(table))


def _texts(
    path: Path, encoding: str, delimiter: str, block_bytes: int | None = None
) -> Iterator[_Text]:
    """The file decoded block by block; undecodable bytes become lone surrogates.

    Each block is first looked at as bytes, at C speed: a block without control bytes (but CR,
    LF and the delimiter), that decodes strictly and holds no U+FFFD is not suspect, and its
    records need no character search.
    """
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    controls = (
        _C0_BYTES.translate(None, delimiter.encode("ascii") + b"\r\n")
        if (delimiter.isascii())
        else _C0_BYTES
    )
    is_checkable = _is_ascii_compatible(encoding)
    is_start = True
    with path.open("rb") as handle:
        while True:
            block = handle.read(block_bytes or BLOCK_BYTES)
            is_final = not block
            state = decoder.getstate()
            try:
                text = decoder.decode(block, final=is_final)
                is_suspect = not is_checkable or "\ufffd" in text
            except UnicodeDecodeError:
                decoder.setstate(state)
                decoder.errors = "surrogateescape"
                text = decoder.decode(block, final=is_final)
                decoder.errors = "strict"
                is_suspect = True
            has_controls = not is_checkable or len(block.translate(None, controls)) != len(block)
            is_suspect = is_suspect or has_controls
            if is_start and text:
                text, is_start = text.removeprefix(BYTE_ORDER_MARK), False
            if text:
                yield _Text(text, is_suspect, has_controls)
            if is_final:
                return


@functools.lru_cache(maxsize=64)
def _escapes(encoding: str) -> tuple[str, ...] | None:
    """Every character ``bad`` matches that the decoding in ``_texts`` can make of bytes without
    a control byte, for a one-byte code page decoded by a table (cp1252, ISO 8859-x, ...): the
    lone surrogates ``surrogateescape`` makes of the bytes the table leaves undefined, and
    U+FFFD. None for any other codec (UTF-8 and multi-byte ones: searched by the regex)."""
    info = codecs.lookup(encoding)
    module = sys.modules.get(getattr(info.incrementaldecoder, "__module__", ""))
    table = getattr(module, "decoding_table", None)
    if not isinstance(table, str) or len(table) != 256:
        return None
    if any("\ud800" <= character <= "\udfff" or character == "\ufffd" for character in table):
        return None  # a byte that decodes to what ``bad`` matches: searched by the regex
    if any((ord(character) < 0x20) != (byte < 0x20) for byte, character in enumerate(table)):
        return None  # a control character from a byte that is not one: not checkable in bytes
    undefined = [byte for byte, character in enumerate(table) if character == "\ufffe"]
    return (*(chr(0xDC00 + byte) for byte in undefined if byte >= 0x80), "\ufffd")


def _unquoted_run(terminator: str) -> str:
    """Regex: characters outside quotes up to a quote or the terminator (possessive)."""
    if terminator == "\n":
        return '[^"\\n]*+'
    return '[^"\\r]*+(?:\\r(?!\\n)[^"\\r]*+)*+'  # a CR not followed by LF is content


class _Skip:
    """Finds the end of an overlong record, block by block, keeping only its quote state."""

    def __init__(self, terminator: str, is_quoted: bool) -> None:
        self.terminator = terminator
        self.events = re.compile(('"|' if is_quoted else "") + re.escape(terminator))
        self.is_inside_quotes = False
        self.line_feeds = 0
        self.quote_line_feeds = 0
        self.is_pending_cr = False  # the text so far ended with the CR of a possible CRLF

    def feed(self, text: str) -> int:
        """Where the record's terminator ends in ``text``, or -1 (it goes on)."""
        if self.is_pending_cr:
            self.is_pending_cr = False
            if text.startswith("\n"):
                return 1
        position = 0
        while True:
            if self.is_inside_quotes:
                found = text.find('"', position)
                if found < 0:
                    self.line_feeds += text.count("\n", position)
                    return -1
                self.line_feeds += text.count("\n", position, found)
                self.is_inside_quotes, position = False, found + 1
                continue
            match = self.events.search(text, position)
            if match is None:
                self.line_feeds += text.count("\n", position)
                self.is_pending_cr = self.terminator == "\r\n" and text.endswith("\r")
                return -1
            self.line_feeds += text.count("\n", position, match.start())
            if match.group() != '"':
                return match.end()
            self.quote_line_feeds = self.line_feeds
            self.is_inside_quotes, position = True, match.end()

    def result(self) -> _Overlong:
        return _Overlong(self.line_feeds, self.quote_line_feeds if self.is_inside_quotes else None)


def _cut(buffer: str, terminator: str, record_end) -> tuple[list[str], int]:
    """The complete records at the start of ``buffer`` (which starts a record), and where the
    incomplete rest begins. ``record_end`` is None when quotes do not matter."""
    step = len(terminator)
    if record_end is None or '"' not in buffer:
        last = buffer.rfind(terminator)
        return (buffer[:last].split(terminator), last + step) if last >= 0 else ([], 0)
    records: list[str] = []
    position = 0
    while True:
        quote = buffer.find('"', position)
        if quote < 0:  # quote-free from here: split at C speed
            last = buffer.rfind(terminator, position)
            if last >= 0:
                records += buffer[position:last].split(terminator)
                position = last + step
            return records, position
        before = buffer.rfind(terminator, position, quote)
        if before >= 0:
            records += buffer[position:before].split(terminator)
            position = before + step
        end = record_end(buffer, position).end()
        if not buffer.startswith(terminator, end):  # runs past the buffer (or an open quote)
            return records, position
        records.append(buffer[position:end])
        position = end + step


def _terminator(path: Path, encoding: str, delimiter: str) -> str:
    """``CRLF`` if the file's first LF follows a CR, else ``LF`` (also when it has no LF)."""
    previous = ""
    # Small blocks: the first line ending is near the start (the same text, decoded in pieces,
    # instead of the first MiB decoded for it, twice per file).
    for text, *_ in _texts(path, encoding, delimiter, _TERMINATOR_BLOCK_BYTES):
        first = text.find("\n")
        if first >= 0:
            return "\r\n" if (text[first - 1] if first else previous) == "\r" else "\n"
        previous = text[-1]
    return "\n"


class _Batch(NamedTuple):
    records: list[str]
    is_suspect: bool  # see _Text
    has_controls: bool = True  # see _Text


def _physical_records(
    path: Path, encoding: str, delimiter: str, is_quoted: bool
) -> Iterator[_Batch | _Overlong]:
    """Batches of records (text without terminator), in file order."""
    terminator = _terminator(path, encoding, delimiter)
    record_end = None
    if is_quoted:
        run = _unquoted_run(terminator)
        record_end = _compiled(f'{run}(?:"[^"]*+"{run})*+').match
    carry, is_carry_suspect, has_carry_controls = "", False, False
    skip: _Skip | None = None
    for text, is_suspect, has_controls in _texts(path, encoding, delimiter):
        buffer = carry + text if carry else text
        is_suspect = is_suspect or is_carry_suspect
        has_controls = has_controls or has_carry_controls
        if skip is not None:
            end = skip.feed(buffer)
            if end < 0:
                carry = ""
                continue
            yield skip.result()
            skip, buffer = None, buffer[end:]
        records, rest = _cut(buffer, terminator, record_end)
        if records:
            yield _Batch(records, is_suspect, has_controls)
        carry, is_carry_suspect, has_carry_controls = buffer[rest:], is_suspect, has_controls
        if len(carry) > MAX_RECORD_CHARS:
            skip = _Skip(terminator, is_quoted)
            if skip.feed(carry) >= 0:  # cannot be: the cut found no terminator in it
                raise AssertionError("overlong record with a terminator")
            carry = ""
    if skip is not None:
        yield skip.result()
    elif carry:
        yield _Batch([carry], is_carry_suspect, has_carry_controls)  # the last, unterminated


# --- rows -----------------------------------------------------------------------------------------


class _Problem(NamedTuple):
    reason: str
    detail: str
    # The record's key values when its fields split cleanly and only another column is bad: the
    # unreadable row keeps its key, so a steward can find it and rows pointing at it still
    # resolve (they are flagged as pointing at a quarantined row, never loaded as orphans).
    key: tuple[str | None, ...] | None = None


def _fields_pattern(fields: list[str], delimiter: str) -> str:
    """``delimiter.join(fields)``, a run of equal fields written once and counted
    (``F(?:;F){n}``): the same records match, and the pattern compiles in a fraction of the
    time (``re`` compiles each copy of a class that holds the surrogates into a 64 KiB map)."""
    parts = []
    for field, run in groupby(fields):
        repeats = sum(1 for _ in run) - 1
        parts.append(f"{field}(?:{delimiter}{field}){{{repeats}}}" if repeats else field)
    return delimiter.join(parts)


class _Reader:
    """Turns batches of physical records of one file into rows, counting as it goes."""

    def __init__(self, path: Path, dataset: FileDataset, stats: ReadStats) -> None:
        self.path = path
        self.stats = stats
        self.names = dataset.column_names
        self.encoding = dataset.encoding
        self.is_delimited = dataset.format is FileFormat.DELIMITED
        self.ordinal = 1  # of the next record
        self.line = 1  # where the next record starts
        delimiter = dataset.delimiter if self.is_delimited else ""
        self.delimiter = delimiter
        # Control characters (the delimiter excepted: a quoted field may hold it), lone
        # surrogates (undecodable bytes) and U+FFFD: what no readable field holds.
        controls = "".join(f"\\x{c:02x}" for c in range(0x20) if chr(c) != delimiter)
        self.bad = _compiled(f"[{controls}\\ud800-\\udfff\\ufffd]")
        self.escapes = _escapes(dataset.encoding)
        # Free text may hold tabs and line breaks: in a column that is not a key, a tab, a CRLF
        # and (in a file whose terminator is LF) an LF inside quotes are a note's own content,
        # as the old reader loaded them. A bare CR, or a bare LF in a CRLF file, is not: it is
        # how a record gets cut or merged, so it stays unreadable, as in keys.
        self.keys = set(dataset.key)
        self.key_positions = {self.names.index(name) for name in dataset.key}
        terminator = _terminator(path, dataset.encoding, delimiter)
        breaks = ["\r\n", "\t"] if terminator == "\r\n" else ["\r\n", "\n", "\t"]
        self.text_breaks = _compiled("|".join(breaks))
        if self.is_delimited:
            d = re.escape(delimiter)
            field = f'"[^"]*+(?:""[^"]*+)*+"|[^{d}"]*+'
            self.quoted_record = _compiled(f"(?:{field})(?:{d}(?:{field}))*+")
            self.quoted_fields = _compiled(f'"([^"]*+(?:""[^"]*+)*+)"{d}|([^{d}"]*+){d}')
            # Records joined by LF, each valid: RFC 4180 fields, as many as declared, no
            # character ``bad`` matches. One C-level pass tells a block of quoted records clean.
            excluded = f"{controls}\\ud800-\\udfff\\ufffd"
            valid_field = f'(?:"[^"{excluded}]*+(?:""[^"{excluded}]*+)*+"|[^{d}"{excluded}]*+)'
            valid_record = f"{valid_field}(?:{d}{valid_field}){{{len(self.names) - 1}}}"
            self.valid_records = _compiled(f"{valid_record}(?:\\n{valid_record})*+")
            # One record that ``judge`` finds readable, told in one C-level pass: a column that
            # is not a key may also hold the text breaks (quoted; unquoted, those that are not
            # the delimiter), as ``_field_problem`` allows them.
            quoted_breaks = "|".join(breaks)
            unquoted_breaks = "|".join(b for b in breaks if b != delimiter) or "(?!)"
            text = f'[^"{excluded}]*+(?:(?:{quoted_breaks})[^"{excluded}]*+)*+'
            bare = f'[^{d}"{excluded}]*+(?:(?:{unquoted_breaks})[^{d}"{excluded}]*+)*+'
            free_field = f'(?:"{text}(?:""{text})*+"|{bare})'
            self.readable_pattern = _fields_pattern(
                [valid_field if name in self.keys else free_field for name in self.names], d
            )
        else:
            widths = [f.width or 0 for f in dataset.fields]
            self.width = sum(widths)
            bounds = list(accumulate(widths, initial=0))
            self.slices = [slice(a, b) for a, b in pairwise(bounds)]
            getter = itemgetter(*self.slices)
            self.cut = getter if len(self.slices) > 1 else (lambda text: (text,))

    @functools.cached_property
    def readable_record(self) -> re.Pattern[str]:
        """Compiled when first needed: some 10-20 ms for a file of ten columns."""
        return _compiled(self.readable_pattern)

    # One record, judged on its own (records a block check flagged, or that hold a quote).

    def judge(self, text: str, line: int) -> tuple[str, ...] | _Problem:
        if not self.is_delimited:
            if len(text) != self.width:
                return _Problem(
                    INVALID_RECORD_WIDTH, f"{len(text)} characters, {self.width} declared"
                )
            values = self.cut(text)
            return values if self.bad.search(text) is None else self.field_problem(values)
        if '"' in text:
            if text.count('"') % 2:
                quote_line = line + text.count("\n", 0, text.rfind('"'))
                return _Problem(
                    UNTERMINATED_QUOTE,
                    f"the quote opened on line {quote_line} is not closed before the end of file",
                )
            if self.quoted_record.fullmatch(text) is None:
                return _Problem(
                    INVALID_QUOTING, "a quote inside an unquoted field or after a closing quote"
                )
            # One of the two groups of each field is empty; only a quoted one holds "".
            values = tuple(map("".join, self.quoted_fields.findall(text + self.delimiter)))
            if '""' in text:
                values = tuple(value.replace('""', '"') for value in values)
        else:
            values = tuple(text.split(self.delimiter))
        if len(values) != len(self.names):
            fields = "field" if len(values) == 1 else "fields"
            return _Problem(
                INVALID_FIELD_COUNT, f"{len(values)} {fields}, {len(self.names)} declared"
            )
        return values if self.bad.search(text) is None else self.field_problem(values)

    def field_problem(self, values: tuple[str, ...]) -> tuple[str, ...] | _Problem:
        problem = self._field_problem(values)
        if not isinstance(problem, _Problem) or any(
            self.bad.search(values[index]) for index in self.key_positions
        ):
            return problem
        key = tuple(
            value if index in self.key_positions else None for index, value in enumerate(values)
        )
        return problem._replace(key=key)

    def _field_problem(self, values: tuple[str, ...]) -> tuple[str, ...] | _Problem:
        for name, value in zip(self.names, values, strict=True):
            found = self.bad.search(value)
            if found is not None and name not in self.keys:
                found = self.bad.search(self.text_breaks.sub("", value))
            if found is None:
                continue
            character = found.group()
            if character == "\ufffd":
                return _Problem(REPLACEMENT_CHARACTER, f"U+FFFD in column {name}")
            if "\udc80" <= character <= "\udcff":
                byte = ord(character) - 0xDC00
                return _Problem(
                    UNDECODABLE_BYTES,
                    f"byte 0x{byte:02X} in column {name} does not decode as {self.encoding}",
                )
            if "\ud800" <= character <= "\udfff":
                return _Problem(UNDECODABLE_BYTES, f"a lone surrogate in column {name}")
            return _Problem(CONTROL_CHARACTER, f"U+{ord(character):04X} in column {name}")
        return values

    def unreadable(self, problem: _Problem, record: int, line: int) -> Record:
        self.stats.unreadable += 1
        error = describe(problem.reason, self.path, line=line, record=record, detail=problem.detail)
        if problem.key is not None:
            return Record(problem.key, error, record, line)
        return Record.unreadable(len(self.names), error, record, line)

    # A batch: checked as a whole, then cut in bulk unless something was flagged.

    def _take(
        self, batch: _Batch, separator: str | None = None, may_defer_field_counts: bool = False
    ) -> tuple[int, Sequence[int], set[int], str, bool]:
        """Count a batch in; its first ordinal, each record's line, the records a bulk check
        flagged (to judge one by one), the records joined by ``separator`` (by default the
        delimiter, never a character the search matches; LF: the text Arrow's CSV reader
        takes) and whether the records of another field count were left unflagged.

        ``may_defer_field_counts`` (delimited, ``separator`` LF): when the batch holds as many
        delimiters as its records should, the records are not counted one by one: the caller
        cuts the unflagged ones with Arrow's CSV reader, which refuses a row of another field
        count (an empty record, which it would read as empty fields, is never deferred), and
        only then flags them (``_field_count_flags``)."""
        records = batch.records
        total = len(records)
        self.stats.records += total
        first, line = self.ordinal, self.line
        self.ordinal += total
        # One text to check.
        joined = (separator or self.delimiter or _JOIN).join(records)
        if separator == "\n":  # LF inside a record: more LFs than the separators
            has_line_feed = total > 0 and joined.count("\n") > total - 1
        else:
            has_line_feed = "\n" in joined
        lines: Sequence[int]
        if has_line_feed:  # records spanning lines (or a bare LF): the line of each one
            starts = list(accumulate((text.count("\n") + 1 for text in records), initial=line))
            self.line, lines = starts.pop(), starts
        else:
            self.line, lines = line + total, range(line, line + total)

        flagged: set[int] = set()
        width = len(self.names)
        is_deferred = False
        if self.is_delimited:
            if '"' in joined:  # records with a quote are judged one by one
                flagged.update(compress(count(), map(contains, records, repeat('"'))))
            # Arrow's CSV reader takes an empty line for a row of empty fields: not deferred.
            is_deferred = (
                may_defer_field_counts
                and separator == "\n"
                and joined.count(self.delimiter) == total * (width - 1)
                and (width == 1 or "" not in records)
            )
            if not is_deferred:
                flagged.update(self._field_count_flags(records))
        elif list(map(len, records)).count(self.width) != total:
            flagged.update(i for i, text in enumerate(records) if len(text) != self.width)
        if batch.is_suspect and (batch.has_controls or self.escapes is None):
            # The records holding a character ``bad`` matches, one C-level search each (free
            # text may hold many: a Python step per match was the reader's costliest line).
            flagged.update(compress(count(), map(self.bad.search, records)))
        else:
            # No control byte but CR, LF and the delimiter (``_texts``): the characters ``bad``
            # can match are CR and LF, and in a suspect batch (undecodable bytes or U+FFFD) the
            # few ``escapes``, each found by a plain substring search (the regex's character
            # class is several times slower to search).
            breaks = ("\n",) if has_line_feed else ()
            odd = (self.escapes or ()) if batch.is_suspect else ()
            for character in (*breaks, "\r", *odd):
                if character in joined:
                    flagged.update(compress(count(), map(contains, records, repeat(character))))
        return first, lines, flagged, joined, is_deferred

    def _field_count_flags(self, records: list[str]) -> set[int]:
        """The delimited records holding another number of delimiters than declared."""
        width = len(self.names)
        delimiters = list(map(str.count, records, repeat(self.delimiter)))
        if delimiters.count(width - 1) == len(records):
            return set()
        return {i for i, n in enumerate(delimiters) if n != width - 1}

    def _judged(self, records: list[str], first: int, lines: Sequence[int]) -> Iterator[Record]:
        for index, (text, line) in enumerate(zip(records, lines, strict=True)):
            record = first + index
            judged = self.judge(text, line)
            if isinstance(judged, _Problem):
                yield self.unreadable(judged, record, line)
            else:
                yield Record(judged, None, record, line)

    def _are_valid(self, records: list[str]) -> bool:
        """Whether every record is valid (delimited; one regex pass over them all)."""
        if not self.is_delimited:
            return False
        joined = "\n".join(records)
        if joined.count("\n") != len(records) - 1:  # an LF inside a record
            return False
        return self.valid_records.fullmatch(joined) is not None

    def _unsure(self, records: list[str], flagged: set[int]) -> list[int]:
        """The flagged records, in order, but those a one-record check tells readable
        (delimited: ``readable_record``); only these need judging one by one."""
        order = sorted(flagged)
        if not self.is_delimited or not order:
            return order
        matches = map(self.readable_record.fullmatch, map(records.__getitem__, order))
        return list(compress(order, map(not_, matches)))

    def _parts(
        self, batch: _Batch
    ) -> Iterator[tuple[bool | None, list[str] | list[Record], int, Sequence[int], str]]:
        """Count a batch in and cut it into runs: flagged records (judged one by one) and
        stretches of clean ones (cut in bulk), each with its first ordinal, lines and, for a
        clean stretch, its records joined."""
        first, lines, flagged, joined, _ = self._take(batch)
        records = batch.records
        if not flagged:
            yield False, records, first, lines, joined
            return
        if self._are_valid(records):  # quoted fields, all valid: csv cuts them
            values = map(tuple, csv.reader(records, delimiter=self.delimiter, strict=True))
            rows = zip(values, repeat(None), count(first), lines, strict=False)
            try:
                cut = list(map(tuple.__new__, repeat(Record), rows))
            except csv.Error:  # a field over csv's size limit: judged one by one below
                pass
            else:
                yield None, cut, first, lines, ""
                return
        runs: list[tuple[int, int, bool]] = []  # start, stop, whether flagged
        position, order, next_index = 0, sorted(flagged), 0
        while next_index < len(order):
            start = stop = order[next_index]
            next_index += 1
            while next_index < len(order) and order[next_index] == stop + 1:
                stop, next_index = stop + 1, next_index + 1
            if position < start:
                runs.append((position, start, False))
            runs.append((start, stop + 1, True))
            position = stop + 1
        if position < len(records):
            runs.append((position, len(records), False))
        for start, stop, is_flagged in runs:
            part = records[start:stop]
            joined = "" if is_flagged else (self.delimiter or _JOIN).join(part)
            yield is_flagged, part, first + start, lines[start:stop], joined

    def rows(self, batch: _Batch) -> Iterator[Record]:
        for is_flagged, records, first, lines, joined in self._parts(batch):
            if is_flagged is None:  # Records already
                yield from cast("list[Record]", records)
                continue
            records = cast("list[str]", records)
            if is_flagged:
                yield from self._judged(records, first, lines)
                continue
            # Cut in bulk: no Python code per record.
            if self.is_delimited:
                width = len(self.names)
                values: Iterator[tuple[Any, ...]] = zip(
                    *[iter(joined.split(self.delimiter))] * width, strict=False
                )
            else:
                values = map(self.cut, records)
            rows = zip(values, repeat(None), count(first), lines, strict=False)
            yield from map(tuple.__new__, repeat(Record), rows)

    def _arrow_csv(
        self, records: list[str], is_quoted: bool, joined: str | None = None
    ) -> list[pa.ChunkedArray] | None:
        """Readable records (one line each; quoted ones valid RFC 4180) cut into columns by
        Arrow's CSV reader, or None if it does not see one row per record. ``joined``: the
        records joined by LF, if already made."""
        data = ("\n".join(records) if joined is None else joined).encode("utf-8")
        try:
            table = pa_csv.read_csv(
                pa.BufferReader(data),
                read_options=pa_csv.ReadOptions(
                    column_names=self.names, use_threads=False, block_size=len(data) + 1
                ),
                parse_options=pa_csv.ParseOptions(
                    delimiter=self.delimiter,
                    quote_char='"' if is_quoted else False,
                    double_quote=True,
                    ignore_empty_lines=False,
                ),
                convert_options=pa_csv.ConvertOptions(
                    column_types=dict.fromkeys(self.names, pa.large_string()),
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                    # The data is Python's strict UTF-8 encoding of the records: valid.
                    check_utf8=False,
                ),
            )
        except pa.ArrowException:
            return None
        if table.num_rows != len(records):
            return None
        return [table.column(name) for name in self.names]

    def _readable_columns(
        self, records: list[str], is_quoted: bool, joined: str | None = None
    ) -> list:
        """Columns of records known to be readable, cut by Arrow's C++ (CSV, or slices of fixed
        width); in Python only if Arrow disagrees about the rows. ``joined``: the records
        joined by LF, if already made (delimited)."""
        if not records:
            return [pa.array([], type=pa.large_string())] * len(self.names)
        if not self.is_delimited:
            whole = pa.array(records, type=pa.large_string())
            return [
                pa_compute.utf8_slice_codeunits(whole, cut.start, cut.stop) for cut in self.slices
            ]
        columns = self._arrow_csv(records, is_quoted, joined)
        if columns is not None:
            return columns
        values = [self.judge(text, 0) for text in records]
        return [pa.array(column, type=pa.large_string()) for column in zip(*values, strict=True)]

    def _errors(
        self, records: list[str], flagged: set[int], first: int, lines: Sequence[int]
    ) -> dict[int, Record]:
        """The flagged records ``judge`` finds unreadable, by position in the batch, as rows."""
        errors: dict[int, Record] = {}
        for index in self._unsure(records, flagged):
            judged = self.judge(records[index], lines[index])
            if isinstance(judged, _Problem):
                errors[index] = self.unreadable(judged, first + index, lines[index])
        return errors

    @staticmethod
    def _readable(records: list[str], errors: dict[int, Record]) -> list[str]:
        if not errors:
            return records
        is_readable = [True] * len(records)
        for index in errors:
            is_readable[index] = False
        return list(compress(records, is_readable))

    def table(self, batch: _Batch) -> pa.Table:
        """The batch as an Arrow table (the columns, then ``_read_error``): flagged records are
        judged one by one, and the readable ones, all together, never become Python strings."""
        first, lines, flagged, joined, is_deferred = self._take(
            batch, "\n" if self.is_delimited else None, may_defer_field_counts=True
        )
        records = batch.records
        names = [*self.names, READ_ERROR]
        errors = self._errors(records, flagged, first, lines)
        columns = None
        if is_deferred:
            columns = self._arrow_csv(
                self._readable(records, errors), bool(flagged), None if errors else joined
            )
            if columns is None:  # a record of another field count (or two): flagged after all
                more = self._field_count_flags(records) - flagged
                flagged |= more
                errors |= self._errors(records, more, first, lines)
        readable = self._readable(records, errors)
        if columns is None:
            columns = self._readable_columns(
                readable, is_quoted=bool(flagged), joined=None if errors else joined
            )
        table = pa.table([*columns, pa.nulls(len(readable), type=pa.large_string())], names=names)
        if not errors:
            return table
        is_readable = [True] * len(records)
        for index in errors:
            is_readable[index] = False
        rows = [errors[index] for index in sorted(errors)]  # in file order
        unreadable = pa.table(
            [
                *(
                    pa.array([row.values[position] for row in rows], pa.large_string())
                    for position in range(len(self.names))
                ),
                pa.array([row.read_error for row in rows], pa.large_string()),
            ],
            names=names,
        )
        # Each row's place in (readable rows, then unreadable rows, both in file order).
        is_unreadable = ~np.array(is_readable)
        order = np.empty(len(records), dtype=np.int64)
        order[~is_unreadable] = np.arange(len(readable))
        order[is_unreadable] = np.arange(len(readable), len(records))
        return pa.concat_tables([table, unreadable]).take(pa.array(order))

    def overlong(self, skipped: _Overlong) -> Record:
        self.stats.records += 1
        record, line = self.ordinal, self.line
        self.ordinal += 1
        self.line += skipped.line_feeds + 1
        if skipped.open_quote_line_feeds is not None:
            quote_line = line + skipped.open_quote_line_feeds
            problem = _Problem(
                UNTERMINATED_QUOTE,
                f"the quote opened on line {quote_line} is not closed before the end of file",
            )
        elif self.is_delimited:
            problem = _Problem(RECORD_TOO_LONG, f"more than {MAX_RECORD_CHARS} characters")
        else:
            problem = _Problem(
                INVALID_RECORD_WIDTH,
                f"more than {MAX_RECORD_CHARS} characters, {self.width} declared",
            )
        return self.unreadable(problem, record, line)


def _batches(reader: _Reader, path: Path, dataset: FileDataset) -> Iterator[_Batch | _Overlong]:
    """The file's batches of records, the header of a delimited file taken out."""
    is_header = reader.is_delimited
    batches = _physical_records(
        path, dataset.encoding, reader.delimiter, is_quoted=reader.is_delimited
    )
    for batch in batches:
        if is_header:  # the first record of a delimited file: not a record
            is_header = False
            if isinstance(batch, _Overlong):
                reader.line += batch.line_feeds + 1
                continue
            header, *rest = batch.records
            reader.line += header.count("\n") + 1
            if not rest:
                continue
            batch = _Batch(rest, batch.is_suspect, batch.has_controls)
        yield batch


def read_records(path: Path, dataset: FileDataset, stats: ReadStats) -> Iterator[Record]:
    """Rows of one delimited or fixed-width file, one per physical record, in file order."""
    reader = _Reader(path, dataset, stats)
    for batch in _batches(reader, path, dataset):
        if isinstance(batch, _Overlong):
            yield reader.overlong(batch)
        else:
            yield from reader.rows(batch)


def read_frames(
    path: Path, dataset: FileDataset, stats: ReadStats, chunk_rows: int
) -> Iterator[pd.DataFrame]:
    """The frames ``records.frames(read_records(...), dataset.column_names, chunk_rows)`` yields,
    built column-wise in Arrow: a clean block never becomes Python objects per row or value
    (several times faster; the extract stage's hot path)."""
    for table in read_tables(path, dataset, stats, chunk_rows):
        yield text_frame(table)


def text_frame(table: pa.Table) -> pd.DataFrame:
    """A chunk of ``read_tables`` as the frame ``read_frames`` yields (Arrow-backed text)."""
    return pd.DataFrame(
        {name: pd.array(table.column(name), dtype="string") for name in table.column_names}
    )


def read_tables(
    path: Path, dataset: FileDataset, stats: ReadStats, chunk_rows: int
) -> Iterator[pa.Table]:
    """``read_frames``' chunks as the Arrow tables they are built from (text columns, then
    ``_read_error``): landing writes them as they are, without a pandas frame in between."""
    reader = _Reader(path, dataset, stats)
    pending: list[pa.Table] = []
    rows = 0
    for batch in _batches(reader, path, dataset):
        if isinstance(batch, _Overlong):
            record = reader.overlong(batch)
            values = [[value] for value in (*record.values, record.read_error)]
            table = pa.table(values, names=[*reader.names, READ_ERROR])
            table = table.cast(pa.schema([(n, pa.large_string()) for n in table.column_names]))
        else:
            table = reader.table(batch)
        pending.append(table)
        rows += table.num_rows
        while rows >= chunk_rows:
            combined = pa.concat_tables(pending)
            yield combined.slice(0, chunk_rows)
            rest = combined.slice(chunk_rows)
            pending, rows = [rest], rest.num_rows
    if rows:
        yield pa.concat_tables(pending)
