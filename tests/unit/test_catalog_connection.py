"""Where a source is read from follows from its name unless its ``system.yaml`` says otherwise.

``etl.catalog.conventional_connection``: a SQL source's URL from ``VARDFLYTT_SOURCE_<SYSTEM>_URL``
(default the estate's ``<system>/<system>.sqlite``), a file source's folder from
``VARDFLYTT_SOURCE_<SYSTEM>_PATH`` (default the estate's ``<system>``). A ``connection:`` block
overrides key by key; ``null`` removes a default.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from etl.catalog import Connection, SourceFormat, conventional_connection, load_catalog
from etl.layout import SYSTEM_FILE, system_directories

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(MAPPINGS)


@pytest.mark.parametrize(
    ("system", "expected"),
    [
        (
            "elvis",
            Connection(
                url_env="VARDFLYTT_SOURCE_ELVIS_URL",
                default_url="sqlite:///{estate_dir}/elvis/elvis.sqlite",
            ),
        ),
        (
            "dental_sodra_alvsborg",
            Connection(
                url_env="VARDFLYTT_SOURCE_DENTAL_SODRA_ALVSBORG_URL",
                default_url="sqlite:///{estate_dir}/dental_sodra_alvsborg/dental_sodra_alvsborg.sqlite",
            ),
        ),
        (
            "journal_d",
            Connection(
                path_env="VARDFLYTT_SOURCE_JOURNAL_D_PATH", default_path="{estate_dir}/journal_d"
            ),
        ),
        (
            "mikrobiologi_su",
            Connection(
                path_env="VARDFLYTT_SOURCE_MIKROBIOLOGI_SU_PATH",
                default_path="{estate_dir}/mikrobiologi_su",
            ),
        ),
    ],
    ids=["sql", "sql-archetype", "files", "files-archetype"],
)
def test_the_connection_of_a_repository_system_is_what_its_block_used_to_say(
    catalog, system, expected
):
    assert catalog.system(system).spec.connection == expected


def test_every_repository_system_resolves_to_a_variable_and_a_default_of_its_format(catalog):
    assert len(catalog.systems) == len(system_directories(MAPPINGS))
    for name, system in catalog.systems.items():
        connection = system.spec.connection
        variable = f"VARDFLYTT_SOURCE_{name.upper()}"
        if system.spec.format is SourceFormat.SQL:
            assert (connection.url_env, connection.path_env) == (f"{variable}_URL", None), name
            assert connection.default_url and f"/{name}/" in connection.default_url, name
        else:
            assert (connection.path_env, connection.url_env) == (f"{variable}_PATH", None), name
            assert connection.default_path and connection.default_path.endswith(f"/{name}"), name


def test_no_system_yaml_restates_the_convention(catalog):
    """A ``connection:`` block is written only for what differs from the convention."""
    for name, system in catalog.systems.items():
        directory = system.directory
        content = yaml.safe_load((directory / SYSTEM_FILE).read_text(encoding="utf-8"))
        block = content.get("connection") or {}
        convention = conventional_connection(name, system.spec.format)
        restated = sorted(key for key, value in block.items() if convention.get(key) == value)
        assert restated == [], f"{directory.name}/{SYSTEM_FILE} restates {restated}"


SYSTEM = """\
system: kassa
title: A file source for connection tests
format: {format}
{connection}datasets:
  patient:
    {dataset}
    key: [PATNR]
    columns: [PATNR, PNR]
"""
DATASETS = {
    "files": "file: PAT.TXT\n    format: delimited\n    encoding: utf-8",
    "sql": "table: patient",
}
ENTITY = "dataset: patient\nidentifiers:\n  - {source: PNR}\ncolumns: []\n"


def _load(tmp_path: Path, source_format: str, connection: str = "") -> Connection:
    folder = tmp_path / "kassa"
    folder.mkdir()
    (folder / SYSTEM_FILE).write_text(
        SYSTEM.format(format=source_format, connection=connection, dataset=DATASETS[source_format]),
        encoding="utf-8",
    )
    (folder / "patient.yaml").write_text(ENTITY, encoding="utf-8")
    return load_catalog(tmp_path).system("kassa").spec.connection


@pytest.mark.parametrize(
    ("source_format", "connection", "expected"),
    [
        (
            "files",
            "",
            Connection(path_env="VARDFLYTT_SOURCE_KASSA_PATH", default_path="{estate_dir}/kassa"),
        ),
        (
            "sql",
            "",
            Connection(
                url_env="VARDFLYTT_SOURCE_KASSA_URL",
                default_url="sqlite:///{estate_dir}/kassa/kassa.sqlite",
            ),
        ),
        (
            "files",
            "connection: {default_path: /srv/exports/kassa}\n",
            Connection(path_env="VARDFLYTT_SOURCE_KASSA_PATH", default_path="/srv/exports/kassa"),
        ),
        (
            "sql",
            "connection: {url_env: KASSA_DATABASE_URL, default_url: null}\n",
            Connection(url_env="KASSA_DATABASE_URL"),
        ),
    ],
    ids=["files-by-convention", "sql-by-convention", "override-one-key", "null-removes-default"],
)
def test_a_connection_block_overrides_the_convention_key_by_key(
    tmp_path, source_format, connection, expected
):
    assert _load(tmp_path, source_format, connection) == expected
