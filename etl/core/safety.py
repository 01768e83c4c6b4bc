"""Safety-critical core fields: protected identity, spärr (blocking) and death fail closed.

A source value that is missing, blank or unparsable must never load as "not protected", "not
blocked" or "alive" by accident. Every mapping of such a field declares what happens instead
(``safety:`` in the column mapping, checked by ``vardflytt check-mappings``):

``on_uncertain: quarantine``       the row is quarantined, the reason names the field;
``on_uncertain: most_protective``  the row loads with the field's most protective value, flagged
                                   for a steward (check ``safety_field_uncertain:<target>``).

A source that writes the harmless value as an empty field (many legacy registers leave the
protection column blank or NULL for an ordinary patient, and every register leaves the death date
empty for the living) says so with ``blank_means`` and a ``note``: a reviewed statement about that
source, never a transform default. Without it a missing or blank value is uncertain. With it, an
empty field is read as the harmless value, so such a source relies on the readers to tell a field
that vanished from the record (a short line, a renamed key or element) from an empty one: those
are unreadable records or schema drift (issue 10, parts 2 and 3), never empty values.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from etl.core.model import ProtectedIdentity

SAFETY_CHECK = "safety_field_uncertain"


class OnUncertain(StrEnum):
    QUARANTINE = "quarantine"
    MOST_PROTECTIVE = "most_protective"


@dataclass(frozen=True)
class SafetyTarget:
    """A core field whose harmless value must only ever come from an explicit source value."""

    field: str
    harmless: Any  # what the core means by "not protected"
    harmless_label: str  # how ``blank_means`` spells it in a mapping file
    most_protective: Any | None  # None: no value is protective, only quarantine is allowed
    why: str


SAFETY_TARGETS: dict[str, SafetyTarget] = {
    target.field: target
    for target in (
        SafetyTarget(
            field="protected_identity",
            harmless=ProtectedIdentity.NONE.value,
            harmless_label="none",
            # Fingerade personuppgifter is Skatteverket's strongest measure (the person lives
            # under an assumed identity): the core then hides everything a lower level hides.
            # A steward lowers it once the true level is known; a level set too low cannot be
            # taken back once an address has been shown.
            most_protective=ProtectedIdentity.FINGERADE_PERSONUPPGIFTER.value,
            why="a protected person's name and address must never be shown outside the core",
        ),
        SafetyTarget(
            field="is_blocked",
            harmless=False,
            harmless_label="not_blocked",
            # Blocked data is still in the core for the caring unit; unblocking is a steward's
            # decision, whereas shared data cannot be un-shared.
            most_protective=True,
            why="a spärr keeps the data it covers from other care providers",
        ),
        SafetyTarget(
            field="deceased_date",
            harmless=None,
            harmless_label="alive",
            # No value is protective here. A made-up death date would close a living patient's
            # record and cancel their care; leaving it empty keeps a dead patient bookable and
            # invites letters to the bereaved. The row waits in quarantine for a steward.
            most_protective=None,
            why="a wrong death date hides a living patient or keeps a dead one in care",
        ),
    )
}


class SafetyDeclaration(BaseModel):
    """``safety:`` of a column mapping that fills a safety-critical core field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    on_uncertain: OnUncertain
    blank_means: str | None = None  # the target's harmless label, e.g. ``none``
    note: str = Field(default="")


def declaration_problem(target: str, declaration: SafetyDeclaration | None) -> str | None:
    """Why ``declaration`` is not acceptable for ``target``; None when it is."""
    spec = SAFETY_TARGETS.get(target)
    if spec is None:
        return (
            f"'{target}' is not a safety-critical field; 'safety' is only for "
            f"{', '.join(sorted(SAFETY_TARGETS))}"
        )
    if declaration is None:
        return (
            f"target '{target}' is safety-critical ({spec.why}): declare what a missing, blank "
            "or unparsable value does, e.g. 'safety: {on_uncertain: quarantine}'"
            + (
                " or 'safety: {on_uncertain: most_protective}'"
                if spec.most_protective is not None
                else ""
            )
        )
    if declaration.on_uncertain is OnUncertain.MOST_PROTECTIVE and spec.most_protective is None:
        return (
            f"target '{target}' has no protective value ({spec.why}); "
            "use 'on_uncertain: quarantine'"
        )
    if declaration.blank_means is not None:
        if declaration.blank_means != spec.harmless_label:
            return (
                f"target '{target}': 'blank_means' can only be '{spec.harmless_label}' "
                "(the value this source writes as an empty field)"
            )
        if not declaration.note.strip():
            return (
                f"target '{target}': 'blank_means' needs a 'note' saying how we know that this "
                "source leaves the field empty for that value"
            )
    return None


@dataclass(frozen=True)
class SafetyOutcome:
    values: pd.Series  # the core values, protective where uncertain (policy most_protective)
    uncertain: pd.Series  # bool per row
    detail: pd.Series  # why uncertain: missing, blank, or the transform's reason; NA otherwise


def judge(
    source: pd.Series,
    values: pd.Series,
    errors: pd.Series,
    target: str,
    declaration: SafetyDeclaration,
) -> SafetyOutcome:
    """Decide per row whether a safety field's value is certain; never invent the harmless one.

    Certain: a non-blank source value the transform mapped without error, or (when declared) a
    blank that this source uses for the harmless value. Everything else is uncertain, whatever
    default the transform applied.
    """
    spec = SAFETY_TARGETS[target]
    text = source.astype("string")
    missing = text.isna()
    blank = ~missing & (text.str.strip() == "").fillna(False)
    present = ~missing & ~blank
    failed = errors.notna() | (present & values.isna())
    uncertain = failed.copy()
    detail = pd.Series(pd.NA, index=source.index, dtype="string")
    detail = detail.mask(failed, errors.astype("string").fillna("unmapped_value"))
    values = values.astype("object")
    if declaration.blank_means is None:
        uncertain = uncertain | missing | blank
        detail = detail.mask(missing, "missing").mask(blank, "blank")
    else:
        harmless = missing | blank
        values = values.mask(harmless, spec.harmless)
    if declaration.on_uncertain is OnUncertain.MOST_PROTECTIVE:
        values = values.mask(uncertain, spec.most_protective)
    else:
        values = values.mask(uncertain, None)
    return SafetyOutcome(values, uncertain.astype(bool), detail.where(uncertain))


def describe(target: str, declaration: SafetyDeclaration) -> str:
    """One sentence for the generated mapping documentation stewards read."""
    spec = SAFETY_TARGETS[target]
    action = (
        f"loads as {spec.most_protective} and is flagged"
        if declaration.on_uncertain is OnUncertain.MOST_PROTECTIVE
        else "quarantines the row"
    )
    if declaration.blank_means:
        return (
            f"Safety-critical: an empty field means {declaration.blank_means} "
            f"({declaration.note.strip()}); an unreadable or unknown value {action}."
        )
    return f"Safety-critical: a missing, empty, unreadable or unknown value {action}."
