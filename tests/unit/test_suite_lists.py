"""The suite's own lists in tests/conftest.py name tests that exist: an entry left behind by a
rename would silently put a slow test back into ``make test-fast`` or lose a file's place in the
longest-first order."""

from __future__ import annotations

import re

import pytest

from tests.conftest import LONGEST_FIRST, ROOT, SLOW

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("entry", sorted(SLOW))
def test_every_slow_entry_names_an_existing_file_and_test(entry):
    path, _, name = entry.partition("::")
    source = ROOT / path
    assert source.is_file(), f"SLOW names {path}, which does not exist"
    if name:
        assert re.search(rf"^def {re.escape(name)}\(", source.read_text("utf-8"), re.M), (
            f"SLOW names {name}, which {path} does not define"
        )


@pytest.mark.parametrize("path", LONGEST_FIRST)
def test_every_longest_first_entry_is_an_existing_file(path):
    assert (ROOT / path).is_file(), f"LONGEST_FIRST names {path}, which does not exist"
