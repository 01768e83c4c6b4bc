"""Data Docs made safe to open offline (``etl.report.data_docs``): no external asset remains."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from etl.report.data_docs import (
    CONTENT_SECURITY_POLICY,
    build_data_docs,
    external_references,
    make_offline,
    observed,
    offline_html,
)
from etl.report.validation import CheckLine, SystemSummary, Trend, ValidationSummary
from etl.settings import Settings
from etl.validate.suites import suite_checks

pytestmark = pytest.mark.unit

HOSTILE_PAGE = """<!DOCTYPE html>
<html><head>
<title>t</title>
<link rel="stylesheet" href="https://cdn.example.org/bootstrap.css">
<link rel="stylesheet" href="//cdn.example.org/protocol-relative.css">
<link rel="stylesheet" href="static/styles/local.css">
<link rel="icon" href="./static/images/favicon.ico">
<script src="https://code.example.org/jquery.js"></script>
<script>document.write('<img src="https://track.example.org/p.gif">')</script>
<noscript><img src="https://track.example.org/n.gif"></noscript>
<style>
@import url("https://fonts.example.org/font.css");
@import 'http://fonts.example.org/other.css';
.a { background: url('https://assets.example.org/bg.png') no-repeat; }
.b { background: url(static/images/local.png); }
</style>
<meta http-equiv="refresh" content="0; url=https://elsewhere.example.org/">
<base href="https://example.org/">
</head><body onload="alert(1)">
<img src="https://assets.example.org/logo.png" alt="logo">
<img srcset="https://a.example.org/1.png 1x, https://a.example.org/2.png 2x" alt="x">
<img src="static/images/local.png" alt="local">
<a href="https://greatexpectations.io/newsletter">Subscribe</a>
<a href="validations/page.html">a local page</a>
<div style="background-image: url(https://assets.example.org/x.png)">styled</div>
<iframe src="https://frame.example.org/"></iframe>
<form action="https://collect.example.org/"><input type="image" src="//x.example.org/b.png"></form>
<table id="t1" class="x" data-toggle="table">
</table>
<script>
  $('#t1').bootstrapTable(
    Object.assign(
      {
        columns: [{'field': 'validation_success', 'title': 'Status'},
                  {'field': 'suite', 'title': 'Suite <b>'}],
        data: [{'validation_success': '<i class="fas fa-times"></i>',
                '_validation_success_text': 'Failed',
                'suite': '<a href="expectations/patient.html">patient</a>',
                '_table_row_link_path': 'validations/patient/r/t/b.html'}],
        toolbar: '#t1-toolbar'
      },
      {'search': 'true'}
    )
  );
</script>
<!-- <script src="https://hidden.example.org/in-a-comment.js"></script> -->
</body></html>
"""


def test_offline_page_has_no_external_reference_and_keeps_local_ones(tmp_path):
    page = offline_html(HOSTILE_PAGE, logo="static/images/logo-long.png")
    path = tmp_path / "page.html"
    path.write_text(page, "utf-8")
    assert external_references(tmp_path) == []
    for gone in ("<script", "<noscript", "<iframe", "onload", "example.org", "<base", "refresh"):
        assert gone not in page
    for kept in (
        'href="static/styles/local.css"',
        'href="./static/images/favicon.ico"',
        'src="static/images/local.png"',
        'href="validations/page.html"',
        "url(static/images/local.png)",
    ):
        assert kept in page
    assert 'src="static/images/logo-long.png"' in page  # the CDN logo, replaced by a local copy
    assert "<span>Subscribe</span>" in page  # an external link keeps its text, not its target
    assert CONTENT_SECURITY_POLICY in page


def test_bootstrap_tables_become_static_html(tmp_path):
    page = offline_html(HOSTILE_PAGE)
    assert "<th>Status</th><th>Suite &lt;b&gt;</th><th>page</th>" in page
    assert "<td>Failed</td>" in page
    assert '<a href="expectations/patient.html">patient</a>' in page
    assert '<a href="validations/patient/r/t/b.html">open</a>' in page


SVG = '<svg xmlns="http://www.w3.org/2000/svg"><image href="https://x.org/i.png"/></svg>'


@pytest.mark.parametrize(
    ("name", "content", "references"),
    [
        pytest.param("a.html", '<script src="https://x.org/a.js"></script>', 1, id="script"),
        pytest.param("b.html", '<link href="//x.org/b.css" rel="stylesheet">', 1, id="relative"),
        pytest.param("c.html", '<img srcset="https://x.org/1.png 1x, b.png 2x">', 1, id="srcset"),
        pytest.param(
            "d.html", "<style>p { background: url('http://x.org/p') }</style>", 1, id="css"
        ),
        pytest.param("e.html", '<p style="background:url(https://x.org/p.png)">', 1, id="style"),
        pytest.param(
            "f.css", "@import url(https://x.org/f.css); a { b: url(//x.org/i) }", 2, id="f"
        ),
        pytest.param("g.svg", SVG, 1, id="svg-href-not-namespace"),
        pytest.param("h.html", '<a href="https://x.org/">x</a>', 1, id="link"),
        pytest.param("i.html", '<a href="page.html"><img src="static/i.png"></a>', 0, id="local"),
    ],
)
def test_external_reference_check_is_not_blind(tmp_path, name, content, references):
    (tmp_path / name).write_text(content, "utf-8")
    assert len(external_references(tmp_path)) == references


def test_make_offline_rewrites_a_site_in_place(tmp_path):
    (tmp_path / "static" / "styles").mkdir(parents=True)
    (tmp_path / "static" / "images").mkdir(parents=True)
    (tmp_path / "static" / "styles" / "s.css").write_text(
        ".x { background: url('https://s3.example.org/logo.png') }", "utf-8"
    )
    (tmp_path / "static" / "images" / "unused.gif").write_bytes(b"GIF89a")
    (tmp_path / "index.html").write_text(HOSTILE_PAGE, "utf-8")
    make_offline(tmp_path)
    assert external_references(tmp_path) == []
    assert not (tmp_path / "static" / "images" / "unused.gif").exists()


def test_gx_templates_do_reference_cdns():
    """What the post-processing is for: GX's own page templates load assets from CDNs."""
    import great_expectations

    templates = Path(great_expectations.__file__).parent / "render" / "view" / "templates"
    assert "https://" in (templates / "js_script_imports.j2").read_text("utf-8")


@pytest.mark.parametrize(
    ("failed", "waived", "breached", "expected"),
    [
        (0, 0, False, "no row of 400 fails; within the gate threshold of 5.00%"),
        (3, 0, False, "fewer than 5 of 400 rows fail; within the gate threshold of 5.00%"),
        (3, 1, False, "fewer than 5 of 400 rows fail, some waived; within"),
        (40, 2, True, "40 of 400 rows fail (10.00%), 2 waived; over the gate threshold"),
    ],
    ids=["none", "withheld", "withheld-waived", "over"],
)
def test_observed_value_is_counts_only(failed, waived, breached, expected):
    row = {
        "rows_evaluated": 400,
        "rows_failed": failed,
        "rows_waived": waived,
        "max_failure_rate": 0.05,
        "is_breached": breached,
    }
    assert observed(row).startswith(expected)
    assert "<" not in observed(row)  # GX inserts observed values into pages unescaped


def _build_site(settings: Settings, site: Path) -> Path:
    """GX's site for one system's patient checks, three of them failing."""
    checks = suite_checks(settings.expectations_dir, "patient")
    at = dt.datetime(2026, 7, 1, 12, 0)
    rows = [
        {
            "entity": "patient",
            "check_name": check,
            "rows_evaluated": 400,
            "rows_failed": failed,
            "rows_waived": 0,
            "max_failure_rate": 0.05,
            "is_breached": failed > 20,
            "evaluated_at": at,
        }
        for check, failed in zip(checks, [0, 3, 40, *[0] * len(checks)], strict=False)
    ]
    system = SystemSummary(
        system="elvis",
        batch_id="elvis__run",
        run_id="run",
        status="loaded",
        gate="breach",
        thresholds_digest=None,
        mapping_version=None,
        evaluated_at=at,
        checks=[
            CheckLine(
                entity="patient",
                check_name=row["check_name"],
                dimension=None,
                severity="error",
                rows_evaluated=400,
                rows_failed=row["rows_failed"],
                rows_waived=0,
                failure_rate=None,
                failure_rate_below=None,
                max_failure_rate=0.05,
                is_breached=row["is_breached"],
                in_data_docs=True,
            )
            for row in rows
        ],
        trend=Trend(previous_batch_id=None, is_available=False, note="n/a"),
        accounting=[],
    )
    summary = ValidationSummary(
        run_label="run", run_id="run", data_docs="", mapping_docs=None, systems=[system]
    )
    return build_data_docs(settings, summary, {"elvis__run": rows}, site)


def test_gx_built_site_is_offline(tmp_path):
    settings = Settings(home=tmp_path)
    index = _build_site(settings, tmp_path / "site")
    pages = list((tmp_path / "site").rglob("*.html"))
    assert len(pages) >= 3  # index, the suite, the validation result
    assert external_references(tmp_path / "site") == []
    for page in pages:
        text = page.read_text("utf-8")
        assert "<script" not in text and CONTENT_SECURITY_POLICY in text
    assert "elvis__run" in index.read_text("utf-8")  # the index table, written as static HTML


def test_a_local_link_to_a_file_the_site_lacks_is_dropped_and_one_it_has_kept():
    """GX's validation pages name their favicon one folder too shallow: a 404 for every reader."""
    page = (
        '<html><head><link rel="shortcut icon" href="../static/images/favicon.ico" />'
        '<link rel="stylesheet" href="../static/styles/data_docs.css?v=1" /></head>'
        '<body><a href="../index.html#top">index</a></body></html>'
    )
    present = {"../static/styles/data_docs.css", "../index.html"}
    cleaned = offline_html(page, exists=lambda reference: reference.split("?")[0] in present)
    assert "favicon.ico" not in cleaned
    assert 'href="../static/styles/data_docs.css?v=1"' in cleaned
    assert 'href="../index.html#top"' in cleaned  # links are checked by the crawler, kept here


def _site_files(site: Path) -> dict[str, bytes]:
    return {path.relative_to(site).as_posix(): path.read_bytes() for path in site.rglob("*.html")}


def test_templates_compiled_once_render_the_same_bytes_as_gx_compiling_them(tmp_path, monkeypatch):
    """The shared compiled templates (``compiled_templates``): a site built from them is byte for
    byte the site GX renders compiling every template itself, and a second build compiles none."""
    import itertools
    import uuid

    import jinja2
    from great_expectations.render.view import view

    from etl.report import data_docs

    def numbered_uuids():  # GX gives collapsible blocks random ids: number them instead
        counter = itertools.count()
        monkeypatch.setattr(view, "uuid4", lambda: uuid.UUID(int=next(counter)))

    compiles = []
    compile_template = jinja2.Environment.compile

    def counted(environment, *args, **kwargs):
        compiles.append(args[1] if len(args) > 1 else kwargs.get("name"))
        return compile_template(environment, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "compile", counted)
    settings = Settings(home=tmp_path)

    monkeypatch.setattr(data_docs, "compiled_templates", None)  # GX's own way
    numbered_uuids()
    uncached = _site_files(_build_site(settings, tmp_path / "uncached").parent)
    compiled_by_gx = len(compiles)

    monkeypatch.setattr(data_docs, "compiled_templates", data_docs.CompiledTemplates())
    sites = []
    for name in ("first", "second"):
        numbered_uuids()
        compiles.clear()
        sites.append(_site_files(_build_site(settings, tmp_path / name).parent))
        if name == "first":
            compiled_first = len(compiles)

    assert len(uncached) >= 3
    assert sites[0] == uncached and sites[1] == uncached
    assert 0 < compiled_first < compiled_by_gx  # each template once, not once per view
    assert len(data_docs.compiled_templates) == compiled_first
    assert compiles == []  # the second build compiled nothing
