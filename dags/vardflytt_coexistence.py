"""The coexistence feed on a schedule: every five minutes, the core's changes to patients shared
with legacy systems that still serve them go out as HL7 ADT A31/A08 over MLLP (etl/coexistence).

One task, one call: it stops the feed to systems whose last wave is cut over, queues what changed
and delivers what is due (retries wait out their backoff across runs). Idempotent: a run that
finds nothing new sends nothing. XCom carries counts and reasons per system, never patient data.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task

from etl.dag_names import COEXISTENCE_DAG_ID


@dag(
    dag_id=COEXISTENCE_DAG_ID,
    description="The core's changes to shared patients, back to the legacy systems still live",
    schedule=dt.timedelta(minutes=5),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    tags=["vardflytt", "coexistence"],
    doc_md=(
        "Runs `vardflytt coexistence run`: queue the core's changes per legacy system, deliver "
        "over MLLP, record ACKs. See `vardflytt coexistence status` for failed and held messages."
    ),
)
def vardflytt_coexistence():
    @task
    def run_feed() -> dict:
        from etl.coexistence import feed
        from etl.settings import get_settings

        return feed.run_counts(get_settings())

    run_feed()


vardflytt_coexistence()
