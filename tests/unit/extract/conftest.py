"""Fixtures shared by the extract tests."""

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def tiny_estate(estate_of) -> Path:
    """A 120-person estate (seed 3), shared read-only: copy it to change it."""
    return estate_of(120, 3)
