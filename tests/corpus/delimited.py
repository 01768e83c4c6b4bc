"""Hostile delimited files: header line, then records (etl.extract.text_records).

Lines are what ``grep -n`` counts (LFs): the header is line 1. Physical records are counted by
hand: terminators outside quotes, minus the header, plus a last record without terminator.
"""

from __future__ import annotations

from tests.corpus import CorpusCase, Unreadable

COLUMNS = ["PATIENT_ID", "NAMN", "KOD"]


def dataset(encoding: str = "cp1252", file: str = "patienter.csv") -> dict:
    return {
        "file": file,
        "format": "delimited",
        "encoding": encoding,
        "key": ["PATIENT_ID"],
        "columns": COLUMNS,
    }


def row(patient_id: str, name: str, code: str) -> dict[str, str | None]:
    return {"PATIENT_ID": patient_id, "NAMN": name, "KOD": code}


HEADER = b"PATIENT_ID;NAMN;KOD"

CASES = [
    CorpusCase(
        name="valid_crlf_with_empty_fields_and_spaces",
        dataset=dataset(),
        content=HEADER + b"\r\nP1;Anna ;I21.9\r\nP2;;\r\nP3; Bo Ek ;\r\n",
        physical=3,
        rows=[row("P1", "Anna ", "I21.9"), row("P2", "", ""), row("P3", " Bo Ek ", "")],
    ),
    CorpusCase(
        name="extra_column",
        dataset=dataset(),
        content=HEADER + b"\r\nP1;Anna;A01\r\nP2;Bo;A02;EXTRA\r\nP3;Cia;A03\r\n",
        physical=3,
        rows=[row("P1", "Anna", "A01"), row("P3", "Cia", "A03")],
        unreadable=[Unreadable("invalid_field_count", 2, 3)],
    ),
    CorpusCase(
        name="missing_last_field_is_not_padded",
        dataset=dataset(),
        content=HEADER + b"\r\nP1;Anna;A01\r\nP2;Bo\r\nP3;Cia;A03\r\n",
        physical=3,
        rows=[row("P1", "Anna", "A01"), row("P3", "Cia", "A03")],
        unreadable=[Unreadable("invalid_field_count", 2, 3)],
    ),
    CorpusCase(
        name="open_quote_mid_file_runs_to_the_end",
        dataset=dataset(),
        content=HEADER + b'\nP1;Anna;A01\nP2;"Bo;A02\nP3;Cia;A03\nP4;Dan;A04\n',
        physical=2,
        rows=[row("P1", "Anna", "A01")],
        unreadable=[Unreadable("unterminated_quote", 2, 3)],
    ),
    CorpusCase(
        name="quoted_delimiter_and_escaped_quotes",
        dataset=dataset(),
        content=(
            HEADER + b'\r\nP1;"Anna; Maria";"A01"\r\nP2;"Bo ""Bosse"" Ek";""\r\n"P3";"";A03\r\n'
        ),
        physical=3,
        rows=[
            row("P1", "Anna; Maria", "A01"),
            row("P2", 'Bo "Bosse" Ek', ""),
            row("P3", "", "A03"),
        ],
    ),
    CorpusCase(
        # A note's line break (the file's own terminator, inside quotes) is its content.
        name="quoted_newline_in_free_text_is_one_record_and_loaded",
        dataset=dataset(),
        content=HEADER + b'\nP1;"rad ett\nrad tva\tx";A01\nP2;Bo;A02\n',
        physical=2,
        rows=[row("P1", "rad ett\nrad tva\tx", "A01"), row("P2", "Bo", "A02")],
    ),
    CorpusCase(
        name="crlf_inside_quotes_in_an_lf_file_is_a_line_break_of_the_note",
        dataset=dataset(),
        content=HEADER + b'\nP1;"rad ett\r\nrad tva";A01\nP2;Bo;A02\n',
        physical=2,
        rows=[row("P1", "rad ett\r\nrad tva", "A01"), row("P2", "Bo", "A02")],
    ),
    CorpusCase(
        name="quoted_newline_in_a_key_is_not_loaded",
        dataset=dataset(),
        content=HEADER + b'\n"P\n1";Anna;A01\nP2;Bo;A02\n',
        physical=2,
        rows=[row("P2", "Bo", "A02")],
        unreadable=[Unreadable("control_character_in_field", 1, 2)],
    ),
    CorpusCase(
        name="bare_cr_inside_quotes_is_not_loaded",
        dataset=dataset(),
        content=HEADER + b'\nP1;"rad ett\rrad tva";A01\nP2;Bo;A02\n',
        physical=2,
        rows=[row("P2", "Bo", "A02")],
        unreadable=[Unreadable("control_character_in_field", 1, 2)],
    ),
    CorpusCase(
        name="bare_lf_inside_quotes_of_a_crlf_file_is_not_loaded",
        dataset=dataset(),
        content=HEADER + b'\r\nP1;"rad ett\nrad tva";A01\r\nP2;Bo;A02\r\n',
        physical=2,
        rows=[row("P2", "Bo", "A02")],
        unreadable=[Unreadable("control_character_in_field", 1, 2)],
    ),
    CorpusCase(
        name="bare_cr_in_a_field_of_a_crlf_file_does_not_split_the_record",
        dataset=dataset(),
        content=HEADER + b"\r\nP1;An\rna;A01\r\nP2;Bo;A02\r\n",
        physical=2,
        rows=[row("P2", "Bo", "A02")],
        unreadable=[Unreadable("control_character_in_field", 1, 2)],
    ),
    CorpusCase(
        name="bare_lf_in_a_field_of_a_crlf_file",
        dataset=dataset(),
        content=HEADER + b"\r\nP1;An\nna;A01\r\nP2;Bo;A02\r\n",
        physical=2,
        rows=[row("P2", "Bo", "A02")],
        unreadable=[Unreadable("control_character_in_field", 1, 2)],
    ),
    CorpusCase(
        name="nul_in_key",
        dataset=dataset(),
        content=HEADER + b"\r\nP1\x00;Anna;A01\r\nP2;Bo;A02\r\n",
        physical=2,
        rows=[row("P2", "Bo", "A02")],
        unreadable=[Unreadable("control_character_in_field", 1, 2)],
    ),
    CorpusCase(
        name="undecodable_byte_in_key_cp1252",
        dataset=dataset("cp1252"),
        content=HEADER + b"\r\nP1;\xc5str\xf6m;A01\r\nP\x81;Bo;A02\r\n",
        physical=2,
        rows=[row("P1", "Åström", "A01")],
        unreadable=[Unreadable("undecodable_bytes", 2, 3)],
    ),
    CorpusCase(
        name="undecodable_byte_in_key_utf8",
        dataset=dataset("utf-8"),
        content=HEADER + b"\nP\xc3;Bo;A01\nP2;\xc3\x85str\xc3\xb6m;A02\n",
        physical=2,
        rows=[row("P2", "Åström", "A02")],
        unreadable=[Unreadable("undecodable_bytes", 1, 2)],
    ),
    CorpusCase(
        name="undecodable_byte_in_key_iso646_se",
        dataset=dataset("iso646_se"),
        content=HEADER + b"\r\nP1;J|nk|ping;A01\r\nP\xe5;Bo;A02\r\n",
        physical=2,
        rows=[row("P1", "Jönköping", "A01")],
        unreadable=[Unreadable("undecodable_bytes", 2, 3)],
    ),
    CorpusCase(
        name="replacement_character_literal",
        dataset=dataset("utf-8"),
        content=HEADER + b"\nP1;B\xef\xbf\xbd;A01\nP2;Bo;A02\n",
        physical=2,
        rows=[row("P2", "Bo", "A02")],
        unreadable=[Unreadable("replacement_character", 1, 2)],
    ),
    CorpusCase(
        name="trailing_record_without_terminator",
        dataset=dataset(),
        content=HEADER + b"\r\nP1;Anna;A01\r\nP2;Bo;A02",
        physical=2,
        rows=[row("P1", "Anna", "A01"), row("P2", "Bo", "A02")],
    ),
    CorpusCase(
        name="header_only",
        dataset=dataset(),
        content=HEADER + b"\r\n",
        physical=0,
        rows=[],
    ),
    CorpusCase(
        name="empty_file",
        dataset=dataset(),
        content=b"",
        physical=0,
        rows=[],
    ),
    CorpusCase(
        name="utf8_byte_order_mark",
        dataset=dataset("utf-8"),
        content=b"\xef\xbb\xbf" + HEADER + b"\r\nP1;\xc3\x85sa;A01\r\n",
        physical=1,
        rows=[row("P1", "Åsa", "A01")],
    ),
    CorpusCase(
        name="mixed_terminators_lf_line_in_a_crlf_file",
        dataset=dataset(),
        content=HEADER + b"\r\nP1;Anna;A01\nP2;Bo;A02\r\nP3;Cia;A03\r\n",
        physical=2,
        rows=[row("P3", "Cia", "A03")],
        unreadable=[Unreadable("invalid_field_count", 1, 2)],
    ),
    CorpusCase(
        name="mixed_terminators_crlf_line_in_an_lf_file",
        dataset=dataset(),
        content=HEADER + b"\nP1;Anna;A01\r\nP2;Bo;A02\n",
        physical=2,
        rows=[row("P2", "Bo", "A02")],
        unreadable=[Unreadable("control_character_in_field", 1, 2)],
    ),
    CorpusCase(
        name="empty_line_mid_file_is_a_record",
        dataset=dataset(),
        content=HEADER + b"\r\nP1;Anna;A01\r\n\r\nP2;Bo;A02\r\n",
        physical=3,
        rows=[row("P1", "Anna", "A01"), row("P2", "Bo", "A02")],
        unreadable=[Unreadable("invalid_field_count", 2, 3)],
    ),
    CorpusCase(
        name="text_after_a_closing_quote",
        dataset=dataset(),
        content=HEADER + b'\r\nP1;"Anna"s;A01\r\nP2;Bo;A02\r\n',
        physical=2,
        rows=[row("P2", "Bo", "A02")],
        unreadable=[Unreadable("invalid_quoting", 1, 2)],
    ),
    CorpusCase(
        name="tab_delimited_with_a_quoted_tab",
        dataset={**dataset(), "delimiter": "\t"},
        content=b'PATIENT_ID\tNAMN\tKOD\nP1\t"An\tna"\tA01\nP2\tBo\tA02\n',
        physical=2,
        rows=[row("P1", "An\tna", "A01"), row("P2", "Bo", "A02")],
    ),
    CorpusCase(
        name="several_bad_records_and_the_rest_carries_on",
        dataset=dataset(),
        content=(
            HEADER + b'\r\nP1;Anna;A01\r\nP2;Bo\r\nP3;"Cia\r\nx";A03\r\nP4;Dan;A04\r\nP5;\x00;A05'
        ),
        physical=5,
        rows=[row("P1", "Anna", "A01"), row("P3", "Cia\r\nx", "A03"), row("P4", "Dan", "A04")],
        unreadable=[
            Unreadable("invalid_field_count", 2, 3),
            Unreadable("control_character_in_field", 5, 7),
        ],
    ),
    CorpusCase(
        name="one_column_with_empty_values",
        dataset={**dataset(), "key": ["KOD"], "columns": ["KOD"]},
        content=b"KOD\r\nA01\r\n\r\nA02\r\n\r\n",
        physical=4,
        rows=[{"KOD": "A01"}, {"KOD": ""}, {"KOD": "A02"}, {"KOD": ""}],
    ),
]
