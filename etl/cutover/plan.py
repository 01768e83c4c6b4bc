"""The wave plan, ``mappings/waves.yaml``: which systems move together, scope, window, criteria.

``criteria.approvers`` names, per approving role, the accounts that may answer for it::

    approvers:
      project_lead: {airflow_users: [demo-lead]}
      medical_safety_officer: {airflow_users: [demo-cmio], dashboard_users: [demo-cmio]}

``airflow_users`` are Airflow user ids (with the default SimpleAuthManager: its user names, which
``etl.airflow_env`` configures from this plan); the cutover DAG assigns each role's go/no-go task to
them, so Airflow refuses anyone else. ``dashboard_users`` are dashboard sign-in names. Airflow
groups are not supported: SimpleAuthManager has roles (Viewer, User, Op, Admin), not groups, and a
HITL task is assigned to user ids only; with an auth manager that has groups (FAB, Keycloak) a
group would have to be expanded into its members here, in the reviewed plan.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from etl.core import yaml_files
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


ROLE_PATTERN = r"^[a-z][a-z0-9_]*$"
# A user name goes into Airflow's ``simple_auth_manager_users`` ("name:role,..."): no ':' or ','.
ACCOUNT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]*$"
Account = Annotated[str, StringConstraints(pattern=ACCOUNT_PATTERN, max_length=64)]


class RoleAccounts(Strict):
    """Who may answer for one approving role."""

    airflow_users: list[Account] = Field(default_factory=list)
    dashboard_users: list[Account] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _no_groups(cls, data: Any) -> Any:
        if isinstance(data, dict) and "airflow_groups" in data:
            raise ValueError(
                "airflow_groups is not supported: Airflow's SimpleAuthManager has no groups and a "
                "go/no-go task is assigned to user ids; list the people under airflow_users"
            )
        return data

    def accounts(self, channel: str) -> list[str]:
        """The accounts that may answer through ``channel`` (dashboard, or Airflow/command line,
        which signs in to Airflow)."""
        return self.dashboard_users if channel == "dashboard" else self.airflow_users


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
    approvers: dict[Annotated[str, StringConstraints(pattern=ROLE_PATTERN)], RoleAccounts] = Field(
        min_length=1
    )

    @field_validator("approvers", mode="before")
    @classmethod
    def _roles_name_accounts(cls, value: Any) -> Any:
        if isinstance(value, list):
            raise ValueError(
                "approvers must name, per role, the accounts that may approve, e.g. "
                "{project_lead: {airflow_users: [a.person]}}; a bare list of role names "
                "lets anyone answer"
            )
        return value


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

    def airflow_users(self) -> list[str]:
        """Every Airflow account that approves some role of some wave, sorted, once each."""
        return sorted(
            {
                user
                for wave in self.waves
                for accounts in wave.criteria.approvers.values()
                for user in accounts.airflow_users
            }
        )


def _describe(error: ValidationError, data: Any) -> str:
    """Each problem with where it is: the wave by name, then the field path."""
    problems = []
    for problem in error.errors():
        location = list(problem["loc"])
        where = ".".join(str(part) for part in location)
        if location[:1] == ["waves"] and len(location) > 1 and isinstance(location[1], int):
            try:
                name = data["waves"][location[1]].get("wave")
            except (AttributeError, IndexError, KeyError, TypeError):
                name = None
            rest = ".".join(str(part) for part in location[2:])
            where = f"wave '{name or location[1]}' {rest}".strip()
        problems.append(f"{where}: {problem['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)


def _check_approvers(path: Path, wave: Wave) -> None:
    """Every role names someone; no two roles name the same people (distinct roles need
    distinct people: with the same list one person could answer for both)."""
    roles = wave.criteria.approvers
    for role, accounts in roles.items():
        if not accounts.airflow_users:
            # An Airflow HITL task without assigned users accepts any user allowed on the DAG.
            raise PlanError(
                f"{path}: wave '{wave.wave}' role '{role}' names no account: list who may "
                "approve under airflow_users (its go/no-go task in Airflow is assigned to them)"
            )
    names = sorted(roles)
    for index, first in enumerate(names):
        for second in names[index + 1 :]:
            for channel in ("airflow_users", "dashboard_users"):
                mine = set(getattr(roles[first], channel))
                if mine and mine == set(getattr(roles[second], channel)):
                    raise PlanError(
                        f"{path}: wave '{wave.wave}' roles '{first}' and '{second}' have the same "
                        f"{channel}; distinct roles need distinct people"
                    )


def load_plan(mappings_dir: Path) -> WavePlan:
    path = mappings_dir / PLAN_FILE
    if not path.exists():
        raise PlanError(f"{path} is missing: declare the cutover waves there")
    raw = path.read_bytes()
    try:
        data = yaml_files.safe_load(raw) or {}
    except yaml.YAMLError as error:
        raise PlanError(f"{path}: {error}") from error
    try:
        plan = WavePlan.model_validate(data)
    except ValidationError as error:
        raise PlanError(f"{path}: {_describe(error, data)}") from error
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
        _check_approvers(path, wave)
    names = [w.wave for w in plan.waves]
    if len(set(names)) != len(names):
        raise PlanError(f"{path}: wave names must be unique")
    plan.digest = hashlib.sha256(raw).hexdigest()[:16]
    return plan
