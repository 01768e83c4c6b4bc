"""Charts drawn on the server as inline SVG: no script, no font, nothing fetched from anywhere.

The region's network and its data-residency rules forbid a CDN, and a chart of a few dozen runs
needs no JavaScript library. Colours come from CSS classes (``static/dashboard.css``) so the
Content-Security-Policy can forbid inline styles; every mark has a ``<title>`` for a tooltip and
screen readers, and every chart an ``aria-label`` saying what it shows.

Labels are never cut: the margins grow to the longest label (text is measured with a
conservative width per character of the 11 px chart font), category labels on the x axis are
slanted and thinned out so that no two overlap, a label may have two lines (``"a\\nb"``), and
numbers carry thousands separators. Each axis has a title.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 760, 260  # the plot area is PLOT_HEIGHT high; the margins grow with the labels
PLOT_HEIGHT = 180
RIGHT, TOP = 16, 30
# Text measure of the 11 px sans-serif chart font: wider than its average character, so an
# estimated box always holds the drawn text.
CHAR_WIDTH, LINE_HEIGHT = 6.6, 13.0
SLANT = 45  # degrees: x labels read upwards from their tick
TICK_GAP, AXIS_TITLE = 6, 18
BAR_HEIGHT, BAR_GAP = 14, 6  # horizontal bars (one per source system)


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


def number(value: float) -> str:
    """A count or measure with thousands separated by a narrow no-break space (as Swedish
    writes them, and as the tables do): ``126 494``, ``2.5``."""
    if abs(value) >= 1000 or float(value).is_integer():
        return f"{value:,.0f}".replace(",", "\u202f")
    return f"{value:.3g}"


_number = number  # the name earlier callers used


def percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def text_width(text: str) -> float:
    """The width an SVG label of the chart font takes at most (for margins and overlap)."""
    return len(text) * CHAR_WIDTH


def _lines(label: str) -> list[str]:
    return label.split("\n")


def _flat(label: str) -> str:
    return " · ".join(_lines(label))


@dataclass(frozen=True)
class LabelBox:
    """Where one slanted x label is drawn, and the box (in the chart's coordinates) it covers."""

    label: str
    x: float
    y: float
    left: float
    right: float
    bottom: float


def slanted_label_box(label: str, x: float, y: float) -> LabelBox:
    """The box of a label anchored by its end at (x, y), slanted up by ``SLANT`` degrees."""
    angle = math.radians(SLANT)
    width = max(text_width(line) for line in _lines(label))
    depth = LINE_HEIGHT * len(_lines(label))
    return LabelBox(
        label,
        x,
        y,
        left=x - width * math.cos(angle),
        right=x + depth * math.sin(angle),
        bottom=y + width * math.sin(angle) + depth * math.cos(angle),
    )


def label_stride(labels: Sequence[str], step: float) -> int:
    """Show every n-th label: slanted labels a step apart are ``step * sin(SLANT)`` apart
    across their lines, which must hold all of a label's lines."""
    lines = max((len(_lines(label)) for label in labels), default=1)
    across = step * math.sin(math.radians(SLANT))
    return max(1, math.ceil(lines * LINE_HEIGHT / across)) if across > 0 else 1


def _text(x: float, y: float, label: str, css: str, anchor: str, transform: str = "") -> str:
    """SVG text, one ``<tspan>`` per line (later lines below the first)."""
    spans = "".join(
        f'<tspan x="{x:.1f}" dy="{0 if index == 0 else LINE_HEIGHT:.0f}">{escape(line)}</tspan>'
        for index, line in enumerate(_lines(label))
    )
    extra = f' transform="{transform}"' if transform else ""
    return (
        f'<text class="{css}" x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{spans}</text>'
    )


def _legend(series: Sequence[Series]) -> list[str]:
    items, x = [], 8.0
    for item in series:
        items.append(
            f'<rect class="{escape(item.css_class)}" x="{x:.1f}" y="8" width="10" height="10"/>'
            f'<text class="legend" x="{x + 14:.1f}" y="17">{escape(item.name)}</text>'
        )
        x += 14 + text_width(item.name) + 16
    return items


def _svg(label: str, height: float, body: list[str]) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height:.0f}" role="img" '
        f'aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


@dataclass(frozen=True)
class _Layout:
    left: float
    step: float
    stride: int
    bottom: float  # the chart's full height

    @property
    def plot_bottom(self) -> float:
        return TOP + PLOT_HEIGHT


def _layout(labels: Sequence[str], tick_labels: Sequence[str]) -> _Layout:
    """Margins that hold the y tick labels, the y axis title and the first slanted x label."""
    left = AXIS_TITLE + TICK_GAP * 2 + max(text_width(t) for t in tick_labels)
    for _ in range(3):  # the first label's reach depends on the step, which depends on left
        step = (WIDTH - left - RIGHT) / len(labels)
        stride = label_stride(labels, step)
        shown = labels[::stride]
        first = slanted_label_box(shown[0], left + step * 0.5, TOP + PLOT_HEIGHT + 12)
        left = max(left, left - first.left + 4)
    step = (WIDTH - left - RIGHT) / len(labels)
    stride = label_stride(labels, step)
    boxes = [
        slanted_label_box(label, left + step * (index + 0.5), TOP + PLOT_HEIGHT + 12)
        for index, label in enumerate(labels)
        if index % stride == 0
    ]
    bottom = max(box.bottom for box in boxes) + AXIS_TITLE + 8
    return _Layout(left=left, step=step, stride=stride, bottom=bottom)


def _axes(
    layout: _Layout,
    maximum: float,
    fmt: Callable[[float], str],
    labels: Sequence[str],
    x_title: str,
    y_title: str,
) -> list[str]:
    parts = []
    left, base = layout.left, layout.plot_bottom
    for tick in range(5):
        value = maximum * tick / 4
        y = base - PLOT_HEIGHT * tick / 4
        parts.append(
            f'<line class="grid" x1="{left:.1f}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{left - TICK_GAP:.1f}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(fmt(value))}</text>"
        )
    for index, label in enumerate(labels):
        if index % layout.stride:
            continue
        x, y = left + layout.step * (index + 0.5), base + 12
        parts.append(_text(x, y, label, "tick x-label", "end", f"rotate(-{SLANT} {x:.1f} {y:.1f})"))
    middle = TOP + PLOT_HEIGHT / 2
    parts.append(_text(14, middle, y_title, "axis-title", "middle", f"rotate(-90 14 {middle:.1f})"))
    parts.append(
        _text(left + (WIDTH - RIGHT - left) / 2, layout.bottom - 6, x_title, "axis-title", "middle")
    )
    return parts


def _ticks(maximum: float, fmt: Callable[[float], str]) -> list[str]:
    return [fmt(maximum * tick / 4) for tick in range(5)]


def bar_chart(
    label: str,
    categories: Sequence[str],
    series: Sequence[Series],
    fmt: Callable[[float], str] = number,
    x_title: str = "",
    y_title: str = "",
) -> Markup:
    """Stacked bars, one per category (a run), one segment per series."""
    if not categories:
        return Markup('<p class="muted">no data yet</p>')
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(categories))]
    maximum = nice_ceiling(max(totals))
    layout = _layout(categories, _ticks(maximum, fmt))
    bar = min(max(layout.step * 0.7, 1.0), 48.0)
    body = [*_legend(series), *_axes(layout, maximum, fmt, categories, x_title, y_title)]
    for index, category in enumerate(categories):
        bottom = layout.plot_bottom
        x = layout.left + layout.step * index + (layout.step - bar) / 2
        for item in series:
            value = item.values[index] or 0
            height = PLOT_HEIGHT * value / maximum
            if height <= 0:
                continue
            bottom -= height
            body.append(
                f'<rect class="{escape(item.css_class)}" x="{x:.1f}" y="{bottom:.1f}" '
                f'width="{bar:.1f}" height="{height:.1f}"><title>{escape(_flat(category))}: '
                f"{escape(item.name)} {escape(fmt(value))}</title></rect>"
            )
    return _svg(label, layout.bottom, body)


def line_chart(
    label: str,
    categories: Sequence[str],
    series: Sequence[Series],
    fmt: Callable[[float], str] = number,
    maximum: float | None = None,
    x_title: str = "",
    y_title: str = "",
) -> Markup:
    """Lines over categories in order (runs over time); a None value breaks the line."""
    if not categories:
        return Markup('<p class="muted">no data yet</p>')
    values = [v for s in series for v in s.values if v is not None]
    maximum = maximum or nice_ceiling(max(values, default=0.0))
    layout = _layout(categories, _ticks(maximum, fmt))
    body = [*_legend(series), *_axes(layout, maximum, fmt, categories, x_title, y_title)]
    for item in series:
        points: list[tuple[float, float, float, str]] = []
        segments: list[list[tuple[float, float]]] = [[]]
        for index, value in enumerate(item.values):
            if value is None:
                segments.append([])
                continue
            x = layout.left + layout.step * (index + 0.5)
            y = layout.plot_bottom - PLOT_HEIGHT * min(value, maximum) / maximum
            segments[-1].append((x, y))
            points.append((x, y, value, categories[index]))
        for segment in segments:
            if len(segment) > 1:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y in segment)
                body.append(f'<polyline class="{escape(item.css_class)} line" points="{path}"/>')
        for x, y, value, category in points:
            body.append(
                f'<circle class="{escape(item.css_class)}" cx="{x:.1f}" cy="{y:.1f}" r="3">'
                f"<title>{escape(_flat(category))}: {escape(item.name)} {escape(fmt(value))}"
                "</title></circle>"
            )
    return _svg(label, layout.bottom, body)


def horizontal_bar_chart(
    label: str,
    categories: Sequence[str],
    values: Sequence[float],
    css_class: str,
    value_title: str,
    fmt: Callable[[float], str] = number,
) -> Markup:
    """One horizontal bar per category (a source system), its name written in full on the left
    and its value at the end of the bar: names of any length stay readable."""
    if not categories:
        return Markup('<p class="muted">no data yet</p>')
    maximum = nice_ceiling(max(values, default=0.0))
    ticks = _ticks(maximum, fmt)
    left = TICK_GAP * 2 + max(text_width(c) for c in categories)
    # Room for the longest bar's value after it, and for the last tick's label centred on it.
    right = RIGHT + max(text_width(fmt(max(values))) + TICK_GAP, text_width(ticks[-1]) / 2)
    left = max(left, text_width(ticks[0]) / 2 + 4)
    plot_width = WIDTH - left - right
    plot_bottom = TOP + len(categories) * (BAR_HEIGHT + BAR_GAP)
    body = []
    for tick, text in enumerate(ticks):
        x = left + plot_width * tick / 4
        body.append(
            f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{plot_bottom:.1f}"/>'
            f'<text class="tick" x="{x:.1f}" y="{plot_bottom + 14:.1f}" text-anchor="middle">'
            f"{escape(text)}</text>"
        )
    for index, (category, value) in enumerate(zip(categories, values, strict=True)):
        y = TOP + index * (BAR_HEIGHT + BAR_GAP)
        width = plot_width * max(value, 0) / maximum
        body.append(
            _text(left - TICK_GAP, y + BAR_HEIGHT - 3, category, "tick y-label", "end")
            + f'<rect class="{escape(css_class)}" x="{left:.1f}" y="{y:.1f}" width="{width:.1f}" '
            f'height="{BAR_HEIGHT}"><title>{escape(category)}: {escape(fmt(value))}</title></rect>'
            + _text(left + width + 4, y + BAR_HEIGHT - 3, fmt(value), "tick value", "start")
        )
    height = plot_bottom + 14 + AXIS_TITLE + 10
    body.append(_text(left + plot_width / 2, height - 6, value_title, "axis-title", "middle"))
    return _svg(label, height, body)


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
