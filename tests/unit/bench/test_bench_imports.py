"""The bench's in-process run imports what the pipeline imports, no more: Great Expectations the
project's way (etl/validate/gx_import.py), so the modules it defers stay deferred through a whole
migration, and the measured peak RSS is the pipeline's, not a plain ``import great_expectations``
's (which executes ``scipy.stats``, ``altair`` and ``boto3``: ~80 MiB the pipeline never holds).

Runs in a fresh interpreter (this one may have imported any of them already).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from etl.settings import PROJECT_ROOT
from etl.validate.gx_import import DEFERRED_MODULES

pytestmark = pytest.mark.unit

# warm_imports, then ELVIS migrated stage by stage as `vardflytt bench --peers` runs it in process;
# prints the type of each deferred module after the imports and after the run.
MIGRATE_ELVIS = """
import datetime as dt, json, sys
from pathlib import Path
from etl.bench.migration import bench_settings, migrate, warm_imports

DEFERRED = {deferred!r}
def state():
    return {{name: type(sys.modules[name]).__name__ for name in DEFERRED if name in sys.modules}}

warm_imports()
after_imports = state()
settings = bench_settings(Path(sys.argv[2]), Path(sys.argv[1]), 50_000)
timings = migrate(settings, "imports", dt.date(2026, 6, 30), None, systems=("elvis",))
print(json.dumps({{
    "after_imports": after_imports,
    "after_run": state(),
    "reconciled": timings[0].reconciled,
    "rows": timings[0].source_rows,
}}))
"""


def test_the_in_process_bench_imports_gx_as_the_pipeline_does(small_estate, tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            MIGRATE_ELVIS.format(deferred=DEFERRED_MODULES),
            str(small_estate),
            str(tmp_path / "home"),
        ],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])

    deferred = dict.fromkeys(DEFERRED_MODULES, "_DeferredModule")
    assert result["after_imports"] == deferred
    # Nothing on ELVIS's path, validation included, uses them: the run's peak does not hold them.
    assert result["after_run"] == deferred
    assert result["reconciled"] is True
    assert result["rows"] > 0
