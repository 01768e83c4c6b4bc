"""Code systems a coded core column may hold, and the check digit of SNOMED CT concept ids.

A coded column (``Diagnosis.icd10_code``, ``Procedure.kva_code``, ...) keeps, beside its target
code, the code as the legacy system wrote it and that code's system (``<column>_source_code``,
``<column>_source_system``), so a many-to-one crosswalk loses nothing and the FHIR export can
carry both codings. A mapping declares the system of each coded column's legacy codes
(``source_system:`` in mappings/<system>/<entity>.yaml) by name:

- a national or international system below (``icd10_se``, ``kva``, ``atc``, ``npl_id``, ``npu``,
  ``snomed_ct``, ``ksh97_p``), whose codes are recognised by their shape;
- ``local:<name>``, a legacy system's own codes: ``urn:vardflytt:<name>:<source system>``.

A list declares mixed columns (ICD-10-SE codes beside retired KSH97-P ones): each code gets
the first system that recognises it; a system that recognises anything (``local:...``,
``ksh97_p``) can only come last. The core stores the system's URI, the one FHIR codings use.

SNOMED CT (``http://snomed.info/sct``; Sweden is a member country) is allowed where the column
holds a diagnosis or a finding (``Coded.findings``), and rejected elsewhere. Its concept ids are
6 to 18 digits, no leading zero, partition ``00`` or ``10`` (a concept, not a description or
relationship) and a Verhoeff check digit (:func:`verhoeff_check_digit`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas and numpy load on first use: the core model (and so every DAG file
    # that reads the wave plan) imports this module, and parsing a DAG loads no data library.
    import numpy as np
    import pandas as pd

# The shapes of national codes (the vocabulary's normalising transforms use them too).
ICD10_SE_PATTERN = r"[A-Z][0-9]{2}(\.[0-9]{1,2}[A-Z]?)?"
KVA_PATTERN = r"[A-Z]{3}[0-9]{2}|[A-Z]{2}[0-9]{3}"
ATC_PATTERN = r"[A-Z][0-9]{2}[A-Z]{2}[0-9]{2}"
NPU_PATTERN = r"NPU[0-9]{5}"

SNOMED_CT_URI = "http://snomed.info/sct"
LOCAL_PREFIX = "local:"
LOCAL_NAME_PATTERN = r"[a-z0-9][a-z0-9-]{0,39}"
# What the core stores for a local system: its name and the source system (folder) it comes from.
LOCAL_URI_PATTERN = r"urn:vardflytt:[a-z0-9][a-z0-9-]*:[a-z0-9_]+"

# --- Verhoeff (dihedral group D5): the check digit of SNOMED CT identifiers ---------------------

_MULTIPLY_ROWS = (
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
)
_PERMUTE_ROWS = (
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
)
_INVERSE = (0, 4, 3, 2, 1, 5, 6, 7, 8, 9)


@cache
def _tables() -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    return np.array(_MULTIPLY_ROWS, dtype=np.int8), np.array(_PERMUTE_ROWS, dtype=np.int8)


def verhoeff_check_digit(digits: str) -> int:
    """The Verhoeff check digit to append to ``digits`` (a non-empty string of digits)."""
    if not digits.isascii() or not digits.isdigit():
        raise ValueError("Verhoeff needs digits")
    check = 0
    for position, digit in enumerate(reversed(digits), start=1):
        check = _MULTIPLY_ROWS[check][_PERMUTE_ROWS[position % 8][int(digit)]]
    return _INVERSE[check]


def verhoeff_valid(values: pd.Series) -> pd.Series:
    """Whether each string of digits ends in its Verhoeff check digit; vectorised over rows
    (one step per digit position, at most 18). False for NA or anything not all digits."""
    import numpy as np
    import pandas as pd

    multiply, permute = _tables()
    text = values.astype("string")
    shaped = text.str.fullmatch(r"[0-9]{1,18}").fillna(False).astype(bool)
    result = pd.Series(False, index=values.index)
    if not shaped.any():
        return result
    # Fixed-width bytes, NUL-padded on the right, then right-aligned once: column j holds the
    # digit j places from the right end (the check digit is j = 0), -1 where the id is shorter.
    raw = np.array(text[shaped].to_numpy(dtype=object), dtype="S18").view(np.uint8)
    raw = raw.reshape(-1, 18)
    lengths = (raw != 0).sum(axis=1)
    columns = lengths[:, None] - 1 - np.arange(18)[None, :]
    aligned = np.take_along_axis(raw, np.clip(columns, 0, None), axis=1).astype(np.int8)
    aligned = np.asfortranarray(np.where(columns >= 0, aligned - ord("0"), -1))
    check = np.zeros(len(raw), dtype=np.int8)
    for position in range(18):
        digit = aligned[:, position]
        present = digit >= 0
        step = multiply[check, permute[position % 8, np.where(present, digit, 0)]]
        check = np.where(present, step, check)
    result[shaped] = check == 0
    return result


def snomed_ct_concept_ids_valid(values: pd.Series) -> pd.Series:
    """SNOMED CT concept ids: 6-18 digits, no leading zero, partition 00 or 10, Verhoeff."""
    text = values.astype("string")
    shaped = text.str.fullmatch(r"[1-9][0-9]{5,17}").fillna(False).astype(bool)
    partition = text.str[-3:-1].isin(["00", "10"]).fillna(False).astype(bool)
    return shaped & partition & verhoeff_valid(text)


# --- the systems --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeSystem:
    name: str  # as a mapping names it
    uri: str  # FHIR Coding.system, and what the core stores
    title: str
    # Recognises a code (trimmed, upper case, spaces removed); None recognises any code.
    pattern: str | None = None
    is_snomed_ct: bool = False

    @property
    def is_catch_all(self) -> bool:
        return self.pattern is None and not self.is_snomed_ct

    def recognises(self, codes: pd.Series) -> pd.Series:
        """Whether each code (already trimmed, upper case, no spaces) is one of this system's."""
        if self.is_snomed_ct:
            return snomed_ct_concept_ids_valid(codes)
        if self.pattern is None:
            return codes.notna()
        return codes.str.fullmatch(self.pattern).fillna(False).astype(bool)


# ATC: the URI FHIR defines. ICD-10-SE, KVÅ and NPU have no FHIR URI (HL7 Sweden's base
# profiles, hl7se.fhir.base 1.1.0, define none), so they are the OIDs the national service
# contracts (RIV-TA) use, as urn:oid. Checked 2026-12-04 against:
# - ICD-10-SE 1.2.752.116.1.1.1.1.3 (Socialstyrelsen): Inera's "Swedish Healthcare Service -
#   Health Condition Description" IG, Common Components (CVType example codeSystem),
#   https://ineraservices.bitbucket.io/ig-tkb-clinicalprocess-healthcond-description/common-components.html
# - KVÅ 1.2.752.116.1.3.2.1.4 (Socialstyrelsen) and NPU 1.2.752.108.1 (the Swedish NPU release):
#   the RIV-TA list "Lista över vanligt förekommande kodverk och identifierare" (codes and
#   identifiers of the service contracts), and the TKBs that require them (KVÅ in
#   clinicalprocess:healthcond:description alert treatment codes; NPU in
#   clinicalprocess:healthcond:actoutcome GetLaboratoryOrderOutcome, analysisCode.codeSystem);
#   Inera's current register: https://inera.atlassian.net/wiki/spaces/KINT/pages/2648506471
# The same list names NPL-id 1.2.752.129.2.1.5.1 (Läkemedelsverket), not yet used here.
# NPL-id and KSH97-P carry the project's URN so a receiver can map them, never a guessed OID.
ICD10_SE = CodeSystem(
    "icd10_se",
    "urn:oid:1.2.752.116.1.1.1.1.3",
    "ICD-10-SE",
    r"[A-Z][0-9]{2}(\.?[0-9]{1,2}[A-Z]?)?",  # legacy data may drop the dot (I219)
)
KVA = CodeSystem("kva", "urn:oid:1.2.752.116.1.3.2.1.4", "KVÅ", KVA_PATTERN)
ATC = CodeSystem("atc", "http://www.whocc.no/atc", "ATC", ATC_PATTERN)
NPL_ID = CodeSystem("npl_id", "urn:vardflytt:npl-id", "NPL-id", r"[0-9]{14}")
NPU = CodeSystem("npu", "urn:oid:1.2.752.108.1", "NPU", NPU_PATTERN)
SNOMED_CT = CodeSystem("snomed_ct", SNOMED_CT_URI, "SNOMED CT", is_snomed_ct=True)
# The retired primary-care version of ICD-10 (codes such as J06-P); no shape we can rely on.
KSH97_P = CodeSystem("ksh97_p", "urn:vardflytt:ksh97-p", "KSH97-P")

KNOWN: dict[str, CodeSystem] = {
    system.name: system for system in (ICD10_SE, KVA, ATC, NPL_ID, NPU, SNOMED_CT, KSH97_P)
}


def local_system(name: str, source_system: str) -> CodeSystem:
    """A legacy system's own code system: ``urn:vardflytt:<name>:<source system>``."""
    return CodeSystem(f"{LOCAL_PREFIX}{name}", f"urn:vardflytt:{name}:{source_system}", name)


def resolve(declared: str, source_system: str) -> CodeSystem:
    """The code system a mapping names (``icd10_se``, ``local:alert-code``); ValueError if none."""
    if declared.startswith(LOCAL_PREFIX):
        name = declared.removeprefix(LOCAL_PREFIX)
        if not re.fullmatch(LOCAL_NAME_PATTERN, name):
            raise ValueError(
                f"'{declared}': a local system is 'local:<name>', the name in lower case letters, "
                "digits and '-'"
            )
        return local_system(name, source_system)
    try:
        return KNOWN[declared]
    except KeyError:
        raise ValueError(
            f"unknown code system '{declared}'; known: {', '.join(KNOWN)}, or local:<name>"
        ) from None


@dataclass(frozen=True)
class Coded:
    """A coded core column: the system of its target code, and which systems its legacy codes
    may be in (``local:`` ones always). ``target`` None: the code's system varies per row and is
    kept in ``system_column`` (an alert's code may be ATC, ICD-10-SE, SNOMED CT or local)."""

    target: str | None
    allowed: tuple[str, ...]
    system_column: str | None = None

    @property
    def findings(self) -> bool:
        """A diagnosis or finding: SNOMED CT is allowed."""
        return SNOMED_CT.name in self.allowed

    def allows(self, system: CodeSystem) -> bool:
        return system.name.startswith(LOCAL_PREFIX) or system.name in self.allowed

    def uri_pattern(self) -> str:
        """A regular expression of the system URIs the column may hold (the suites' value set)."""
        uris = [re.escape(KNOWN[name].uri) for name in self.allowed]
        return "^(?:" + "|".join([*uris, LOCAL_URI_PATTERN]) + ")$"


def source_code_column(column: str) -> str:
    return f"{column}_source_code"


def source_system_column(column: str) -> str:
    return f"{column}_source_system"


def probe(codes: pd.Series) -> pd.Series:
    """Codes as the systems recognise them: trimmed, upper case, no spaces."""
    return codes.astype("string").str.strip().str.upper().str.replace(" ", "", regex=False)


def systems_of(codes: pd.Series, systems: list[CodeSystem]) -> pd.Series:
    """Per code, the URI of the first system that recognises it (NA: none does, or no code)."""
    probed = probe(codes)
    import pandas as pd

    found = pd.Series(pd.NA, index=codes.index, dtype="string")
    for system in systems:
        hit = found.isna() & probed.notna() & system.recognises(probed)
        found = found.mask(hit, system.uri)
    return found
