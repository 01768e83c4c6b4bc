"""What every DAG file names the same way: DAG ids, the core assets and the folders they read.

One place, so the migration DAGs' load outlets, identity resolution's schedule and the cutover
loads cannot drift apart (an asset renamed in one file would silently stop a schedule). Light on
purpose: Airflow parses the DAG files every 30 seconds, so this imports nothing of the project
and ``airflow.sdk`` only inside the functions that build Airflow objects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import Asset, AssetAlias

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SELECTION_DAG_ID = "vardflytt_migrate"
IDENTITY_DAG_ID = "identity_resolution"
ROLLBACK_DAG_ID = "vardflytt_rollback"
CORE_ASSET_ALIAS = "vardflytt_core"


def _folder(variable: str, default: str) -> Path:
    # The same environment variables and defaults as etl.settings.Settings, without pydantic.
    return Path(os.environ.get(variable) or PROJECT_ROOT / default)


MAPPINGS_DIR = _folder("VARDFLYTT_MAPPINGS_DIR", "mappings")
EXPECTATIONS_DIR = _folder("VARDFLYTT_EXPECTATIONS_DIR", "expectations")


def system_dag_id(system: str) -> str:
    return f"vardflytt_{system}"


def cutover_dag_id(wave: str) -> str:
    return f"vardflytt_cutover_{wave}"


def core_asset_name(system: str) -> str:
    return f"vardflytt_core_{system}"


def core_asset(system: str) -> Asset:
    """The core tables one system loads into: a load's outlet, identity resolution's trigger."""
    from airflow.sdk import Asset

    return Asset(name=core_asset_name(system), uri=f"vardflytt://core/{system}")


def core_asset_alias() -> AssetAlias:
    """The outlet of the mapped selection DAG's load: it names the system's asset at run time."""
    from airflow.sdk import AssetAlias

    return AssetAlias(name=CORE_ASSET_ALIAS)
