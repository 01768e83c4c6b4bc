"""The cutover projection on given figures; every expected value worked out by hand here."""

from __future__ import annotations

import pytest

from etl.bench.projection import (
    Assumptions,
    Measured,
    cluster_rate,
    inputs_from_results,
    project,
    serial_fraction,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("speedup", "serial"),
    [
        pytest.param(2.0, 0.0, id="linear"),
        pytest.param(1.5, 1 / 3, id="two-thirds-parallel"),
        pytest.param(1.0, 1.0, id="no-gain"),
        pytest.param(2.5, 0.0, id="superlinear-clamped"),
        pytest.param(0.5, 1.0, id="slower-clamped"),
    ],
)
def test_serial_fraction_fits_the_two_worker_speedup(speedup, serial):
    assert serial_fraction(speedup) == pytest.approx(serial)


@pytest.mark.parametrize(
    ("serial", "workers", "rate"),
    [(0.0, 8, 800.0), (1 / 3, 4, 200.0), (1 / 3, 7, 700 / 3), (1.0, 16, 100.0)],
)
def test_cluster_rate_follows_amdahl(serial, workers, rate):
    assert cluster_rate(100.0, serial, workers) == pytest.approx(rate)


def test_projection_with_a_core_ceiling_a_measured_extract_share_and_verify():
    measured = Measured(
        rows_per_person=50,
        rate_1_worker=100,
        rate_2_workers=150,  # speedup 1.5: serial fraction 1/3
        run_overhead_seconds=10,
        verify_rows_per_second=500,
        core_rows_per_second=250,
        core_rows_per_source_row=2,  # the core takes 125 source rows/s
        extract_share=0.2,
    )
    assumptions = Assumptions(
        people=1000, workers=(1, 4), delta_fraction=0.1, freeze_seconds=60, commit_seconds=30
    )
    projection = project(measured, assumptions)

    assert projection.source_rows == 50_000
    assert projection.delta_rows == pytest.approx(5_000)
    assert projection.core_source_rows_per_second == 125
    one, four = projection.rows
    # one worker: 100 rows/s, below the core's 125
    assert (one.rows_per_second, one.bound_by) == (pytest.approx(100), "workers")
    assert one.initial_load_seconds == pytest.approx(10 + 50_000 / 100)
    assert one.delta_seconds == pytest.approx(10 + 50_000 * 0.2 / 100 + 5_000 / 100)
    assert one.verify_seconds == pytest.approx(100)
    assert one.window_seconds == pytest.approx(60 + 160 + 100 + 30)
    # four workers: 400 / (1 + 3/3) = 200 rows/s, above the core's 125: the core bounds
    assert (four.rows_per_second, four.bound_by) == (pytest.approx(200), "core database")
    assert four.initial_load_seconds == pytest.approx(10 + 50_000 / 125)
    assert four.delta_seconds == pytest.approx(10 + 50_000 * 0.2 / 200 + 5_000 / 125)
    assert four.verify_seconds == pytest.approx(100)  # workers do not shorten verify
    assert four.window_seconds == pytest.approx(60 + 100 + 100 + 30)
    assert any("serial fraction 0.333" in line for line in projection.assumptions)
    assert any("125 source rows/s" in line for line in projection.assumptions)


def test_projection_without_core_extract_share_or_verify_counts_a_full_pass():
    measured = Measured(rows_per_person=10, rate_1_worker=10, rate_2_workers=20)
    projection = project(measured, Assumptions(people=100, workers=(2,), delta_fraction=0.5))

    (row,) = projection.rows
    assert (row.rows_per_second, row.bound_by) == (pytest.approx(20), "workers")
    assert row.initial_load_seconds == pytest.approx(1000 / 20)
    assert row.delta_seconds == pytest.approx(1000 / 20 + 500 / 20)  # a full landing + the delta
    assert (row.verify_seconds, row.window_seconds) == (0, pytest.approx(75))
    assert any("counted as a full pass" in line for line in projection.assumptions)
    assert any("no measured rate" in line for line in projection.assumptions)


@pytest.mark.parametrize(
    ("measured", "assumptions", "message"),
    [
        (Measured(10, 0, 20), Assumptions(), "worker rates"),
        (Measured(10, 10, 20), Assumptions(delta_fraction=1.5), "between 0 and 1"),
        (Measured(10, 10, 20), Assumptions(workers=(0, 2)), "at least 1"),
        (Measured(0, 10, 20), Assumptions(), "rows per person"),
    ],
)
def test_projection_refuses_figures_that_mean_nothing(measured, assumptions, message):
    with pytest.raises(ValueError, match=message):
        project(measured, assumptions)


def _mode(label: str, rate: float | None, overhead: float = 4.0, **extra) -> dict:
    return {"label": label, "rows_per_second": rate, "overhead_seconds": overhead, **extra}


def test_fixed_costs_are_paid_per_task_and_spread_over_the_workers():
    measured = Measured(
        rows_per_person=10,
        rate_1_worker=10,
        rate_2_workers=20,
        run_overhead_seconds=5,
        task_overhead_seconds=4,
        tasks_per_system=8,
    )
    one, four = project(
        measured, Assumptions(people=100, systems=3, workers=(1, 4), delta_fraction=0)
    ).rows
    # 3 systems x 8 tasks x 4 s = 96 s of fixed task cost, over 1 and over 4 workers
    assert one.initial_load_seconds == pytest.approx(5 + 96 + 1000 / 10)
    assert four.initial_load_seconds == pytest.approx(5 + 96 / 4 + 1000 / 40)
    assert four.delta_seconds == pytest.approx(5 + 96 / 4 + 1000 / 40)  # a full landing pass


def test_inputs_come_from_the_cluster_and_the_postgresql_bench_results():
    cluster = {
        "parameters": {"patients": 200},
        "generation": {"total_rows": 9_000},
        "modes": [_mode("local", 300.0), _mode("celery_1", 120.0, 4), _mode("celery_2", 200.0, 6)],
        "verify": {"rows_per_second": 700.0},
    }
    bench = {
        "runs": [
            {"backend": "sqlite", "total": {"source_rows": 1}},
            {
                "backend": "postgresql",
                "total": {
                    "source_rows": 4_000,
                    "stages": {"extract": {"share_of_end_to_end": 0.25}},
                },
                "cutover": {"rows": 6_000, "load_rows_per_second": 3_000.0},
            },
        ]
    }
    measured = inputs_from_results(cluster, bench)
    assert measured == Measured(
        rows_per_person=45.0,
        rate_1_worker=120.0,
        rate_2_workers=200.0,
        run_overhead_seconds=5.0,
        verify_rows_per_second=700.0,
        core_rows_per_second=3_000.0,
        core_rows_per_source_row=1.5,
        extract_share=0.25,
    )
    without_bench = inputs_from_results(cluster, None)
    assert (without_bench.core_rows_per_second, without_bench.extract_share) == (None, None)


def test_net_rates_and_task_costs_are_taken_when_both_celery_runs_have_them():
    cluster = {
        "parameters": {"patients": 100, "systems": ["a", "b"]},
        "generation": {"total_rows": 4_000},
        "modes": [
            _mode("celery_1", 50.0, 2, net_rows_per_second=80.0, task_overhead_seconds=3.0,
                  tasks=17),
            _mode("celery_2", 90.0, 4, net_rows_per_second=150.0, task_overhead_seconds=5.0,
                  tasks=17),
        ],
    }  # fmt: skip
    measured = inputs_from_results(cluster, None)
    assert (measured.rate_1_worker, measured.rate_2_workers) == (80.0, 150.0)
    assert (measured.task_overhead_seconds, measured.tasks_per_system) == (4.0, 8.5)
    assert measured.run_overhead_seconds == 3.0
    cluster["modes"][1]["net_rows_per_second"] = None  # too small to tell: gross rates, no costs
    gross = inputs_from_results(cluster, None)
    assert (gross.rate_1_worker, gross.rate_2_workers) == (50.0, 90.0)
    assert (gross.task_overhead_seconds, gross.tasks_per_system) == (0.0, 0.0)


def test_inputs_need_both_celery_runs():
    cluster = {
        "parameters": {"patients": 200},
        "generation": {"total_rows": 9_000},
        "modes": [_mode("celery_1", 120.0), _mode("celery_2", None, error="RuntimeError: x")],
    }
    with pytest.raises(ValueError, match="celery_2"):
        inputs_from_results(cluster, None)


def test_a_given_serial_fraction_replaces_the_fitted_one():
    measured = Measured(rows_per_person=10, rate_1_worker=100, rate_2_workers=120)
    fitted = project(measured, Assumptions(people=1_000, workers=(8,)))
    given = project(measured, Assumptions(people=1_000, workers=(8,), serial_fraction=0.1))
    assert fitted.serial_fraction == pytest.approx(2 / 1.2 - 1)
    assert given.serial_fraction == 0.1
    # 100 x 8 / (1 + 0.1 x 7)
    assert given.rows[0].rows_per_second == pytest.approx(800 / 1.7)
    assert any("0.100 as given" in line for line in given.assumptions)
    with pytest.raises(ValueError, match="serial fraction"):
        project(measured, Assumptions(serial_fraction=1.5))
