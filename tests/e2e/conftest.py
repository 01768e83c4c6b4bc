"""One headless chromium per browser test module."""

from __future__ import annotations

import pytest

from tests.e2e.browser import quit_chromium, start_chromium


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp("chromium"))
    yield driver
    quit_chromium(driver)
