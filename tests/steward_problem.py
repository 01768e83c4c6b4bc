"""One quarantined row as the steward queue lists it, shared by the steward and screening tests."""

from __future__ import annotations

from etl.steward.actions import Problem

PROBLEM = Problem(
    handle="0123456789abcdef0123456789abcdef",
    kind="quarantined",
    batch_id="elvis-1",
    system="elvis",
    dataset="bokning",
    entity="appointment",
    row_number=49,
    source_key="2000049",
    check="appointment.scheduled_at.not_null",
    severity="error",
    reason="missing_value",
    decision=None,
)
