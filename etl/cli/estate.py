"""``vardflytt estate``: the synthetic legacy estate (test and demo data only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from etl.cli.common import console
from etl.settings import get_settings

estate_app = typer.Typer(
    help="The synthetic legacy estate (test and demo data only).", no_args_is_help=True
)


@estate_app.command("generate")
def estate_generate(
    patients: Annotated[int, typer.Option(help="Number of synthetic people.")] = 3000,
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives the same estate.")
    ] = 42,
    out: Annotated[
        Path | None,
        typer.Option(help="Output folder (default: VARDFLYTT_ESTATE_DIR or var/estate)."),
    ] = None,
    elvis_url: Annotated[
        str | None, typer.Option(help="Put ELVIS in this database instead of SQLite.")
    ] = None,
) -> None:
    """Generate every legacy system of the estate, messy, with recorded defects."""
    from etl.estate import generate_estate

    target = out or get_settings().resolved_estate_dir
    with console.status(f"generating {patients} synthetic patients into {target}"):
        manifest = generate_estate(target, patients=patients, seed=seed, elvis_url=elvis_url)
    console.print(
        f"estate written to {target} ({manifest.defect_rows} injected defect rows "
        f"recorded in {target / 'defects.csv'})"
    )


@estate_app.command("activity")
def estate_activity(
    seed: Annotated[int, typer.Option(help="Random seed of this round of activity.")] = 42,
    estate: Annotated[
        Path | None,
        typer.Option(help="Estate folder (default: VARDFLYTT_ESTATE_DIR or var/estate)."),
    ] = None,
    elvis_url: Annotated[
        str | None,
        typer.Option(help="ELVIS database, when not the estate's SQLite file.", show_default=False),
    ] = None,
) -> None:
    """Change ELVIS and Melior in place as legacy use would before the cutover (for deltas)."""
    import os

    from etl.estate.activity import ACTIVITY_FILE, simulate_activity

    target = estate or get_settings().resolved_estate_dir
    url = elvis_url or os.environ.get("VARDFLYTT_SOURCE_ELVIS_URL")
    report = simulate_activity(target, seed=seed, elvis_url=url)
    counts = ", ".join(f"{name} {number}" for name, number in report.counts().items())
    console.print(f"legacy activity in {target}: {counts}; recorded in {target / ACTIVITY_FILE}")
