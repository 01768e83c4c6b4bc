"""A worker process starts with the catalog its parent parsed (etl/pipeline.py ``catalog_seed``,
``seed_catalog``; etl/parallel.py hands it to each worker), and parses the mappings again as soon
as a file differs from the ones it was parsed from."""

from __future__ import annotations

import pickle
import shutil

import pytest

from etl import pipeline
from etl.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.unit


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    shutil.copytree(PROJECT_ROOT / "mappings", tmp_path / "mappings")
    monkeypatch.setattr(pipeline, "_catalogs", pipeline.Memo(4))  # this process's, emptied
    return Settings(home=tmp_path / "home", mappings_dir=tmp_path / "mappings")


def test_a_seeded_catalog_is_used_until_a_mapping_changes(settings, monkeypatch):
    seed = pipeline.catalog_seed(settings)
    assert seed is not None
    # As a worker gets it: pickled, into a process that has parsed nothing.
    monkeypatch.setattr(pipeline, "_catalogs", pipeline.Memo(4))
    pipeline.seed_catalog(pickle.loads(pickle.dumps(seed)))
    parsed = []
    real = pipeline.load_catalog

    def load_catalog(root):
        parsed.append(root)
        return real(root)

    monkeypatch.setattr(pipeline, "load_catalog", load_catalog)
    found = pipeline.catalog(settings)
    assert parsed == []  # the seed, not the files
    assert set(found.system("elvis").entities) == set(seed[1].system("elvis").entities)

    system = settings.mappings_dir / "elvis" / "system.yaml"
    system.write_text(system.read_text("utf-8") + "\n# edited\n", "utf-8")
    pipeline.catalog(settings)
    assert parsed == [settings.mappings_dir]  # a changed file: parsed again, not the seed


def test_no_seed_leaves_the_process_to_parse(settings, monkeypatch):
    pipeline.seed_catalog(None)
    assert len(pipeline._catalogs) == 0


def test_each_worker_of_a_pool_starts_with_the_seed(settings, monkeypatch):
    from etl import parallel

    seed = pipeline.catalog_seed(settings)
    pool = parallel._pool(2, seed)
    try:
        assert pool._initializer is parallel._init_worker
        environment, given = pool._initargs
    finally:
        pool.shutdown()
    assert given is seed
    # What a worker's initializer does with it (here, in this process).
    monkeypatch.setattr(pipeline, "_catalogs", pipeline.Memo(4))
    monkeypatch.setattr(pipeline, "load_catalog", lambda root: pytest.fail("parsed again"))
    monkeypatch.setattr(parallel.os, "environ", dict(parallel.os.environ))
    monkeypatch.setattr("etl.core.files.restrict_umask", lambda: None)  # this process's umask
    monkeypatch.setattr("etl.core.heap.settle", lambda: None)  # and its collector
    parallel._init_worker(environment, given)
    assert pipeline.catalog(settings) is seed[1]
