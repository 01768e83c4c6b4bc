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

Waves by care unit. A wave moves whole systems (``systems``), or the rows of its scope's care
units in systems it splits by unit (``by_unit``)::

    patients: w0_patients          # the patient wave: a wave's name, or first_wave
    waves:
      - wave: w1_skaraborg
        by_unit: [elvis, melior, orbit, lab_skas]
        scope: {sites: [SkaS], care_units: [SE2321000131-F000000796062]}
      - wave: w3_rest
        by_unit: [elvis, melior, orbit]
        scope: {site: NÄL}
        unscoped: [elvis, melior, orbit]

A scope is HSA-ids (``care_units``) and sites (``site``, ``sites``) that expand to their units
through the care-unit register, ``mappings/care_units.yaml``. How each row belongs to a unit is
declared per entity mapping (``care_unit:``, etl/catalog.py). A row whose unit is in no wave
splitting its system, or that has no unit, goes to the one wave naming its system under
``unscoped``; patient-level rows (the patient register, identifiers, warning information) go to
the ``patients`` wave, or with ``first_wave`` to the first wave that moves one of the patient's
rows. Loading refuses overlapping units, unknown HSA-ids or sites, a split system without
exactly one ``unscoped`` wave or with an entity that declares no unit, and a system both moved
whole and split. In a wave that moves whole systems only the scope is a description, as before.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from etl.core import yaml_files
from etl.core.memo import Memo, folder_key
from etl.core.model import HSA_ID_PATTERN
from etl.layout import list_system_entities

if TYPE_CHECKING:
    from etl.catalog import Catalog

PLAN_FILE = "waves.yaml"
REGISTER_FILE = "care_units.yaml"
# ``patients: first_wave``: a patient-level row moves with the first wave that moves one of the
# patient's rows in its system (else with the system's unscoped wave).
FIRST_WAVE = "first_wave"


def one_wave_plan(
    wave: str,
    systems: list[str],
    approvers: dict[str, Any],
    *,
    title: str = "test wave",
    site: str | None = None,
    window: tuple[str, str] = ("2027-01-01", "2027-01-14"),
    **criteria: Any,
) -> dict[str, Any]:
    """A plan of one whole-system wave, as its YAML file holds it (the bench, tests, onboarding
    rehearsals): the strict criteria (quarantine rate 5 %, gate pass, reconciliation and
    accounting exact) unless ``criteria`` says otherwise; ``approvers`` is role -> accounts."""
    entry: dict[str, Any] = {"wave": wave, "title": title, "systems": list(systems)}
    if site is not None:
        entry["scope"] = {"site": site, "care_units": []}
    entry["window"] = {"start": window[0], "end": window[1]}
    entry["criteria"] = {
        "max_quarantine_rate": 0.05,
        "dq_gate": "pass",
        "reconciliation": "exact",
        "accounting": "exact",
        **criteria,
        "approvers": approvers,
    }
    return {"version": 1, "waves": [entry]}


class PlanError(ValueError):
    """The wave plan is missing, malformed or names systems that do not exist."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Scope(Strict):
    # In a wave that splits systems by unit, a site of the register; elsewhere a description.
    site: str = ""
    sites: list[str] = Field(default_factory=list)  # sites of the register
    care_units: list[str] = Field(default_factory=list)  # HSA-ids


class RegisteredUnit(Strict):
    hsa_id: str = Field(pattern=HSA_ID_PATTERN)
    name: str
    site: str
    kind: str = ""


class CareUnitRegister(Strict):
    """``mappings/care_units.yaml``: the region's care units and the site each belongs to."""

    sites: list[str] = Field(min_length=1)
    care_units: list[RegisteredUnit] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> CareUnitRegister:
        ids = [unit.hsa_id for unit in self.care_units]
        twice = sorted({hsa for hsa in ids if ids.count(hsa) > 1})
        if twice:
            raise ValueError(f"HSA-id(s) listed more than once: {twice}")
        unknown = sorted({unit.site for unit in self.care_units} - set(self.sites))
        if unknown:
            raise ValueError(f"unit site(s) {unknown} are not in 'sites'")
        return self

    @property
    def hsa_ids(self) -> set[str]:
        return {unit.hsa_id for unit in self.care_units}

    def units_of_site(self, site: str) -> list[str]:
        return [unit.hsa_id for unit in self.care_units if unit.site == site]


def load_register(mappings_dir: Path) -> CareUnitRegister:
    path = mappings_dir / REGISTER_FILE
    if not path.exists():
        raise PlanError(
            f"{path} is missing: a plan that splits systems by unit needs the care-unit register"
        )
    try:
        data = yaml_files.safe_load(path.read_bytes()) or {}
        return CareUnitRegister.model_validate(data)
    except yaml.YAMLError as error:
        raise PlanError(f"{path}: {error}") from error
    except ValidationError as error:
        raise PlanError(f"{path}: {_describe(error, data)}") from error


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
    systems: list[str] = Field(default_factory=list)  # moved whole
    by_unit: list[str] = Field(default_factory=list)  # split: the rows of the scope's units
    unscoped: list[str] = Field(default_factory=list)  # split systems' rows of no wave's unit
    scope: Scope = Field(default_factory=Scope)
    window: Window
    criteria: Criteria
    _units: frozenset[str] = PrivateAttr(default=frozenset())

    @property
    def units(self) -> frozenset[str]:
        """The HSA-ids of the scope, sites expanded (waves that split systems by unit)."""
        return self._units

    @property
    def is_by_unit(self) -> bool:
        return bool(self.by_unit or self.unscoped)


class WavePlan(Strict):
    version: int
    waves: list[Wave] = Field(min_length=1)
    # Where patient-level rows of split systems go: a wave's name, or first_wave.
    patients: str = ""
    digest: str = ""

    @property
    def split_systems(self) -> list[str]:
        """Systems some wave splits by unit, in plan order."""
        return list(dict.fromkeys(s for wave in self.waves for s in wave.by_unit))

    def systems_of(self, name: str) -> list[str]:
        """The systems wave ``name`` loads: whole, split by unit (its units' rows, and for the
        unscoped wave the rows of no wave's unit) and, for the patients wave, every split system
        (their patient-level rows)."""
        wave = self.wave(name)
        systems = [*wave.systems, *wave.by_unit, *wave.unscoped]
        if name == self.patients:
            systems += self.split_systems
        return list(dict.fromkeys(systems))

    def is_sliced(self, name: str) -> bool:
        """Whether wave ``name`` loads slices of systems split by unit (or their patients)."""
        return self.wave(name).is_by_unit or (name == self.patients and bool(self.split_systems))

    def unscoped_wave(self, system: str) -> str | None:
        return next((w.wave for w in self.waves if system in w.unscoped), None)

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


def load_plan(
    mappings_dir: Path, plan_file: str = PLAN_FILE, catalog: Catalog | None = None
) -> WavePlan:
    """The plan in ``mappings_dir/plan_file`` (another file: a plan under review, the demo's
    unit-scoped ``waves_by_unit.yaml``), checked against the mappings (``catalog``: already
    loaded from ``mappings_dir``) and the unit register."""
    path = mappings_dir / plan_file
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
        for system in [*wave.systems, *wave.by_unit, *wave.unscoped]:
            if system not in known:
                raise PlanError(
                    f"{path}: wave '{wave.wave}' names system '{system}', which has no folder "
                    "in mappings/"
                )
        for system in wave.systems:
            if system in seen:
                raise PlanError(
                    f"{path}: system '{system}' is in waves '{seen[system]}' and '{wave.wave}'; "
                    "a system moves in exactly one wave"
                )
            seen[system] = wave.wave
        if not (wave.systems or wave.is_by_unit or wave.wave == plan.patients):
            raise PlanError(
                f"{path}: wave '{wave.wave}' moves nothing: list its systems, the systems it "
                "splits by unit (by_unit), or make it the plan's patients wave"
            )
        _check_approvers(path, wave)
    names = [w.wave for w in plan.waves]
    if len(set(names)) != len(names):
        raise PlanError(f"{path}: wave names must be unique")
    if plan.split_systems or plan.patients or any(w.unscoped for w in plan.waves):
        _check_unit_scopes(path, plan, mappings_dir, seen, catalog)
    plan.digest = hashlib.sha256(raw).hexdigest()[:16]
    return plan


def _check_unit_scopes(
    path: Path, plan: WavePlan, mappings_dir: Path, whole: dict[str, str], catalog: Catalog | None
) -> None:
    """Waves by unit (module docstring): expand each scope, then prove that every row of a split
    system has exactly one wave by construction (disjoint units, one unscoped wave, a unit
    declared for every entity, a patients wave)."""
    register = load_register(mappings_dir)
    _expand_scopes(path, plan, register)
    split = plan.split_systems
    for system in split:
        if system in whole:
            raise PlanError(
                f"{path}: system '{system}' is moved whole by wave '{whole[system]}' and split by "
                "unit by another; a system is either moved whole or split"
            )
        takers = [w.wave for w in plan.waves if system in w.unscoped]
        if len(takers) != 1:
            problem = "no wave names it" if not takers else f"waves {takers} name it"
            raise PlanError(
                f"{path}: system '{system}' is split by unit, so its rows with no unit or a unit "
                f"in no wave need exactly one wave that lists it under 'unscoped'; {problem}"
            )
    for wave in plan.waves:
        stray = [s for s in wave.unscoped if s not in split]
        if stray:
            raise PlanError(
                f"{path}: wave '{wave.wave}' lists {stray} under 'unscoped', but no wave splits "
                "them by unit (by_unit)"
            )
    if plan.patients not in {FIRST_WAVE, *(w.wave for w in plan.waves)}:
        raise PlanError(
            f"{path}: 'patients' must name the wave that moves the patient registers of the "
            f"systems split by unit, or be '{FIRST_WAVE}'; it is '{plan.patients or '(unset)'}'"
        )
    _check_declarations(path, split, register, mappings_dir, catalog)


def _expand_scopes(path: Path, plan: WavePlan, register: CareUnitRegister) -> None:
    """Each by-unit wave's units: its HSA-ids and its sites' units, no unit in two waves."""
    owner: dict[str, str] = {}
    for wave in plan.waves:
        if not wave.is_by_unit:
            continue
        sites = [*([wave.scope.site] if wave.scope.site else []), *wave.scope.sites]
        unknown_sites = [site for site in sites if site not in register.sites]
        if unknown_sites:
            raise PlanError(
                f"{path}: wave '{wave.wave}' scope names site(s) {unknown_sites}, not in "
                f"{REGISTER_FILE} (sites: {', '.join(register.sites)})"
            )
        unknown = sorted(set(wave.scope.care_units) - register.hsa_ids)
        if unknown:
            raise PlanError(
                f"{path}: wave '{wave.wave}' scope names HSA-id(s) {unknown}, "
                f"not in {REGISTER_FILE}"
            )
        units = set(wave.scope.care_units)
        for site in sites:
            units.update(register.units_of_site(site))
        if wave.by_unit and not units:
            raise PlanError(
                f"{path}: wave '{wave.wave}' splits {wave.by_unit} by unit but its scope names "
                "no unit (care_units) or site (site, sites)"
            )
        for unit in sorted(units):
            if unit in owner:
                raise PlanError(
                    f"{path}: care unit {unit} is in the scope of waves '{owner[unit]}' and "
                    f"'{wave.wave}'; a unit goes live in exactly one wave"
                )
            owner[unit] = wave.wave
        wave._units = frozenset(units)


# The mappings the plan was last checked against, per folder and the bytes of every file in it
# (the plan is read by many steps of one command: each would load the whole catalog again).
_checked_mappings = Memo(4)


def _mappings(mappings_dir: Path) -> Catalog:
    """``load_catalog(mappings_dir)``, reused while every file under the folder (links followed)
    has the same name and bytes as when it was loaded; only for the checks here, which never
    change it. A folder that fails to load is loaded again each time (its error each time)."""
    from etl.catalog import load_catalog

    key = folder_key(mappings_dir)
    catalog = _checked_mappings.get(key) if key else None
    if catalog is None:
        catalog = load_catalog(mappings_dir)
        if key:
            _checked_mappings.put(key, catalog)
    return catalog


def _check_declarations(
    path: Path,
    systems: list[str],
    register: CareUnitRegister,
    mappings_dir: Path,
    catalog: Catalog | None,
) -> None:
    """Every entity of a split system declares its unit; a fixed unit is in the register."""
    # Here, not at the top: parsing the cutover DAGs reads the plan without the data libraries.
    from etl.catalog import MappingError

    if catalog is None:
        try:
            catalog = _mappings(mappings_dir)
        except MappingError as error:
            raise PlanError(f"{path}: the mappings do not load: {error}") from error
    for system in systems:
        for entity, mapping in catalog.system(system).entities.items():
            unit = mapping.care_unit
            if unit is None:
                raise PlanError(
                    f"{path}: system '{system}' is split by unit, but its {entity} mapping "
                    "declares no care_unit (how a row belongs to a unit): its rows could fall "
                    "in no wave"
                )
            if unit.fixed and unit.fixed not in register.hsa_ids:
                raise PlanError(
                    f"{path}: system '{system}' {entity} mapping: care_unit.fixed {unit.fixed} "
                    f"is not in {REGISTER_FILE}"
                )
