"""Runtime configuration: one typed object, read from ``VARDFLYTT_*`` environment variables.

Read at run time (never at import), so a DAG file can import this module cheaply and a test can
point everything at a temporary folder with ``monkeypatch.setenv``.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Where things live and how big a chunk is. Every field has an embedded default."""

    model_config = SettingsConfigDict(env_prefix="VARDFLYTT_", extra="ignore")

    home: Path = Field(default=PROJECT_ROOT / "var", description="Root of all local state.")
    mappings_dir: Path = Field(default=PROJECT_ROOT / "mappings")
    expectations_dir: Path = Field(default=PROJECT_ROOT / "expectations")
    wave_plan: str = Field(
        default="waves.yaml",
        description="The cutover plan the waves run, a file in the mappings folder "
        "(`waves_by_unit.yaml`: the demo plan by care unit).",
    )
    estate_dir: Path | None = Field(default=None, description="Synthetic legacy estate.")
    # Data residency (etl/core/residency.py): comma-separated lists; None means the default.
    allowed_hosts: str | None = Field(default=None, description="CIDRs and host names.")
    allowed_storage_roots: str | None = Field(default=None, description="Folders and root URLs.")
    landing_retention_days: int | None = Field(
        default=None, ge=0, description="Days landed data is kept (per system: system.yaml)."
    )
    landing_dir: Path | None = Field(default=None, description="Parquet landing zone.")
    storage_root: str | None = Field(
        default=None,
        description="Where everything one task hands to the next lives (landing zone, stage "
        "files, batch reports): a folder every worker reaches (default: `home`) or an URL "
        "(`file:///shared/vardflytt`, `s3://bucket/prefix` on an on-premises S3-compatible "
        "store; etl/core/storage.py).",
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options of an URL storage root, as JSON (`endpoint_url`, `key`, "
        "`secret`, ...); credentials may instead come from the standard AWS_* variables.",
    )
    core_url: str | None = Field(default=None, description="SQLAlchemy URL of the core database.")
    audit_url: str | None = Field(
        default=None,
        description="Database of the access log (default: the core). Rehearsals set it to the "
        "region's core so their reads outlive the rehearsal's own core. (A rollback logs in the "
        "core it changes, in its own transaction.)",
    )
    chunk_rows: int = Field(default=50_000, gt=0, description="Rows per chunk; bounds memory.")
    require_approved_codes: bool = Field(
        default=False,
        description="Map codes through approved crosswalk rows only: a code only a `proposed` "
        "row maps is quarantined as `unapproved_code` (check source.unapproved_code, which "
        "stops the gate at the first such row).",
    )
    core_write_slots: int | None = Field(
        default=None,
        gt=0,
        description="Tasks writing the core at once (its Airflow pool); unset: 1 on SQLite, 4 "
        "otherwise (etl/airflow_pools.py).",
    )
    jobs: int | None = Field(
        default=None,
        gt=0,
        description="Worker processes of `vardflytt run` (independent systems, and each "
        "system's independent entities, at once; etl/parallel.py); unset: the CPUs this "
        "process may use.",
    )
    airflow_url: str = Field(
        default="http://127.0.0.1:8080",
        description="Base URL of Airflow's api-server: `cutover approve` signs in there, and "
        "the dashboard links each waiting go/no-go to its Required Actions page there.",
    )
    dashboard_url: str = Field(
        default="http://127.0.0.1:8765",
        description="Base URL of the dashboard as approvers reach it (inside Airflow: Airflow's "
        "URL and /vardflytt): the go/no-go request links its evidence pack there.",
    )

    # The coexistence feed (etl/coexistence): HL7 v2 back to the legacy systems still serving
    # shared patients. Endpoints as JSON, ``{"elvis": "10.1.2.3:2575"}``; each host must be an
    # allowed host (VARDFLYTT_ALLOWED_HOSTS), else delivery to that system is refused.
    coexistence_endpoints: dict[str, str] = Field(
        default_factory=dict,
        description="MLLP endpoint (host:port) per legacy system, as JSON.",
    )
    coexistence_ack_timeout_seconds: float = Field(
        default=10.0, gt=0, description="How long a delivery waits for the system's ACK."
    )
    coexistence_retry_seconds: float = Field(
        default=60.0,
        ge=0,
        description="Backoff after a failed connection or a missing ACK; doubles per attempt.",
    )
    coexistence_max_attempts: int = Field(
        default=8, gt=0, description="Attempts before a message is marked failed for a person."
    )

    @cached_property
    def resolved_estate_dir(self) -> Path:
        return self.estate_dir or self.home / "estate"

    @property
    def resolved_storage_root(self) -> str:
        """The storage root as given (a folder or an URL); `home` when unset."""
        return self.storage_root or str(self.home)

    @property
    def is_remote_storage(self) -> bool:
        """An URL other than ``file://``: workers reach it over the network, never as a folder."""
        parts = urlsplit(self.resolved_storage_root)
        return (
            len(parts.scheme) > 1 and "://" in self.resolved_storage_root and parts.scheme != "file"
        )

    @cached_property
    def storage_dir(self) -> Path:
        """The storage root as a folder. With a remote root there is none: a task works in a
        mirror of its part of the root (``etl.core.storage.workspace``), whose settings name it."""
        if self.is_remote_storage:
            scheme = urlsplit(self.resolved_storage_root).scheme
            raise RuntimeError(
                f"the storage root (VARDFLYTT_STORAGE_ROOT) is a {scheme}:// URL: this step "
                "reads or writes shared state as a local folder and runs only inside a pipeline "
                "stage (its workspace) or with a folder as the storage root"
            )
        return Path(self.resolved_storage_root.removeprefix("file://"))

    @cached_property
    def resolved_landing_dir(self) -> Path:
        return self.landing_dir or self.storage_dir / "landing"

    @property
    def scratch_dir(self) -> Path:
        """This worker's own temporary files: never read by another task."""
        return self.home / "scratch"

    @cached_property
    def resolved_core_url(self) -> str:
        return self.core_url or f"sqlite:///{self.home / 'core' / 'core.sqlite'}"

    @cached_property
    def resolved_audit_url(self) -> str:
        return self.audit_url or self.resolved_core_url

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"


def get_settings() -> Settings:
    """Fresh settings from the current environment.

    Every command and every Airflow task reads its settings here before it writes anything, so
    this is also where the process's umask becomes owner-only (etl.core.files): patient data
    written afterwards is never readable by other local users."""
    from etl.core.files import restrict_umask

    restrict_umask()
    # Secrets as files (docker/compose.yaml mounts them in /run/secrets): a file named after the
    # variable, e.g. ``vardflytt_core_url``, gives the setting; an environment variable wins.
    secrets_dir = os.environ.get("VARDFLYTT_SECRETS_DIR")
    # _secrets_dir is pydantic-settings' init-only option, not a field (its stubs omit it)
    return Settings(_secrets_dir=secrets_dir) if secrets_dir else Settings()  # type: ignore[call-arg]
