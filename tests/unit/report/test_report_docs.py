"""Generated mapping documentation (``etl.report.docs``): complete, self-contained, escaped."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from etl.catalog import load_catalog
from etl.core.vocabulary import REGISTRY
from etl.report.docs import write_docs
from etl.report.render import markdown_text

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
MAPPINGS = ROOT / "mappings"
# Elements that would fetch or run something: none may appear in a generated page.
LOADING_ELEMENTS = {
    "script",
    "link",
    "img",
    "iframe",
    "object",
    "embed",
    "audio",
    "video",
    "source",
    "track",
    "frame",
    "base",
    "form",
    "svg",
    "picture",
    "use",
}


# Tags whose boundaries separate words in a rendered page (inline tags such as code do not).
_CELL_BREAKS = {"td", "th", "tr", "p", "li", "br", "h1", "h2", "h3", "ul", "table", "title"}


class _Page(HTMLParser):
    """Text, tags and attributes of a page, for checks that do not depend on formatting."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        if tag in _CELL_BREAKS:
            self.text.append(" ")
        self.tags.append(tag)
        self.attributes += [(tag, name, value or "") for name, value in attrs]
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        if tag in _CELL_BREAKS:
            self.text.append(" ")
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.style += data
        else:
            self.text.append(data)

    @classmethod
    def of(cls, html: str) -> _Page:
        page = cls()
        page.feed(html)
        page.close()
        return page

    @property
    def plain(self) -> str:
        return " ".join("".join(self.text).split())


def _same_spacing(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(MAPPINGS)


@pytest.fixture(scope="module")
def docs(catalog, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs")
    write_docs(catalog, out)
    return out


def test_one_html_and_one_markdown_file_per_system_and_an_index(catalog, docs):
    expected = {"index.html", "index.md"} | {
        f"{name}.{suffix}" for name in catalog.systems for suffix in ("html", "md")
    }
    assert {path.name for path in docs.iterdir()} == expected
    index = _Page.of((docs / "index.html").read_text("utf-8"))
    links = {value for tag, name, value in index.attributes if tag == "a" and name == "href"}
    assert {f"{name}.html" for name in catalog.systems} <= links


def test_every_target_column_and_every_note_is_documented(catalog, docs):
    for name, system in catalog.systems.items():
        page = _Page.of((docs / f"{name}.html").read_text("utf-8")).plain
        markdown = (docs / f"{name}.md").read_text("utf-8")
        texts = []
        for mapping in system.entities.values():
            texts += [mapping.entity, mapping.description]
            for column in mapping.columns:
                texts += [column.target, column.note, column.transform]
                texts += [REGISTRY[column.transform].summary.replace("``", "")]
                texts += column.source_columns
            texts += [note for identifier in mapping.identifiers for note in (identifier.note,)]
            texts += [identifier.source for identifier in mapping.identifiers]
            texts += [rule.note for rule in mapping.exclude] + [
                rule.rule for rule in mapping.exclude
            ]
            texts += [reference.note for reference in mapping.references]
        for text in filter(None, texts):
            assert _same_spacing(text) in page, f"{name}.html lacks {text!r}"
            assert _same_spacing(markdown_text(text)) in _same_spacing(markdown), (
                f"{name}.md lacks {text!r}"
            )


def test_every_declared_source_column_and_dataset_is_documented(catalog, docs):
    for name, system in catalog.systems.items():
        page = _Page.of((docs / f"{name}.html").read_text("utf-8")).plain
        for dataset_name, dataset in system.spec.datasets.items():
            assert dataset_name in page and dataset.source_name in page
            if hasattr(dataset, "encoding"):
                assert dataset.encoding in page
            for column in system.spec.dataset_columns(dataset_name):
                assert column in page


def test_crosswalks_are_documented_with_their_code_counts(catalog, docs):
    page = _Page.of((docs / "melior.html").read_text("utf-8")).plain
    table = catalog.crosswalks["melior_lab_local_to_npu"]
    assert "mappings/crosswalks/melior_lab_local_to_npu.csv observation.npu_code" in page
    assert f"{len(table)} {len(set(table.values()))}" in page


def test_html_loads_nothing_from_anywhere(docs):
    for path in docs.glob("*.html"):
        html = path.read_text("utf-8")
        page = _Page.of(html)
        assert not LOADING_ELEMENTS & set(page.tags), path.name
        assert "http://" not in html and "https://" not in html, path.name
        for tag, name, value in page.attributes:
            if name in {"href", "src", "srcset", "action", "data", "poster"}:
                assert "//" not in value and ":" not in value, (path.name, tag, value)
            assert not name.startswith("on"), (path.name, tag, name)
        assert "url(" not in page.style and "@import" not in page.style, path.name
        policy = [v for t, n, v in page.attributes if t == "meta" and n == "content"]
        assert any("default-src 'none'" in value for value in policy), path.name


def test_docs_are_reproducible(catalog, docs, tmp_path):
    """No timestamps or unordered output: regenerating gives the same bytes (diffable)."""
    write_docs(catalog, tmp_path)
    for path in docs.iterdir():
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name


HOSTILE_SYSTEM = """
system: hostile
title: "Hostile <b>system</b> & co"
format: files
connection: {path_env: VARDFLYTT_SOURCE_HOSTILE_PATH}
datasets:
  patient:
    file: PAT.TXT
    format: delimited
    encoding: utf-8
    key: [PATNR]
    columns: [PATNR, PNR, EFTERNAMN, KON, LEFTOVER]
  orphan:
    file: ORPHAN.TXT
    format: delimited
    encoding: utf-8
    key: [ID]
    columns: [ID, WHATEVER]
"""
HOSTILE_PATIENT = """
description: '<img src="https://tracker.example/x.png"> description'
dataset: patient
identifiers:
  - {source: PNR, note: "</td><script>alert('id')</script>"}
columns:
  - target: family_name
    source: EFTERNAMN
    note: "a | pipe, <script>alert(1)</script> and [a link](https://example.com) ![img](http://example.com/i.png)"
  - target: sex
    source: KON
    transform: map_values
    args: {values: {"<M>": male, K: female}}
"""


@pytest.fixture
def hostile_docs(tmp_path) -> Path:
    mappings = tmp_path / "mappings"
    (mappings / "hostile").mkdir(parents=True)
    (mappings / "hostile" / "system.yaml").write_text(HOSTILE_SYSTEM, "utf-8")
    (mappings / "hostile" / "patient.yaml").write_text(HOSTILE_PATIENT, "utf-8")
    write_docs(load_catalog(mappings), tmp_path / "docs")
    return tmp_path / "docs"


def test_html_escapes_mapping_content(hostile_docs):
    for name in ("hostile.html", "index.html"):
        html = (hostile_docs / name).read_text("utf-8")
        page = _Page.of(html)
        assert not LOADING_ELEMENTS & set(page.tags), name
        assert "<script>" not in html and "<b>" not in html and "<img" not in html, name
    html = (hostile_docs / "hostile.html").read_text("utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=" in html
    assert "Hostile &lt;b&gt;system&lt;/b&gt; &amp; co" in html
    plain = _Page.of(html).plain
    assert "a | pipe, <script>alert(1)</script>" in plain  # shown as text, exactly
    assert '"<M>": "male"' in plain


def test_markdown_escapes_mapping_content(hostile_docs):
    markdown = (hostile_docs / "hostile.md").read_text("utf-8")
    assert "<script" not in markdown and "<img" not in markdown
    assert "](" not in markdown.replace("\\](", "")  # no live links or images
    row = next(line for line in markdown.splitlines() if line.startswith("| family_name"))
    unescaped_pipes = row.replace("\\|", "").count("|")
    assert unescaped_pipes == 5  # four cells, whatever the note holds


def test_unmapped_columns_and_unused_datasets_are_listed(hostile_docs):
    page = _Page.of((hostile_docs / "hostile.html").read_text("utf-8")).plain
    assert "Unmapped source columns: LEFTOVER." in page
    assert "Unmapped source columns: ID, WHATEVER." in page
    markdown = (hostile_docs / "hostile.md").read_text("utf-8")
    assert "Unmapped source columns: LEFTOVER." in markdown
    index = _Page.of((hostile_docs / "index.html").read_text("utf-8")).plain
    assert "7 3" in index  # declared columns, unmapped columns


def test_the_documentation_says_how_a_row_belongs_to_a_care_unit():
    from etl.catalog import UnitOfRow
    from etl.report.docs import describe_care_unit

    assert describe_care_unit(None) == ""
    assert describe_care_unit(UnitOfRow(via="encounter_id")) == (
        "the unit of its encounter (encounter_id)."
    )
    assert describe_care_unit(UnitOfRow(column="to_care_unit_hsa_id", note="Receiving.")) == (
        "its own unit, the HSA-id in to_care_unit_hsa_id. Receiving."
    )
    assert "patient-level" in describe_care_unit(UnitOfRow(follows="patient"))
    assert "first wave" in describe_care_unit(UnitOfRow(follows="patient_care"))
    assert "SE2321000131-F1" in describe_care_unit(UnitOfRow(fixed="SE2321000131-F1"))
