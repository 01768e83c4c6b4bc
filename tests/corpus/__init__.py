"""The hostile-input corpus: source files nobody's generator would write, with exact outcomes.

One module per format (``FORMATS``: ``delimited``, ``fixed_width``, ``hl7v2``, ``xml``,
``jsonl``, ``sql``), each exporting ``CASES: list[CorpusCase]``. ``test_corpus_readers.py``
asserts every file case's rows and unreadable records through its reader (the SQL cases:
``test_corpus_sql.py``); ``tests/unit/extract/test_corpus_physical.py`` asserts, by the independent
physical count (etl.extract.physical), that physical = parsed + unreadable for every case.
``tests/corpus/reading.py`` feeds a case to its reader.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FORMATS = ("delimited", "fixed_width", "hl7v2", "xml", "jsonl", "sql")


@dataclass(frozen=True)
class Unreadable:
    """An unreadable record the reader must report: its reason code and where it is."""

    reason: str
    record: int | None  # physical record ordinal in the file (None: text outside any record)
    line: int | None = None  # 1-based line (HL7 v2: segment) where the record starts, if known


@dataclass(frozen=True)
class CorpusCase:
    name: str  # the test id: what is hostile about the file
    dataset: dict[str, Any]  # FileDataset fields (file, format, encoding, key, columns/fields...)
    content: bytes  # the file, byte for byte
    physical: int  # physical records in the file, counted by hand
    rows: list[dict[str, str | None]]  # readable rows, in order, values by column name
    unreadable: list[Unreadable] = field(default_factory=list)
    # Names or paths the spec does not declare, with the number of records carrying each.
    unknown_fields: dict[str, int] = field(default_factory=dict)

    @property
    def filename(self) -> str:
        return self.dataset["file"]


def case_builder(dataset: dict[str, Any]) -> Callable[..., CorpusCase]:
    """``case(name, content, physical, rows, *unreadable, **extra)``: a case of ``dataset``."""

    def case(name: str, content: bytes, physical: int, rows: list, *unreadable, **extra):
        return CorpusCase(name, dataset, content, physical, rows, list(unreadable), **extra)

    return case


def cases(format_name: str) -> list[CorpusCase]:
    """The ``CASES`` of one format's module."""
    return importlib.import_module(f"{__name__}.{format_name}").CASES
