"""Data-quality checks, their severity and their thresholds: the reviewed file stewards own.

Every check has a stable id. Expectation suites name theirs in ``meta.check``
(``patient.birth_date.not_in_future``); problems found while transforming are checks too, named
``source.<reason>`` (``source.unparseable_date``). ``expectations/thresholds.yaml`` gives each
check its severity (``error`` quarantines the row, ``warning`` loads and flags it), the failure
rate above which a batch is not promoted, whether a steward may waive it, and a note saying why.
The file is versioned in git and its digest is stored with every result, so any gate decision
can be traced to the thresholds it was made with and re-evaluated under new ones.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from etl.core import yaml_files

THRESHOLDS_FILE = "thresholds.yaml"
SOURCE_PREFIX = "source."
DIMENSIONS = ("conformance", "completeness", "plausibility", "uniqueness", "integrity")


class ThresholdsError(ValueError):
    """The thresholds file is missing, malformed or out of step with the suites."""


class CheckRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    severity: Literal["error", "warning"]
    max_failure_rate: float | None = Field(default=None, ge=0, le=1)
    max_failed_rows: int | None = Field(default=None, ge=0)
    waivable: bool | None = None
    dimension: Literal[DIMENSIONS] | None = None  # type: ignore[valid-type]
    note: str = Field(min_length=3)


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_failure_rate: float = Field(ge=0, le=1)
    waivable: bool = True
    # A handful of failing rows never stops a batch on its own: over a small dataset a rate says
    # nothing (3 of 24 rows is 12.5%). Those rows are still quarantined and reviewed.
    tolerated_failed_rows: int = Field(default=0, ge=0)


class Thresholds(BaseModel):
    """The parsed file plus its digest; ``rule_for`` resolves per-system overrides."""

    model_config = ConfigDict(extra="forbid")

    version: int
    reviewed_by: str
    reviewed_on: str
    defaults: Defaults
    checks: dict[str, CheckRule]
    systems: dict[str, dict[str, dict]] = {}
    digest: str = ""

    def rule_for(self, check: str, system: str | None = None) -> CheckRule:
        rule = self.checks.get(check)
        if rule is None:
            raise ThresholdsError(
                f"check '{check}' has no entry in {THRESHOLDS_FILE}: add one with a severity, "
                "a threshold and a note, and have it reviewed"
            )
        override = self.systems.get(system or "", {}).get(check)
        return rule.model_copy(update=override) if override else rule

    def max_rate(self, check: str, system: str | None = None) -> float:
        rule = self.rule_for(check, system)
        if rule.max_failure_rate is not None:
            return rule.max_failure_rate
        return self.defaults.max_failure_rate

    def is_waivable(self, check: str, system: str | None = None) -> bool:
        rule = self.rule_for(check, system)
        return self.defaults.waivable if rule.waivable is None else rule.waivable

    def breaches(self, check: str, system: str, failed: int, evaluated: int) -> bool:
        """Whether this many failures stop the batch from being promoted."""
        rule = self.rule_for(check, system)
        if failed == 0:
            return False
        if rule.max_failed_rows is not None and failed > rule.max_failed_rows:
            return True
        if failed <= self.defaults.tolerated_failed_rows:
            return False
        return evaluated > 0 and failed / evaluated > self.max_rate(check, system)


def source_check(reason: str) -> str:
    return f"{SOURCE_PREFIX}{reason}"


def read_thresholds(path: Path) -> Thresholds:
    if not path.exists():
        raise ThresholdsError(f"{path} is missing: data-quality thresholds must be declared")
    return _thresholds_of(path, path.read_bytes())


def _thresholds_of(path: Path, raw: bytes) -> Thresholds:
    try:
        content = yaml_files.safe_load(raw) or {}
    except yaml.YAMLError as error:
        raise ThresholdsError(f"{path}: not valid YAML: {error}") from error
    try:
        thresholds = Thresholds.model_validate(content)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise ThresholdsError(f"{path}: {problems}") from error
    for system, overrides in thresholds.systems.items():
        for check, values in overrides.items():
            if check not in thresholds.checks:
                raise ThresholdsError(
                    f"{path}: systems.{system}.{check} overrides an unknown check"
                )
            try:
                CheckRule.model_validate(thresholds.checks[check].model_dump() | values)
            except ValidationError as error:
                raise ThresholdsError(f"{path}: systems.{system}.{check}: {error}") from error
    thresholds.digest = hashlib.sha256(raw).hexdigest()[:16]
    return thresholds


@lru_cache(maxsize=16)
def _cached(path: Path, raw: bytes) -> Thresholds:
    return _thresholds_of(path, raw)


def thresholds_for(expectations_dir: Path) -> Thresholds:
    """The folder's thresholds, parsed and validated once per content of the file: keyed on its
    bytes (a few kB, read on every call), never on its modification time, which a file rewritten
    within the clock's resolution, or copied with its time kept, leaves unchanged."""
    path = expectations_dir / THRESHOLDS_FILE
    if not path.exists():
        return read_thresholds(path)  # raises: thresholds must be declared
    return _cached(path, path.read_bytes())
