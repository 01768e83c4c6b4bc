"""Identity resolution over every system of the bench estate: inputs, wall time, peak memory, and
its growth between two sizes (issue 15: "identity resolution over all 49 systems at 200,000
people reported with its growth from 20,000").

Resolution reads every core patient and every ``patient_identifier`` row (etl/identity/runs.py,
``_read_inputs``). Migrating all 49 systems at 200,000 people through every stage only to
produce those two tables is not done (ELVIS and Melior alone, about half the estate's rows,
take minutes), so the inputs are made the cheapest honest way, in a child interpreter: every
system of the catalog is extracted (``pipeline.extract``, the whole system: the patient mapping
may read other datasets) and its ``patient`` entity transformed (``pipeline.transform``, which
also writes the patient's identifiers). Those are the rows the load would promote into
``patient`` and ``patient_identifier``, before validation and the quality gate (which
quarantine a few planted defects). Their two column sets are written to Parquet.

What is timed is ``resolve_identities`` alone (the graph, the conflict rules, persons, links,
reviews and evidence), in a second, fresh child that reads those two files first (the fastest of
``RESOLVE_REPEATS`` resolutions: the machine is shared). Its VmHWM is the resolver's own peak
(plus the interpreter and the input frames, reported apart as ``input_rss_mib``). Reading from
and writing to the core database (``runs.resolve``) is not in the timing. Nothing here asserts
on timings.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from etl.bench.figures import shown, to_mib
from etl.bench.goals import ratio

PATIENTS_FILE = "patients.parquet"
IDENTIFIERS_FILE = "identifiers.parquet"
RESOLVE_REPEATS = 3  # the fastest of three resolutions is reported (a shared machine)

DEFINITIONS = {
    "inputs": "every system of the catalog extracted (pipeline.extract) and its patient entity "
    "transformed (pipeline.transform, with the patient's identifiers), in a child interpreter: "
    "the rows the load would promote into patient and patient_identifier, before validation "
    "and the quality gate; not in the resolution's timing",
    "resolve": "etl.identity.resolve.resolve_identities(patients, identifiers) in a fresh child "
    "interpreter after it read the inputs from Parquet; no database reads or writes; run "
    "`repeats` times, seconds and cpu_seconds are the fastest run's (all_seconds: every run)",
    "peak_rss_mib": "VmHWM of the resolving child (interpreter, input frames and resolution)",
    "input_rss_mib": "RSS of the resolving child just before resolution (inputs read)",
    "cost_per_row_ratio": "(large seconds / small seconds) / (large input rows / small input "
    "rows); input rows = patient rows + identifier rows; 1.0 is linear",
}


def prepare_inputs(
    estate: Path, home: Path, chunk_rows: int, as_of: dt.date, out_dir: Path
) -> dict[str, Any]:
    """Extract every system and transform its patients; the rows resolution reads, as Parquet."""
    import pandas as pd
    import pyarrow.parquet as pq

    from etl import pipeline
    from etl.batch import BatchPaths
    from etl.bench.migration import bench_settings
    from etl.identity.resolve import IDENTIFIER_COLUMNS, PATIENT_COLUMNS

    settings = bench_settings(home, estate, chunk_rows)
    systems = sorted(pipeline.catalog(settings).systems)
    started = time.perf_counter()
    patients, identifiers, source_rows = [], [], 0
    for system in systems:
        batch_id = pipeline.batch_id_for(system, "bench_identity")
        extracted = pipeline.extract(system, batch_id, as_of, settings)
        source_rows += sum(extracted["rows"].values())
        pipeline.transform(system, "patient", batch_id, settings)
        paths = BatchPaths.of(settings, batch_id, system)
        patients.append(
            pq.read_table(
                paths.stage_file("transformed", "patient"), columns=PATIENT_COLUMNS
            ).to_pandas()
        )
        identifier_file = paths.stage_file("transformed", "patient_identifier")
        if identifier_file.exists():
            identifiers.append(
                pq.read_table(identifier_file, columns=IDENTIFIER_COLUMNS).to_pandas()
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    patient_frame = pd.concat(patients, ignore_index=True)
    identifier_frame = pd.concat(identifiers, ignore_index=True)
    patient_frame.to_parquet(out_dir / PATIENTS_FILE, index=False)
    identifier_frame.to_parquet(out_dir / IDENTIFIERS_FILE, index=False)
    return {
        "systems": len(systems),
        "source_rows": source_rows,
        "patients": len(patient_frame),
        "identifiers": len(identifier_frame),
        "seconds": time.perf_counter() - started,
    }


def resolve_inputs(inputs_dir: Path, repeats: int = 1) -> dict[str, Any]:
    """``resolve_identities`` over the prepared inputs, ``repeats`` times; counts, the fastest
    run's seconds (every run's too: the machine is shared, the minimum is the least disturbed),
    memory."""
    import pandas as pd

    from etl.bench.memory import RssSampler, measure, process_peaks
    from etl.identity.resolve import resolve_identities

    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    patients = pd.read_parquet(inputs_dir / PATIENTS_FILE)
    identifiers = pd.read_parquet(inputs_dir / IDENTIFIERS_FILE)
    samples = []
    for _ in range(repeats):
        with RssSampler() as sampler, measure(sampler) as timed:
            resolution = resolve_identities(patients, identifiers, run_id="bench_identity")
        samples.append(timed)
        counts = resolution.counts
        del resolution  # the next run starts from the inputs alone
    timed = min(samples, key=lambda sample: sample.seconds)
    peaks = process_peaks()
    return {
        "patients_in": len(patients),
        "identifiers_in": len(identifiers),
        "input_rows": len(patients) + len(identifiers),
        "persons_out": counts["persons"],
        "components": counts["components"],
        "reviews": counts["reviews"],
        "persons_in_several_systems": counts["persons_in_several_systems"],
        "seconds": timed.seconds,
        "cpu_seconds": timed.cpu_seconds,
        "repeats": repeats,
        "all_seconds": [sample.seconds for sample in samples],
        "all_cpu_seconds": [sample.cpu_seconds for sample in samples],
        "input_rss_mib": to_mib(samples[0].start_rss_bytes),
        "sampled_peak_rss_mib": to_mib(max(sample.peak_rss_bytes or 0 for sample in samples)),
        "peak_rss_mib": to_mib(peaks["vm_hwm_bytes"] or peaks["ru_maxrss_bytes"]),
        "counts": counts,
    }


def measure_identity(
    run_dir: Path,
    estate: Path,
    chunk_rows: int,
    as_of: dt.date,
    people: int,
    log: Callable[[str], None] = lambda _message: None,
    repeats: int = RESOLVE_REPEATS,
) -> dict[str, Any]:
    """Inputs in one child interpreter, resolution in another; the section of ``results.json``."""
    from etl.bench.migration import _run_child

    folder = run_dir / "identity"
    log("identity: extracting every system and transforming its patients (child interpreter)")
    prepared = _run_child(
        [
            "identity-inputs",
            "--estate",
            str(estate),
            "--home",
            str(folder / "home"),
            "--chunk-rows",
            str(chunk_rows),
            "--as-of",
            as_of.isoformat(),
            "--out",
            str(folder / "inputs"),
        ],
        folder / "inputs.json",
        folder / "inputs.log",
    )
    log(
        f"identity: resolving {prepared['patients']:,} patients, {prepared['identifiers']:,} "
        "identifiers (fresh child interpreter)"
    )
    resolved = _run_child(
        ["identity-resolve", "--inputs", str(folder / "inputs"), "--repeats", str(repeats)],
        folder / "resolve.json",
        folder / "resolve.log",
    )
    return {"people": people, "inputs": prepared, "resolve": resolved, "definitions": DEFINITIONS}


def retime_identity(work_dir: Path, repeats: int = RESOLVE_REPEATS) -> dict[str, Any]:
    """Time the resolver again over the inputs a kept run made (``vardflytt bench --identity
    --keep-files``), in a fresh child as the bench does, and put the new figures in that run's
    ``results.json`` and ``results.md`` (the code changed; the inputs, minutes to build at
    200,000 people, did not). ``--scale-compare`` then compares the new figures."""
    from etl.batch import write_json
    from etl.bench.environment import git_info
    from etl.bench.figures import RESULTS_FILE, RESULTS_MARKDOWN
    from etl.bench.markdown import results_markdown
    from etl.bench.migration import _run_child

    results_file = work_dir / RESULTS_FILE
    results = json.loads(results_file.read_text("utf-8"))
    identity = results.get("identity")
    kept = sorted(work_dir.glob("run_*/identity/inputs"))
    if not identity or identity.get("error") or not kept:
        raise ValueError(
            f"{work_dir} has no identity inputs kept: run `vardflytt bench --identity "
            "--keep-files` there first"
        )
    folder = kept[-1].parent
    identity["resolve"] = _run_child(
        ["identity-resolve", "--inputs", str(kept[-1]), "--repeats", str(repeats)],
        folder / "resolve.json",
        folder / "resolve.log",
    )
    identity["retimed"] = {"at": dt.datetime.now(dt.UTC).isoformat(), "git": git_info()}
    write_json(results_file, results)
    (work_dir / RESULTS_MARKDOWN).write_text(results_markdown(results), "utf-8")
    return identity


# The resolver's steps, timed apart by ``phase_seconds`` (those the resolver has).
PHASES = (
    "_distinct_patients",
    "_identifier_edges",
    "_components",
    "_conflicts",
    "_decisions_by_component",
    "patient_set_keys",
    "review_ids_for",
    "_persons",
    "_evidence",
)


def phase_seconds(inputs_dir: Path, repeats: int = RESOLVE_REPEATS) -> dict[str, Any]:
    """CPU seconds of each step of ``resolve_identities`` over prepared inputs (``rest``: the
    rest of it), the run with the least CPU of ``repeats``; for finding what grows faster than
    the rows. Each step is wrapped by a timer for the call (a diagnosis, not the bench's
    figure)."""
    import pandas as pd

    from etl.identity import resolve

    patients = pd.read_parquet(inputs_dir / PATIENTS_FILE)
    identifiers = pd.read_parquet(inputs_dir / IDENTIFIERS_FILE)
    spent: dict[str, float] = {}
    originals = {name: getattr(resolve, name) for name in PHASES if hasattr(resolve, name)}

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.process_time() - started

        return call

    runs = []
    try:
        for name, function in originals.items():
            setattr(resolve, name, timed(name, function))
        for _ in range(repeats):
            spent.clear()
            started = time.process_time()
            resolve.resolve_identities(patients, identifiers, run_id="bench_identity")
            total = time.process_time() - started
            runs.append({"cpu_seconds": total, **spent, "rest": total - sum(spent.values())})
    finally:
        for name, function in originals.items():
            setattr(resolve, name, function)
    return {
        "input_rows": len(patients) + len(identifiers),
        "best": min(runs, key=lambda run: run["cpu_seconds"]),
        "all_cpu_seconds": [run["cpu_seconds"] for run in runs],
    }


# --------------------------------------------------------------------------- two sizes, pure


def identity_scale(small: dict[str, Any] | None, large: dict[str, Any] | None) -> dict[str, Any]:
    """Growth of identity resolution from the small to the large size (large / small)."""
    if not small or not large or small.get("error") or large.get("error"):
        return {"small_people": (small or {}).get("people"), "large_people": None}
    before, after = small["resolve"], large["resolve"]
    rows_ratio = ratio(after["input_rows"], before["input_rows"])
    time_ratio = ratio(after["seconds"], before["seconds"])
    cpu_ratio = ratio(after["cpu_seconds"], before["cpu_seconds"])
    return {
        "small_people": small["people"],
        "large_people": large["people"],
        "systems": large["inputs"]["systems"],
        "small": before,
        "large": after,
        "people_ratio": ratio(large["people"], small["people"]),
        "rows_ratio": rows_ratio,
        "time_ratio": time_ratio,
        "cpu_time_ratio": cpu_ratio,
        "rss_ratio": ratio(after["peak_rss_mib"], before["peak_rss_mib"]),
        "cost_per_row_ratio": ratio(time_ratio, rows_ratio),
        "cpu_cost_per_row_ratio": ratio(cpu_ratio, rows_ratio),
    }


def identity_lines(identity: dict[str, Any]) -> list[str]:
    """``results.md``: one size's identity resolution."""
    if identity.get("error"):
        return ["## identity resolution", "", f"failed: {identity['error']}"]
    inputs, resolved = identity["inputs"], identity["resolve"]
    return [
        f"## identity resolution ({inputs['systems']} systems, {identity['people']:,} people)",
        "",
        f"Inputs: every system extracted and its patients transformed in "
        f"{shown(inputs['seconds'])} s (not in the timing below).",
        "",
        "| patients in | identifiers in | persons out | reviews | wall s | CPU s | "
        "input RSS MiB | peak RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {resolved['patients_in']:,} | {resolved['identifiers_in']:,} | "
        f"{resolved['persons_out']:,} | {resolved['reviews']:,} | {shown(resolved['seconds'])} | "
        f"{shown(resolved['cpu_seconds'])} | {shown(resolved['input_rss_mib'], 1)} | "
        f"{shown(resolved['peak_rss_mib'], 1)} |",
    ]


def identity_scale_lines(scale: dict[str, Any]) -> list[str]:
    """``scale.md``: identity resolution at both sizes and its growth."""
    if scale.get("time_ratio") is None:
        return ["## identity resolution", "", "not measured at both sizes (bench --identity)."]
    rows = [
        f"## identity resolution ({scale['systems']} systems): "
        f"{scale['small_people']:,} vs {scale['large_people']:,} people",
        "",
        "| size | patients in | identifiers in | persons out | wall s | CPU s | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label in ("small", "large"):
        figures = scale[label]
        rows.append(
            f"| {scale[f'{label}_people']:,} people | {figures['patients_in']:,} | "
            f"{figures['identifiers_in']:,} | {figures['persons_out']:,} | "
            f"{shown(figures['seconds'])} | {shown(figures['cpu_seconds'])} | "
            f"{shown(figures['peak_rss_mib'], 1)} |"
        )
    rows += [
        "",
        f"Input rows x{shown(scale['rows_ratio'], 2)}; time x{shown(scale['time_ratio'], 2)} "
        f"(CPU x{shown(scale['cpu_time_ratio'], 2)}); memory x{shown(scale['rss_ratio'], 2)}; "
        f"cost per row x{shown(scale['cost_per_row_ratio'], 3)} "
        f"(CPU x{shown(scale['cpu_cost_per_row_ratio'], 3)}).",
    ]
    return rows


def main(argv: list[str] | None = None) -> None:
    """``python -m etl.bench.identity_scale WORK_DIR...``: ``retime_identity`` of each (with
    ``--phases``: ``phase_seconds`` over each one's kept inputs, as JSON, results untouched)."""
    import argparse

    parser = argparse.ArgumentParser(description=retime_identity.__doc__)
    parser.add_argument("work_dirs", type=Path, nargs="+")
    parser.add_argument("--repeats", type=int, default=RESOLVE_REPEATS)
    parser.add_argument("--phases", action="store_true")
    arguments = parser.parse_args(argv)
    for work_dir in arguments.work_dirs:
        if arguments.phases:
            inputs = sorted(work_dir.glob("run_*/identity/inputs"))[-1]
            phases = phase_seconds(inputs, arguments.repeats)
            print(json.dumps({"work_dir": str(work_dir), **phases}), file=sys.stdout)
            continue
        resolved = retime_identity(work_dir, arguments.repeats)["resolve"]
        print(
            f"{work_dir}: {resolved['input_rows']:,} rows, {resolved['seconds']:.2f} s wall, "
            f"{resolved['cpu_seconds']:.2f} s CPU, peak {resolved['peak_rss_mib']:.0f} MiB",
            file=sys.stdout,
        )


if __name__ == "__main__":
    main()
