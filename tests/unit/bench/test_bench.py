"""The benchmark's arithmetic and report shape on made-up timings (nothing generated or timed)."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest

from etl import bench
from etl.bench import Measurement, SystemTiming
from etl.bench.markdown import results_markdown

pytestmark = pytest.mark.unit

MIB = 1024 * 1024


def _system(name: str, rows: int, seconds: dict[str, float], peak_mib: int = 300) -> SystemTiming:
    stages = {
        stage: Measurement(
            seconds=value,
            peak_rss_bytes=peak_mib * MIB,
            start_rss_bytes=200 * MIB,
            cpu_seconds=value / 2,
        )
        for stage, value in seconds.items()
    }
    return SystemTiming(
        system=name,
        source_rows=rows,
        stages=stages,
        end_to_end=Measurement(
            seconds=sum(seconds.values()),
            peak_rss_bytes=peak_mib * MIB,
            start_rss_bytes=200 * MIB,
            cpu_seconds=sum(seconds.values()) / 2,
        ),
        reconciled=True,
        accounting={"extracted": rows, "loaded": rows - 10, "quarantined": 10},
    )


ELVIS = _system(
    "elvis",
    1000,
    {
        "extract": 1.0,
        "transform": 2.0,
        "validate": 5.0,
        "gate": 0.5,
        "stage": 1.0,
        "promote": 0.5,
        "verify": 0.0,
    },
)
MELIOR = _system(
    "melior",
    3000,
    {
        "extract": 1.0,
        "transform": 1.0,
        "validate": 1.0,
        "gate": 0.0,
        "stage": 0.5,
        "promote": 0.5,
        "verify": 0.0,
    },
    400,
)


def _run() -> dict:
    peaks = {"ru_maxrss_bytes": 500 * MIB, "vm_hwm_bytes": 450 * MIB}
    return bench.summarize_run(
        "sqlite", "sqlite", 50_000, [ELVIS, MELIOR], peaks, process="this process"
    )


def test_rows_per_second_divides_rows_by_seconds_and_refuses_a_zero_time():
    assert bench.rows_per_second(1000, 4.0) == 250.0
    assert bench.rows_per_second(1000, 0.0) is None
    assert bench.rows_per_second(1000, -1.0) is None
    assert bench.rows_per_second(0, 2.0) == 0.0


def test_share_is_a_fraction_and_none_without_a_whole():
    assert bench.share(5.0, 10.0) == 0.5
    assert bench.share(0.0, 10.0) == 0.0
    assert bench.share(1.0, 0.0) is None


def test_ru_maxrss_is_kib_on_linux_and_bytes_on_macos():
    assert bench.ru_maxrss_bytes(2048, "linux") == 2048 * 1024
    assert bench.ru_maxrss_bytes(2048, "darwin") == 2048


def test_vm_hwm_is_read_from_proc_status_text():
    status = "Name:\tpython\nVmPeak:\t  900000 kB\nVmHWM:\t  123456 kB\nVmRSS:\t  100 kB\n"
    assert bench.parse_vm_hwm(status) == 123456 * 1024
    assert bench.parse_vm_hwm("Name:\tpython\n") is None


def test_chunk_comparison_has_a_small_the_default_and_a_large_size():
    assert bench.compare_chunk_sizes(50_000) == [5_000, 50_000, 500_000]
    assert bench.compare_chunk_sizes(2_000) == [1_000, 2_000, 20_000]
    assert bench.compare_chunk_sizes(500) == [500, 1_000, 5_000]


def test_postgres_url_gets_the_search_path_and_the_report_hides_the_password():
    url = bench.url_with_search_path(
        "postgresql+psycopg://bench:secret@db:5432/test", "vardflytt_bench_ab12"
    )
    assert (
        url
        == "postgresql+psycopg://bench:secret@db:5432/test?options=-csearch_path%3Dvardflytt_bench_ab12"
    )
    assert "secret" not in bench.redact_url(url)
    assert bench.bench_schema_name("ab12") == "vardflytt_bench_ab12"
    assert bench.bench_schema_name().startswith("vardflytt_bench_")


def test_every_stage_rate_uses_the_source_rows_extracted():
    elvis = bench.summarize_system(ELVIS)
    assert elvis["source_rows"] == 1000
    assert elvis["stages"]["extract"]["rows_per_second"] == 1000.0
    assert elvis["stages"]["transform"]["rows_per_second"] == 500.0
    assert elvis["stages"]["validate"]["rows_per_second"] == 200.0
    assert elvis["stages"]["stage"]["rows_per_second"] == 1000.0
    assert elvis["stages"]["promote"]["rows_per_second"] == 2000.0
    assert elvis["stages"]["verify"]["rows_per_second"] is None  # zero seconds: no rate
    assert elvis["stages"]["gate"]["cpu_seconds"] == 0.25
    assert elvis["end_to_end"]["seconds"] == 10.0
    assert elvis["end_to_end"]["rows_per_second"] == 100.0
    assert elvis["stages"]["validate"]["share_of_end_to_end"] == 0.5
    assert elvis["validation_share"] == 0.5
    assert elvis["stages"]["stage"]["peak_rss_mib"] == 300.0
    assert elvis["stages"]["stage"]["rss_growth_mib"] == 100.0


def test_run_totals_add_up_over_systems():
    run = _run()
    total = run["total"]
    assert total["source_rows"] == 4000
    assert total["end_to_end"]["seconds"] == 14.0
    assert total["stages"]["validate"]["seconds"] == 6.0
    assert total["stages"]["validate"]["rows_per_second"] == 4000 / 6.0
    assert total["validation_share"] == 6.0 / 14.0
    assert total["stages"]["stage"]["seconds"] == 1.5
    assert total["stages"]["stage"]["cpu_seconds"] == 0.75
    assert total["end_to_end"]["cpu_seconds"] == 7.0
    assert total["end_to_end"]["peak_rss_mib"] == 400.0
    assert run["baseline_rss_mib"] == 200.0
    assert run["ru_maxrss_mib"] == 500.0
    assert run["vm_hwm_mib"] == 450.0
    assert run["reconciled"] is True
    assert run["process"] == "this process"
    assert set(run["systems"]) == {"elvis", "melior"}


def test_a_run_is_not_reconciled_when_one_system_is_not():
    unreconciled = _system(
        "melior", 10, {"extract": 1.0, "transform": 1.0, "validate": 1.0, "stage": 1.0}
    )
    unreconciled.reconciled = False
    run = bench.summarize_run("sqlite", "sqlite", 10, [ELVIS, unreconciled], {})
    assert run["reconciled"] is False
    assert run["vm_hwm_mib"] is None


def test_cpu_totals_are_none_when_a_system_did_not_measure_cpu():
    unmeasured = _system("melior", 10, {"extract": 1.0, "validate": 1.0})
    unmeasured.end_to_end.cpu_seconds = None
    unmeasured.stages["validate"].cpu_seconds = None
    run = bench.summarize_run("sqlite", "sqlite", 10, [ELVIS, unmeasured], {})
    assert run["total"]["end_to_end"]["cpu_seconds"] is None
    assert run["total"]["stages"]["validate"]["cpu_seconds"] is None
    assert run["total"]["stages"]["extract"]["cpu_seconds"] == 1.0  # 0.5 + 0.5


def test_dag_parse_keeps_the_cold_first_sample_out_of_the_median():
    def sample(import_seconds: float, total: float) -> dict:
        return {
            "import_airflow_seconds": import_seconds,
            "dagbag_total_seconds": total,
            "parse_seconds": total - import_seconds,
            "warm_reparse_seconds": 0.05,
            "file_parse_seconds": 0.2,
            "dag_ids": ["vardflytt_elvis", "vardflytt_melior"],
            "import_errors": {},
            "dag_folder": "dags",
        }

    summary = bench.summarize_dag_parse(
        [sample(9.0, 12.0), sample(2.0, 3.0), sample(4.0, 6.0), sample(3.0, 4.0)]
    )
    assert summary["cold_first"]["import_airflow_seconds"] == 9.0
    assert summary["samples_in_median"] == 3
    assert summary["import_airflow_seconds"] == 3.0
    assert summary["dagbag_total_seconds"] == 4.0
    assert summary["parse_seconds"] == 1.0
    assert summary["dag_ids"] == ["vardflytt_elvis", "vardflytt_melior"]
    assert bench.summarize_dag_parse([sample(9.0, 12.0)])["parse_seconds"] == 3.0


def _results() -> dict:
    failed = {"label": "postgresql", "backend": "postgresql", "chunk_rows": 50_000, "error": "boom"}
    return bench.build_results(
        parameters={"patients": 10, "seed": 42, "chunk_rows": 50_000, "work_dir": "var/bench"},
        machine={"cpu_count": 2, "python": "3.11.7", "platform": "Linux"},
        git={"commit": "0" * 40, "dirty": False},
        generation={
            "seconds": 1.5,
            "source_rows": {"elvis": 1000, "melior": 3000},
            "total_rows": 4000,
            "rows_per_second": 4000 / 1.5,
            "peak_rss_mib": 150.0,
        },
        runs=[_run(), failed],
        dag_parse=None,
        started_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:01:00+00:00",
        wall_seconds=60.0,
        problems=["postgresql run failed: boom"],
    )


def test_results_have_the_documented_shape_and_are_plain_json():
    results = _results()
    assert set(results) >= {
        "schema_version",
        "parameters",
        "machine",
        "git",
        "generation",
        "runs",
        "dag_parse",
        "problems",
        "definitions",
        "wall_seconds",
    }
    assert results["schema_version"] == bench.SCHEMA_VERSION
    assert "rows_per_second" in results["definitions"]
    assert json.loads(json.dumps(results)) == results
    run = results["runs"][0]
    assert set(run["total"]["stages"]) == set(bench.STAGES)
    assert set(run["systems"]["elvis"]["stages"]) == set(bench.STAGES)


def test_tables_render_including_a_failed_run():
    from rich.console import Console

    console = Console(file=io.StringIO(), width=200)
    for table in bench.result_tables(_results()):
        console.print(table)
    text = console.file.getvalue()
    assert "end to end" in text
    assert "failed" in text
    assert "4,000" in text


def test_nested_memory_windows_with_equal_figures_close_independently():
    sampler = bench.RssSampler()  # not started: only the samples at opening and closing
    with bench.measure(sampler) as outer:
        with bench.measure(sampler) as inner:
            pass
        with bench.measure(sampler):
            pass
    assert inner.seconds >= 0 and outer.seconds >= 0
    if sampler.available:
        assert outer.peak_rss_bytes >= outer.start_rss_bytes > 0


def test_with_workers_a_stage_share_is_its_part_of_the_tasks_time():
    """Two systems side by side: ELVIS validates (2 s) while Melior transforms (2 s). The time
    any validate task ran is 2 of the run's 4 s, but validation is 2 of the tasks' 6 s."""
    elvis = _system("elvis", 100, {"extract": 1.0, "validate": 2.0, "verify": 0.0})
    melior = _system("melior", 100, {"extract": 1.0, "transform": 2.0, "verify": 0.0})
    elvis.task_seconds = {"extract": 1.0, "validate": 2.0}
    melior.task_seconds = {"extract": 1.0, "transform": 2.0}
    run = bench.summarize_run(
        "postgresql",
        "postgresql",
        10,
        [elvis, melior],
        {},
        whole=Measurement(seconds=4.0),
        stage_walls={"extract": 1.0, "transform": 2.0, "validate": 2.0},
    )
    total = run["total"]["stages"]
    assert total["validate"]["seconds"] == 2.0  # the wall clock any validate task ran
    assert total["validate"]["wall_coverage"] == 0.5
    assert total["validate"]["task_seconds"] == 2.0
    assert total["validate"]["share_of_end_to_end"] == pytest.approx(2.0 / 6.0)
    assert run["total"]["validation_share"] == pytest.approx(2.0 / 6.0)
    assert sum(s["share_of_end_to_end"] or 0.0 for s in total.values()) == pytest.approx(1.0)
    # The wall-clock coverages of overlapping stages add up to more than the run.
    assert sum(s["wall_coverage"] or 0.0 for s in total.values()) > 1.0
    assert run["systems"]["elvis"]["validation_share"] == pytest.approx(2.0 / 3.0)
    assert run["systems"]["melior"]["validation_share"] is None  # Melior did not validate
    markdown = results_markdown(
        {**_results(), "runs": [{**run, "process": "this process + 2 workers"}]}
    )
    assert "| **total** | validate | 2.00 | 1.00 | 100 | 33.3% |" in markdown
    assert "for validation 50.0% of the run's wall clock" in markdown


def test_one_process_shares_are_stage_seconds_over_end_to_end():
    run = _run()
    assert "task_seconds" not in run["total"]["stages"]["validate"]
    assert run["total"]["stages"]["validate"]["share_of_end_to_end"] == 6.0 / 14.0
    markdown = results_markdown(_results())
    assert "Stages overlap" not in markdown


def test_fewer_than_one_repeat_is_refused_before_anything_runs(tmp_path):
    from etl.bench.run import run_benchmark

    with pytest.raises(ValueError, match="repeats must be at least 1"):
        run_benchmark(100, repeats=0, work_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing generated


def test_a_system_its_gate_stopped_shows_the_stages_it_never_reached():
    """A run in which one system's quality gate failed has no figures for its later stages:
    the tables say so instead of failing to print (``vardflytt bench --patients 60`` did)."""
    from rich.console import Console

    stopped = _system(
        "melior", 3000, {"extract": 1.0, "transform": 2.0, "validate": 3.0, "gate": 0.1}
    )
    stopped = dataclasses.replace(stopped, error="DataQualityGateError: melior stopped at the gate")
    run = bench.summarize_run("sqlite", "sqlite", 50_000, [ELVIS, stopped], {})
    results = _results()
    results["runs"] = [run]
    console = Console(file=io.StringIO(), width=200)
    for table in bench.result_tables(results):
        console.print(table)
    text = console.file.getvalue()
    melior_rows = [line for line in text.splitlines() if "melior" in line]
    assert sum("not reached" in line for line in melior_rows) == 3  # stage, promote, verify
    assert not any("not reached" in line for line in text.splitlines() if "elvis" in line)
