"""A process that forks Airflow's task runners parses the mappings first (etl/airflow_catalog.py,
last of ``TASK_PRELOAD``); mappings that do not parse leave it to the tasks, never stop it."""

from __future__ import annotations

import logging
import shutil

import pytest

from etl import airflow_catalog, pipeline
from etl.airflow_main import TASK_PRELOAD
from etl.settings import PROJECT_ROOT

pytestmark = pytest.mark.unit


@pytest.fixture
def mappings(tmp_path, monkeypatch):
    folder = tmp_path / "mappings"
    shutil.copytree(PROJECT_ROOT / "mappings", folder)
    monkeypatch.setenv("VARDFLYTT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VARDFLYTT_MAPPINGS_DIR", str(folder))
    monkeypatch.setattr(pipeline, "_catalogs", pipeline.Memo(4))
    return folder


def test_the_catalog_is_parsed_before_the_fork_and_used_by_the_tasks(mappings, monkeypatch):
    assert TASK_PRELOAD[-1] == "etl.airflow_catalog"  # after the stages' modules
    assert airflow_catalog.preload()
    # A task forked after it: the same files, no parsing.
    monkeypatch.setattr(pipeline, "load_catalog", lambda root: pytest.fail("parsed again"))
    from etl.settings import get_settings

    assert pipeline.catalog(get_settings()).system("elvis").entities


def test_mappings_that_do_not_parse_are_left_to_the_tasks(mappings, caplog):
    (mappings / "elvis" / "system.yaml").write_text("system: [unclosed\n", "utf-8")
    with caplog.at_level(logging.WARNING, logger="etl.airflow_catalog"):
        assert airflow_catalog.preload() is False
    assert "were not read ahead" in caplog.text
    assert len(pipeline._catalogs) == 0
