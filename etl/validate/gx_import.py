"""Great Expectations, imported once per process without executing the modules it imports at its
top level but only ever uses for what this project never runs.

``import great_expectations`` imports every expectation it ships, and with them ``scipy.stats``
(the KL-divergence expectation and two Kolmogorov-Smirnov metrics), ``altair`` (the
KL-divergence expectation's charts) and ``boto3`` (S3 stores and data sources): ~0.8 CPU s of
~2.5 here, in every process that validates. While GX is imported, those three are imported with
the standard library's ``importlib.util.LazyLoader``: the module object exists, and is executed
the first time anything reads an attribute of it, so an expectation that needs ``scipy.stats``
gets the real module, with the same results, when it first calls it. GX's own code and
behaviour are unchanged.

Nothing is deferred when GX, or one of the three, is already imported (then it is the real
module), nor for imports made after GX's: the finder is on ``sys.meta_path`` only during GX's
import; a later ``import scipy.stats`` (or ``boto3``, ``altair``) executes the deferred module
at once. A deferred module is executed under a lock of its own, so a second thread waits for it
(Python 3.11's LazyLoader does not), and a module that fails to execute raises at its first use
instead of at GX's import (tests/unit/validate/test_gx_import.py executes them).

Import ``gx`` from here wherever GX may be imported first; the fork server and the Airflow
workers preload this module by name (etl/stage_modules.py). Nothing to do when GX stops
importing these at its top level: the finder then finds nothing to defer.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any, cast

# GX imports these at its top level and uses them only inside the functions named above.
DEFERRED_MODULES = ("scipy.stats", "altair", "boto3")


class _LockedLazyLoader(importlib.util.LazyLoader):
    """``LazyLoader``, its module executed under a lock, as from Python 3.12.3 on: 3.11's switches
    the module to a plain one before executing it, so a second thread can read it half-executed."""

    def exec_module(self, module: ModuleType) -> None:
        spec = cast(importlib.machinery.ModuleSpec, module.__spec__)  # LazyLoader needs one
        # Keeps the module's state as it is in the spec's loader_state; any attribute read of the
        # module after this call would execute it.
        super().exec_module(module)
        spec.loader_state.update(lock=threading.RLock(), is_executing=False)
        module.__class__ = _DeferredModule


# Set on a module by the import system before its code runs (``module_from_spec``): reading one
# executes nothing. What walks ``sys.modules`` for them (``inspect.getmodule``, Hypothesis
# collecting a test run's local constants) then leaves a deferred module deferred. Not
# ``__path__``: importing a submodule reads its package's, and must execute the package first.
_IMPORT_METADATA = frozenset(
    {"__name__", "__file__", "__cached__", "__spec__", "__loader__", "__package__"}
)


class _DeferredModule(ModuleType):
    """A module executed on first attribute access: ``importlib.util._LazyModule`` as Python
    3.13 has it (the same steps, under the module's lock; the executing thread reads through),
    except for the import system's own attributes (``_IMPORT_METADATA``)."""

    def __getattribute__(self, attribute: str) -> Any:
        if attribute in _IMPORT_METADATA:
            return object.__getattribute__(self, attribute)
        spec = object.__getattribute__(self, "__spec__")
        state = spec.loader_state
        with state["lock"]:
            if object.__getattribute__(self, "__class__") is _DeferredModule:
                plain = state["__class__"]
                if state["is_executing"]:  # the module's own code, in the executing thread
                    return plain.__getattribute__(self, attribute)
                state["is_executing"] = True
                namespace = plain.__getattribute__(self, "__dict__")
                # What was set on the module since it was made is set again after executing it.
                before = state["__dict__"]
                changed = {
                    key: value
                    for key, value in namespace.items()
                    if key not in before or before[key] is not value
                }
                spec.loader.exec_module(self)
                if spec.name in sys.modules and sys.modules[spec.name] is not self:
                    raise ValueError(f"module {spec.name!r} substituted in sys.modules")
                namespace.update(changed)
                if isinstance(self, _DeferredModule):
                    object.__setattr__(self, "__class__", plain)
        return getattr(self, attribute)

    def __delattr__(self, attribute: str) -> None:
        self.__getattribute__(attribute)
        delattr(self, attribute)


class _DeferringFinder(importlib.abc.MetaPathFinder):
    """Finds the named modules as the rest of ``sys.meta_path`` does, loaded lazily."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return None  # a package without Python source, a namespace: imported as it is
        spec.loader = _LockedLazyLoader(spec.loader)
        return spec


# Great Expectations must never phone home: patient data and metadata stay on our hosts.
os.environ["GX_ANALYTICS_ENABLED"] = "False"
_finder = _DeferringFinder(DEFERRED_MODULES)
sys.meta_path.insert(0, _finder)
try:
    import great_expectations as gx
finally:
    sys.meta_path.remove(_finder)

__all__ = ["DEFERRED_MODULES", "gx"]
