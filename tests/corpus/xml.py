"""Hostile XML exports: a patient register whose protected identity (``Skydd``) must never load
as "none" because an element was renamed, dropped, doubled or damaged.

One record per line after ``<?xml ...?>`` (line 1) and ``<Journal>`` (line 2), so record ``n``
starts on line ``n + 2`` unless a case says otherwise. Identity numbers are Skatteverket test
numbers.
"""

from __future__ import annotations

from tests.corpus import Unreadable, case_builder, register
from tests.corpus.register import NUMBERS

PROLOG = '<?xml version="1.0" encoding="UTF-8"?>'

DATASET = {
    "file": "patienter.xml",
    "format": "xml",
    "encoding": "utf-8",
    "key": ["id"],
    "record_path": "Journal/Patient",
    "fields": [
        {"name": "id", "path": "@id"},
        {"name": "identity_type", "path": "Identitet/@typ"},
        {"name": "identity_number", "path": "Identitet/Nummer", "required": True},
        {"name": "protection", "path": "Skydd", "required": True},
        {"name": "note", "path": "Anteckning"},  # optional: some records have none
    ],
}


def patient(
    n: int,
    protection: str = "",
    note: str | None = None,
    *,
    protection_element: str = "Skydd",
    extra: str = "",
) -> str:
    """Record ``n`` (``P<n>``, the n-th test number) on one line."""
    skydd = f"<{protection_element}>{protection}</{protection_element}>"
    anteckning = "" if note is None else f"<Anteckning>{note}</Anteckning>"
    return (
        f'<Patient id="P{n}"><Identitet typ="pnr"><Nummer>{NUMBERS[n - 1]}</Nummer></Identitet>'
        f"{skydd}{anteckning}{extra}</Patient>"
    )


def export(*records: str, newline: str = "\n") -> bytes:
    return newline.join([PROLOG, "<Journal>", *records, "</Journal>", ""]).encode("utf-8")


def row(n: int, protection: str = "", note: str | None = None, **changes) -> dict:
    """Record ``n`` as read: an empty ``<Skydd></Skydd>`` reads as "", not None."""
    return register.row(n, protection, note, **changes)


case = case_builder(DATASET)

CASES = [
    case(
        "element-renamed-after-the-third-record",
        export(
            patient(1, "1"),
            patient(2),
            patient(3, "2"),
            patient(4, "1", protection_element="SkyddadIdentitet"),
            patient(5),
        ),
        5,
        [row(1, "1"), row(2), row(3, "2"), row(5)],
        Unreadable("unexpected_field", 4, 6),
        unknown_fields={"SkyddadIdentitet": 1},
    ),
    case(
        "required-element-dropped-optional-element-absent",
        export(
            patient(1, "1", note="uppföljning"),
            patient(2, "1").replace("<Skydd>1</Skydd>", ""),
            patient(3, "2"),
        ),
        3,
        [row(1, "1", "uppföljning"), row(3, "2")],
        Unreadable("missing_field", 2, 4),
    ),
    case(
        "unknown-elements-are-counted-and-the-rows-load",
        export(
            patient(1, note="", extra="<Telefon>0700000000</Telefon>"),
            patient(2, "1", note="", extra='<Telefon>0700000001</Telefon><Remiss nr="R1"/>'),
            patient(3),
            # an unknown element and a declared one absent: a rename for all the reader knows
            patient(4, extra="<Telefon>0700000002</Telefon>"),
        ),
        4,
        [row(1, note=""), row(2, "1", note=""), row(3)],
        Unreadable("unexpected_field", 4, 6),
        unknown_fields={"Telefon": 3, "Remiss/@nr": 1},
    ),
    case(
        "attribute-where-an-element-was-and-back",
        export(
            patient(1),
            patient(2, "1").replace(' typ="pnr">', "><Typ>pnr</Typ>"),
            patient(3).replace('<Patient id="P3">', "<Patient><id>P3</id>"),
            patient(4, "2"),
        ),
        4,
        [row(1), row(4, "2")],
        Unreadable("unexpected_field", 2, 4),
        Unreadable("unexpected_field", 3, 5),
        unknown_fields={"Identitet/Typ": 1, "id": 1},
    ),
    case(
        "element-doubled-the-first-would-have-won",
        export(patient(1), patient(2).replace("<Skydd></Skydd>", "<Skydd/><Skydd>1</Skydd>")),
        2,
        [row(1)],
        Unreadable("duplicate_element", 2, 4),
    ),
    case(
        "cdata-and-entity-references",
        export(
            patient(1, note="<![CDATA[Hb < 120 & Hct]]>"),
            patient(2, note="&lt;b&gt; &amp; &#229;&#xE4;&quot;&apos;"),
            patient(3, note="Patologiskt &nbsp; fynd"),  # an entity no DTD declares
            patient(4, note="Hb & Hct"),  # an unescaped ampersand
            patient(5, "1"),
        ),
        5,
        [row(1, note="Hb < 120 & Hct"), row(2, note="<b> & åä\"'"), row(5, "1")],
        Unreadable("invalid_xml_record", 3, 5),
        Unreadable("invalid_xml_record", 4, 6),
    ),
    case(
        "nul-and-control-characters",
        export(
            patient(1, "\x00"),
            patient(2, note="rad\x07två"),
            patient(3, note="NEL\x85här"),  # a C1 control: text decoded with the wrong table
            patient(4, note="&#0;"),  # XML has no character number 0
            patient(5, "1", note="flik\tny rad\r\nslut"),  # tab and line ends are text
        ),
        5,
        [row(5, "1", "flik\tny rad\nslut")],
        Unreadable("control_character_in_field", 1, 3),
        Unreadable("control_character_in_field", 2, 4),
        Unreadable("control_character_in_field", 3, 5),
        Unreadable("invalid_xml_record", 4, 6),
    ),
    case(
        "iso-8859-1-bytes-in-a-utf-8-export",
        export(patient(1, note="Göteborg"), patient(2, note="GXteborg"), patient(3, "1")).replace(
            b"GXteborg", "Göteborg".encode("iso-8859-1")
        ),
        3,
        [row(1, note="Göteborg"), row(3, "1")],
        Unreadable("undecodable_bytes", 2, 4),
    ),
    case(
        "nesting-1000-levels-deep",
        export(
            patient(1),
            patient(2, note="<a>" * 1000 + "x" + "</a>" * 1000),
            patient(3, note="<a>" * 29 + "x" + "</a>" * 29),  # 32 levels: the limit
        ),
        3,
        [row(1), row(3, note="x")],
        Unreadable("nesting_too_deep", 2, 4),
    ),
    case(
        "bom-and-crlf-line-ends",
        b"\xef\xbb\xbf"
        + export(patient(1, "1", note="rad ett\r\nrad två"), patient(2), newline="\r\n"),
        2,
        [row(1, "1", "rad ett\nrad två"), row(2)],
    ),
    case(
        "end-tag-missing-the-next-record-carries-on",
        export(patient(1), patient(2, "1").replace("</Patient>", ""), patient(3, "2")),
        3,
        [row(1), row(3, "2")],
        Unreadable("invalid_xml_record", 2, 4),
    ),
    case(
        "record-element-renamed-mid-file-is-not-skipped",
        export(
            patient(1),
            patient(2, "1").replace("Patient", "Patienten"),
            patient(3, "2"),
        ),
        2,
        [row(1), row(3, "2")],
        Unreadable("unexpected_element", None, 4),
    ),
    case(
        "empty-parent-is-the-absence-of-its-children",
        export(
            patient(1),
            patient(2, "1").replace(
                '<Identitet typ="pnr"><Nummer>202204082388</Nummer></Identitet>', "<Identitet/>"
            ),
            patient(3).replace("<Skydd></Skydd>", "<Skydd/>"),
        ),
        3,
        [row(1), row(3)],
        Unreadable("missing_field", 2, 4),
    ),
]
