"""``vardflytt``: the command line for migration engineers (the same jobs as the DAGs).

This module builds ``app`` (run by the console entry point ``etl.cli:main``) and adds the
commands of one module each: pipeline (check-mappings, run, status), airflow, demo, reports
(bench, docs, profile, coverage), dashboard, and the groups estate, identity, dq, cutover,
coexistence, cluster, codes and export (steward, landing, batches, core and audit live with
their layers)."""

from __future__ import annotations

import subprocess  # noqa: F401  (etl.cli.subprocess: tests patch the Airflow call through it)

import typer

from etl.cli import airflow, dashboard, demo, onboard, pipeline, reports
from etl.cli.cluster import cluster_app
from etl.cli.codes import codes_app
from etl.cli.coexistence import coexistence_app
from etl.cli.common import console, expected_stop
from etl.cli.cutover import cutover_app
from etl.cli.demo import _demo_final_to_go_no_go, _print_demo_next_steps
from etl.cli.dq import dq_app
from etl.cli.estate import estate_app
from etl.cli.export import export_app
from etl.cli.identity import identity_app
from etl.cli.pipeline import print_accounting
from etl.core.audit_cli import audit_app
from etl.core.files import restrict_umask
from etl.core.redact import redact
from etl.extract.cli import landing_app
from etl.load.cli import batches_app, core_app
from etl.steward.cli import steward_app

__all__ = [
    "_demo_final_to_go_no_go",
    "_print_demo_next_steps",
    "app",
    "console",
    "main",
    "print_accounting",
]


class _Cli(typer.Typer):
    """The root command: an expected stop (EXPECTED_STOPS: a residency refusal, the quality
    gate, the accounting, schema drift, a ledger's refusal) is printed as its message with its
    own exit code, and no exception it ends with shows a password (tracebacks print the
    exception's text, and a bad URL's text holds the URL). ``VARDFLYTT_TRACEBACK=1`` shows the
    traceback of an expected stop too."""

    def __call__(self, *args, **kwargs):
        import os

        try:
            return super().__call__(*args, **kwargs)
        except Exception as error:
            stop = expected_stop(error)
            if stop and os.environ.get("VARDFLYTT_TRACEBACK") != "1":
                # A stop is an answer, not a crash: its message says what to change.
                code, heading = stop
                typer.echo(f"{heading} (exit {code}): {redact(error)}", err=True)
                raise SystemExit(code) from None
            cause: BaseException | None = error
            seen: set[int] = set()
            while cause is not None and id(cause) not in seen:
                seen.add(id(cause))
                cause.args = tuple(redact(a) if isinstance(a, str) else a for a in cause.args)
                cause = cause.__cause__ or cause.__context__
            raise


app = _Cli(
    help="vardflytt: migrate legacy health records into the core system.", no_args_is_help=True
)


@app.callback()
def _owner_only_files() -> None:
    """Everything a command writes (and the Airflow it starts) is owner-only (umask 077)."""
    restrict_umask()


# The commands, in the order ``vardflytt --help`` lists them (commands first, then groups).
app.command("check-mappings")(pipeline.check_mappings)
app.command("new-system")(onboard.new_system)
app.command("run")(pipeline.run)
app.command("status")(pipeline.status)
app.command("airflow", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
    airflow.airflow
)
app.command("demo")(demo.demo)
app.command("bench")(reports.bench)
app.command("docs")(reports.docs)
app.command("profile")(reports.profile)
app.command("coverage")(reports.coverage)
app.command("lineage")(reports.lineage)
app.command("dashboard")(dashboard.dashboard)

app.add_typer(estate_app, name="estate")
app.add_typer(identity_app, name="identity")
app.add_typer(dq_app, name="dq")
# The steward's queue and decisions live in etl/steward/, shared with the web dashboard.
app.add_typer(steward_app, name="steward")
app.add_typer(landing_app, name="landing")
app.add_typer(batches_app, name="batches")
app.add_typer(core_app, name="core")
app.add_typer(audit_app, name="audit")
app.add_typer(cutover_app, name="cutover")
app.add_typer(coexistence_app, name="coexistence")
app.add_typer(cluster_app, name="cluster")
app.add_typer(codes_app, name="codes")
app.add_typer(export_app, name="export")


def main() -> None:
    """The console entry point (``vardflytt``, ``python -m etl.cli``): ``app`` as this process's
    own program, so a command that runs stages here settles the heap (``runs_stages_here``)."""
    from etl.cli import common

    common.OWN_PROCESS = True
    app()
