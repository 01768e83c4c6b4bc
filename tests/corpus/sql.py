"""Hostile SQL sources: SQLite files whose values no reader should pass on as they are.

``dataset`` holds SqlDataset fields (``table``, ``key``, ``columns``); ``content`` is the SQLite
database file, byte for byte; ``physical`` is the table's ``COUNT(*)``. Rows are read in key
order, so a record ordinal is the row's place in that order. Text that is not UTF-8 is stored
as raw bytes (``CAST(X'..' AS TEXT)``), as a legacy system writing Latin-1 into SQLite does.
"""

from __future__ import annotations

import sqlite3

from tests.corpus import CorpusCase, Unreadable

TABLE = "patient"
COLUMNS = ["PATIENT_ID", "FAMILY_NAME", "NOTE"]
DATASET = {"table": TABLE, "key": ["PATIENT_ID"], "columns": COLUMNS}


def database(*rows: str) -> bytes:
    """A SQLite file with one ``patient`` table holding the rows (SQL value lists)."""
    connection = sqlite3.connect(":memory:")
    connection.execute(f"CREATE TABLE {TABLE} (PATIENT_ID TEXT, FAMILY_NAME TEXT, NOTE TEXT)")
    for row in rows:
        connection.execute(f"INSERT INTO {TABLE} VALUES ({row})")
    connection.commit()
    content = connection.serialize()
    connection.close()
    return content


def row(patient_id: str, family_name: str | None, note: str | None = None) -> dict:
    return {"PATIENT_ID": patient_id, "FAMILY_NAME": family_name, "NOTE": note}


CASES = [
    CorpusCase(
        name="clean rows, Swedish letters, a line break and a tab in free text",
        dataset=DATASET,
        content=database(
            "'P1', 'Åström', 'rad ett' || char(13, 10) || 'rad två'",
            "'P2', 'Öberg', 'kolumn' || char(9) || 'tab'",
            "'P3', NULL, NULL",
        ),
        physical=3,
        rows=[
            row("P1", "Åström", "rad ett\r\nrad två"),
            row("P2", "Öberg", "kolumn\ttab"),
            row("P3", None),
        ],
    ),
    CorpusCase(
        name="a NUL byte in a key",
        dataset=DATASET,
        content=database(
            "'P1', 'Berg', NULL", "'P2' || char(0) || '9', 'Lind', NULL", "'P3', 'Ek', NULL"
        ),
        physical=3,
        rows=[row("P1", "Berg"), row("P3", "Ek")],
        unreadable=[Unreadable("nul_in_field", 2)],
    ),
    CorpusCase(
        name="Latin-1 bytes in a UTF-8 name and a stored U+FFFD",
        dataset=DATASET,
        # X'C5737472F66D' is "Åström" in Latin-1: not UTF-8.
        content=database(
            "'P1', CAST(X'C5737472F66D' AS TEXT), NULL",
            "'P2', 'Lind', NULL",
            "'P3', 'Ek' || char(65533), NULL",
        ),
        physical=3,
        rows=[row("P2", "Lind")],
        unreadable=[Unreadable("undecodable_bytes", 1), Unreadable("undecodable_bytes", 3)],
    ),
    CorpusCase(
        name="a control character in a name and a line break in a key",
        dataset=DATASET,
        content=database(
            "'P1', 'Berg' || char(7), NULL",
            "'P2' || char(10), 'Lind', NULL",
            "'P3', 'Ek', 'fri text' || char(10) || 'rad två'",
        ),
        physical=3,
        rows=[row("P3", "Ek", "fri text\nrad två")],
        unreadable=[Unreadable("control_character", 1), Unreadable("control_character", 2)],
    ),
    CorpusCase(
        name="UTF-8 encoded surrogate bytes (CESU-8) in free text",
        dataset=DATASET,
        content=database("'P1', 'Berg', CAST(X'61EDA080' AS TEXT)", "'P2', 'Lind', 'ok'"),
        physical=2,
        rows=[row("P2", "Lind", "ok")],
        unreadable=[Unreadable("undecodable_bytes", 1)],
    ),
    CorpusCase(
        name="an empty table",
        dataset=DATASET,
        content=database(),
        physical=0,
        rows=[],
    ),
]
