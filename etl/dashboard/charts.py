"""Charts drawn on the server as inline SVG: no script, no font, nothing fetched from anywhere.

The region's network and its data-residency rules forbid a CDN, and a chart of a few dozen runs
needs no JavaScript library. Colours come from CSS classes (``static/dashboard.css``) so the
Content-Security-Policy can forbid inline styles; every mark has a ``<title>`` for a tooltip and
screen readers, and every chart an ``aria-label`` saying what it shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 64


@dataclass(frozen=True)
class Series:
    """One named row of values (None: no value at that point) drawn with a CSS class."""

    name: str
    values: Sequence[float | None]
    css_class: str


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above ``value`` (axis maximum)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power + 1e-12:
            return step * power
    return 10 * power


def _number(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 10_000:
        return f"{value / 1_000:g}k"
    return f"{value:g}"


def percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def _frame(label: str, body: list[str], legend: Sequence[Series]) -> Markup:
    items = []
    x = LEFT
    for series in legend:
        items.append(
            f'<rect class="{escape(series.css_class)}" x="{x}" y="{HEIGHT - 16}" '
            f'width="10" height="10"/><text class="legend" x="{x + 14}" y="{HEIGHT - 7}">'
            f"{escape(series.name)}</text>"
        )
        x += 24 + 7 * len(series.name)
    svg = (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(label)}</title>{''.join(body)}{''.join(items)}</svg>"
    )
    return Markup(svg)


def _axes(maximum: float, fmt: Callable[[float], str], labels: Sequence[str], step: float):
    plot_height = HEIGHT - TOP - BOTTOM
    parts = []
    for tick in range(5):
        value = maximum * tick / 4
        y = TOP + plot_height - plot_height * tick / 4
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(fmt(value))}</text>"
        )
    every = max(1, math.ceil(len(labels) / 12))  # at most a dozen x labels stay readable
    for index, label in enumerate(labels):
        if index % every:
            continue
        x = LEFT + step * (index + 0.5)
        y = HEIGHT - BOTTOM + 14
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{y}" text-anchor="end" '
            f'transform="rotate(-30 {x:.1f} {y})">{escape(label)}</text>'
        )
    return parts


def bar_chart(
    label: str,
    categories: Sequence[str],
    series: Sequence[Series],
    fmt: Callable[[float], str] = _number,
) -> Markup:
    """Stacked bars, one per category (a run, a system), one segment per series."""
    if not categories:
        return Markup('<p class="muted">no data yet</p>')
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(categories))]
    maximum = nice_ceiling(max(totals))
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_width / len(categories)
    bar = min(max(step * 0.7, 1.0), 48.0)
    body = _axes(maximum, fmt, categories, step)
    for index, category in enumerate(categories):
        bottom = TOP + plot_height
        x = LEFT + step * index + (step - bar) / 2
        for item in series:
            value = item.values[index] or 0
            height = plot_height * value / maximum
            if height <= 0:
                continue
            bottom -= height
            body.append(
                f'<rect class="{escape(item.css_class)}" x="{x:.1f}" y="{bottom:.1f}" '
                f'width="{bar:.1f}" height="{height:.1f}"><title>{escape(category)}: '
                f"{escape(item.name)} {escape(fmt(value))}</title></rect>"
            )
    return _frame(label, body, series)


def line_chart(
    label: str,
    categories: Sequence[str],
    series: Sequence[Series],
    fmt: Callable[[float], str] = _number,
    maximum: float | None = None,
) -> Markup:
    """Lines over categories in order (runs over time); a None value breaks the line."""
    if not categories:
        return Markup('<p class="muted">no data yet</p>')
    values = [v for s in series for v in s.values if v is not None]
    maximum = maximum or nice_ceiling(max(values, default=0.0))
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_width / len(categories)
    body = _axes(maximum, fmt, categories, step)
    for item in series:
        points: list[tuple[float, float, float, str]] = []
        segments: list[list[tuple[float, float]]] = [[]]
        for index, value in enumerate(item.values):
            if value is None:
                segments.append([])
                continue
            x = LEFT + step * (index + 0.5)
            y = TOP + plot_height - plot_height * min(value, maximum) / maximum
            segments[-1].append((x, y))
            points.append((x, y, value, categories[index]))
        for segment in segments:
            if len(segment) > 1:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y in segment)
                body.append(f'<polyline class="{escape(item.css_class)} line" points="{path}"/>')
        for x, y, value, category in points:
            body.append(
                f'<circle class="{escape(item.css_class)}" cx="{x:.1f}" cy="{y:.1f}" r="3">'
                f"<title>{escape(category)}: {escape(item.name)} {escape(fmt(value))}</title>"
                "</circle>"
            )
    return _frame(label, body, series)


def meter(fraction: float | None, label: str) -> Markup:
    """A small horizontal bar for a rate (a DQ pass rate in a table cell)."""
    if fraction is None:
        return Markup('<span class="muted">–</span>')
    width = max(0.0, min(fraction, 1.0)) * 60
    css = "good" if fraction >= 0.99 else "fair" if fraction >= 0.95 else "poor"
    return Markup(
        f'<svg class="meter" viewBox="0 0 60 8" width="60" height="8" role="img" '
        f'aria-label="{escape(label)} {percent(fraction)}"><rect class="track" width="60" '
        f'height="8"/><rect class="{css}" width="{width:.1f}" height="8"/></svg>'
    )
