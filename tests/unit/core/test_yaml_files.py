"""The fast YAML reader gives the same values as PyYAML's safe loader, and the same helpful
error for a broken file."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from etl.core import yaml_files

pytestmark = pytest.mark.unit

scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
documents = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(documents)
def test_values_are_those_of_the_safe_loader(document):
    text = yaml.safe_dump(document, allow_unicode=True)
    assert yaml_files.safe_load(text) == yaml.safe_load(text)


def test_a_broken_file_gets_the_error_that_quotes_its_lines():
    broken = "patient:\n  columns: {given_name: fornamn\n  family_name: efternamn\n"
    with pytest.raises(yaml.YAMLError) as error:
        yaml_files.safe_load(broken)
    assert "given_name" in str(error.value)  # the quoted line, not only a position


def test_arbitrary_objects_are_refused():
    with pytest.raises(yaml.YAMLError):
        yaml_files.safe_load("!!python/object/apply:os.system ['true']")


def test_every_yaml_file_of_the_project_reads_the_same_with_both_parsers():
    from etl.settings import PROJECT_ROOT

    files = [
        path
        for folder in ("mappings", "expectations")
        for path in sorted((PROJECT_ROOT / folder).rglob("*.yaml"))
    ]
    assert len(files) > 100
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert yaml_files.safe_load(text) == yaml.safe_load(text), path
