"""Rendering for reports: Jinja2 templates (HTML autoescaped, Markdown escaped), atomic writes.

HTML pages are self-contained: inline CSS, no scripts, no fonts or images from anywhere, and a
Content-Security-Policy that forbids loading anything, so a page opened from a share or a mail
cannot call out to a host the region does not control.
"""

from __future__ import annotations

import os
import re
import secrets
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

_INLINE_CODE = re.compile(r"``(.+?)``")

_MARKDOWN_ESCAPES = str.maketrans(
    {
        "\\": "\\\\",
        "|": "\\|",
        "`": "\\`",
        "*": "\\*",
        "<": "&lt;",
        ">": "&gt;",
        "[": "\\[",
        "]": "\\]",
        "\n": " ",
        "\r": " ",
    }
)


def markdown_text(value: Any) -> str:
    """Any value as inline Markdown text that cannot break a table cell or inject HTML."""
    if value is None:
        return ""
    return str(value).translate(_MARKDOWN_ESCAPES)


def _percent(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f} %"


def _number(value: int | float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,}".replace(",", " ") if isinstance(value, int) else f"{value:.1f}"


def _html_inline_code(text: str) -> Markup:
    """Docstring text with ``code`` (reStructuredText) shown as code; everything escaped."""
    return Markup(_INLINE_CODE.sub(r"<code>\1</code>", str(escape(text))))


def _plain_inline_code(text: str) -> str:
    return _INLINE_CODE.sub(r"\1", text)


def _environment(markdown: bool) -> Environment:
    environment = Environment(
        loader=PackageLoader("etl.report", "templates"),
        # HTML: every {{ }} is escaped. Markdown: every {{ }} passes through markdown_text.
        autoescape=select_autoescape(enabled_extensions=("html",), default=not markdown),
        finalize=markdown_text if markdown else None,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["percent"] = _percent
    environment.filters["number"] = _number
    environment.filters["inline_code"] = _plain_inline_code if markdown else _html_inline_code
    return environment


@cache
def html_environment() -> Environment:
    return _environment(markdown=False)


@cache
def markdown_environment() -> Environment:
    return _environment(markdown=True)


def render_html(template: str, **context: Any) -> str:
    return html_environment().get_template(template).render(**context)


def render_markdown(template: str, **context: Any) -> str:
    return markdown_environment().get_template(template).render(**context)


def write_text(path: Path, text: str) -> Path:
    """Write atomically: a reader never sees half a report. The temporary file is the writer's
    own, so two writers of the same file (parallel report tasks) never trip over each other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
    except BaseException:
        temporary.unlink(missing_ok=True)  # a failed write leaves nothing behind
        raise
    temporary.replace(path)
    return path
