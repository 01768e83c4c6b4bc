"""Issue 15's goals from made-up bench results: ratios, PASS/MISS, scale, the Markdown report and
the peers' pure helpers (nothing generated, run or timed). Expected figures are worked out by
hand in the comments, not by calling the code under test."""

from __future__ import annotations

import json
import os

import pytest

from etl.bench import goals
from etl.bench.figures import STAGES
from etl.bench.markdown import peers_markdown, results_markdown, scale_markdown
from etl.bench.peers import dlt_destination, elvis_tables

pytestmark = pytest.mark.unit


def _stages(seconds: dict[str, float]) -> dict:
    return {
        name: {"seconds": seconds.get(name, 0.0), "cpu_seconds": None, "rows_per_second": None}
        for name in STAGES
    }


def _run(
    backend: str,
    rows: int,
    seconds: dict[str, float],
    *,
    vm_hwm: float | None = 500.0,
    cutover: dict | None = None,
    chunk_rows: int = 50_000,
) -> dict:
    e2e = sum(seconds.values())
    run = {
        "label": backend,
        "backend": backend,
        "process": "this process",
        "chunk_rows": chunk_rows,
        "systems": {},
        "total": {
            "source_rows": rows,
            "stages": _stages(seconds),
            "end_to_end": {"seconds": e2e, "cpu_seconds": None, "rows_per_second": rows / e2e},
            "validation_share": seconds.get("validate", 0.0) / e2e,
        },
        "vm_hwm_mib": vm_hwm,
        "ru_maxrss_mib": vm_hwm,
    }
    if cutover is not None:
        run["cutover"] = cutover
    return run


# PostgreSQL: 10,000 final rows; end to end 20 s (500 rows/s); load alone = stage 2 + promote
# 1.5 + verify 0.5 = 4 s (2,500 rows/s); plain COPY 1 s (10,000 rows/s); to_sql 50 s (200 rows/s).
POSTGRES = _run(
    "postgresql",
    12_000,
    {
        "extract": 3.0,
        "transform": 5.0,
        "validate": 8.0,
        "gate": 0.0,
        "stage": 2.0,
        "promote": 1.5,
        "verify": 0.5,
    },
    cutover={"rows": 10_000, "plain_copy_seconds": 1.0, "to_sql_seconds": 50.0},
)
SQLITE = _run("sqlite", 12_000, {"extract": 1.0, "validate": 1.0, "stage": 2.0})


def _by_key(rows: list) -> dict:
    return {row.key if isinstance(row, goals.Goal) else row["key"]: row for row in rows}


def test_judge_compares_against_the_threshold_in_the_stated_direction():
    assert goals.judge(0.5, goals.AT_LEAST, 0.5) == goals.PASS
    assert goals.judge(0.49, goals.AT_LEAST, 0.5) == goals.MISS
    assert goals.judge(1.1, goals.AT_MOST, 1.1) == goals.PASS
    assert goals.judge(1.11, goals.AT_MOST, 1.1) == goals.MISS
    assert goals.judge(None, goals.AT_MOST, 1.1) == goals.NOT_MEASURED
    with pytest.raises(ValueError, match="unknown comparison"):
        goals.judge(1.0, "==", 1.0)


def test_ratio_refuses_missing_figures_and_a_non_positive_denominator():
    assert goals.ratio(3.0, 4.0) == 0.75
    assert goals.ratio(None, 4.0) is None
    assert goals.ratio(3.0, None) is None
    assert goals.ratio(3.0, 0.0) is None


def test_throughput_compares_the_same_final_rows_four_ways():
    rates = goals.throughput(POSTGRES)
    assert rates == {
        "final_rows": 10_000,
        "end_to_end": 500.0,
        "load": 2_500.0,
        "plain_copy": 10_000.0,
        "to_sql": 200.0,
    }


def test_run_goals_hold_each_ratio_against_issue_15s_threshold():
    rows = _by_key(goals.run_goals({"runs": [SQLITE, POSTGRES]}))
    # 500 / 10,000 = 0.05 < 0.5
    assert rows["e2e_vs_plain_copy"].measured == pytest.approx(0.05)
    assert rows["e2e_vs_plain_copy"].status == goals.MISS
    # 500 / 200 = 2.5 < 15
    assert rows["e2e_vs_to_sql"].measured == pytest.approx(2.5)
    assert rows["e2e_vs_to_sql"].status == goals.MISS
    # 2,500 / 10,000 = 0.25 < 0.8
    assert rows["load_vs_plain_copy"].measured == pytest.approx(0.25)
    # validate 8 s of 20 s = 0.4 > 0.2
    assert rows["validation_share"].measured == pytest.approx(0.4)
    assert rows["validation_share"].status == goals.MISS


def test_goals_pass_when_the_pipeline_is_fast_enough():
    fast = _run(
        "postgresql",
        10_000,
        {"extract": 0.5, "validate": 0.3, "stage": 0.6, "promote": 0.4, "verify": 0.2},
        cutover={"rows": 10_000, "plain_copy_seconds": 1.0, "to_sql_seconds": 40.0},
    )
    freeze = {"postgresql": {"unchanged": {"ratio": 0.1}, "changed": {"ratio": 0.3}}}
    rows = _by_key(goals.run_goals({"runs": [fast], "freeze_window": freeze}))
    # e2e 2 s: 5,000 rows/s = 0.5 x COPY, 20 x to_sql; load 1.2 s: 0.833 x COPY; share 0.15
    assert {key: row.status for key, row in rows.items()} == dict.fromkeys(rows, goals.PASS)


def test_without_postgresql_only_the_validation_share_is_measured():
    rows = _by_key(goals.run_goals({"runs": [SQLITE]}))
    assert rows["e2e_vs_plain_copy"].status == goals.NOT_MEASURED
    assert rows["e2e_vs_to_sql"].status == goals.NOT_MEASURED
    assert rows["load_vs_plain_copy"].status == goals.NOT_MEASURED
    assert rows["validation_share"].measured == pytest.approx(0.25)  # 1 s of 4 s
    assert rows["validation_share"].status == goals.MISS


def test_a_failed_postgresql_run_is_not_used():
    failed = {"label": "postgresql", "backend": "postgresql", "error": "boom"}
    assert goals.postgres_run({"runs": [failed, SQLITE]}) is None


def test_peer_goals_compare_rates_and_peaks_with_dlt():
    vardflytt = {"rows_per_second": 16_000.0, "peak_rss_mib": 600.0}
    dlt = {"rows_per_second": 64_000.0, "peak_rss_mib": 250.0}
    rows = _by_key(goals.peer_goals(vardflytt, dlt))
    assert rows["e2e_vs_dlt"].measured == 0.25
    assert rows["e2e_vs_dlt"].status == goals.MISS
    assert rows["rss_vs_dlt"].measured == 2.4
    assert rows["rss_vs_dlt"].status == goals.MISS
    assert {r.status for r in goals.peer_goals(None, dlt)} == {goals.NOT_MEASURED}
    assert rows["e2e_in_workers_vs_dlt"].status == goals.NOT_MEASURED
    in_workers = {"rows_per_second": 80_000.0, "peak_rss_mib": 900.0}
    rows = _by_key(goals.peer_goals(vardflytt, dlt, in_workers))
    assert rows["e2e_in_workers_vs_dlt"].measured == 1.25
    assert rows["e2e_in_workers_vs_dlt"].status == goals.PASS
    assert rows["e2e_vs_dlt"].measured == 0.25  # the in-process run is still judged alone


def test_scale_ratios_are_large_over_small_and_cost_per_row_divides_by_rows():
    small = _run("postgresql", 1_000, {"extract": 1.0, "validate": 2.0}, vm_hwm=400.0)
    large = _run("postgresql", 10_000, {"extract": 10.0, "validate": 25.0}, vm_hwm=420.0)
    figures = goals.scale_figures(small, large)
    assert figures["rows_ratio"] == 10.0
    assert figures["rss_ratio"] == pytest.approx(1.05)  # 420 / 400
    assert figures["stages"]["extract"] == {
        "time_ratio": 10.0,
        "cost_per_row_ratio": 1.0,
        "cpu_cost_per_row_ratio": None,  # CPU seconds not given
    }
    assert figures["stages"]["validate"]["cost_per_row_ratio"] == pytest.approx(1.25)
    assert figures["stages"]["gate"]["time_ratio"] is None  # 0 s at the small size
    # e2e 3 s -> 35 s: 11.67 x time for 10 x rows
    assert figures["stages"]["end_to_end"]["cost_per_row_ratio"] == pytest.approx(35 / 3 / 10)
    rows = _by_key(goals.scale_goals(figures))
    assert rows["scale_rss"].status == goals.PASS
    assert rows["scale_cost_per_row_extract"].status == goals.PASS
    assert rows["scale_cost_per_row_validate"].status == goals.MISS
    assert rows["scale_cost_per_row_gate"].status == goals.NOT_MEASURED


def test_scale_ratios_per_system_divide_by_each_systems_own_rows():
    def with_system(run: dict, rows: int, extract: float) -> dict:
        system = {
            "source_rows": rows,
            "stages": {"extract": {"seconds": extract}},
            "end_to_end": {"seconds": extract * 2},
        }
        return {**run, "systems": {"elvis": system}}

    small = with_system(_run("postgresql", 1_000, {"extract": 1.0}), 500, 1.0)
    large = with_system(_run("postgresql", 10_000, {"extract": 10.0}), 6_000, 18.0)
    elvis = goals.scale_figures(small, large)["systems"]["elvis"]
    assert elvis["rows_ratio"] == 12.0  # 6,000 / 500
    assert elvis["cost_per_row_ratio"]["extract"] == pytest.approx(1.5)  # 18 x time / 12 x rows
    assert elvis["cost_per_row_ratio"]["end_to_end"] == pytest.approx(1.5)
    assert "gate" not in elvis["cost_per_row_ratio"]  # not timed at either size


def test_cpu_cost_per_row_uses_cpu_seconds():
    small = _run("postgresql", 1_000, {"transform": 2.0})
    large = _run("postgresql", 5_000, {"transform": 8.0})
    small["total"]["stages"]["transform"]["cpu_seconds"] = 1.0
    large["total"]["stages"]["transform"]["cpu_seconds"] = 7.5
    transform = goals.scale_figures(small, large)["stages"]["transform"]
    assert transform["cost_per_row_ratio"] == pytest.approx(0.8)  # 4 x wall / 5 x rows
    assert transform["cpu_cost_per_row_ratio"] == pytest.approx(1.5)  # 7.5 x CPU / 5 x rows


def test_scale_report_prefers_postgresql_and_refuses_different_chunk_sizes():
    def results(patients: int, *runs: dict) -> dict:
        return {"parameters": {"patients": patients}, "runs": list(runs)}

    small_pg = _run("postgresql", 1_000, {"extract": 1.0}, vm_hwm=300.0)
    large_pg = _run("postgresql", 10_000, {"extract": 12.0}, vm_hwm=360.0)
    small_sqlite = _run("sqlite", 1_000, {"extract": 1.0})
    large_sqlite = _run("sqlite", 10_000, {"extract": 10.0})
    scale = goals.scale_report(
        results(100, small_sqlite, small_pg), results(1_000, large_sqlite, large_pg)
    )
    assert scale["backend"] == "postgresql"
    assert (scale["small_patients"], scale["large_patients"]) == (100, 1_000)
    assert scale["rss_ratio"] == pytest.approx(1.2)
    assert scale["stages"]["extract"]["cost_per_row_ratio"] == pytest.approx(1.2)
    assert _by_key(scale["goals"])["scale_rss"]["status"] == goals.MISS
    only_sqlite = goals.scale_report(
        results(100, small_sqlite), results(1_000, large_pg, large_sqlite)
    )
    assert only_sqlite["backend"] == "sqlite"
    other_chunk = _run("sqlite", 10_000, {"extract": 10.0}, chunk_rows=5_000)
    with pytest.raises(ValueError, match="chunk sizes differ"):
        goals.scale_report(results(100, small_sqlite), results(1_000, other_chunk))
    with pytest.raises(ValueError, match="no finished run"):
        goals.scale_report(results(100, small_pg), results(1_000, large_sqlite))
    # Runs with worker processes (the bench's default): their peak RSS is a sum of samples, so
    # the memory goal cannot compare them; the error says how to run the sizes instead.
    small_workers = {**small_pg, "process": "this process + 2 workers"}
    large_workers = {**large_pg, "process": "this process + 2 workers"}
    with pytest.raises(ValueError, match="--jobs 1"):
        goals.scale_report(results(100, small_workers), results(1_000, large_workers))


def test_make_bench_scale_runs_each_size_in_the_bench_process():
    """`make bench-scale` must give runs `--scale-compare` can compare: one process each."""
    from etl.settings import PROJECT_ROOT

    makefile = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    (flags,) = [line for line in makefile.splitlines() if line.startswith("BENCH_SCALE_FLAGS")]
    assert "--jobs 1" in flags.split(":=", 1)[1]


def test_results_markdown_shows_stages_throughput_start_up_and_goals():
    results = {
        "parameters": {"patients": 500, "chunk_rows": 50_000},
        "started_at": "2026-12-04T16:00:00+00:00",
        "git": {"commit": "abc"},
        "machine": {"cpu_count": 2},
        "runs": [
            {**POSTGRES, "systems": {"elvis": POSTGRES["total"]}},
            {"label": "sqlite", "error": "boom"},
        ],
        "throughput": goals.throughput(POSTGRES),
        "startup": {
            "repeats": 3,
            "commands": {"vardflytt --help": {"wall_seconds": 0.5, "cpu_seconds": 0.25}},
        },
        "goals": goals.as_dicts(goals.run_goals({"runs": [POSTGRES]})),
        "dag_parse": {"dagbag_total_seconds": 2.85, "samples_in_median": 3},
    }
    text = results_markdown(results)
    assert (
        "| import airflow + DagBag(dags/) (what a task process parses first; median of 3) | "
        "2.85 | - |" in text
    )
    assert "| elvis | promote | 1.50 |" in text
    assert "| **total** | end to end | 20.00 |" in text
    assert "| 500 | 2,500 | 10,000 | 200 |" in text  # e2e, load, COPY, to_sql rows/s
    assert "| vardflytt --help | 0.50 | 0.25 |" in text
    assert "| 0.050 | >= 0.5 | MISS |" in text
    assert "failed: boom" in text


def _results_frame() -> dict:
    return {
        "parameters": {"patients": 500, "chunk_rows": 50_000},
        "started_at": "2026-12-07T05:00:00+00:00",
        "git": {"commit": "abc"},
        "machine": {"cpu_count": 2},
    }


def _repeat(e2e_seconds: float, copy_seconds: float, to_sql_seconds: float | None) -> dict:
    """A PostgreSQL repeat of 10,000 final rows: end to end ``e2e_seconds`` (1 s of it promotion:
    load alone 10,000 rows/s), plain COPY ``copy_seconds``."""
    per_system = {"elvis": {"rows": 10_000, "to_sql_seconds": to_sql_seconds}}
    return _run(
        "postgresql",
        12_000,
        {"extract": e2e_seconds - 1.0, "promote": 1.0},
        cutover={
            "rows": 10_000,
            "plain_copy_seconds": copy_seconds,
            "to_sql_seconds": to_sql_seconds,
            "to_sql_rows_per_second": None if to_sql_seconds is None else 10_000 / to_sql_seconds,
            "per_system": per_system,
        },
    )


def test_the_repeat_with_the_median_end_to_end_to_copy_ratio_is_reported():
    """Ratios (COPY s / end to end s): 2/5 = 0.4, 2/8 = 0.25, 3/5 = 0.6: the median is the first
    repeat's 0.4 (the third's end to end was as fast, beside a slower COPY). Every repeat is
    listed; to_sql comes from the first (50 s: 200 rows/s)."""
    runs = [_repeat(5.0, 2.0, 50.0), _repeat(8.0, 2.0, None), _repeat(5.0, 3.0, None)]
    chosen = goals.median_repeat(runs)
    assert chosen["total"]["end_to_end"]["seconds"] == 5.0
    assert chosen["cutover"]["plain_copy_seconds"] == 2.0
    assert chosen["repeats"]["chosen"] == 1
    listed = chosen["repeats"]["runs"]
    assert [r["e2e_vs_plain_copy"] for r in listed] == pytest.approx([0.4, 0.25, 0.6])
    # load alone: promote 1 s (10,000 rows/s) against COPY's 5,000, 5,000 and 3,333 rows/s.
    assert [r["load_vs_plain_copy"] for r in listed] == pytest.approx([2.0, 2.0, 3.0])
    by_key = _by_key(goals.run_goals({"runs": [chosen]}))
    assert by_key["e2e_vs_plain_copy"].measured == pytest.approx(0.4)
    assert by_key["e2e_vs_to_sql"].measured == pytest.approx(2_000 / 200)


def test_a_chosen_later_repeat_takes_to_sql_from_the_first():
    """Ratios 0.2 (2/10), 0.5 (3/6), 0.9 (4.5/5): the second repeat is the median; it did not
    time to_sql, so its run carries the first repeat's 40 s (250 rows/s), per system too."""
    runs = [_repeat(10.0, 2.0, 40.0), _repeat(6.0, 3.0, None), _repeat(5.0, 4.5, None)]
    chosen = goals.median_repeat(runs)
    assert chosen["repeats"]["chosen"] == 2
    assert chosen["total"]["end_to_end"]["seconds"] == 6.0
    assert chosen["cutover"]["to_sql_seconds"] == 40.0
    assert chosen["cutover"]["per_system"]["elvis"]["to_sql_seconds"] == 40.0
    assert runs[1]["cutover"]["to_sql_seconds"] is None  # the repeats themselves are kept
    rates = goals.throughput(chosen)
    assert rates["to_sql"] == pytest.approx(250.0)
    assert goals.ratio(rates["end_to_end"], rates["to_sql"]) == pytest.approx(10_000 / 6 / 250)
    text = results_markdown({**_results_frame(), "runs": [chosen]})
    assert "repeat 2, the median by end to end / COPY" in text
    assert "| 1 | 10.00 | 2.00 | 0.200 |" in text
    assert "| 3 | 5.00 | 4.50 | 0.900 |" in text


def test_a_repeat_that_did_not_reconcile_makes_the_reported_run_unreconciled():
    """Repeat 1 (ratio 0.4, the median) reconciled; repeat 3 lost a row: the run shown says not
    reconciled, so the bench lists the problem whichever repeat it shows."""
    runs = [_repeat(5.0, 2.0, 50.0), _repeat(8.0, 2.0, None), _repeat(5.0, 3.0, None)]
    for run, reconciled in zip(runs, (True, True, False), strict=True):
        run["reconciled"] = reconciled
    chosen = goals.median_repeat(runs)
    assert chosen["repeats"]["chosen"] == 1
    assert chosen["reconciled"] is False
    assert chosen["repeats"]["reconciled"] == [True, True, False]
    runs[2]["reconciled"] = True
    assert goals.median_repeat(runs)["reconciled"] is True


def test_an_even_number_of_repeats_reports_the_lower_middle_ratio():
    """Ratios 0.4 (2/5), 0.25 (2/8): the lower of the two is reported (the goal is judged on
    the less flattering middle)."""
    chosen = goals.median_repeat([_repeat(5.0, 2.0, 50.0), _repeat(8.0, 2.0, None)])
    assert chosen["repeats"]["chosen"] == 2
    assert goals.repeat_figures(chosen)["e2e_vs_plain_copy"] == pytest.approx(0.25)


def test_scale_and_peers_markdown_carry_the_ratios():
    small = _run("postgresql", 1_000, {"extract": 1.0}, vm_hwm=400.0)
    large = _run("postgresql", 10_000, {"extract": 10.0}, vm_hwm=400.0)
    scale = goals.scale_report(
        {"parameters": {"patients": 5_000}, "runs": [small]},
        {"parameters": {"patients": 50_000}, "runs": [large]},
    )
    text = scale_markdown(scale)
    assert "| extract | 1.00 | 10.00 | 10.00 | 1.000 | - |" in text
    assert "(x1.000)" in text
    assert json.loads(json.dumps(scale)) == scale  # plain JSON
    peers = {
        "patients": 300,
        "source_rows": 2_000,
        "chunk_rows": 50_000,
        "vardflytt_in_process": {
            "rows": 2_000,
            "seconds": 4.0,
            "cpu_seconds": 2.0,
            "rows_per_second": 500.0,
            "peak_rss_mib": 380.0,
            "core_schema_seconds": 0.42,
        },
        "vardflytt_in_workers": {
            "rows": 2_000,
            "jobs": 2,
            "seconds": 1.6,
            "cpu_seconds": 2.4,
            "rows_per_second": 1_250.0,
            "peak_rss_mib": 900.0,
        },
        "vardflytt_cli": {
            "rows": 2_000,
            "wall_seconds": 10.0,
            "cpu_seconds": 6.0,
            "rows_per_second": 200.0,
        },
        "dlt": {
            "dlt_version": "1.31.0",
            "rows": 2_000,
            "seconds": 1.0,
            "cpu_seconds": 0.5,
            "rows_per_second": 2_000.0,
            "process_wall_seconds": 2.0,
            "process_cpu_seconds": 1.0,
            "process_rows_per_second": 1_000.0,
            "peak_rss_mib": 150.0,
        },
    }
    peers["goals"] = goals.as_dicts(
        goals.peer_goals(peers["vardflytt_in_process"], peers["dlt"], peers["vardflytt_in_workers"])
    )
    text = peers_markdown(peers)
    assert "| dlt 1.31.0 in process (pipeline.run) | 2,000 | 1.00 | 0.50 | 2,000 | 150.0 |" in text
    assert "| 0.250 | >= 1 | MISS |" in text  # 500 / 2,000 rows/s
    assert "tasks in 2 worker processes | 2,000 | 1.60 | 2.40 | 1,250 | 900.0 (tree) |" in text
    assert "| 0.625 | >= 1 | MISS |" in text  # 1,250 / 2,000 rows/s
    assert "brought to head before each run's clock started (0.42 s" in text
    del peers["vardflytt_in_workers"], peers["vardflytt_in_process"]["core_schema_seconds"]
    assert "tasks in" not in peers_markdown(peers)  # results from before: no row


def test_dlt_gets_a_plain_postgresql_url_with_a_password_and_no_search_path():
    url = dlt_destination(
        "postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dx"
    )
    assert url == "postgresql://postgres:unused@127.0.0.1:5432/test"
    assert dlt_destination("postgresql+psycopg://u:pw@db/t") == "postgresql://u:pw@db/t"


def test_elvis_tables_are_read_from_its_mapping(tmp_path):
    (tmp_path / "elvis").mkdir()
    (tmp_path / "elvis" / "system.yaml").write_text(
        "system: elvis\ndatasets:\n  patient:\n    table: patient\n  contact:\n    table: kontakt\n"
    )
    assert elvis_tables(tmp_path) == ["patient", "kontakt"]


def test_the_freeze_window_goal_takes_postgresqls_ratio_and_misses_above_0_3():
    freeze = {
        "sqlite": {"unchanged": {"ratio": 0.05}, "changed": {"ratio": 0.1}},
        "postgresql": {"unchanged": {"ratio": 0.2}, "changed": {"ratio": 0.45}},
    }
    rows = _by_key(goals.run_goals({"runs": [SQLITE], "freeze_window": freeze}))
    assert rows["freeze_window_vs_initial_load"].measured == pytest.approx(0.45)
    assert rows["freeze_window_vs_initial_load"].status == goals.MISS
    assert rows["freeze_window_unchanged_vs_initial_load"].status == goals.PASS
    failed = {"postgresql": {"error": "boom"}, "sqlite": freeze["sqlite"]}
    rows = _by_key(goals.run_goals({"runs": [SQLITE], "freeze_window": failed}))
    assert rows["freeze_window_vs_initial_load"].measured == pytest.approx(0.1)
    assert "sqlite" in rows["freeze_window_vs_initial_load"].description
    rows = _by_key(goals.run_goals({"runs": [SQLITE]}))
    assert rows["freeze_window_vs_initial_load"].status == goals.NOT_MEASURED


def test_dlt_runs_with_arrows_default_pool_unless_the_operator_chose_one(monkeypatch):
    """`import etl` chooses jemalloc for this process; the peer it is compared with gets Arrow's
    default (its own allocator is part of what is measured), an operator's choice goes to both."""
    import etl
    from etl.bench.peers import peer_environment

    monkeypatch.setenv("VARDFLYTT_HOME", "/somewhere")
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
    monkeypatch.setattr(etl, "ARROW_POOL_CHOSEN_HERE", True)
    chosen_here = peer_environment()
    assert "ARROW_DEFAULT_MEMORY_POOL" not in chosen_here
    assert "VARDFLYTT_HOME" not in chosen_here
    assert chosen_here["PATH"] == os.environ["PATH"]
    monkeypatch.setattr(etl, "ARROW_POOL_CHOSEN_HERE", False)
    assert peer_environment()["ARROW_DEFAULT_MEMORY_POOL"] == "jemalloc"
