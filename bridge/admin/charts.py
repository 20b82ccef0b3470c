"""Server-rendered SVG charts for the admin pages: no script and no library, so they work offline and under the
pages' Content-Security-Policy (no inline styles: colours come from classes in admin.css).

Each function returns the markup of one <svg> (escaped text, a <title> per mark for the tooltip); the numbers a
chart stands for are also written out as text by the templates, where people (and tests) can read them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup, escape

# Drawn at about this size in a card of the overview's two-column grid, so 12-unit text reads as 12-14 px.
WIDTH = 560
HEIGHT = 220
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 52, 12, 22, 26


@dataclass(frozen=True)
class Line:
    """One line of a time chart: a value per bar (None: nothing measured there) and a class for its colour."""

    label: str
    values: Sequence[float | None]
    css: str
    band: Sequence[tuple[float, float] | None] = ()  # an interval per bar, drawn as a shaded band behind the line


@dataclass(frozen=True)
class Bars:
    """One group of bars: a value per category and a class for its colour."""

    label: str
    values: Sequence[float]
    css: str


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above `value` (an axis maximum that reads well)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power + 1e-12:
            return step * power
    return 10 * power


def number(value: float) -> str:
    """A number for an axis or a tooltip: thousands separated, at most three significant decimals."""
    if value == int(value):
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def duration(seconds: float) -> str:
    """Seconds as ms below a second, seconds below two minutes, else minutes."""
    if seconds <= 0:
        return "0"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.0f} min"


def _open(label: str, css: str, height: int = HEIGHT, width: int = WIDTH) -> list[str]:
    opening = (f'<svg class="chart {escape(css)}" viewBox="0 0 {width} {height}" role="img" '
               f'aria-label="{escape(label)}"><title>{escape(label)}</title>')
    return [opening]


def _y_axis(out: list[str], top: float, unit: Callable[[float], str], height: int = HEIGHT,
            width: int = WIDTH) -> Callable[[float], float]:
    inner = height - PAD_TOP - PAD_BOTTOM

    def y(value: float) -> float:
        return round(PAD_TOP + inner * (1 - min(max(value, 0.0), top) / top), 1)

    for share in (0.0, 0.5, 1.0):
        value = top * share
        out.append(f'<line x1="{PAD_LEFT}" x2="{width - PAD_RIGHT}" y1="{y(value)}" y2="{y(value)}" class="grid-line"/>'
                   f'<text x="{PAD_LEFT - 6}" y="{y(value) + 4}" class="tick" text-anchor="end">'
                   f'{escape(unit(value))}</text>')
    return y


def _time_label(moment: datetime, span: timedelta) -> str:
    if span > timedelta(days=14):  # weeks apart: the time of day is noise
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%m-%d %H:%M" if span > timedelta(days=1) else "%H:%M")


@dataclass(frozen=True)
class Marker:
    """An event marked on a time chart: a vertical line at `at`, its sentence as the tooltip, a class for its colour."""

    at: datetime
    text: str
    css: str


def time_chart(starts: Sequence[datetime], bar: timedelta, lines: Sequence[Line], *, label: str,
               unit: Callable[[float], str] = number, css: str = "", marks: Sequence[Marker] = (),
               at_end: bool = False, legend: bool = True) -> Markup:
    """Lines over time, one point per bar (drawn at the bar's middle, or its end with `at_end` when a point stands
    for everything up to then; gaps where nothing was measured), `marks` as vertical lines. With legend=False the
    page shows the key itself (see `key`), e.g. when the names would not fit on the chart."""
    out = _open(label, "time " + css)
    values = [v for line in lines for v in line.values if v is not None]
    values += [high for line in lines for span in line.band if span is not None for high in span[1:]]
    top = nice_ceiling(max(values, default=0.0))
    y = _y_axis(out, top, unit)
    inner = WIDTH - PAD_LEFT - PAD_RIGHT
    count = max(len(starts), 1)
    offset = 1.0 if at_end else 0.5

    def x(index: float) -> float:
        return round(PAD_LEFT + inner * (index + offset) / count, 1)

    for line in lines:
        _band(out, line, x, y)
    for line in lines:
        segment: list[str] = []
        segments: list[list[str]] = []
        for index, value in enumerate(line.values):
            if value is None:
                if segment:
                    segments.append(segment)
                segment = []
                continue
            segment.append(f"{x(index)},{y(value)}")
        if segment:
            segments.append(segment)
        for points in segments:
            if len(points) == 1:  # a lone point is a dot, not an invisible line
                cx, cy = points[0].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" class="dot {escape(line.css)}"/>')
            else:
                out.append(f'<polyline points="{" ".join(points)}" class="line {escape(line.css)}"/>')
    # One transparent column per bar carries the tooltip with every line's value there.
    column = inner / count
    for index, start in enumerate(starts):
        parts = [f"up to {start + bar:%Y-%m-%d %H:%M} UTC" if at_end else f"{start:%Y-%m-%d %H:%M:%S} UTC"]
        for line in lines:
            value = line.values[index] if index < len(line.values) else None
            span = line.band[index] if index < len(line.band) else None
            interval = f" (95% CI {unit(span[0])} to {unit(span[1])})" if span is not None else ""
            parts.append(f"{line.label}: {'no data' if value is None else unit(value)}{interval}")
        out.append(f'<rect x="{round(PAD_LEFT + index * column, 2)}" y="{PAD_TOP}" width="{round(column, 2)}" '
                   f'height="{HEIGHT - PAD_TOP - PAD_BOTTOM}" class="hover"><title>{escape(" · ".join(parts))}'
                   f'</title></rect>')
    if starts:
        span = starts[-1] + bar - starts[0]
        for mark in marks:  # after the hover columns, so a mark's own tooltip is the one shown over it
            share = (mark.at - starts[0]) / span
            if 0 <= share <= 1:
                at = round(PAD_LEFT + inner * share, 1)
                out.append(f'<g class="mark {escape(mark.css)}"><title>{escape(f"{mark.at:%Y-%m-%d %H:%M} UTC: {mark.text}")}'
                           f'</title><line x1="{at}" x2="{at}" y1="{PAD_TOP}" y2="{HEIGHT - PAD_BOTTOM}" class="mark-line"/>'
                           f'<line x1="{at}" x2="{at}" y1="{PAD_TOP}" y2="{HEIGHT - PAD_BOTTOM}" class="mark-hit"/></g>')
        out.append(f'<text x="{PAD_LEFT}" y="{HEIGHT - 8}" class="tick">{escape(_time_label(starts[0], span))}</text>')
        middle = starts[0] + span / 2
        out.append(f'<text x="{PAD_LEFT + inner / 2}" y="{HEIGHT - 8}" class="tick" text-anchor="middle">'
                   f'{escape(_time_label(middle, span))}</text>')
        out.append(f'<text x="{WIDTH - PAD_RIGHT}" y="{HEIGHT - 8}" class="tick" text-anchor="end">'
                   f'{escape(_time_label(starts[-1] + bar, span))} UTC</text>')
    if legend:
        _legend(out, [(line.label, line.css) for line in lines])
    out.append("</svg>")
    return Markup("".join(out))


def _band(out: list[str], line: Line, x: Callable[[float], float], y: Callable[[float], float]) -> None:
    """A line's interval band: one shaded polygon per run of bars that have an interval."""
    runs: list[list[int]] = []
    for index, span in enumerate(line.band):
        if span is None:
            continue
        if runs and runs[-1][-1] == index - 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    for run in runs:
        upper = [f"{x(i)},{y(line.band[i][1])}" for i in run]  # type: ignore[index]
        lower = [f"{x(i)},{y(line.band[i][0])}" for i in reversed(run)]  # type: ignore[index]
        if len(run) == 1:  # a lone interval is a whisker
            out.append(f'<line x1="{x(run[0])}" x2="{x(run[0])}" y1="{upper[0].split(",")[1]}" '
                       f'y2="{lower[0].split(",")[1]}" class="whisker {escape(line.css)}"/>')
        else:
            out.append(f'<polygon points="{" ".join(upper + lower)}" class="band {escape(line.css)}"/>')


def key(lines: Sequence[tuple[str, str]], marks: Sequence[tuple[str, str]] = ()) -> Markup:
    """A chart's key as an HTML list under it (it wraps on a phone, where a key drawn in the chart would not fit):
    (label, class) of each line, then of each kind of mark."""
    items = [f'<li><svg class="chart swatch" viewBox="0 0 18 8" aria-hidden="true"><line x1="0" x2="18" y1="4" y2="4" '
             f'class="line {escape(css)}"/></svg>{escape(text)}</li>' for text, css in lines]
    items += [f'<li><svg class="chart swatch" viewBox="0 0 18 8" aria-hidden="true"><g class="mark {escape(css)}">'
              f'<line x1="9" x2="9" y1="0" y2="8" class="mark-line"/></g></svg>{escape(text)}</li>' for text, css in marks]
    return Markup(f'<ul class="chart-key">{"".join(items)}</ul>')


def _legend(out: list[str], entries: Sequence[tuple[str, str]]) -> None:
    x = WIDTH - PAD_RIGHT
    for text, css in reversed(entries):
        width = 14 + 6.6 * len(text)
        x -= width
        out.append(f'<rect x="{round(x, 1)}" y="5" width="10" height="3" class="key {escape(css)}"/>'
                   f'<text x="{round(x + 13, 1)}" y="11" class="tick legend">{escape(text)}</text>')
        x -= 10


def bar_chart(categories: Sequence[str], groups: Sequence[Bars], *, label: str,
              unit: Callable[[float], str] = number, css: str = "") -> Markup:
    """Vertical bars per category, the groups side by side (e.g. today beside a week ago)."""
    out = _open(label, "columns " + css)
    values = [v for group in groups for v in group.values]
    top = nice_ceiling(max(values, default=0.0))
    y = _y_axis(out, top, unit)
    inner = WIDTH - PAD_LEFT - PAD_RIGHT
    slot = inner / max(len(categories), 1)
    bar = slot * 0.8 / max(len(groups), 1)
    for index, category in enumerate(categories):
        left = PAD_LEFT + index * slot + slot * 0.1
        for position, group in enumerate(groups):
            value = group.values[index] if index < len(group.values) else 0.0
            top_y = y(value)
            height = round(HEIGHT - PAD_BOTTOM - top_y, 1)
            out.append(f'<rect x="{round(left + position * bar, 1)}" y="{top_y}" width="{round(bar - 1, 1)}" '
                       f'height="{max(height, 0)}" class="bar {escape(group.css)}"><title>'
                       f'{escape(f"{group.label}, {category}: {unit(value)}")}</title></rect>')
        out.append(f'<text x="{round(PAD_LEFT + (index + 0.5) * slot, 1)}" y="{HEIGHT - 8}" class="tick" '
                   f'text-anchor="middle">{escape(category)}</text>')
    if len(groups) > 1:
        _legend(out, [(group.label, group.css) for group in groups])
    out.append("</svg>")
    return Markup("".join(out))


def share_bar(value: float, total: float, css: str = "s1") -> Markup:
    """A small horizontal bar of value / total (for a row of a table)."""
    share = 0.0 if total <= 0 else max(0.0, min(1.0, value / total))
    return Markup(f'<svg class="share" viewBox="0 0 100 8" preserveAspectRatio="none" aria-hidden="true">'
                  f'<rect x="0" y="0" width="100" height="8" class="track"/>'
                  f'<rect x="0" y="0" width="{round(100 * share, 2)}" height="8" class="bar {escape(css)}"/></svg>')


@dataclass(frozen=True)
class Step:
    """A score from `at` on, and what moved it there."""

    at: datetime
    score: int
    note: str = ""


@dataclass(frozen=True)
class Mark:
    """An event on the lead's timeline."""

    at: datetime
    text: str


STEP_WIDTH = 720  # the lead page gives it a whole card
STEP_HEIGHT = 240
EVENT_LANE = 22


def step_chart(steps: Sequence[Step], marks: Sequence[Mark], *, until: datetime, label: str) -> Markup:
    """The score as a step line over time (it holds until the next score), with the events as ticks under it."""
    out = _open(label, "steps", STEP_HEIGHT, STEP_WIDTH)
    chart_bottom = STEP_HEIGHT - PAD_BOTTOM - EVENT_LANE
    inner_h = chart_bottom - PAD_TOP
    inner_w = STEP_WIDTH - PAD_LEFT - PAD_RIGHT
    moments = [s.at for s in steps] + [m.at for m in marks]
    first = min(moments, default=until)
    last = max([until, *moments])
    span = max((last - first).total_seconds(), 1.0)

    def x(moment: datetime) -> float:
        return round(PAD_LEFT + inner_w * (moment - first).total_seconds() / span, 1)

    def y(score: float) -> float:
        return round(PAD_TOP + inner_h * (1 - max(0.0, min(100.0, score)) / 100), 1)

    for value in (0, 25, 50, 75, 100):
        out.append(f'<line x1="{PAD_LEFT}" x2="{STEP_WIDTH - PAD_RIGHT}" y1="{y(value)}" y2="{y(value)}" '
                   f'class="grid-line"/><text x="{PAD_LEFT - 6}" y="{y(value) + 4}" class="tick" '
                   f'text-anchor="end">{value}</text>')
    if steps:
        points = []
        for index, step in enumerate(steps):
            points.append(f"{x(step.at)},{y(step.score)}")
            end = steps[index + 1].at if index + 1 < len(steps) else last
            points.append(f"{x(end)},{y(step.score)}")
        out.append(f'<polyline points="{" ".join(points)}" class="line step"/>')
        for step in steps:
            text = f"{step.at:%Y-%m-%d %H:%M:%S} UTC: score {step.score}" + (f" · {step.note}" if step.note else "")
            out.append(f'<circle cx="{x(step.at)}" cy="{y(step.score)}" r="3.5" class="dot"><title>{escape(text)}'
                       f'</title></circle>')
    lane = chart_bottom + 6
    out.append(f'<line x1="{PAD_LEFT}" x2="{STEP_WIDTH - PAD_RIGHT}" y1="{lane + 8}" y2="{lane + 8}" class="grid-line"/>'
               f'<text x="{PAD_LEFT - 6}" y="{lane + 12}" class="tick" text-anchor="end">events</text>')
    for mark in marks:
        out.append(f'<rect x="{round(x(mark.at) - 1.5, 1)}" y="{lane}" width="3" height="16" class="event">'
                   f'<title>{escape(f"{mark.at:%Y-%m-%d %H:%M:%S} UTC: {mark.text}")}</title></rect>')
    wide = span > 86400
    out.append(f'<text x="{PAD_LEFT}" y="{STEP_HEIGHT - 6}" class="tick">'
               f'{escape(first.strftime("%Y-%m-%d %H:%M" if wide else "%m-%d %H:%M:%S"))}</text>'
               f'<text x="{STEP_WIDTH - PAD_RIGHT}" y="{STEP_HEIGHT - 6}" class="tick" text-anchor="end">'
               f'{escape(last.strftime("%Y-%m-%d %H:%M" if wide else "%m-%d %H:%M:%S"))} UTC</text>')
    out.append("</svg>")
    return Markup("".join(out))
