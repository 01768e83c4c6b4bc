"""Access logging of the pipeline's own reads and writes of patient data (Patientdatalagen)."""

from __future__ import annotations

import getpass
import os
import uuid

from etl.batch import utc_now
from etl.core.database import core_engine
from etl.core.tables import access_log
from etl.settings import Settings


def current_user() -> str:
    """Who is acting: the Airflow task's owner when run by Airflow, else the OS user."""
    return os.environ.get("AIRFLOW_CTX_DAG_OWNER") or getpass.getuser()


def record_access(
    settings: Settings,
    action: str,
    system: str,
    batch_id: str,
    rows: int,
    entity: str | None = None,
    run_id: str | None = None,
    user_name: str | None = None,
) -> None:
    """One access-log row; counts and ids only, never patient values. ``user_name``: the person
    acting when it is not this process's user (a steward deciding through the dashboard)."""
    with core_engine(settings.resolved_core_url).begin() as connection:
        connection.execute(
            access_log.insert().values(
                access_id=str(uuid.uuid4()),
                accessed_at=utc_now(),
                user_name=user_name or current_user(),
                process=f"vardflytt:{action}",
                action=action,
                source_system=system,
                entity=entity,
                batch_id=batch_id,
                run_id=run_id or os.environ.get("AIRFLOW_CTX_DAG_RUN_ID"),
                rows=rows,
            )
        )
