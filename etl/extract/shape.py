"""What the XML and JSON lines readers share: judging each record's shape and characters.

Drift is judged record by record, over the whole file, not on a sample at its top: a field
renamed after the first records must never load as empty. Each record's paths (XML element
and attribute paths, JSON dotted key paths) are compared with the declared field paths:

- a path the spec does not declare is counted in ``ReadStats.unknown_fields``;
- a record that carries an undeclared path *and* lacks a declared one is unreadable
  (``unexpected_field``): that is what a rename looks like, whichever field it hits;
- a record that lacks a field the spec marks ``required`` is unreadable (``missing_field``).
  The estate's exports write every element and key in every record (empty or ``null`` when
  there is no value), so their mappings mark those fields required; a field that a source
  legitimately leaves out stays optional and reads as NA when absent.

A declared path covers what lies below it (``vaccine`` covers ``vaccine.atc``), and an empty
parent (``"patient": null``, ``<Patient/>``) is the absence of its declared children, not an
unknown field.

Characters no field may hold make the record unreadable rather than being replaced:
control characters other than tab, line feed and carriage return, and bytes the declared
encoding cannot decode (read with ``errors="surrogateescape"``, so they arrive as the lone
surrogates U+DC80..U+DCFF and can be told apart from any character the file really holds).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from etl.catalog import SourceField
from etl.extract.records import ReadStats

UNEXPECTED_FIELD = "unexpected_field"
MISSING_FIELD = "missing_field"
CONTROL_CHARACTER = "control_character_in_field"
UNDECODABLE_BYTES = "undecodable_bytes"
LONE_SURROGATE = "lone_surrogate"
NESTING_TOO_DEEP = "nesting_too_deep"

# Levels of nesting in one record (the record itself is level 1). The estate's records have 3;
# a source with more than this is not a record layout but an attack or a broken export.
MAX_NESTING = 32

# Unicode category Cc without tab, line feed and carriage return (free text holds those).
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Undecodable bytes after decoding with errors="surrogateescape".
ESCAPED_BYTES = re.compile("[\udc80-\udcff]")
SURROGATES = re.compile("[\ud800-\udfff]")

DETAIL_PATHS = 3  # paths named in one detail; the rest are counted
DETAIL_PATH_CHARACTERS = 60


def shown(path: str) -> str:
    """A path as it may appear in a ``_read_error`` detail: printable, bounded."""
    if not path.isprintable():
        path = ESCAPED_BYTES.sub(lambda byte: f"\\x{ord(byte.group()) - 0xDC00:02x}", path)
        path = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in path)
    if len(path) > DETAIL_PATH_CHARACTERS:
        return path[: DETAIL_PATH_CHARACTERS - 3] + "..."
    return path


def listed(paths: Sequence[str]) -> str:
    names = ", ".join(shown(path) for path in paths[:DETAIL_PATHS])
    more = len(paths) - DETAIL_PATHS
    return f"{names} and {more} more" if more > 0 else names


class Shape:
    """The declared paths of one dataset, to judge each record against (built once per file)."""

    def __init__(self, fields: Sequence[SourceField], separator: str) -> None:
        self.fields = list(fields)
        self.separator = separator
        self.declared = [field.path or "" for field in self.fields]
        self.declared_set = frozenset(self.declared)
        self.covering = tuple(path + separator for path in self.declared)

    def judge(
        self, is_present: Iterable[bool], leaves: Iterable[tuple[str, bool]], stats: ReadStats
    ) -> tuple[str, str] | None:
        """The reason and detail that make a readable record unreadable by its shape, or
        ``None``.

        ``is_present`` says, per declared field, whether the record has it; ``leaves`` are the
        record's value paths, each with whether its value is empty. Unknown paths are counted
        in ``stats`` whatever the outcome.
        """
        unknown: list[str] = []
        for path, is_empty in leaves:
            if path in self.declared_set or path.startswith(self.covering):
                continue
            if is_empty and any(d.startswith(path + self.separator) for d in self.declared):
                continue  # an empty parent: its declared children are absent, judged below
            if path not in unknown:
                unknown.append(path)
        if unknown:
            stats.unknown_fields.update(unknown)
        presence = list(is_present)
        if all(presence):
            return None
        missing = [d for d, present in zip(self.declared, presence, strict=True) if not present]
        if unknown:
            detail = f"{listed(unknown)} not declared, declared {listed(missing)} absent"
            return UNEXPECTED_FIELD, detail
        required = [
            field.path or ""
            for field, present in zip(self.fields, presence, strict=True)
            if field.required and not present
        ]
        if required:
            return MISSING_FIELD, f"required {listed(required)} absent"
        return None
