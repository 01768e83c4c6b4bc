"""GX imported the project's way (etl/validate/gx_import.py): the modules it never uses here are
deferred, and work, with GX's own results, the moment anything uses them.

Each case runs in a fresh interpreter (this one may have imported GX or the modules already):
the project's import against a plain ``import great_expectations``, on an expectation that needs
``scipy.stats`` to validate and ``altair`` to render.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from etl.settings import PROJECT_ROOT

pytestmark = pytest.mark.unit

DEFERRED = ("scipy.stats", "altair", "boto3")

# Prints, as JSON, the state of the deferred modules after GX's import, then a KL-divergence
# expectation validated (scipy.stats.entropy) and rendered (an altair chart), and the state after.
KL_DIVERGENCE = """
import json, sys
if sys.argv[1] == "project":
    from etl.validate.gx_import import gx
else:
    import great_expectations as gx
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

def state():
    return {n: type(sys.modules[n]).__name__ for n in DEFERRED if n in sys.modules}

deferred = state()
executed = {n: n + "." + s in sys.modules for n, s in SUBMODULES.items()}
context = gx.get_context(mode="ephemeral")
context.variables.progress_bars = ProgressBarsConfig(globally=False)
asset = context.data_sources.add_pandas("synthetic").add_dataframe_asset("rows")
batch = asset.add_batch_definition_whole_dataframe("all").get_batch(
    batch_parameters={"dataframe": pd.DataFrame({"x": [1, 2, 2, 3, 3, 3, 4, 9]})}
)
expectation = gx.expectations.ExpectColumnKLDivergenceToBeLessThan(
    column="x", partition_object={"bins": [0, 2, 4, 10], "weights": [0.2, 0.5, 0.3]}, threshold=0.1
)
outcome = batch.validate(expectation)
expectation.render()
print(json.dumps({
    "deferred": deferred,
    "executed": executed,
    "success": outcome.success,
    "result": outcome.result,
    "rendered": [content.to_json_dict() for content in expectation.rendered_content],
    "after": state(),
}, default=str))
"""
# A submodule each deferred module imports when it is executed.
SUBMODULES = {"scipy.stats": "_stats_py", "altair": "vegalite", "boto3": "session"}


def _run(*arguments: str, script: str) -> str:
    preamble = f"DEFERRED = {DEFERRED!r}\nSUBMODULES = {SUBMODULES!r}\n"
    completed = subprocess.run(
        [sys.executable, "-c", preamble + script, *arguments],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout.strip().splitlines()[-1]


def test_the_deferred_modules_work_with_the_results_of_a_plain_import():
    project = json.loads(_run("project", script=KL_DIVERGENCE))
    plain = json.loads(_run("plain", script=KL_DIVERGENCE))

    assert project["deferred"] == dict.fromkeys(DEFERRED, "_DeferredModule")
    assert project["executed"] == dict.fromkeys(DEFERRED, False)
    assert plain["deferred"] == dict.fromkeys(DEFERRED, "module")
    # scipy.stats and altair executed when used; boto3 never is.
    assert project["after"] == {**dict.fromkeys(DEFERRED, "module"), "boto3": "_DeferredModule"}
    assert project["result"]["observed_value"] == pytest.approx(0.0351338767)
    assert any(content["value"].get("graph") for content in project["rendered"])
    for key in ("success", "result", "rendered"):
        assert project[key] == plain[key], key


def test_a_module_imported_before_gx_is_not_deferred_nor_an_import_after_it():
    script = """
import sys, types
import scipy.stats
from etl.validate import gx_import
import numpy.linalg
print(type(sys.modules["scipy.stats"]) is types.ModuleType,
      type(sys.modules["altair"]).__name__,
      any(type(f).__name__ == "_DeferringFinder" for f in sys.meta_path))
"""
    assert _run(script=script) == "True _DeferredModule False"


def test_threads_using_a_deferred_module_at_once_all_get_the_executed_module():
    """Python 3.11's LazyLoader alone lets a second thread read a half-executed module."""
    script = """
import sys, threading
from etl.validate import gx_import
stats = sys.modules["scipy.stats"]
start = threading.Barrier(8)
found = []
def use():
    start.wait()
    try:
        found.append(stats.entropy([0.5, 0.5], [0.25, 0.75]))
    except AttributeError as error:
        found.append(repr(error))
threads = [threading.Thread(target=use) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(sorted({str(round(float(value), 12)) if not isinstance(value, str) else value
              for value in found}))
"""
    assert _run(script=script) == "['0.143841036226']"


def test_walking_the_modules_for_their_files_leaves_them_deferred():
    """Reading the import system's attributes (``__file__``, ``__spec__``...) executes nothing:
    Hypothesis's collection of local constants and ``inspect.getmodule`` read every module's
    ``__file__``, which executed the three (~1.1 CPU s, ~80 MiB) in every process that did.
    Anything else still executes the module, with its real contents."""
    script = """
import inspect, sys, types
from etl.validate import gx_import
names = [(m.__name__, m.__file__, m.__spec__.name, m.__package__) for m in
         (sys.modules[name] for name in DEFERRED)]
inspect.getmodule(inspect)  # walks sys.modules, reading each module's __file__
still = [type(sys.modules[name]).__name__ for name in DEFERRED]
stats = sys.modules["scipy.stats"]
executed = round(float(stats.entropy([0.5, 0.5], [0.25, 0.75])), 6)
print(all(file and name == spec for name, file, spec, _ in names), still,
      type(stats) is types.ModuleType, executed)
"""
    assert _run(script=script) == (
        "True ['_DeferredModule', '_DeferredModule', '_DeferredModule'] True 0.143841"
    )
