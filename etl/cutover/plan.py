"""The wave plan, ``mappings/waves.yaml``: which systems move together, scope, window, criteria."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from etl.layout import list_system_entities

PLAN_FILE = "waves.yaml"


class PlanError(ValueError):
    """The wave plan is missing, malformed or names systems that do not exist."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Scope(Strict):
    site: str = ""
    care_units: list[str] = Field(default_factory=list)  # HSA-ids


class Window(Strict):
    start: dt.date
    end: dt.date

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end < self.start:
            raise ValueError(f"window ends ({self.end}) before it starts ({self.start})")
        return self


class Criteria(Strict):
    """What must hold before a wave may be approved; each is evaluated and reported."""

    max_quarantine_rate: float = Field(ge=0, le=1)
    # A system with no more quarantined rows than this meets the rate on its own: in a system of
    # a few dozen rows one bad row is several percent, a rate says little there, and a steward
    # reviews that many rows by hand before go-live (as the gate's tolerated_failed_rows).
    tolerated_quarantined_rows: int = Field(default=0, ge=0)
    dq_gate: str = Field(pattern="^pass$")
    reconciliation: str = Field(pattern="^exact$")
    accounting: str = Field(pattern="^exact$")
    min_rehearsals: int = Field(default=1, ge=0)
    approvers: list[str] = Field(min_length=1)


class Wave(Strict):
    wave: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str
    systems: list[str] = Field(min_length=1)
    scope: Scope = Field(default_factory=Scope)
    window: Window
    criteria: Criteria


class WavePlan(Strict):
    version: int
    waves: list[Wave] = Field(min_length=1)
    digest: str = ""

    def wave(self, name: str) -> Wave:
        for wave in self.waves:
            if wave.wave == name:
                return wave
        raise PlanError(
            f"no wave '{name}' in {PLAN_FILE} (waves: {', '.join(w.wave for w in self.waves)})"
        )

    def wave_of(self, system: str) -> str | None:
        return next((w.wave for w in self.waves if system in w.systems), None)


def load_plan(mappings_dir: Path) -> WavePlan:
    path = mappings_dir / PLAN_FILE
    if not path.exists():
        raise PlanError(f"{path} is missing: declare the cutover waves there")
    raw = path.read_bytes()
    try:
        plan = WavePlan.model_validate(yaml.safe_load(raw) or {})
    except (yaml.YAMLError, ValidationError) as error:
        raise PlanError(f"{path}: {error}") from error
    known = set(list_system_entities(mappings_dir))
    seen: dict[str, str] = {}
    for wave in plan.waves:
        for system in wave.systems:
            if system not in known:
                raise PlanError(
                    f"{path}: wave '{wave.wave}' names system '{system}', which has no folder "
                    "in mappings/"
                )
            if system in seen:
                raise PlanError(
                    f"{path}: system '{system}' is in waves '{seen[system]}' and '{wave.wave}'; "
                    "a system moves in exactly one wave"
                )
            seen[system] = wave.wave
    names = [w.wave for w in plan.waves]
    if len(set(names)) != len(names):
        raise PlanError(f"{path}: wave names must be unique")
    plan.digest = hashlib.sha256(raw).hexdigest()[:16]
    return plan
