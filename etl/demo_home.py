"""The demo's home: a second ``make demo`` starts from the same empty state as the first.

The demo writes a marker file into ``VARDFLYTT_HOME`` before it writes anything else. On the
next run a marked home is reset: every folder the demo fills (estate, landing, core, Airflow's
metadata database and logs, logs, docs, reports, evidence, rehearsals, dashboard sessions) is
deleted, so the run does not depend on what the last one left (a wave cut over, batches, DAG
runs). Kept, because they are owner-only random secrets and keeping them changes no result:
``secrets/`` (pseudonym key, dashboard tokens and signing key) and Airflow's generated passwords,
so a signed-in browser and a noted admin password keep working.

Nothing outside the home is ever deleted, and a home without the marker that already holds
data is refused, not reset: a production ``VARDFLYTT_HOME`` is never wiped by a demo. A core or
landing zone configured outside the home is refused too (the reset could not empty it); an
estate configured outside it is left, as the demo writes it again from its seed. Stop ``make
airflow`` and the dashboard of that home before a second demo: their database is reset.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from etl.settings import Settings

MARKER = ".vardflytt-demo"
# Folders under the home that the demo fills; `airflow/` keeps only KEPT_AIRFLOW_FILES.
DEMO_STATE = (
    "estate",
    "landing",
    "core",
    "airflow",
    "logs",
    "docs",
    "reports",
    "evidence",
    "export",  # the FHIR export each cut-over wave's DAG writes
    "rehearsals",
    "dashboard",
    "purges",
    "tmp",
)
KEPT_AIRFLOW_FILES = ("simple_auth_manager_passwords.json",)
# What says "this home holds someone's migration": never reset without the marker.
DATA_STATE = ("core", "landing", "evidence", "export", "rehearsals", "reports")


class DemoHomeError(RuntimeError):
    """The home cannot be reset for the demo; the message says why and what to do."""


@dataclass
class Preparation:
    """What ``prepare_demo_home`` did: ``fresh`` (nothing to reset) or ``reset``."""

    action: str
    home: Path
    removed: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.action == "fresh":
            return f"demo home {self.home}: fresh, nothing to reset"
        removed = ", ".join(self.removed) or "nothing"
        return (
            f"demo home {self.home}: a previous demo's state was reset (removed: {removed}; "
            f"kept: secrets/ and Airflow's passwords)"
        )


def _inside(path: Path, home: Path) -> bool:
    return path.resolve().is_relative_to(home)


def _sqlite_file(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database)


def _outside_settings(settings: Settings, home: Path) -> list[str]:
    """Settings that put demo state the reset would have to delete outside the home."""
    outside = []
    core = _sqlite_file(settings.resolved_core_url)
    if core is None or not _inside(core, home):
        outside.append("VARDFLYTT_CORE_URL (the core is not a SQLite file in the home)")
    if not _inside(settings.resolved_landing_dir, home):
        outside.append(f"VARDFLYTT_LANDING_DIR ({settings.resolved_landing_dir})")
    return outside


def _remove(path: Path, home: Path) -> None:
    """Delete one entry of the home; a symbolic link is unlinked, never followed."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        if not _inside(path, home):
            raise DemoHomeError(f"{path} resolves outside the demo home {home}; not deleting it")
        shutil.rmtree(path)


def prepare_demo_home(settings: Settings, now: dt.datetime | None = None) -> Preparation:
    """Reset a previous demo's state under the home, or mark a fresh home as the demo's."""
    home = Path(settings.home).resolve()
    marker = home / MARKER
    present = [name for name in DEMO_STATE if (home / name).exists() or (home / name).is_symlink()]
    if not marker.exists():
        data = [name for name in DATA_STATE if name in present]
        if data:
            raise DemoHomeError(
                f"VARDFLYTT_HOME {home} holds {', '.join(data)} but no demo wrote it (no "
                f"{MARKER} file): the demo resets only its own home. Point VARDFLYTT_HOME at an "
                "empty folder for the demo (or, if it is this project's var/ and holds nothing "
                "you need, `make clean` first)."
            )
        action = "fresh"
    else:
        outside = _outside_settings(settings, home)
        if outside:
            raise DemoHomeError(
                f"a previous demo ran in {home}, but its state is partly outside the home: "
                f"{'; '.join(outside)}. The demo deletes nothing outside its home: empty that "
                "yourself or unset the variable."
            )
        action = "reset"
    removed = []
    if action == "reset":
        for name in present:
            path = home / name
            if name == "airflow" and path.is_dir() and not path.is_symlink():
                for child in sorted(path.iterdir()):
                    if child.name not in KEPT_AIRFLOW_FILES:
                        _remove(child, home)
            else:
                _remove(path, home)
            removed.append(f"{name}/")
    home.mkdir(parents=True, exist_ok=True)
    stamp = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    marker.write_text(
        json.dumps({"written_by": "vardflytt demo", "prepared_at": stamp}) + "\n", encoding="utf-8"
    )
    return Preparation(action=action, home=home, removed=removed)
