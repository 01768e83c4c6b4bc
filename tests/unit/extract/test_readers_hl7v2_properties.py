"""HL7 v2 reader properties: generated archives round-trip exactly, and corrupting one message
makes only that message unreadable, without changing any other message's values."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from etl.catalog import FileDataset
from etl.extract import hl7v2
from etl.extract.records import ReadStats, reason_of

pytestmark = pytest.mark.unit

DATASET = FileDataset.model_validate(
    {
        "file": "adt.hl7",
        "format": "hl7v2",
        "encoding": "utf-8",
        "key": ["patient_number"],
        "message_types": ["ADT^A01"],
        "fields": [
            {"name": "message_id", "path": "MSH.10"},
            {"name": "patient_number", "path": "PID.2"},
            {"name": "family_name", "path": "PID.5.1"},
            {"name": "given_name", "path": "PID.5.2"},
            {"name": "note", "path": "ZNT.1"},  # the whole field: both repetitions
        ],
    }
)

# Field, component, repetition, escape, subcomponent: the standard set and some that HL7 allows.
SEPARATORS = [
    ("|", "^", "~", "\\", "&"),
    ("#", "^", "~", "\\", "&"),
    ("|", ":", "~", "\\", "&"),
    ("!", "$", "*", "/", "%"),
]
ESCAPES = {0: "F", 1: "S", 2: "R", 3: "E", 4: "T"}
LINE_ENDS = ["\r", "\n", "\r\n"]

# Any text but controls and lone surrogates; line breaks, tabs and every separator on purpose.
values = st.text(
    st.one_of(
        st.characters(exclude_categories=("Cs", "Cc")),
        st.sampled_from("\t\r\n|^~\\&#:!$*/% "),
    ),
    min_size=1,
    max_size=12,
).filter(lambda text: text != '""')


def escape(text: str, separators: tuple[str, ...], hex_non_ascii: bool) -> str:
    """HL7 escaping: separators as \\F\\ \\S\\ \\R\\ \\E\\ \\T\\, line breaks (and, if asked,
    non-ASCII) as \\X..\\ hex of their UTF-8 bytes."""
    esc = separators[3]
    out = []
    for character in text:
        if character in separators:
            out.append(f"{esc}{ESCAPES[separators.index(character)]}{esc}")
        elif character in "\r\n" or (hex_non_ascii and ord(character) > 127):
            out.append(f"{esc}X{character.encode('utf-8').hex().upper()}{esc}")
        else:
            out.append(character)
    return "".join(out)


@st.composite
def messages(draw):
    separators = draw(st.sampled_from(SEPARATORS))
    hex_non_ascii = draw(st.booleans())
    row = {
        "patient_number": draw(values),
        "family_name": draw(values),
        "given_name": draw(values),
    }
    notes = draw(st.lists(values, min_size=1, max_size=2))
    return {
        "separators": separators,
        "hex": hex_non_ascii,
        "end": draw(st.sampled_from(LINE_ENDS)),
        "row": row,
        "notes": notes,
    }


def render(n: int, message: dict, family: str | None = None) -> list[str]:
    """The message's segments; ``family`` replaces the escaped family name as written."""
    field, component, repetition, _, _ = sep = message["separators"]
    row = message["row"]

    def esc(text: str) -> str:
        return escape(text, sep, message["hex"])

    header = [
        "MSH",
        "".join(sep[1:]),
        "PAS",
        "SU",
        "CORE",
        "VGR",
        "202403011200",
        "",
        f"ADT{component}A01",
        f"M{n}",
        "P",
        "2.5",
    ]
    family = esc(row["family_name"]) if family is None else family
    return [
        field.join(header),
        field.join(["PID", "1", esc(row["patient_number"]), "", "", f"{family}{component}"])
        + esc(row["given_name"]),
        field.join(["ZNT", repetition.join(esc(note) for note in message["notes"])]),
    ]


def expected_row(n: int, message: dict) -> dict:
    return {
        "message_id": f"M{n}",
        **message["row"],
        "note": message["separators"][2].join(message["notes"]),
    }


def archive(generated: list[dict], mllp: bool, replace: dict[int, list[str]] | None = None):
    parts = []
    for n, message in enumerate(generated, 1):
        segments = (replace or {}).get(n) or render(n, message)
        text = message["end"].join(segments) + message["end"]
        parts.append(f"\x0b{text}\x1c\r" if mllp else text)
    return "".join(parts)


def read(content: bytes) -> tuple[list, ReadStats]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "adt.hl7"
        path.write_bytes(content)
        stats = ReadStats(path)
        return list(hl7v2.read_records(path, DATASET, stats)), stats


def as_dicts(records) -> list[dict]:
    return [dict(zip(DATASET.column_names, r.values, strict=True)) for r in records]


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(generated=st.lists(messages(), min_size=1, max_size=5), mllp=st.booleans())
def test_valid_messages_round_trip_exactly(generated, mllp):
    records, stats = read(archive(generated, mllp).encode("utf-8"))

    assert [r.read_error for r in records] == [None] * len(generated)
    assert as_dicts(records) == [expected_row(n, m) for n, m in enumerate(generated, 1)]
    assert [r.record for r in records] == list(range(1, len(generated) + 1))
    assert stats.records == len(generated) and stats.unreadable == stats.stray == 0
    first = "".join(generated[0]["separators"])
    changed = sum("".join(m["separators"]) != first for m in generated)
    assert sum(v for k, v in stats.unknown_fields.items() if k.startswith("separators:")) == (
        changed
    )


CORRUPTIONS = {
    "unknown_escape": "invalid_escape",
    "unterminated_escape": "invalid_escape",
    "nul": "control_character_in_field",
    "undecodable_byte": "undecodable_bytes",
    "separator_switch": "invalid_hl7_message",
    "bare_lf": "invalid_hl7_message",
}


@SETTINGS
@given(
    generated=st.lists(messages(), min_size=2, max_size=5),
    mllp=st.booleans(),
    data=st.data(),
    corruption=st.sampled_from(sorted(CORRUPTIONS)),
)
def test_corrupting_one_message_changes_only_that_message(generated, mllp, data, corruption):
    k = data.draw(st.integers(1, len(generated)), label="corrupted message")
    message = generated[k - 1]
    sep = message["separators"]
    family = escape(message["row"]["family_name"], sep, message["hex"])
    at = data.draw(st.integers(0, len(family)), label="position")
    if corruption == "unknown_escape":
        segments = render(k, message, f"{sep[3]}Q{sep[3]}{family}")
    elif corruption == "unterminated_escape":
        segments = render(k, message, family + sep[3])
    elif corruption == "nul":
        segments = render(k, message, family[:at] + "\x00" + family[at:])
    elif corruption == "undecodable_byte":
        segments = render(k, message, family[:at] + "\udcff" + family[at:])
    elif corruption == "bare_lf":
        assume(not family[at:].startswith("MSH"))  # that would be a new message, by the rule
        segments = render(k, message, family[:at] + "\n" + family[at:])
    else:  # the body written with another field separator than its MSH declares
        other = "#" if sep[0] != "#" else "|"
        segments = render(k, message)
        segments = segments[:1] + [s.replace(sep[0], other) for s in segments[1:]]

    clean, _ = read(archive(generated, mllp).encode("utf-8"))
    text = archive(generated, mllp, {k: segments})
    records, stats = read(text.encode("utf-8", errors="surrogateescape"))

    assert [r.record for r in records] == list(range(1, len(generated) + 1))
    bad = records[k - 1]
    assert reason_of(bad.read_error) == CORRUPTIONS[corruption]
    assert bad.values == (None,) * len(DATASET.column_names)
    others = [r for r in records if r.record != k]
    assert all(r.read_error is None for r in others)
    assert as_dicts(others) == as_dicts(r for r in clean if r.record != k)
    assert stats.records == len(generated) and stats.unreadable == 1 and stats.stray == 0
