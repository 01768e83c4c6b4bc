"""The freeze window of a wave: its initial load against its final delta + verification + commit.

A wave of ELVIS and Melior (the bench's systems) on a copy of those two systems of the estate:
the initial load is timed, the systems are frozen, then the final delta (``load_wave`` phase
``final``), ``verify`` (reconciliation and criteria) and the commit (approval and ``cut_over``)
are timed (the final deltas' Data Docs, built after the go/no-go decision, are timed apart, after
the window), first with the source unchanged and then, on a second wave run after a rollback,
with a week of legacy activity (etl.estate.activity) between the initial load and the freeze.
Issue 15's goal: final delta + verification + commit <= 0.3 x the initial load.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from etl.batch import utc_now
from etl.bench.figures import SYSTEMS, median_position, shown
from etl.bench.migration import bench_settings
from etl.cutover.plan import one_wave_plan
from etl.settings import PROJECT_ROOT, Settings

WAVE = "bench_freeze"
APPROVER = "bench"
ACTIVITY_DAYS = 7
_ESTATE_FILES = ("manifest.json", "defects.csv", "identity_truth.csv", "crosswalks_used.json")


def _plan(systems: tuple[str, ...]) -> dict[str, Any]:
    return one_wave_plan(
        WAVE,
        list(systems),
        {"project_lead": {"airflow_users": [APPROVER]}},
        title="bench: the freeze window",
        site="SU",
        min_rehearsals=0,
    )


def _copy_estate(estate: Path, target: Path, systems: tuple[str, ...]) -> Path:
    """The systems' folders and the estate's own files: what a wave and the activity read."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in _ESTATE_FILES:
        if (estate / name).exists():
            shutil.copy2(estate / name, target / name)
    for system in systems:
        shutil.copytree(estate / system, target / system)
    return target


def _settings(home: Path, estate: Path, chunk_rows: int, core_url: str | None) -> Settings:
    mappings = home / "mappings"
    shutil.rmtree(mappings, ignore_errors=True)
    shutil.copytree(PROJECT_ROOT / "mappings", mappings)
    (mappings / "waves.yaml").write_text(yaml.safe_dump(_plan(SYSTEMS)), encoding="utf-8")
    values = bench_settings(home, estate, chunk_rows, core_url).model_dump()
    values.update(mappings_dir=mappings, wave_plan="waves.yaml")
    return Settings(**values)


def _changed_rows(settings: Settings, batches: dict[str, Any]) -> int:
    """Core rows the final delta inserted, updated or deleted (from its promotions)."""
    import sqlalchemy as sa

    from etl.core.database import core_engine
    from etl.core.tables import promotion

    ids = [b["batch_id"] for b in batches.values()]
    rows = promotion.c.rows_inserted + promotion.c.rows_updated + promotion.c.rows_deleted
    with core_engine(settings.resolved_core_url).connect() as connection:
        total = connection.execute(
            sa.select(sa.func.coalesce(sa.func.sum(rows), 0)).where(promotion.c.batch_id.in_(ids))
        ).scalar_one()
    return int(total)


def _methods(settings: Settings, since: dt.datetime) -> dict[str, int]:
    """How the verification reconciled: its system/entity pairs (checked since ``since``) per
    method."""
    import sqlalchemy as sa

    from etl.core.database import core_engine
    from etl.core.tables import wave_reconciliation

    with core_engine(settings.resolved_core_url).connect() as connection:
        rows = connection.execute(
            sa.select(wave_reconciliation.c.checked_at, wave_reconciliation.c.aggregates).where(
                wave_reconciliation.c.wave == WAVE
            )
        ).all()
    counts: dict[str, int] = {}
    for row in rows:
        if row.checked_at.replace(tzinfo=None) >= since.replace(tzinfo=None):
            method = json.loads(row.aggregates or "{}").get("method", "full re-read")
            counts[method] = counts.get(method, 0) + 1
    return counts


def _timed(step: Callable[[], Any]) -> tuple[Any, float, float]:
    """The step's result, wall seconds and this process's CPU seconds."""
    started, cpu_started = time.perf_counter(), time.process_time()
    result = step()
    return result, time.perf_counter() - started, time.process_time() - cpu_started


def _one_window(
    settings: Settings,
    estate: Path,
    as_of: dt.date,
    activity_seed: int | None,
    log: Callable[[str], None],
    full_reread: bool = True,
) -> dict[str, Any]:
    from etl.cutover import waves
    from etl.estate.activity import simulate_activity

    log(f"freeze window: initial load of {WAVE} (timed)")
    _, initial, initial_cpu = _timed(
        lambda: waves.load_wave(settings, WAVE, "initial", as_of, actor=APPROVER)
    )
    final_as_of = as_of
    if activity_seed is not None:
        log(f"freeze window: {ACTIVITY_DAYS} days of legacy activity on the copy")
        simulate_activity(estate, seed=activity_seed, days=ACTIVITY_DAYS)
        final_as_of = as_of + dt.timedelta(days=ACTIVITY_DAYS + 1)
    waves.freeze(settings, WAVE, actor=APPROVER)
    log("freeze window: final delta, verify, commit (timed)")
    final, delta_seconds, delta_cpu = _timed(
        lambda: waves.load_wave(settings, WAVE, "final", final_as_of, actor=APPROVER)
    )
    verify_started_at = utc_now()
    criteria, verify_seconds, verify_cpu = _timed(
        lambda: waves.verify(settings, WAVE, final_as_of, actor=APPROVER)
    )
    methods = _methods(settings, verify_started_at)

    def commit() -> None:
        waves.approve(settings, WAVE, APPROVER, "project_lead")
        waves.cut_over(settings, WAVE, actor=APPROVER, data_docs=False)

    _, commit_seconds, commit_cpu = _timed(commit)
    window = delta_seconds + verify_seconds + commit_seconds
    window_cpu = delta_cpu + verify_cpu + commit_cpu
    # The final deltas' Data Docs, built right after the decision: after the window, timed apart.
    started = time.perf_counter()
    built = waves.build_final_data_docs(settings, WAVE, raise_errors=True)
    data_docs_seconds = time.perf_counter() - started
    full_seconds, full_reconciled = (
        _full_reread(settings, final_as_of) if full_reread else (None, None)
    )
    return {
        "initial_load_seconds": round(initial, 3),
        "final_delta_seconds": round(delta_seconds, 3),
        "verify_seconds": round(verify_seconds, 3),
        "commit_seconds": round(commit_seconds, 3),
        "window_seconds": round(window, 3),
        "data_docs_after_window_seconds": round(data_docs_seconds, 3),
        "data_docs_built": sum(1 for result in built.values() if result == "built"),
        "ratio": round(window / initial, 4) if initial > 0 else None,
        # This process's CPU s (the database server's work is not in them): steadier than wall
        # seconds on a shared machine.
        "initial_load_cpu_seconds": round(initial_cpu, 3),
        "final_delta_cpu_seconds": round(delta_cpu, 3),
        "verify_cpu_seconds": round(verify_cpu, 3),
        "commit_cpu_seconds": round(commit_cpu, 3),
        "cpu_ratio": round(window_cpu / initial_cpu, 4) if initial_cpu > 0 else None,
        "source_rows_processed": sum(b["extracted"] for b in final["batches"].values()),
        "core_rows_changed": _changed_rows(settings, final["batches"]),
        "verified": all(c.passed for c in criteria),
        "reconciliation_methods": methods,
        "full_reread_reconciliation_seconds": None
        if full_seconds is None
        else round(full_seconds, 3),
        "full_reread_reconciled": full_reconciled,
        "ratio_with_full_reread": round(
            (delta_seconds + full_seconds + commit_seconds) / initial, 4
        )
        if initial > 0 and full_seconds is not None
        else None,
    }


def _full_reread(settings: Settings, final_as_of: dt.date) -> tuple[float, bool]:
    """For comparison, the reconciliation as it was before hash aggregates: the source read again
    through the mapping and compared row by row (after the commit: it changes nothing timed).
    Its seconds, and whether every system reconciled."""
    from etl.cutover import waves

    started = time.perf_counter()
    full = waves.reconcile_wave(settings, WAVE, final_as_of, run_id="bench-full-reread")
    return time.perf_counter() - started, all(r["is_reconciled"] for r in full)


def median_window(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """Of a freeze window's repeats, the one whose window / initial ratio is the median (the
    higher middle one of an even number: the goal is an upper bound, so the less flattering
    one), every repeat's ratio listed under ``repeats``. The full re-read, timed in the first
    repeat only, is taken from there. Its ``verified`` is every repeat's: a window whose wave
    was not verified is a problem whichever is shown."""
    chosen_index = median_position(
        [w["ratio"] if w["ratio"] is not None else float("inf") for w in windows], higher=True
    )
    chosen = dict(windows[chosen_index])
    for key in _FIRST_REPEAT_ONLY:
        if chosen.get(key) is None:
            chosen[key] = windows[0].get(key)
    chosen["verified"] = all(window["verified"] for window in windows)
    chosen["repeats"] = {
        "count": len(windows),
        "chosen": chosen_index + 1,
        "ratios": [window["ratio"] for window in windows],
        "verified": [window["verified"] for window in windows],
    }
    return chosen


# Figures a freeze window's first repeat alone measures (the re-read takes 8-9 s at 20,000 people).
_FIRST_REPEAT_ONLY = (
    "full_reread_reconciliation_seconds",
    "full_reread_reconciled",
    "ratio_with_full_reread",
)


def freeze_window_figures(
    home: Path,
    estate: Path,
    chunk_rows: int,
    as_of: dt.date,
    core_url: str | None,
    log: Callable[[str], None],
    activity_seed: int = 11,
    repeats: int = 1,
) -> dict[str, Any]:
    """Two freeze windows of the same wave: nothing changed at source, then a week of activity
    (the wave rolled back and loaded again in between). With ``repeats`` above 1 both are
    measured that many times, in turns, each on the source as generated (copied again after an
    activity window changed it), and the median of each is reported (``median_window``)."""
    from etl.cutover import wave_rollback

    copy = _copy_estate(estate, home / "estate", SYSTEMS)
    settings = _settings(home, copy, chunk_rows, core_url)
    windows: dict[str, list[dict[str, Any]]] = {"unchanged": [], "changed": []}
    for index in range(repeats):
        for case, seed in (("unchanged", None), ("changed", activity_seed)):
            if index or case == "changed":
                log(f"freeze window: roll the wave back, then {case} (repeat {index + 1})")
                wave_rollback.rollback_wave(settings, WAVE, actor=APPROVER)
            if index and case == "unchanged":  # the last window's activity changed the copy
                _copy_estate(estate, copy, SYSTEMS)
            windows[case].append(
                _one_window(settings, copy, as_of, seed, log, full_reread=index == 0)
            )
    if repeats == 1:
        return {"wave": WAVE, "systems": list(SYSTEMS), **{k: v[0] for k, v in windows.items()}}
    return {
        "wave": WAVE,
        "systems": list(SYSTEMS),
        **{case: median_window(found) for case, found in windows.items()},
    }


def _cpu_ratio(row: dict[str, Any]) -> str:
    """CPU s: window / initial (figures from before they were measured show a dash)."""
    if row.get("cpu_ratio") is None:
        return "-"
    window = row["final_delta_cpu_seconds"] + row["verify_cpu_seconds"] + row["commit_cpu_seconds"]
    return f"{window:.2f} / {row['initial_load_cpu_seconds']:.2f} = {row['cpu_ratio']:.3f}"


def freeze_lines(figures: dict[str, dict[str, Any]]) -> list[str]:
    """The freeze-window table of ``results.md``: per backend, unchanged and with activity."""
    lines = [
        "## Freeze window (issue 15: final delta + verify + commit <= 0.3 x initial load)",
        "",
        "| backend | source | initial load s | final delta s | verify s | commit s | "
        "window / initial | CPU s window / initial | Data Docs after the window s | "
        "core rows changed | reconciled by | full re-read s (before) | window / initial with it |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for backend, result in figures.items():
        if result.get("error"):
            lines.append(f"| {backend} | failed: {result['error']} | | | | | | | | | | | |")
            continue
        for case in ("unchanged", "changed"):
            row = result[case]
            methods = ", ".join(f"{m} ({n})" for m, n in row["reconciliation_methods"].items())
            lines.append(
                f"| {backend} | {case} | {row['initial_load_seconds']:.2f} | "
                f"{row['final_delta_seconds']:.2f} | {row['verify_seconds']:.2f} | "
                f"{row['commit_seconds']:.2f} | {row['ratio']:.3f} | {_cpu_ratio(row)} | "
                f"{row.get('data_docs_after_window_seconds', 0.0):.2f} | "
                f"{row['core_rows_changed']:,} | {methods or '-'} | "
                f"{shown(row['full_reread_reconciliation_seconds'])} | "
                f"{shown(row['ratio_with_full_reread'], 3)} |"
            )
    repeated = [
        (backend, case, result[case]["repeats"])
        for backend, result in figures.items()
        if not result.get("error")
        for case in ("unchanged", "changed")
        if result[case].get("repeats")
    ]
    if repeated:
        lines.append("")
        for backend, case, repeats in repeated:
            ratios = ", ".join(shown(r, 3) for r in repeats["ratios"])
            lines.append(
                f"{backend}, {case}: {repeats['count']} windows in turns, window / initial "
                f"{ratios}; shown: repeat {repeats['chosen']}, the median."
            )
    return lines
