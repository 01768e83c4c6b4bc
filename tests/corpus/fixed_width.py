"""Hostile fixed-width files: no header, fields by width (etl.extract.text_records).

Every record is 12 characters: PATIENT_ID 4, NAMN 6, KOD 2. Lines are what ``grep -n`` counts.
"""

from __future__ import annotations

from tests.corpus import CorpusCase, Unreadable
from tests.corpus.delimited import row  # the same three columns, by width


def dataset(encoding: str = "cp850", file: str = "patreg.dat") -> dict:
    return {
        "file": file,
        "format": "fixed_width",
        "encoding": encoding,
        "key": ["PATIENT_ID"],
        "fields": [
            {"name": "PATIENT_ID", "width": 4},
            {"name": "NAMN", "width": 6},
            {"name": "KOD", "width": 2},
        ],
    }


CASES = [
    CorpusCase(
        name="valid_spaces_are_kept",
        dataset=dataset(),
        content=b"P1  Anna  K1\r\n  P2 Bo Ek  \r\n            \r\n",
        physical=3,
        rows=[
            row("P1  ", "Anna  ", "K1"),
            row("  P2", " Bo Ek", "  "),
            row("    ", "      ", "  "),
        ],
    ),
    CorpusCase(
        name="short_line_is_not_padded",
        dataset=dataset(),
        content=b"P1  Anna  K1\r\nP2  Bo    K\r\nP3  Cia   K3\r\n",
        physical=3,
        rows=[row("P1  ", "Anna  ", "K1"), row("P3  ", "Cia   ", "K3")],
        unreadable=[Unreadable("invalid_record_width", 2, 2)],
    ),
    CorpusCase(
        name="long_line_is_not_cut",
        dataset=dataset(),
        content=b"P1  Anna  K1\nP2  Bo    K2X\nP3  Cia   K3\n",
        physical=3,
        rows=[row("P1  ", "Anna  ", "K1"), row("P3  ", "Cia   ", "K3")],
        unreadable=[Unreadable("invalid_record_width", 2, 2)],
    ),
    CorpusCase(
        name="trailing_record_without_terminator",
        dataset=dataset(),
        content=b"P1  Anna  K1\r\nP2  Bo    K2",
        physical=2,
        rows=[row("P1  ", "Anna  ", "K1"), row("P2  ", "Bo    ", "K2")],
    ),
    CorpusCase(
        name="nul_in_key",
        dataset=dataset(),
        content=b"P1\x00 Anna  K1\r\nP2  Bo    K2\r\n",
        physical=2,
        rows=[row("P2  ", "Bo    ", "K2")],
        unreadable=[Unreadable("control_character_in_field", 1, 1)],
    ),
    CorpusCase(
        name="undecodable_byte_in_key_cp1252",
        dataset=dataset("cp1252"),
        content=b"P\x8d  Anna  K1\r\nP2  \xc5sa   K2\r\n",
        physical=2,
        rows=[row("P2  ", "Åsa   ", "K2")],
        unreadable=[Unreadable("undecodable_bytes", 1, 1)],
    ),
    CorpusCase(
        name="iso646_se_letters_and_an_8_bit_byte",
        dataset=dataset("iso646_se"),
        content=b"P1  J|nk} K1\nP\xc5  Bo    K2\n",
        physical=2,
        rows=[row("P1  ", "Jönkå ", "K1")],
        unreadable=[Unreadable("undecodable_bytes", 2, 2)],
    ),
    CorpusCase(
        name="bare_cr_in_place_of_a_character_of_a_crlf_file",
        dataset=dataset(),
        content=b"P1  An\rna K1\r\nP2  Bo    K2\r\n",
        physical=2,
        rows=[row("P2  ", "Bo    ", "K2")],
        unreadable=[Unreadable("control_character_in_field", 1, 1)],
    ),
    CorpusCase(
        name="bare_lf_does_not_split_a_crlf_record",
        dataset=dataset(),
        content=b"P1  Anna  K1\r\nP2  B\no   K2\r\nP3  Cia   K3\r\n",
        physical=3,
        rows=[row("P1  ", "Anna  ", "K1"), row("P3  ", "Cia   ", "K3")],
        unreadable=[Unreadable("control_character_in_field", 2, 2)],
    ),
    CorpusCase(
        name="mixed_terminators_crlf_line_in_an_lf_file",
        dataset=dataset(),
        content=b"P1  Anna  K1\nP2  Bo    K2\r\nP3  Cia   K3\n",
        physical=3,
        rows=[row("P1  ", "Anna  ", "K1"), row("P3  ", "Cia   ", "K3")],
        unreadable=[Unreadable("invalid_record_width", 2, 2)],
    ),
    CorpusCase(
        name="empty_line_is_a_record",
        dataset=dataset(),
        content=b"P1  Anna  K1\r\n\r\nP2  Bo    K2\r\n",
        physical=3,
        rows=[row("P1  ", "Anna  ", "K1"), row("P2  ", "Bo    ", "K2")],
        unreadable=[Unreadable("invalid_record_width", 2, 2)],
    ),
    CorpusCase(
        name="replacement_character_literal_utf8",
        dataset=dataset("utf-8"),
        content=b"P1  B\xef\xbf\xbd    K1\nP2  \xc3\x85sa   K2\n",
        physical=2,
        rows=[row("P2  ", "Åsa   ", "K2")],
        unreadable=[Unreadable("replacement_character", 1, 1)],
    ),
    CorpusCase(
        name="utf8_byte_order_mark_is_not_part_of_the_first_record",
        dataset=dataset("utf-8"),
        content=b"\xef\xbb\xbfP1  Anna  K1\nP2  Bo    K2\n",
        physical=2,
        rows=[row("P1  ", "Anna  ", "K1"), row("P2  ", "Bo    ", "K2")],
    ),
    CorpusCase(
        name="quotes_are_plain_text",
        dataset=dataset(),
        content=b'P1  "Anna K1\nP2  Bo"   K2\n',
        physical=2,
        rows=[row("P1  ", '"Anna ', "K1"), row("P2  ", 'Bo"   ', "K2")],
    ),
    CorpusCase(
        name="empty_file",
        dataset=dataset(),
        content=b"",
        physical=0,
        rows=[],
    ),
]
