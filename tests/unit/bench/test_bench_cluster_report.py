"""The cluster bench's report assembled from made-up task instances (nothing started or timed)."""

from __future__ import annotations

import datetime as dt

import pytest

from etl.bench.cluster_report import (
    build_cluster_results,
    cluster_checks,
    cluster_markdown,
    projection_markdown,
    side_by_side,
    summarize_mode,
)
from etl.bench.projection import Assumptions, Measured, project

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


def _at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def _task(
    hostname: str, start: float, end: float, state: str = "success", task_id: str = "x.load"
) -> dict:
    return {
        "task_id": task_id,
        "hostname": hostname,
        "state": state,
        "duration": end - start,
        "start_date": _at(start),
        "end_date": _at(end),
    }


def _mode(label: str, executor: str, workers: int, run_seconds: float, tasks: list[dict], **extra):
    return summarize_mode(
        label,
        executor,
        workers,
        workers or 2,
        1_000,
        {"state": "success", "start_date": _at(0), "end_date": _at(run_seconds)},
        tasks,
        wall_seconds=run_seconds + 2,
        startup_seconds=30.0,
        residue=0,
        core_checksum=extra.pop("checksum", "ab" * 32),
        **extra,
    )


def test_a_run_is_summarised_per_worker_with_its_fixed_costs():
    mode = _mode(
        "celery_2",
        "CeleryExecutor",
        2,
        40,
        [
            _task("worker1", 3, 5, task_id="system.open_batch"),
            _task("worker2", 4, 8, task_id="system.open_batch"),
            _task("worker1", 12, 35, task_id="system.extract"),
            _task("worker2", 21, 22, state="failed"),  # not counted as work done
        ],
    )
    assert mode["run_seconds"] == 40
    assert mode["rows_per_second"] == pytest.approx(1_000 / 40)
    assert mode["overhead_seconds"] == pytest.approx(3 + (40 - 35))
    assert mode["task_overhead_seconds"] == pytest.approx(3)  # median of 2 and 4
    # 40 s less 8 s of scheduling less 3 tasks x 3 s over 2 slots
    assert mode["net_run_seconds"] == pytest.approx(40 - 8 - 4.5)
    assert mode["net_rows_per_second"] == pytest.approx(1_000 / 27.5)
    assert mode["per_worker"] == {
        "worker1": {"tasks": 2, "busy_seconds": 25.0},
        "worker2": {"tasks": 1, "busy_seconds": 4.0},
    }
    assert mode["task_states"] == {"failed": 1, "success": 3}


def test_a_run_too_small_to_tell_has_no_net_rate():
    tasks = [_task(f"worker{n % 2 + 1}", 1, 9, task_id="g.open_batch") for n in range(6)]
    mode = _mode("celery_2", "CeleryExecutor", 2, 20, tasks)  # 6 x 8 s / 2 slots > 20 s
    assert (mode["net_run_seconds"], mode["net_rows_per_second"]) == (None, None)


def _three(checksum_two: str = "ab" * 32) -> list[dict]:
    return [
        _mode("local", "LocalExecutor", 0, 50, [_task("scheduler", 1, 49)]),
        _mode("celery_1", "CeleryExecutor", 1, 100, [_task("worker1", 2, 98)]),
        _mode(
            "celery_2",
            "CeleryExecutor",
            2,
            62.5,
            [_task("worker1", 2, 30), _task("worker2", 3, 60)],
            checksum=checksum_two,
        ),
    ]


def test_side_by_side_compares_each_run_with_local_and_with_one_worker():
    rows = side_by_side(_three())
    assert [row["run"] for row in rows] == ["local", "celery_1", "celery_2"]
    assert [row["rows_per_second"] for row in rows] == pytest.approx([20, 10, 16])
    assert [row["vs_local"] for row in rows] == pytest.approx([1, 0.5, 0.8])
    assert rows[0]["vs_one_worker"] is None  # the LocalExecutor has no Celery workers
    assert [row["vs_one_worker"] for row in rows[1:]] == pytest.approx([1, 1.6])
    assert rows[2]["tasks_per_worker"] == "worker1 1, worker2 1"


def test_the_checks_hold_only_when_every_core_is_the_same():
    assert cluster_checks(_three())["checksums_identical"] is True
    differing = cluster_checks(_three(checksum_two="cd" * 32))
    assert differing["checksums_identical"] is False
    failed = [*_three()[:2], {"label": "celery_2", "error": "ClusterError: x"}]
    assert cluster_checks(failed)["checksums_identical"] is False
    assert cluster_checks(failed)["all_runs_succeeded"] is False


def _results(modes: list[dict]) -> dict:
    return build_cluster_results(
        parameters={"patients": 200, "systems": ["elvis", "obstetrix"]},
        machine={"cpu_count": 2},
        git={"commit": None, "dirty": None},
        generation={"source_rows": {"elvis": 700, "obstetrix": 300, "melior": 5}},
        modes=modes,
        verify=None,
        started_at=T0.isoformat(),
        wall_seconds=300,
        problems=[],
    )


def test_a_failed_check_is_a_problem_and_the_markdown_says_so():
    good, bad = _results(_three()), _results(_three(checksum_two="cd" * 32))
    assert good["problems"] == []
    assert bad["problems"] == ["cluster bench check failed: checksums identical"]
    text = cluster_markdown(good)
    assert "(1,000 source rows)" in text
    assert "| celery_2 | CeleryExecutor | 2 | 2 | 62.5 | 64.5 | 16 | - | 0.80 | 1.60 |" in text
    assert "checksums identical yes" in text
    assert "checksums identical NO" in cluster_markdown(bad)


def test_the_projection_renders_hours_and_its_assumptions():
    projection = project(
        Measured(rows_per_person=36, rate_1_worker=10, rate_2_workers=20),
        Assumptions(people=1_000, workers=(1, 2), delta_fraction=0.0),
    ).to_dict()
    text = projection_markdown(projection)
    # 36,000 rows at 10 rows/s is one hour; at 20 rows/s half of it
    assert "| 1 | 10 | workers | 1 h 00 min | 1 h 00 min | 0 min | 1 h 00 min |" in text
    assert "| 2 | 20 | workers | 30 min | 30 min | 0 min | 30 min |" in text
    assert "- people: 1,000; source rows per person: 36.00" in text


@pytest.mark.parametrize(
    ("postgres_url", "broker_url", "message"),
    [
        (None, "redis://127.0.0.1:1/0", "needs PostgreSQL.*VARDFLYTT_BENCH_POSTGRES_URL"),
        ("postgresql+psycopg://postgres@127.0.0.1:1/x", None, "needs Redis.*BROKER_URL"),
        (
            "postgresql+psycopg://postgres@127.0.0.1:1/x",
            "redis://127.0.0.1:1/0",
            "PostgreSQL at .*127.0.0.1:1/x is not reachable",
        ),
    ],
)
def test_the_cluster_bench_fails_closed_without_its_servers(postgres_url, broker_url, message):
    from etl.bench.executors import ClusterBenchError, require_servers

    with pytest.raises(ClusterBenchError, match=message):
        require_servers(postgres_url, broker_url)


def test_the_bench_fixes_one_task_slot_per_worker(tmp_path, monkeypatch):
    """VARDFLYTT_CLUSTER_WORKER_CONCURRENCY overrides the cores-per-worker default (etl/cluster.py),
    so one worker and two workers differ by exactly one slot."""
    from etl import cluster
    from etl.settings import Settings

    monkeypatch.setenv("VARDFLYTT_HOME", str(tmp_path))
    monkeypatch.delenv(cluster.DATABASE_VARIABLE, raising=False)
    monkeypatch.delenv(cluster.BROKER_VARIABLE, raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    settings = Settings(home=tmp_path)
    monkeypatch.delenv(cluster.CONCURRENCY_VARIABLE, raising=False)
    assert (
        cluster.cluster_environment(settings, 18080, 2)["AIRFLOW__CELERY__WORKER_CONCURRENCY"]
        == "4"
    )
    monkeypatch.setenv(cluster.CONCURRENCY_VARIABLE, "1")
    assert (
        cluster.cluster_environment(settings, 18080, 2)["AIRFLOW__CELERY__WORKER_CONCURRENCY"]
        == "1"
    )


def test_the_cluster_bench_refuses_a_system_it_does_not_know(tmp_path, monkeypatch):
    from etl.bench.executors import ClusterBenchError, run_cluster_benchmark

    monkeypatch.setenv("VARDFLYTT_HOME", str(tmp_path))
    with pytest.raises(ClusterBenchError, match=r"no such system .*: elvsi"):
        run_cluster_benchmark(100, postgres_url=None, broker_url=None, systems=("elvis", "elvsi"))
    assert not (tmp_path / "bench").exists()  # nothing generated
