"""Hostile JSON lines exports: a patient register whose protected identity (``skydd``) must
never load as "none" because a key was renamed, dropped, doubled or damaged.

Record ``n`` is on line ``n`` unless a case has blank lines. Identity numbers are Skatteverket
test numbers.
"""

from __future__ import annotations

import json

from tests.corpus import Unreadable, case_builder
from tests.corpus.register import NUMBERS, row

DATASET = {
    "file": "patienter.jsonl",
    "format": "jsonl",
    "encoding": "utf-8",
    "key": ["id"],
    "fields": [
        {"name": "id", "path": "id", "required": True},
        {"name": "identity_type", "path": "identitet.typ", "required": True},
        {"name": "identity_number", "path": "identitet.nummer", "required": True},
        {"name": "protection", "path": "skydd", "required": True},
        {"name": "note", "path": "anteckning"},  # optional: some records have none
    ],
}


def patient(n: int, protection: str | None = None, **changes) -> str:
    """Record ``n`` (``P<n>``, the n-th test number) as one line of JSON, keys in this order."""
    record = {
        "id": f"P{n}",
        "identitet": {"typ": "pnr", "nummer": NUMBERS[n - 1]},
        "skydd": protection,
        **changes,
    }
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def lines(*records: str, newline: str = "\n") -> bytes:
    return "".join(record + newline for record in records).encode("utf-8")


def nested(levels: int) -> str:
    """A value that, as a key's value in a record, makes the record ``levels`` deep."""
    return "[" * (levels - 1) + "1" + "]" * (levels - 1)


case = case_builder(DATASET)

CASES = [
    case(
        "key-renamed-after-the-third-record",
        lines(
            patient(1, "1"),
            patient(2),
            patient(3, "2"),
            patient(4).replace('"skydd":null', '"skyddadIdentitet":"1"'),
            patient(5),
        ),
        5,
        [row(1, "1"), row(2), row(3, "2"), row(5)],
        Unreadable("unexpected_field", 4, 4),
        unknown_fields={"skyddadIdentitet": 1},
    ),
    case(
        "required-key-dropped-optional-key-absent",
        lines(
            patient(1, "1", anteckning="uppföljning"),
            patient(2, "1").replace(',"skydd":"1"', ""),
            patient(3, "2"),
        ),
        3,
        [row(1, "1", "uppföljning"), row(3, "2")],
        Unreadable("missing_field", 2, 2),
    ),
    case(
        "unknown-keys-are-counted-and-the-rows-load",
        lines(
            patient(1, anteckning=None, telefon="0700000000"),
            patient(
                2, "1", anteckning="", identitet={"typ": "pnr", "nummer": NUMBERS[1], "av": "SE"}
            ),
            patient(3),
            # an unknown key and a declared one absent: a rename for all the reader knows
            patient(4, telefon="0700000002").replace(',"skydd":null', ""),
        ),
        4,
        [row(1), row(2, "1", ""), row(3)],
        Unreadable("unexpected_field", 4, 4),
        unknown_fields={"telefon": 2, "identitet.av": 1},
    ),
    case(
        "duplicate-keys-the-last-would-have-won",
        lines(
            patient(1),
            patient(2, "1").replace('"skydd":"1"', '"skydd":"1","skydd":null'),
            patient(3).replace('"typ":"pnr"', '"typ":"pnr","typ":"reserv"'),
            patient(4, "2"),
        ),
        4,
        [row(1), row(4, "2")],
        Unreadable("duplicate_key", 2, 2),
        Unreadable("duplicate_key", 3, 3),
    ),
    case(
        "nesting-1000-levels-deep",
        lines(
            patient(1),
            patient(2).replace('"skydd":null', f'"skydd":null,"anteckning":{nested(1000)}'),
            patient(3).replace('"skydd":null', f'"skydd":null,"anteckning":{nested(32)}'),
            patient(4).replace('"skydd":null', f'"skydd":null,"anteckning":{nested(33)}'),
        ),
        4,
        [row(1), row(3, note=nested(32))],
        Unreadable("nesting_too_deep", 2, 2),
        Unreadable("nesting_too_deep", 4, 4),
    ),
    case(
        "lone-surrogate-escapes",
        lines(
            patient(1).replace('"skydd":null', '"skydd":"\\ud800"'),
            patient(2, "1").replace('"pnr"', '"pnr\\udfff"'),
            patient(3).replace('"skydd":null', '"skydd":null,"anteckning":"\\ud83d\\ude00"'),
        ),
        3,
        [row(3, note="\U0001f600")],  # a surrogate pair is one character
        Unreadable("lone_surrogate", 1, 1),
        Unreadable("lone_surrogate", 2, 2),
    ),
    case(
        "nul-and-control-characters",
        lines(
            patient(1).replace('"skydd":null', '"skydd":"\\u0000"'),
            patient(2, "1").replace('"skydd":"1"', '"skydd":"1\x00"'),  # a raw NUL byte
            patient(3, anteckning="NEL\x85här"),  # a C1 control: text decoded with the wrong table
            patient(4).replace("P4", "P\\u001b4"),
            patient(5, "1", anteckning="flik\tny rad\r\nslut"),  # escaped: text, not controls
        ),
        5,
        [row(5, "1", "flik\tny rad\r\nslut")],
        Unreadable("control_character_in_field", 1, 1),
        Unreadable("control_character_in_field", 2, 2),
        Unreadable("control_character_in_field", 3, 3),
        Unreadable("control_character_in_field", 4, 4),
    ),
    case(
        "iso-8859-1-bytes-in-a-utf-8-export",
        lines(
            patient(1, anteckning="Göteborg"),
            patient(2, anteckning="GXteborg"),
            patient(3, "1").replace('"skydd"', '"skXdd"'),
            patient(4, "1"),
        )
        .replace(b"GXteborg", "Göteborg".encode("iso-8859-1"))
        .replace(b'"skXdd"', '"skÿdd"'.encode("iso-8859-1")),
        4,
        [row(1, note="Göteborg"), row(4, "1")],
        Unreadable("undecodable_bytes", 2, 2),
        Unreadable("undecodable_bytes", 3, 3),  # in a key: still no guessing
    ),
    case(
        "blank-lines-crlf-and-a-byte-order-mark",
        b"\xef\xbb\xbf"
        + lines(patient(1, "1"), "", "   \t", patient(2), "", newline="\r\n")
        + lines(patient(3, "2")),
        3,
        [row(1, "1"), row(2), row(3, "2")],
    ),
    case(
        "truncated-last-line",
        lines(patient(1), patient(2, "1")) + patient(3, "2")[:-12].encode("utf-8"),
        3,
        [row(1), row(2, "1")],
        Unreadable("invalid_json", 3, 3),
    ),
    case(
        "lines-that-are-json-but-not-objects",
        lines(patient(1), "[" + patient(2) + "]", '"P3"', "null", "NaN", patient(5, "1")),
        6,
        [row(1), row(5, "1")],
        Unreadable("invalid_json", 2, 2),
        Unreadable("invalid_json", 3, 3),
        Unreadable("invalid_json", 4, 4),
        Unreadable("invalid_json", 5, 5),
    ),
    case(
        "numbers-and-booleans-as-written",
        lines(
            patient(1).replace('"skydd":null', '"skydd":true,"anteckning":1.10'),
            patient(2).replace('"skydd":null', '"skydd":false,"anteckning":12345678901234567890'),
            patient(3).replace('"skydd":null', '"skydd":0,"anteckning":-0.0e-3'),
            patient(4).replace('"skydd":null', '"skydd":1,"anteckning":{"b":[1.0,true,null]}'),
        ),
        4,
        [
            row(1, "true", "1.10"),
            row(2, "false", "12345678901234567890"),
            row(3, "0", "-0.0e-3"),
            row(4, "1", '{"b":[1.0,true,null]}'),
        ],
    ),
    case(
        "a-value-where-an-object-was-and-an-empty-object",
        lines(
            patient(1),
            patient(2, "1").replace('{"typ":"pnr","nummer":"202204082388"}', '"202204082388"'),
            patient(3, "1").replace('{"typ":"pnr","nummer":"201501212391"}', "null"),
            patient(4).replace('{"typ":"pnr","nummer":"201707162382"}', "{}"),
        ),
        4,
        [row(1)],
        Unreadable("unexpected_field", 2, 2),
        Unreadable("missing_field", 3, 3),
        Unreadable("missing_field", 4, 4),
        unknown_fields={"identitet": 1},
    ),
]
