"""Great Expectations Data Docs for a run, from stored counts, made safe to open offline.

The validation results are not re-run: each is built from ``dq_result`` counts (rows evaluated,
failing, waived, the gate decision), so no value, unexpected list or row id can reach a page.
GX's own site builder renders the expectation suite and validation pages and the index.

GX pages link Bootstrap, jQuery, Font Awesome and Vega from CDNs, and images from S3. The
region allows no fetch from the internet (DOMAIN.md, data residency), so :func:`make_offline`
rewrites every page: scripts removed (GX's index tables are turned into static HTML first),
external stylesheets, images and links dropped or replaced by local equivalents, a small inline
stylesheet instead of Bootstrap, and a Content-Security-Policy that forbids any other fetch.
:func:`external_references` finds anything left, and the build fails if it finds something.
"""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import html
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, wraps
from html.parser import HTMLParser
from pathlib import Path
from types import CodeType
from typing import TYPE_CHECKING, Any

from jinja2.bccache import Bucket, BytecodeCache

from etl.core.memo import Memo
from etl.report.masking import MIN_COUNT
from etl.settings import Settings
from etl.validate.suites import (
    expectation_checks,
    read_suite_definition,
    resolved_expectations,
    suite_path,
)

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite
    from great_expectations.data_context.types.resource_identifiers import (
        ValidationResultIdentifier,
    )

    from etl.report.validation import ValidationSummary

# GX must never phone home; it narrates every store operation at INFO.
os.environ["GX_ANALYTICS_ENABLED"] = "False"
logging.getLogger("great_expectations").setLevel(logging.WARNING)

SITE_NAME = "vardflytt"
LOCAL_LOGO = "static/images/logo-long.png"

# A URL that leaves the machine: http(s), any other scheme with a host, or protocol-relative.
_EXTERNAL_URL = re.compile(r"^\s*(?:https?:|(?:[a-z][a-z0-9+.-]*:)?//)", re.IGNORECASE)
_CSS_URL = re.compile(r"""url\(\s*(['"]?)(.*?)\1\s*\)""", re.IGNORECASE | re.DOTALL)
_CSS_IMPORT = re.compile(r"""@import\s+(?:url\()?\s*['"]?([^'");\s]+)[^;]*;""", re.IGNORECASE)
_URL_ATTRIBUTES = {
    "src",
    "href",
    "srcset",
    "action",
    "formaction",
    "poster",
    "data",
    "background",
    "xlink:href",
    "codebase",
    "cite",
    "manifest",
    "ping",
}
_FETCHING_TAGS = {"link", "script", "iframe", "frame", "embed", "object", "audio", "video"}
_VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self'; base-uri 'none'; form-action 'none'"
)
# Stands in for Bootstrap and Font Awesome: enough layout to read the pages.
OFFLINE_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2430;
       margin: 0; line-height: 1.45; }
.container-fluid { padding: 0 1.2rem; }
.row { display: flex; flex-wrap: wrap; }
.col-md-2, .col-lg-2 { flex: 0 0 15rem; max-width: 15rem; }
.col-md-10, .col-lg-10 { flex: 1 1 0; min-width: 0; }
.col-12, .col-sm-12, .col-xs-12 { width: 100%; }
nav.navbar { display: flex; align-items: center; gap: 1rem; padding: .5rem 1.2rem;
             border-bottom: 1px solid #d7dce3; }
.navbar-brand img { height: 32px; }
ol.breadcrumb, ul.nav { list-style: none; padding: 0; margin: 0; display: flex; flex-wrap: wrap;
                        gap: .6rem; }
.nav-pills, .ge-navigation-sidebar-link { display: block; }
.card { border: 1px solid #d7dce3; border-radius: 4px; margin: .8rem 0; }
.card-header { background: #eef1f5; padding: .4rem .8rem; }
.card-body { padding: .6rem .8rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #d7dce3; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #eef1f5; }
.badge { display: inline-block; padding: 0 .35em; border-radius: 3px; background: #eef1f5;
         font-size: .85em; }
.alert { padding: .3rem .5rem; border-radius: 3px; background: #f3f5f8; }
.text-success { color: #1c6b2a; }
.text-danger { color: #8a1c1c; }
.fa-check-circle::before, .fa-check::before { content: "\\2713"; font-style: normal; }
.fa-times::before, .fa-times-circle::before { content: "\\2717"; font-style: normal; }
.fa-exclamation-triangle::before { content: "!"; font-style: normal; }
.d-none, .invisible, .modal, .ge-walkthrough-modal, #ge-cta-footer, footer, .cooltip .top,
.btn { display: none !important; }
.vardflytt-offline-note { background: #fff8e1; border-bottom: 1px solid #e6d9a8;
                          padding: .4rem 1.2rem; font-size: .85rem; }
"""
OFFLINE_NOTE = (
    "Offline copy of Great Expectations Data Docs: built from stored counts only (no values); "
    "scripts, web fonts and every external link removed. Failure counts from 1 to 4 are withheld."
)


class DataDocsError(RuntimeError):
    """The Data Docs could not be built, or still refer to something outside the machine."""


@dataclass(frozen=True)
class ExternalReference:
    path: Path
    reference: str


# --- building ---------------------------------------------------------------------------------


class CompiledTemplates(BytecodeCache):
    """GX's Jinja templates compiled once per process, in memory.

    Every GX view (one per site section, and the index's) makes its own Jinja environment, and
    every build makes new views: without this each build compiled the same templates about 50
    times, a quarter of a pipeline run's CPU. Jinja keys a compiled template by its name and file
    and checks it against the source's checksum, so what is rendered is what compiling it again
    would render; the key also carries the environment's extensions, which change parsing.
    """

    def __init__(self) -> None:
        self._compiled: dict[str, tuple[str, CodeType]] = {}

    def get_bucket(self, environment: Any, name: str, filename: str | None, source: str) -> Bucket:
        extensions = ",".join(sorted(environment.extensions))
        key = f"{self.get_cache_key(name, filename)}:{extensions}"
        bucket = Bucket(environment, key, self.get_source_checksum(source))
        self.load_bytecode(bucket)
        return bucket

    def load_bytecode(self, bucket: Bucket) -> None:
        found = self._compiled.get(bucket.key)
        bucket.code = found[1] if found is not None and found[0] == bucket.checksum else None

    def dump_bytecode(self, bucket: Bucket) -> None:
        if bucket.code is not None:
            self._compiled[bucket.key] = (bucket.checksum, bucket.code)

    def clear(self) -> None:
        self._compiled.clear()

    def __len__(self) -> int:
        return len(self._compiled)


# None: every GX view compiles its templates itself (GX's own behaviour).
compiled_templates: CompiledTemplates | None = CompiledTemplates()


@cache
def _share_compiled_templates() -> None:
    """Give every GX view made from now on :data:`compiled_templates` (once per process)."""
    from great_expectations.render.view.view import DefaultJinjaView

    make_view = DefaultJinjaView.__init__

    @wraps(make_view)
    def with_shared_templates(view: DefaultJinjaView, *args: Any, **kwargs: Any) -> None:
        make_view(view, *args, **kwargs)
        if view.env.bytecode_cache is None:
            view.env.bytecode_cache = compiled_templates

    DefaultJinjaView.__init__ = with_shared_templates  # type: ignore[method-assign,assignment]


# An expectation suite's page as GX renders it depends on the suite alone (its name, meta and
# expectations as added to the context; GX's version): keyed on exactly those, a batch whose
# suites did not change takes their pages from here instead of rendering them again. Each value
# is the page's path under the site and its HTML, before ``make_offline``.
suite_pages = Memo(128)
# ``offline_html`` of a page: keyed on the page's bytes, its logo path, and checked against the
# answers ``exists`` gave for it (the site's files a page links to), so what is returned is what
# rewriting the page again would return.
offline_pages = Memo(256)
# The external references in a page or stylesheet, keyed on its suffix and bytes.
page_references = Memo(1024)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _suite_key(version: str, entity: str, meta: Any, expectations: list[dict]) -> str:
    return _digest(json.dumps([version, entity, meta, expectations], sort_keys=True, default=repr))


@cache
def _documented(expectations_dir: Path, entity: str, _mtime_ns: int) -> frozenset[str]:
    # Reference checks (meta.references) are not GX expectations: the summary shows them.
    return frozenset(expectation_checks(expectations_dir, entity))


def documented_checks(expectations_dir: Path, entity: str) -> frozenset[str]:
    """Check ids of the entity's expectation suite: the checks a Data Docs page can show.

    Problems found while transforming (``source.*``) are not expectations; the steward summary
    shows them.
    """
    path = suite_path(expectations_dir, entity)
    if not path.exists():
        return frozenset()
    return _documented(expectations_dir, entity, path.stat().st_mtime_ns)


def observed(row: dict) -> str:
    """What a Data Docs page shows as the observed value: counts, a withheld count in words."""
    evaluated, failed, waived = row["rows_evaluated"], row["rows_failed"], row["rows_waived"]
    if 0 < failed < MIN_COUNT:
        text = f"fewer than {MIN_COUNT} of {evaluated} rows fail"
    elif failed:
        text = f"{failed} of {evaluated} rows fail ({failed / evaluated:.2%})"
    else:
        text = f"no row of {evaluated} fails"
    if waived:
        text += ", some waived" if 0 < failed < MIN_COUNT else f", {waived} waived"
    if row["max_failure_rate"] is not None:
        verdict = "over" if row["is_breached"] else "within"
        text += f"; {verdict} the gate threshold of {row['max_failure_rate']:.2%}"
    return text


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def build_data_docs(
    settings: Settings, summary: ValidationSummary, results: dict[str, list[dict]], site_dir: Path
) -> Path:
    """Render the run's stored check results with GX's site builder; return ``index.html``.

    One validation result per system and entity, with the suite's own expectation
    configurations and, as each result, only counts (``observed``). An ephemeral context keeps
    GX's stores in memory: nothing is written but the site itself.
    """
    from etl.validate.gx_import import gx  # first: GX imported the project's way

    if site_dir.exists():
        shutil.rmtree(site_dir)
    _share_compiled_templates()
    context = _site_context(site_dir)
    suites: dict[str, ExpectationSuite] = {}
    suite_keys: dict[str, str] = {}  # entity: its page's key in ``suite_pages``
    validations: list[Any] = []  # ValidationResultIdentifier, each of a stored result
    for system in summary.systems:
        by_entity: dict[str, dict[str, dict]] = {}
        for row in results.get(system.batch_id, []):
            by_entity.setdefault(row["entity"], {})[row["check_name"]] = row
        for entity, rows in sorted(by_entity.items()):
            if not documented_checks(settings.expectations_dir, entity):
                continue
            if entity not in suites:
                definition = read_suite_definition(settings.expectations_dir, entity)
                expectations = resolved_expectations(settings.expectations_dir, entity)
                suite_keys[entity] = _suite_key(
                    gx.__version__, entity, definition.get("meta"), expectations
                )
                suites[entity] = context.suites.add(
                    gx.ExpectationSuite(
                        name=entity, expectations=expectations, meta=definition.get("meta")
                    )
                )
            outcomes = _expectation_outcomes(suites[entity], rows)
            if outcomes:
                validations.append(
                    _stored_validation(
                        context, summary, system.system, system.batch_id, entity, rows, outcomes
                    )
                )
    _build_site(context, site_dir, suite_keys, validations)
    index = site_dir / "index.html"
    if not index.exists():
        raise DataDocsError(f"Great Expectations wrote no Data Docs index at {index}")
    make_offline(site_dir)
    return index


def _site_context(site_dir: Path) -> Any:
    """An ephemeral GX context whose one Data Docs site is written to ``site_dir``."""
    from etl.validate.gx_import import gx  # first: GX imported the project's way

    context = gx.get_context(mode="ephemeral")
    context.add_data_docs_site(
        SITE_NAME,
        {
            "class_name": "SiteBuilder",
            # GX reads the key at run time; its TypedDict leaves it out
            "show_how_to_buttons": False,  # type: ignore[typeddict-unknown-key]
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(site_dir),
            },
            "site_index_builder": {
                "class_name": "DefaultSiteIndexBuilder",
                "show_cta_footer": False,
            },
        },
    )
    return context


def _expectation_outcomes(suite: ExpectationSuite, rows: dict[str, dict]) -> list[Any]:
    """Each expectation of the suite that has a stored check row, as a GX result holding only
    counts; an expectation without a check finds no row and is left out."""
    from etl.validate.gx_import import gx  # noqa: F401  # first: GX imported the project's way

    # isort: split
    from great_expectations.core.expectation_validation_result import (
        ExpectationValidationResult,
    )

    outcomes = []
    for expectation in suite.expectations:
        configuration = expectation.configuration
        check_row = rows.get((configuration.meta or {}).get("check"))  # type: ignore[arg-type]
        if check_row is None:
            continue
        result = {
            "observed_value": observed(check_row),
            "element_count": check_row["rows_evaluated"],
        }
        if not 0 < check_row["rows_failed"] < MIN_COUNT and check_row["rows_evaluated"]:
            result["unexpected_count"] = check_row["rows_failed"]
            result["unexpected_percent"] = (
                100 * check_row["rows_failed"] / check_row["rows_evaluated"]
            )
        outcomes.append(
            ExpectationValidationResult(
                success=not check_row["is_breached"],
                expectation_config=configuration,
                result=result,
            )
        )
    return outcomes


def _stored_validation(
    context: Any,
    summary: ValidationSummary,
    system: str,
    batch_id: str,
    entity: str,
    rows: dict[str, dict],
    outcomes: list[Any],
) -> Any:
    """The entity's outcomes stored as one validation result of the run; its key."""
    from etl.validate.gx_import import gx  # first: GX imported the project's way

    # isort: split
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    evaluated_at = _aware(min(r["evaluated_at"] for r in rows.values()))
    run = RunIdentifier(run_name=summary.run_label, run_time=evaluated_at)
    successes = sum(1 for outcome in outcomes if outcome.success)
    key = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=entity),
        run_id=run,
        batch_identifier=batch_id,
    )
    context.validation_results_store.set(
        key,
        ExpectationSuiteValidationResult(
            success=successes == len(outcomes),
            results=outcomes,
            suite_name=entity,
            statistics={
                "evaluated_expectations": len(outcomes),
                "successful_expectations": successes,
                "unsuccessful_expectations": len(outcomes) - successes,
                "success_percent": 100 * successes / len(outcomes),
            },
            meta={
                "run_id": run,
                "batch_spec": {"data_asset_name": f"{system}.{entity}"},
                "validation_time": evaluated_at.strftime("%Y%m%dT%H%M%S.%fZ"),
                "great_expectations_version": gx.__version__,
            },
        ),
    )
    return key


def _build_site(
    context: Any,
    site_dir: Path,
    suite_keys: dict[str, str],
    validations: list[ValidationResultIdentifier],
) -> None:
    """GX's site build, with each suite page GX rendered before for the same suite put in place
    first (GX's index lists the suite pages the site has) and left out of GX's rendering."""
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
    )

    reused = {entity: suite_pages.get(key) for entity, key in suite_keys.items()}
    to_render = [entity for entity, page in reused.items() if page is None]
    for page in reused.values():
        if page is not None:
            relative, content = page
            (site_dir / relative).parent.mkdir(parents=True, exist_ok=True)
            (site_dir / relative).write_bytes(content)
    identifiers: list[Any] = [*validations]
    identifiers += [ExpectationSuiteIdentifier(name=entity) for entity in to_render]
    if identifiers and len(to_render) < len(suite_keys):
        context.build_data_docs(site_names=[SITE_NAME], resource_identifiers=identifiers)
    else:  # every resource (GX takes no list, or an empty one, as every resource)
        context.build_data_docs(site_names=[SITE_NAME])
    for entity in to_render:
        relative = Path("expectations", f"{entity}.html")
        if (site_dir / relative).is_file():
            suite_pages.put(suite_keys[entity], (relative, (site_dir / relative).read_bytes()))


# --- making a site safe to open offline -------------------------------------------------------


def is_external(url: str) -> bool:
    return bool(_EXTERNAL_URL.match(html.unescape(url or "")))


def clean_css(css: str) -> str:
    """CSS without external ``url()`` or ``@import``."""
    css = _CSS_IMPORT.sub(lambda m: "" if is_external(m.group(1)) else m.group(0), css)
    return _CSS_URL.sub(lambda m: "none" if is_external(m.group(2)) else m.group(0), css)


_BOOTSTRAP_TABLE = re.compile(
    r"\$\(\s*'#(?P<id>[^']+)'\s*\)\.bootstrapTable\(\s*Object\.assign\(\s*\{\s*"
    r"columns:\s*(?P<columns>\[.*?\]),\s*data:\s*(?P<data>\[.*?\]),\s*toolbar:",
    re.DOTALL,
)


def static_tables(page: str) -> str:
    """GX index tables are filled by bootstrap-table at load time; write their rows as HTML.

    Column titles and plain values are escaped; GX's own cell markup (links, badges) is kept
    and cleaned with the rest of the page afterwards. A row's page becomes an ``open`` link.
    """
    for match in _BOOTSTRAP_TABLE.finditer(page):
        try:
            columns = ast.literal_eval(match.group("columns"))
            rows = ast.literal_eval(match.group("data"))
        except (ValueError, SyntaxError) as error:
            raise DataDocsError(f"cannot read a Data Docs index table: {error}") from error
        head = "".join(f"<th>{html.escape(str(c.get('title', '')))}</th>" for c in columns)
        has_links = any("_table_row_link_path" in row for row in rows)
        body = []
        for row in rows:
            cells = []
            for column in columns:
                name = column["field"]
                text = row.get(f"_{name}_text")  # e.g. "Failed" instead of an icon
                value = html.escape(str(text)) if text is not None else str(row.get(name, ""))
                cells.append(f"<td>{value}</td>")
            if has_links:
                link = html.escape(str(row.get("_table_row_link_path", "")), quote=True)
                cells.append(f'<td><a href="{link}">open</a></td>' if link else "<td></td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        if has_links:
            head += "<th>page</th>"
        table = re.compile(
            r'(<table\s+id="' + re.escape(match.group("id")) + r'"[^>]*>)\s*</table>'
        )
        rest = f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        # the default binds this iteration's rest
        page = table.sub(lambda m, rest=rest: m.group(1) + rest, page, count=1)  # type: ignore[misc]
    return page


class _OfflineRewriter(HTMLParser):
    """Re-emits a page without scripts, comments or any reference that leaves the machine."""

    def __init__(self, logo: str | None, exists: Callable[[str], bool] | None = None) -> None:
        super().__init__(convert_charrefs=False)
        self.logo = logo
        self.exists = exists  # whether a local reference names a file of the site
        self.out: list[str] = []
        self.skipping: str | None = None  # inside <script> (or another dropped element)
        self.in_style = False
        self.unwrap: list[bool] = []  # per open <a>: was its external href dropped?

    def handle_starttag(self, tag, attrs):
        self._tag(tag, attrs, closed=False)

    def handle_startendtag(self, tag, attrs):
        self._tag(tag, attrs, closed=True)

    def _tag(self, tag: str, attrs: list[tuple[str, str | None]], closed: bool) -> None:
        if self.skipping or self._is_dropped(tag, attrs, closed):
            return
        kept, dropped_link = self._kept_attributes(tag, attrs)
        if tag == "img" and not any(name == "src" for name, _ in kept):
            return
        if tag == "a" and not closed:
            self.unwrap.append(dropped_link)
            if dropped_link:
                self.out.append("<span>")
                return
        self.out.append(self._render(tag, kept, closed))
        if tag == "style":
            self.in_style = True
        if tag == "head":
            self.out.append(
                f'\n<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">'
                '\n<meta name="referrer" content="no-referrer">'
                f"\n<style>{OFFLINE_CSS}</style>"
            )
        if tag == "body":
            self.out.append(
                f'\n<div class="vardflytt-offline-note">{html.escape(OFFLINE_NOTE)}</div>'
            )

    def _is_dropped(self, tag: str, attrs: list[tuple[str, str | None]], closed: bool) -> bool:
        """Whether the tag goes: scripts, fetching tags with an external reference (their content
        is skipped too), ``<base>``, a refresh, a link to a file the site does not have."""
        if tag in ("script", "noscript") or (
            tag in _FETCHING_TAGS and any(is_external(v or "") for _, v in attrs)
        ):
            if not closed and tag not in _VOID_TAGS:
                self.skipping = tag
            return True
        if tag in ("base",) or (
            tag == "meta"
            and any(k == "http-equiv" and (v or "").lower() == "refresh" for k, v in attrs)
        ):
            return True
        # GX's validation pages point their favicon one folder too shallow: a link to a
        # file the site does not have is a 404 for every reader, so it goes.
        return bool(
            tag == "link"
            and self.exists
            and not all(self.exists(v or "") for k, v in attrs if k == "href")
        )

    def _kept_attributes(
        self, tag: str, attrs: list[tuple[str, str | None]]
    ) -> tuple[list[tuple[str, str | None]], bool]:
        """The attributes kept (no event handlers, no external references but the logo, styles
        cleaned), and whether an external link was dropped."""
        kept: list[tuple[str, str | None]] = []
        dropped_link = False
        for name, value in attrs:
            if name.lower().startswith("on"):
                continue  # inline event handlers are scripts too
            if name.lower() in _URL_ATTRIBUTES and value is not None and self._external(value):
                if tag == "img" and name == "src" and self.logo:
                    kept.append((name, self.logo))
                elif tag == "a" and name == "href":
                    dropped_link = True
                continue
            if name.lower() == "style" and value:
                value = clean_css(value)
            kept.append((name, value))
        return kept, dropped_link

    @staticmethod
    def _external(value: str) -> bool:
        return any(is_external(part.strip().split(" ")[0]) for part in value.split(","))

    @staticmethod
    def _render(tag: str, attrs: list[tuple[str, str | None]], closed: bool) -> str:
        parts = [tag]
        for name, value in attrs:
            parts.append(name if value is None else f'{name}="{html.escape(value, quote=True)}"')
        return "<" + " ".join(parts) + (" />" if closed else ">")

    def handle_endtag(self, tag):
        if self.skipping:
            if tag == self.skipping:
                self.skipping = None
            return
        if tag == "style":
            self.in_style = False
        if tag == "a" and self.unwrap and self.unwrap.pop():
            self.out.append("</span>")
            return
        self.out.append(f"</{tag}>")

    def handle_data(self, data):
        if not self.skipping:
            self.out.append(clean_css(data) if self.in_style else data)

    def handle_entityref(self, name):
        if not self.skipping:
            self.out.append(f"&{name};")

    def handle_charref(self, name):
        if not self.skipping:
            self.out.append(f"&#{name};")

    def handle_decl(self, decl):
        self.out.append(f"<!{decl}>")

    def handle_comment(self, data):
        pass  # comments can carry conditional scripts; nothing in them is needed


def offline_html(
    page: str, logo: str | None = None, exists: Callable[[str], bool] | None = None
) -> str:
    rewriter = _OfflineRewriter(logo, exists)
    rewriter.feed(static_tables(page))
    rewriter.close()
    return "".join(rewriter.out)


def make_offline(site_dir: Path) -> None:
    """Rewrite every page and stylesheet of the site in place; drop unreferenced static files."""
    logo_file = site_dir / LOCAL_LOGO
    for path in sorted(site_dir.rglob("*")):
        if path.suffix == ".html":
            logo = os.path.relpath(logo_file, path.parent) if logo_file.exists() else None
            page = _offline_page(path.read_text("utf-8"), logo, _files_of(site_dir, path))
            path.write_text(page, encoding="utf-8")
        elif path.suffix in (".css", ".svg"):
            text = path.read_text("utf-8")
            if path.suffix == ".svg":
                text = re.sub(
                    r"""\s(?:xlink:)?href=(['"])(.*?)\1""",
                    lambda m: "" if is_external(m.group(2)) else m.group(0),
                    text,
                )
            path.write_text(clean_css(text), encoding="utf-8")
    _drop_unreferenced_static(site_dir)
    leftovers = external_references(site_dir)
    if leftovers:
        shown = "; ".join(f"{r.path.name}: {r.reference}" for r in leftovers[:5])
        raise DataDocsError(f"Data Docs still refer to {len(leftovers)} external assets: {shown}")


def _offline_page(page: str, logo: str | None, exists: Callable[[str], bool]) -> str:
    """``offline_html(page, logo, exists)``, taken from :data:`offline_pages` when the same page
    was rewritten before with the same logo and ``exists`` answers as it did then for every
    reference it was asked about."""
    key = (_digest(page), logo)
    found = offline_pages.get(key)
    if found is not None:
        answers, text = found
        if all(exists(reference) == answer for reference, answer in answers):
            return text
    asked: dict[str, bool] = {}

    def recorded(reference: str) -> bool:
        asked[reference] = exists(reference)
        return asked[reference]

    text = offline_html(page, logo, recorded)
    offline_pages.put(key, (tuple(asked.items()), text))
    return text


def _files_of(site_dir: Path, page: Path) -> Callable[[str], bool]:
    """Whether a page's local reference (query and fragment aside) is a file of the site."""

    def exists(reference: str) -> bool:
        path = reference.split("#", 1)[0].split("?", 1)[0]
        if not path:
            return True
        target = (page.parent / path).resolve()
        return target.is_relative_to(site_dir.resolve()) and target.is_file()

    return exists


def _drop_unreferenced_static(site_dir: Path) -> None:
    """GX copies about 3.5 MB of images into every site; keep only what a page or style uses."""
    static = site_dir / "static"
    if not static.is_dir():
        return
    texts = " ".join(
        p.read_text("utf-8", errors="replace")
        for p in site_dir.rglob("*")
        if p.suffix in (".html", ".css")
    )
    for path in static.rglob("*"):
        if path.is_file() and path.suffix not in (".css",) and path.name not in texts:
            path.unlink()


# --- checking ---------------------------------------------------------------------------------


class _ReferenceCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []
        self.in_style = False

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is None:
                continue
            if name.lower() in _URL_ATTRIBUTES:
                self.references.extend(
                    v for v in (p.strip().split(" ")[0] for p in value.split(",")) if is_external(v)
                )
            if name.lower() == "style":
                self.references.extend(_css_references(value))
            if name.lower() == "content" and "url=" in value.lower():
                self.references.extend(re.findall(r"url=\s*(\S+)", value, re.IGNORECASE))
        if tag == "style":
            self.in_style = True

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        if tag == "style":
            self.in_style = False

    def handle_data(self, data):
        if self.in_style:
            self.references.extend(_css_references(data))


def _css_references(css: str) -> list[str]:
    urls = [m.group(2) for m in _CSS_URL.finditer(css)] + [
        m.group(1) for m in _CSS_IMPORT.finditer(css)
    ]
    return list(dict.fromkeys(url for url in urls if is_external(url)))  # @import url() once


def external_references(root: Path) -> list[ExternalReference]:
    """Every reference to an asset outside the machine in the HTML, CSS, JS and SVG under
    ``root``: attributes that fetch or navigate, CSS ``url()``/``@import``, any script source.
    XML namespace declarations (``xmlns``) are names, not fetches, and are not counted."""
    found: list[ExternalReference] = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix not in (".html", ".htm", ".css", ".js", ".svg"):
            continue
        text = path.read_text("utf-8", errors="replace")
        found.extend(ExternalReference(path, r) for r in _references_in(path.suffix, text))
    return found


def _references_in(suffix: str, text: str) -> tuple[str, ...]:
    """The external references in a file's text, by its suffix (remembered per text)."""
    key = (suffix, _digest(text))
    references: tuple[str, ...] | None = page_references.get(key)
    if references is not None:
        return references
    if suffix in (".html", ".htm", ".svg"):
        collector = _ReferenceCollector()
        collector.feed(text)
        collector.close()
        references = tuple(collector.references)
    elif suffix == ".css":
        references = tuple(_css_references(text))
    else:
        references = tuple(re.findall(r"""(?:https?:)?//[^\s'"]+""", text))
    page_references.put(key, references)
    return references
