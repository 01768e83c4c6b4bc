"""Steward rules that need no migration: justifications, who decides, check ids, statuses."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from etl.core.decisions import DECISIONS, ReviewStatus
from etl.steward.actions import StewardError, check_justification, steward_name
from etl.steward.queue import check_id
from tests.steward_problem import PROBLEM

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "is_required", "expected"),
    [
        pytest.param(
            "  Booking time never   recorded; clinic confirms the visit ",
            True,
            "Booking time never recorded; clinic confirms the visit",
            id="whitespace-normalised",
        ),
        pytest.param(None, False, None, id="optional-and-absent"),
        pytest.param("checked", False, "checked", id="optional-may-be-short"),
        pytest.param(
            "confirmed on 2026-11-02 by the clinic manager",
            True,
            "confirmed on 2026-11-02 by the clinic manager",
            id="a-date-is-fine",
        ),
    ],
)
def test_accepted_justifications(text, is_required, expected):
    assert check_justification(text, [PROBLEM], is_required) == expected


@pytest.mark.parametrize(
    ("text", "is_required", "refusal"),
    [
        pytest.param(None, True, "needs --justification", id="required-and-absent"),
        pytest.param("ok", True, "too thin", id="too-short"),
        pytest.param("1234567890123456789012", True, "too thin", id="no-words"),
        pytest.param("see 19121212-1212 in the paper record", True, "identity", id="personnummer"),
        pytest.param("see 191212121212 in the paper record", True, "identity", id="12-digit"),
        pytest.param("see 19810829M071 in the paper record", True, "identity", id="reservnummer"),
        pytest.param("row 2000049 is confirmed by the clinic", True, "source keys", id="key"),
        pytest.param("note on 2000049", False, "source keys", id="source-key-in-a-note"),
    ],
)
def test_refused_justifications(text, is_required, refusal):
    with pytest.raises(StewardError, match=refusal):
        check_justification(text, [PROBLEM], is_required)


def test_who_decides_is_the_authenticated_caller_else_the_os_account(monkeypatch):
    """No free name from the environment or the command line: VARDFLYTT_USER is ignored."""
    monkeypatch.setattr("getpass.getuser", lambda: "os.user")
    monkeypatch.setenv("VARDFLYTT_USER", "env.user")
    assert steward_name() == "os.user"
    assert steward_name(" dashboard.user ") == "dashboard.user"


def test_review_statuses_are_open_the_decisions_and_all():
    assert [status.value for status in ReviewStatus] == ["open", *DECISIONS, "all"]


@pytest.mark.parametrize(
    ("entity", "check_name", "reason", "expected"),
    [
        pytest.param(
            "appointment",
            "appointment.scheduled_at.not_null",
            "missing_value",
            "appointment.scheduled_at.not_null",
            id="suite-check",
        ),
        pytest.param(
            "encounter",
            "transform:parse_legacy_timestamp",
            "unparseable_date",
            "source.unparseable_date",
            id="transform-problem",
        ),
        pytest.param(
            "patient",
            "identity_number",
            "invalid_identity_number",
            "source.invalid_identity_number",
            id="identity-number-problem",
        ),
        pytest.param(
            "waiting_list_entry",
            "waiting_list_entry.listed_date.not_null",
            "missing_value",
            "waiting_list_entry.listed_date.not_null",
            id="underscored-entity",
        ),
        pytest.param(
            "encounter", "patient.identity_number.not_null", "x", "source.x", id="other-entity"
        ),
    ],
)
def test_check_ids_match_thresholds_yaml(entity, check_name, reason, expected):
    table = sa.Table(
        "problem",
        sa.MetaData(),
        *(sa.Column(name, sa.Text) for name in ("entity", "check_name", "reason")),
    )
    engine = sa.create_engine("sqlite://")
    table.metadata.create_all(engine)
    with engine.connect() as connection:
        connection.execute(
            table.insert(), {"entity": entity, "check_name": check_name, "reason": reason}
        )
        assert connection.execute(sa.select(check_id(table))).scalar_one() == expected
