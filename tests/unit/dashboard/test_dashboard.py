"""The dashboard's pure parts: chart geometry and escaping, user configuration, CSRF tokens."""

from __future__ import annotations

import datetime as dt
import html
import itertools
import math
import re

import pytest

from etl.dashboard import charts
from etl.dashboard.auth import CsrfTokens, Role, Viewer, parse_users, token_digest
from etl.dashboard.data import RunSummary, SystemBatch, derive_run_label
from etl.dashboard.wave_ledger import Transition, Wave, criteria_from_evidence

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 1.0), (0.7, 1.0), (3, 5.0), (7, 10.0), (12, 20.0), (2400, 2500.0), (9001, 10000.0)],
    ids=str,
)
def test_axis_maximum_is_a_round_number_at_or_above_the_data(value, expected):
    assert charts.nice_ceiling(value) == expected


def test_bar_chart_stacks_segments_and_escapes_labels():
    svg = str(
        charts.bar_chart(
            "rows <per> run",
            ["run&1", "run2"],
            [charts.Series("loaded", [90, 40], "s-loaded"), charts.Series("q", [10, 0], "s-q")],
        )
    )
    assert svg.startswith("<svg") and "<script" not in svg and "style=" not in svg
    assert "run&amp;1" in svg and "rows &lt;per&gt; run" in svg
    assert svg.count('class="s-loaded"') == 3  # two bars and the legend swatch
    assert svg.count('class="s-q"') == 2  # one non-zero segment and the legend swatch


def test_line_chart_breaks_at_missing_values_and_caps_at_the_maximum():
    svg = str(
        charts.line_chart(
            "rate",
            ["a", "b", "c", "d"],
            [charts.Series("r", [0.5, None, 0.9, 2.0], "s")],
            maximum=1.0,
        )
    )
    assert svg.count("<polyline") == 1  # a, then (b missing) c-d
    assert svg.count("<circle") == 3
    assert "no data yet" in str(charts.line_chart("x", [], []))


def test_users_come_as_name_role_token_or_a_digest_and_bad_entries_are_refused():
    digest = token_digest("a-long-enough-token-123")
    users = parse_users(f"anna:lead:a-long-enough-token-123, bo:steward:sha256:{digest}")
    assert [(u.name, u.role) for u in users] == [("anna", Role.LEAD), ("bo", Role.STEWARD)]
    assert users[0].token_sha256 == users[1].token_sha256 == digest
    for bad in ("anna:admin:a-long-enough-token-123", "anna:lead:short", "anna:lead:sha256:xyz"):
        with pytest.raises(ValueError, match="anna"):
            parse_users(bad)


def test_csrf_tokens_are_bound_to_one_user():
    tokens = CsrfTokens(b"secret-secret-secret")
    anna, bo = Viewer("anna", Role.STEWARD, "session"), Viewer("bo", Role.STEWARD, "session")
    token = tokens.issue(anna)
    assert tokens.is_valid(anna, token)
    assert not tokens.is_valid(bo, token)
    assert not tokens.is_valid(anna, None) and not tokens.is_valid(anna, token + "x")
    assert not CsrfTokens(b"another-secret-000000").is_valid(anna, token)
    assert not Viewer("api", Role.LEAD, "bearer").needs_csrf


def test_figures_add_up_and_rates_handle_empty_batches():
    loaded = SystemBatch(
        "b1",
        "elvis",
        status="loaded",
        extracted=100,
        loaded=95,
        quarantined=5,
        entities=2,
        rows_evaluated=200,
        rows_failed=10,
    )
    stopped = SystemBatch(
        "b2", "melior", status="stopped_at_gate", rows_evaluated=50, rows_failed=50
    )
    assert loaded.is_accounted and loaded.dq_pass_rate == 0.95 and loaded.quarantine_rate == 0.05
    assert not stopped.is_loaded and SystemBatch("b3", "x").dq_pass_rate is None
    run = RunSummary("r", [loaded, stopped])
    assert run.total("loaded") == 95 and run.stopped_at_gate == 1 and run.is_accounted
    assert run.dq_pass_rate == pytest.approx(1 - 60 / 250)


def test_recorded_go_no_go_criteria_are_read_from_a_transitions_evidence():
    evidence = {
        "criteria": [{"criterion": "reconciliation", "passed": False, "detail": "2 missing"}]
    }
    [criterion] = criteria_from_evidence(evidence)
    assert (criterion.name, criterion.is_passed, criterion.reason) == (
        "reconciliation",
        False,
        "2 missing",
    )
    assert criteria_from_evidence({}) == [] and criteria_from_evidence({"criteria": "x"}) == []


def test_meter_names_its_rate():
    assert re.search(r'aria-label="pass 97.0%"', str(charts.meter(0.97, "pass")))


@pytest.mark.parametrize(
    ("run_id", "systems", "waves", "phases", "expected"),
    [
        ("manual__2026-12-04T07:00:00+00:00", ["elvis", "melior"], [None], [], "vardflytt_migrate"),
        ("scheduled__2026-12-04T07:00:00+00:00", ["elvis"], [None], [], "vardflytt_elvis"),
        (
            "manual__2026-12-04T07:00:00+00:00",
            ["lab_skas", "ris_skas"],
            ["w1_skaraborg"],
            ["final"],
            "vardflytt_cutover_w1_skaraborg · final",
        ),
        (None, ["elvis"], [None], [], "command line"),
        (
            None,
            ["lab_skas"],
            ["w1_skaraborg"],
            ["initial"],
            "command line · cutover w1_skaraborg · initial",
        ),
    ],
    ids=["migrate", "one-system-dag", "cutover-dag", "command-line", "command-line-cutover"],
)
def test_a_run_label_comes_from_what_the_core_stores(run_id, systems, waves, phases, expected):
    assert derive_run_label(run_id, systems, waves, phases).text == expected


def test_a_recorded_dag_id_wins_over_the_shape_of_the_run():
    """A ``vardflytt_migrate`` run of one system is that DAG's run, not the system's own DAG."""
    run_id = "manual__2026-12-04T07:00:00+00:00"
    assert derive_run_label(run_id, ["elvis"], [None], []).text == "vardflytt_elvis"
    label = derive_run_label(run_id, ["elvis"], [None], [], dag_id="vardflytt_migrate")
    assert label.text == "vardflytt_migrate"
    # the command line never takes a DAG's name, whatever is recorded
    assert derive_run_label(None, ["elvis"], [None], [], dag_id="vardflytt_migrate").text == (
        "command line"
    )


def test_the_dag_of_a_batch_is_read_from_airflow_only_for_its_own_run(monkeypatch):
    from etl.load.loader import airflow_dag_id

    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "vardflytt_migrate")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "manual__2026-12-04T07:00:00+00:00")
    assert airflow_dag_id("manual__2026-12-04T07:00:00+00:00") == "vardflytt_migrate"
    assert airflow_dag_id("manual__2026-12-05T07:00:00+00:00") is None  # a leftover environment
    assert airflow_dag_id(None) is None
    monkeypatch.delenv("AIRFLOW_CTX_DAG_ID")
    assert airflow_dag_id("manual__2026-12-04T07:00:00+00:00") is None


RUN_LABELS = [
    f"vardflytt_cutover_w1_skaraborg · {phase}\n2026-12-04 0{hour}:15"
    for hour, phase in enumerate(["initial", "delta", "delta", "final"] * 6)
]


def _labels(svg: str, css: str) -> list[tuple[str, str]]:
    """Each label's opening tag and its text, lines joined by a newline."""
    found = []
    for tag, body in re.findall(rf'(<text class="{css}"[^>]*>)(.*?)</text>', svg):
        lines = re.findall(r"<tspan[^>]*>(.*?)</tspan>", body) or [body]
        found.append((tag, "\n".join(html.unescape(line) for line in lines)))
    return found


def _attribute(tag: str, name: str) -> float:
    return float(re.search(rf' {name}="([^"]+)"', tag).group(1))


@pytest.mark.parametrize("count", [1, 5, 24], ids=lambda n: f"{n}-runs")
def test_run_labels_are_whole_inside_the_chart_and_never_overlap(count):
    labels = RUN_LABELS[:count]
    svg = str(
        charts.bar_chart(
            "Rows per run",
            labels,
            [charts.Series("loaded", [126_494 * (i + 1) for i in range(count)], "s-loaded")],
            x_title="run (DAG · phase, start UTC)",
            y_title="rows",
        )
    )
    width, height = (float(v) for v in re.search(r'viewBox="0 0 (\S+) (\S+)"', svg).groups())
    shown = _labels(svg, "tick x-label")
    assert shown and all(text in labels for _tag, text in shown), "labels are whole, never cut"
    assert shown[0][1] == labels[0]
    boxes = [
        charts.slanted_label_box(text, _attribute(tag, "x"), _attribute(tag, "y"))
        for tag, text in shown
    ]
    for box in boxes:
        assert box.left >= 0 and box.right <= width and box.bottom <= height, box
    # Slanted labels are parallel: across their lines, neighbours are a full label apart.
    across = [
        (b.x - a.x) * math.sin(math.radians(charts.SLANT)) for a, b in itertools.pairwise(boxes)
    ]
    assert all(gap >= 2 * charts.LINE_HEIGHT for gap in across), across
    # Axis titles, and numbers with thousands separators.
    titles = [text for _tag, text in _labels(svg, "axis-title")]
    assert titles == ["rows", "run (DAG · phase, start UTC)"]
    ticks = [text for _tag, text in _labels(svg, "tick")]
    assert any(re.fullmatch(r"\d{1,3}(\u202f\d{3})+", t) for t in ticks), ticks
    assert not any(re.search(r"\d[kM]$", t) for t in ticks)


def test_system_names_are_written_in_full_beside_their_bars():
    systems = ["ungdomsmottagning_goteborg", "elvis", "fysioterapi_skaraborg"]
    svg = str(
        charts.horizontal_bar_chart(
            "Rows in the core", systems, [12_345, 1_234_567, 0], "s-loaded", "rows in the core"
        )
    )
    width = float(re.search(r'viewBox="0 0 (\S+) ', svg).group(1))
    names = _labels(svg, "tick y-label")
    assert [text for _tag, text in names] == systems
    for tag, text in names:  # anchored at their end, left of the bars, and inside the chart
        assert _attribute(tag, "x") - charts.text_width(text) >= 0
    values = [text for _tag, text in _labels(svg, "tick value")]
    assert values == ["12\u202f345", "1\u202f234\u202f567", "0"]
    for tag, text in _labels(svg, "tick value"):
        assert _attribute(tag, "x") + charts.text_width(text) <= width
    assert [text for _tag, text in _labels(svg, "axis-title")] == ["rows in the core"]


@pytest.mark.parametrize(
    ("run_id", "to_state", "expected"),
    [
        ("manual__2026-12-04T07:00:00+00:00", "final_delta", "vardflytt_cutover_w1 · final"),
        ("manual__2026-12-04T07:00:00+00:00", "verified", "vardflytt_cutover_w1"),
        ("manual__2026-12-04T07:00:00+00:00", "rolled_back", "vardflytt_rollback"),
        ("rehearsal-1", "rehearsal", "command line · cutover w1 · rehearsal"),
        (None, "frozen", None),
    ],
    ids=["final", "verify", "rollback-dag", "command-line", "no-run"],
)
def test_a_transition_names_the_run_that_made_it(run_id, to_state, expected):
    made = Transition("w1", "frozen", to_state, "lena", dt.datetime.now(dt.UTC), run_id, None, {})
    assert made.run_label == expected


def test_criteria_recorded_before_a_later_promotion_are_marked_out_of_date():
    verified = dt.datetime(2026, 6, 1, 8, tzinfo=dt.UTC)
    before = SystemBatch(
        batch_id="b1", system="elvis", promoted_at=verified - dt.timedelta(hours=1)
    )
    after = SystemBatch(
        batch_id="b2", system="melior", promoted_at=verified + dt.timedelta(hours=1)
    )
    unpromoted = SystemBatch(batch_id="b3", system="orbit")
    wave = Wave(
        name="w2",
        criteria_source="ledger",
        criteria_at=verified,
        criteria_state="verified",
        batches=[before, after, unpromoted],
    )
    assert wave.promoted_since_criteria == ["melior"]
    wave.batches = [before, unpromoted]
    assert wave.promoted_since_criteria == []
    # criteria the dashboard evaluates itself are current by construction
    current = Wave(name="w3", criteria_source="current", batches=[after])
    assert current.promoted_since_criteria == []
