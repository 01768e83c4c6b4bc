"""Arrow's memory pool as the package chooses it (etl/__init__.py): jemalloc on Linux, which
gives back what a stage freed, unless the operator chose one; decided before pyarrow loads."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pytest

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(
        not sys.platform.startswith("linux") or "jemalloc" not in pa.supported_memory_backends(),
        reason="the package chooses jemalloc on Linux only, where pyarrow bundles it",
    ),
]

POOL_AFTER_IMPORT = (
    "import etl, pyarrow;"
    "from etl.core.memory import release_unused;"
    "pyarrow.array(['x'] * 1000);"
    "release_unused();"
    "print(pyarrow.default_memory_pool().backend_name)"
)


def _pool_in_fresh_interpreter(**env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    done = subprocess.run(
        [sys.executable, "-c", POOL_AFTER_IMPORT],
        env=environment | env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_importing_the_package_makes_arrow_use_jemalloc():
    assert _pool_in_fresh_interpreter() == "jemalloc"


def test_the_operators_choice_of_pool_is_kept():
    assert _pool_in_fresh_interpreter(ARROW_DEFAULT_MEMORY_POOL="system") == "system"
