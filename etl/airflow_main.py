"""``airflow`` as this project runs it: Airflow's own command line, with CPython's cyclic garbage
collector set for a command that builds a large heap and then ends.

An ``airflow`` command holds several hundred thousand objects once Airflow, its execution API
(``dags test`` builds its versioned routes in the process) and a DAG's task
code are loaded, and the collector walks all of them at each full collection and once more when
the interpreter exits. Measured (``airflow dags test`` of a two-task DAG, CPU seconds): ~10 in
all, of which ~1.5 in full collections during the run and ~1.7 in the collection at exit;
nothing is freed by either, since what is walked is the modules, classes, routes and models the
command keeps until it ends. Here:

- the objects alive once Airflow's command line is imported are frozen (``gc.freeze``: never
  examined again; they live as long as the process anyway);
- the youngest generation is collected every 10,000 allocations instead of 700, so full
  collections come as often as the heap really grows, not while Airflow builds its routes;
- the collection at exit is skipped: the last exit handler freezes what is left, after Airflow's
  own exit handlers ran (logs flushed, the metadata database's connections closed); the memory
  goes back to the system with the process.

``airflow dags test`` and ``airflow tasks test`` also get an in-process execution API that serves
only the API version of its one client, the task SDK, instead of generating all 9 versions' routes
(~2.8 CPU s less per command; etl/airflow_inprocess_api.py).

``airflow dags test <dag_id>`` of one of the project's DAGs parses and serialises the DAG file
that defines it only (``--dagfile-path``, unless the command names a file or a bundle), not every
file of the DAG folder: Airflow otherwise parses the whole folder and writes every DAG in it to
the metadata database before the run (``get_bagged_dag``), each time.

Output, exit code and everything Airflow does are unchanged. ``AIRFLOW_COMMAND`` is how the
project starts any ``airflow`` command; ``-P`` keeps the working directory off ``sys.path``, as
it is for the ``airflow`` script.
"""

from __future__ import annotations

import atexit
import gc
import sys
from pathlib import Path

from etl.core.heap import YOUNG_THRESHOLD, settle
from etl.stage_modules import STAGE_MODULES

AIRFLOW_COMMAND = (sys.executable, "-P", "-m", "etl.airflow_main")

# What a migration task's runner imports: Airflow's task runner and the decorators the DAG files
# use, then the stages' modules (etl/stage_modules.py). A process that forks task runners imports
# them once, before it forks: a Celery worker (etl/airflow_celery.py) and a scheduler with the
# LocalExecutor, whose worker processes are forked from it (multiprocessing's default on Linux)
# and fork each task's runner in turn.
TASK_PRELOAD = (
    "airflow.sdk.execution_time.task_runner",
    "airflow.providers.standard.decorators.python",
    *STAGE_MODULES,
    "etl.airflow_catalog",  # and the mappings parsed (etl/airflow_catalog.py)
)


def task_preload(argv: list[str], executor: str) -> tuple[str, ...]:
    """The modules to import before Airflow's command starts: ``TASK_PRELOAD`` for a scheduler
    that runs tasks itself (``[core] executor`` names the LocalExecutor), none otherwise."""
    command = argv[1] if len(argv) > 1 else ""
    if command == "scheduler" and "LocalExecutor" in executor:
        return TASK_PRELOAD
    return ()


def main() -> None:
    atexit.register(gc.freeze)  # registered first, so it runs after every other exit handler
    # Airflow records each command line (sys.argv) in its log table: the `airflow` script's.
    sys.argv[0] = str(Path(sys.executable).with_name("airflow"))
    from airflow.__main__ import main as airflow_main

    from etl.airflow_inprocess_api import install

    install(sys.argv)
    sys.argv.extend(dag_file_arguments(sys.argv))
    _preload(sys.argv)
    # What is alive once Airflow and the preloaded modules are imported (etl/core/heap.py).
    settle(YOUNG_THRESHOLD)
    sys.exit(airflow_main())


def dag_file_arguments(argv: list[str]) -> list[str]:
    """For ``dags test`` of a project DAG (``argv`` as ``sys.argv``) that names neither a DAG file
    nor a bundle: ``--dagfile-path`` and the file defining it (etl/dag_names.py), when Airflow's
    DAG folder holds that file and is its only bundle (the default). Nothing otherwise, nor when
    the command line does not parse: Airflow then reports it as it would have."""
    if argv[1:3] != ["dags", "test"]:
        return []
    import contextlib
    import io
    import json

    from airflow.cli import cli_parser
    from airflow.configuration import conf

    from etl.dag_names import dag_file

    try:  # quietly: any usage error or help is Airflow's to print, once
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            arguments = cli_parser.get_parser().parse_args(argv[1:])
    except SystemExit:
        return []
    if arguments.dagfile_path or arguments.bundle_name:
        return []
    bundles = json.loads(conf.get("dag_processor", "dag_bundle_config_list") or "[]")
    name = dag_file(arguments.dag_id)
    if name is None or [bundle.get("name") for bundle in bundles] != [DAG_FOLDER_BUNDLE]:
        return []
    path = Path(conf.get("core", "dags_folder")) / name
    return ["--dagfile-path", str(path)] if path.is_file() else []


# The bundle Airflow makes of [core] dags_folder when no other bundle is configured.
DAG_FOLDER_BUNDLE = "dags-folder"


def _preload(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] != "scheduler":
        return  # no configuration read for any other command
    import importlib

    from airflow.configuration import conf

    for module in task_preload(argv, conf.get("core", "executor")):
        importlib.import_module(module)


if __name__ == "__main__":
    main()
