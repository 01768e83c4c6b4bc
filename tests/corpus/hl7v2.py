"""Hostile HL7 v2 archives: changed line terminators, MLLP junk, bad escapes, bad bytes, cut lines.

Messages are ADT^A01 (one row per message) or ORU^R01 (one row per OBX). Line numbers count
every CR, LF and CRLF as one line end; a message's ``line`` is where its MSH is. Identity
numbers are Skatteverket test personnummer.
"""

from __future__ import annotations

from tests.corpus import CorpusCase, Unreadable

PNR = ["199001012385", "199001022384", "199001032391", "199001032383"]

INVALID = "invalid_hl7_message"

ADT = {
    "file": "adt.hl7",
    "format": "hl7v2",
    "encoding": "iso-8859-1",
    "key": ["patient_number"],
    "message_types": ["ADT^A01"],
    "fields": [
        {"name": "message_id", "path": "MSH.10"},
        {"name": "patient_number", "path": "PID.2"},
        {"name": "personnummer", "path": "PID.3.1"},
        {"name": "family_name", "path": "PID.5.1"},
        {"name": "given_name", "path": "PID.5.2"},
        {"name": "ward", "path": "PV1.3.1"},
    ],
}
ADT_UTF8 = {**ADT, "encoding": "utf-8"}

ORU = {
    "file": "lab.hl7",
    "format": "hl7v2",
    "encoding": "iso-8859-1",
    "key": ["message_id", "set_id"],
    "message_types": ["ORU^R01"],
    "row_segment": "OBX",
    "fields": [
        {"name": "message_id", "path": "MSH.10"},
        {"name": "patient_number", "path": "PID.2"},
        {"name": "set_id", "path": "OBX.1"},
        {"name": "analysis", "path": "OBX.3.1"},
        {"name": "value", "path": "OBX.5"},
        {"name": "unit", "path": "OBX.6"},
    ],
}

REPEATS = {
    **ADT,
    "fields": [
        *ADT["fields"][:3],
        {"name": "identifiers", "path": "PID.3"},
        *ADT["fields"][3:],
    ],
}


def msh(control_id: str, message_type: str = "ADT^A01", separator: str = "|") -> str:
    fields = ["MSH", "^~\\&", "PAS", "SU", "CORE", "VGR", "202403011200", "", message_type]
    return separator.join([*fields, control_id, "P", "2.5"])


def adt(
    n: int,
    end: str = "\r",
    *,
    family: str = "Åberg",
    given: str = "Sven",
    patient: str | None = None,
    message_type: str = "ADT^A01",
    extra: tuple[str, ...] = (),
    pid: bool = True,
) -> str:
    """An ADT message of three lines (MSH, PID, PV1) plus ``extra`` segments."""
    segments = [msh(f"M{n}", message_type)]
    if pid:
        segments.append(f"PID|1|{patient or f'P{n}'}|{PNR[n % 4]}^^^SKV^PN||{family}^{given}")
    segments += ["PV1|1|I|MED^^^SU", *extra]
    return end.join(segments) + end


def row(n: int, family: str = "Åberg", given: str = "Sven", **overrides) -> dict:
    values = {
        "message_id": f"M{n}",
        "patient_number": f"P{n}",
        "personnummer": PNR[n % 4],
        "family_name": family,
        "given_name": given,
        "ward": "MED",
    }
    return {**values, **overrides}


def oru(n: int, *results: tuple[str, str, str]) -> str:
    segments = [msh(f"L{n}", "ORU^R01"), f"PID|1|P{n}", "OBR|1|ORD1|LIS1|BLOD^Blodstatus"]
    segments += [
        f"OBX|{i}|NM|{code}^Analys||{value}|{unit}"
        for i, (code, value, unit) in enumerate(results, 1)
    ]
    return "\r".join(segments) + "\r"


def result(n: int, set_id: str, code: str, value: str, unit: str) -> dict:
    return {
        "message_id": f"L{n}",
        "patient_number": f"P{n}",
        "set_id": set_id,
        "analysis": code,
        "value": value,
        "unit": unit,
    }


def latin(text: str) -> bytes:
    return text.encode("iso-8859-1")


def utf8(text: str) -> bytes:
    """UTF-8, with surrogate-escaped characters written as the raw (undecodable) byte."""
    return text.encode("utf-8", errors="surrogateescape")


CASES = [
    CorpusCase(
        "line-terminator-changes-cr-then-lf-then-crlf",
        ADT,
        latin(adt(1, "\r") + adt(2, "\n") + adt(3, "\r\n")),
        physical=3,
        rows=[row(1), row(2), row(3)],
    ),
    CorpusCase(
        "crlf-with-blank-lines-between-messages",
        ADT,
        latin(adt(1, "\r\n") + "\r\n\r\n" + adt(2, "\r\n") + "   \r\n"),
        physical=2,
        rows=[row(1), row(2)],
    ),
    CorpusCase(
        "mllp-frames-with-junk-between",
        ADT,
        latin(f"\x0b{adt(1)}\x1c\rskräp mellan ramar\rmer\r\x0b{adt(2)}\x1c\r"),
        physical=2,
        rows=[row(1), row(2)],
        unreadable=[Unreadable(INVALID, None, 5)],
    ),
    CorpusCase(
        "mllp-garbage-frame-and-end-block-without-cr",
        ADT,
        latin(f"\x0b{adt(1)[:-1]}\x1c\r\x0bINTE HL7\x1c\r\x0b{adt(2)}\x1c"),
        physical=2,
        rows=[row(1), row(2)],
        unreadable=[Unreadable(INVALID, None, 4)],
    ),
    CorpusCase(
        "mllp-start-block-inside-a-line-cuts-the-message-before-it",
        ADT,
        latin(adt(1).replace("PV1|1|I|MED^^^SU\r", "PV1|1|I|ME") + f"\x0b{adt(2)}\x1c\r"),
        physical=2,
        rows=[row(2)],
        unreadable=[Unreadable(INVALID, 1, 1)],
    ),
    CorpusCase(
        "stray-text-before-the-first-msh",
        ADT,
        latin("Export 2024-03-01\rrader: 2\r" + adt(1) + adt(2)),
        physical=2,
        rows=[row(1), row(2)],
        unreadable=[Unreadable(INVALID, None, 1)],
    ),
    CorpusCase(
        "batch-envelope-segments-are-not-records",
        ADT,
        latin("FHS|^~\\&|PAS\rBHS|^~\\&|PAS\r" + adt(1) + adt(2) + "BTS|2\rFTS|1\r"),
        physical=2,
        rows=[row(1), row(2)],
    ),
    CorpusCase(
        "unknown-escape-Q",
        ADT,
        latin(adt(1) + adt(2, family="Ber\\Q\\g") + adt(3)),
        physical=3,
        rows=[row(1), row(3)],
        unreadable=[Unreadable("invalid_escape", 2, 4)],
    ),
    CorpusCase(
        "unterminated-escape-at-the-end-of-a-component",
        ADT,
        latin(adt(1) + adt(2, given="Sven\\T") + adt(3, family="Berg\\")),
        physical=3,
        rows=[row(1)],
        unreadable=[
            Unreadable("invalid_escape", 2, 4),
            Unreadable("invalid_escape", 3, 7),
        ],
    ),
    CorpusCase(
        "valid-escapes-hex-and-separators-decode",
        ADT,
        latin(adt(1, family="\\XC5\\berg", given="Lars\\T\\Eva \\F\\ \\S\\\\E\\")),
        physical=1,
        rows=[row(1, family="Åberg", given="Lars&Eva | ^\\")],
    ),
    CorpusCase(
        "hex-escape-not-valid-in-the-encoding-and-hex-nul",
        ADT_UTF8,
        utf8(adt(1) + adt(2, family="\\XEDA080\\") + adt(3, given="\\X00\\")),
        physical=3,
        rows=[row(1)],
        unreadable=[
            Unreadable("invalid_escape", 2, 4),
            Unreadable("control_character_in_field", 3, 7),
        ],
    ),
    CorpusCase(
        "nul-and-sub-characters-in-fields",
        ADT,
        latin(adt(1) + adt(2, family="Ber\x00g") + adt(3, patient="P\x1a3") + adt(4)),
        physical=4,
        rows=[row(1), row(4)],
        unreadable=[
            Unreadable("control_character_in_field", 2, 4),
            Unreadable("control_character_in_field", 3, 7),
        ],
    ),
    CorpusCase(
        "undecodable-byte-in-pid5-and-in-the-key-field",
        ADT_UTF8,
        utf8(adt(1) + adt(2, family="\udcc5berg") + adt(3, patient="P\udcff3") + adt(4)),
        physical=4,
        rows=[row(1), row(4)],
        unreadable=[
            Unreadable("undecodable_bytes", 2, 4),
            Unreadable("undecodable_bytes", 3, 7),
        ],
    ),
    CorpusCase(
        "adt-without-pid",
        ADT,
        latin(adt(1) + adt(2, pid=False) + adt(3)),
        physical=3,
        rows=[row(1), row(3)],
        unreadable=[Unreadable("missing_segment", 2, 4)],
        unknown_fields={"missing:PID": 1},
    ),
    CorpusCase(
        "unexpected-message-type",
        ADT,
        latin(adt(1) + adt(2, message_type="ADT^A08") + adt(3)),
        physical=3,
        rows=[row(1), row(3)],
        unreadable=[Unreadable("unexpected_message_type", 2, 4)],
    ),
    CorpusCase(
        "a-bare-lf-inside-a-field-cuts-the-message",
        ADT,
        latin(adt(1) + adt(2, family="Ber\ng") + adt(3)),
        physical=3,
        rows=[row(1), row(3)],
        unreadable=[Unreadable(INVALID, 2, 4)],
    ),
    CorpusCase(
        "a-value-cut-by-a-cr-and-a-line-of-sub-characters",
        ADT,
        latin(adt(1, family="Ber\rg") + msh("M2") + "\r\x1a\x1a\x1a\r" + adt(3)),
        physical=3,
        rows=[row(3)],
        unreadable=[Unreadable(INVALID, 1, 1), Unreadable(INVALID, 2, 5)],
    ),
    CorpusCase(
        "repeated-fields-read-the-first-repetition-or-the-whole-field",
        REPEATS,
        latin(
            adt(1).replace(
                f"{PNR[1]}^^^SKV^PN||Åberg^Sven",
                f"{PNR[1]}^^^SKV^PN~19810829M071^^^VGR^RN||Åberg^Sven~Berg^Sven",
            )
        ),
        physical=1,
        rows=[
            {
                **row(1),
                "identifiers": f"{PNR[1]}^^^SKV^PN~19810829M071^^^VGR^RN",
            }
        ],
    ),
    CorpusCase(
        "utf8-byte-order-mark-before-the-first-msh",
        ADT_UTF8,
        b"\xef\xbb\xbf" + utf8(adt(1) + adt(2)),
        physical=2,
        rows=[row(1), row(2)],
    ),
    CorpusCase(
        "empty-file",
        ADT,
        b"",
        physical=0,
        rows=[],
    ),
    CorpusCase(
        "field-separator-changes-mid-file",
        ADT,
        latin(adt(1) + adt(2).replace("|", "#") + adt(3)),
        physical=3,
        rows=[row(1), row(2), row(3)],
        unknown_fields={"separators:#^~\\&": 1},
    ),
    CorpusCase(
        "header-without-four-encoding-characters",
        ADT,
        latin(adt(1) + adt(2).replace("MSH|^~\\&|", "MSH|^~|") + adt(3)),
        physical=3,
        rows=[row(1), row(3)],
        unreadable=[Unreadable(INVALID, 2, 4)],
    ),
    CorpusCase(
        "unknown-segments-are-counted-per-message",
        ADT,
        latin(adt(1, extra=("ZXY|1", "ZXY|2", "EVN|A01")) + adt(2, extra=("EVN|A01",))),
        physical=2,
        rows=[row(1), row(2)],
        unknown_fields={"ZXY": 1, "EVN": 2},
    ),
    CorpusCase(
        "oru-rows-share-their-message-and-a-message-without-obx",
        ORU,
        latin(
            oru(1, ("NPU02319", "135", "g/L"), ("NPU03568", "<0,8", "x10(9)/L"))
            + oru(2)
            + oru(3, ("NPU03429", "3,5-4,6", "mmol/L"))
        ),
        physical=3,
        rows=[
            result(1, "1", "NPU02319", "135", "g/L"),
            result(1, "2", "NPU03568", "<0,8", "x10(9)/L"),
            result(3, "1", "NPU03429", "3,5-4,6", "mmol/L"),
        ],
        unreadable=[Unreadable("missing_row_segment", 2, 6)],
        unknown_fields={"OBR": 3, "missing:OBX": 1},
    ),
]
