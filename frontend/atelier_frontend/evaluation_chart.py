"""A reference set's trend, drawn on the server as inline SVG: the set's primary metric of each succeeded run, oldest
to newest from left to right, one line per model version. No script and no chart library: the page draws offline and
without JavaScript, and its figures are in the page for a screen reader (the SVG's title and description, and a
table beside it).

The geometry is computed here; the template (``_evaluation_trend.html``) writes the elements, escaping every label."""

from __future__ import annotations

import math
from dataclasses import dataclass

#: the chart's box (the SVG's viewBox: it scales to the card's width) and the room for the scale's labels
WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 12, 30
TICKS = 4
#: the usage page's colours (charts.js), in the same order: a version's line keeps its colour while the set grows
COLOURS = ("#3b5bdb", "#e67700", "#2b8a3e", "#c2255c", "#7048e8", "#0c8599", "#5c940d")


@dataclass(frozen=True)
class Point:
    run: object  # the EvaluationRun
    value: float
    x: float
    y: float
    series: str
    label: str  # the series' words
    colour: str


@dataclass(frozen=True)
class Line:
    key: str
    label: str
    pinned: bool
    colour: str
    points: list[Point]

    @property
    def path(self) -> str:
        """The polyline's points, oldest first."""
        return " ".join(f"{point.x:.1f},{point.y:.1f}" for point in self.points)


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class Chart:
    lines: list[Line]
    points: list[Point]  # every run charted, oldest first (the table's rows)
    ticks: list[Tick]
    first: Point | None
    last: Point | None
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right_edge: int = WIDTH - RIGHT
    bottom_edge: int = HEIGHT - BOTTOM


def decimals_of(step: float) -> int:
    """As many decimals as the scale's step needs (0.25 needs 2, 20 none), at most 4."""
    for places in range(5):
        if abs(round(step, places) - step) < step * 1e-6:
            return places
    return 4


def scale(low: float, high: float) -> tuple[float, float]:
    """The scale's bottom and the step between its ``TICKS`` + 1 gridlines, on round numbers, holding low to high.
    A flat line (one run, or equal scores) gets a little room above and below."""
    if high - low < 1e-12:
        room = abs(high) * 0.05 or 0.05
        low, high = low - room, high + room
    raw = (high - low) / TICKS
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    bottom = math.floor(low / step + 1e-9) * step
    while bottom + step * TICKS < high - 1e-9:  # the bottom fell below low by up to a step: widen
        step *= 2
        bottom = math.floor(low / step + 1e-9) * step
    return bottom, step


def chart(series, labels: dict[str, str]) -> Chart:
    """``series``: ``history.Series`` (each with its points, (run, value), oldest first); ``labels``: each series'
    words by key. The x axis is the order the runs were started in across every series (an even step each: a burst
    of runs one afternoon stays readable beside a run a month later, whose date its point's title gives)."""
    runs = sorted(((run, value, one.key) for one in series for run, value in one.points),
                  key=lambda shown: (shown[0].created_at, str(shown[0].pk)))
    if not runs:
        return Chart(lines=[], points=[], ticks=[], first=None, last=None)
    values = [value for _, value, _ in runs]
    bottom, step = scale(min(values), max(values))
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    spacing = inner_w / len(runs)

    def y_of(value: float) -> float:
        return TOP + inner_h - inner_h * (value - bottom) / (step * TICKS)

    colours = {one.key: COLOURS[n % len(COLOURS)] for n, one in enumerate(series)}
    points = [Point(run=run, value=value, x=LEFT + spacing * (index + 0.5), y=y_of(value), series=key,
                    label=labels.get(key, key), colour=colours[key])
              for index, (run, value, key) in enumerate(runs)]
    places = decimals_of(step)
    ticks = [Tick(y=y_of(bottom + step * i), label=f"{bottom + step * i:.{places}f}") for i in range(TICKS + 1)]
    lines = [Line(key=one.key, label=labels.get(one.key, one.key), pinned=one.pinned, colour=colours[one.key],
                  points=[point for point in points if point.series == one.key])
             for one in series]
    return Chart(lines=lines, points=points, ticks=ticks, first=points[0], last=points[-1])
