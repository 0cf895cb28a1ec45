"""Charts as inline SVG drawn on the server: nothing for the browser to fetch, nothing to run.

This module computes the geometry (a ``Chart``); ``templates/chart.svg.j2`` draws it, autoescaped. Each chart
is ``<svg class="chart" data-chart=NAME>``; a series is a ``<polyline data-series=… data-points=N>`` or a group
of ``<rect class="bar">``, so a test (or a curious admin) can read what was drawn.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

W, H = 560, 220
LEFT, RIGHT, TOP, BOTTOM = 62, 12, 14, 34
MARKERS_UP_TO = 120
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")


@dataclass(frozen=True)
class Line:
    label: str
    color: str
    points: list[tuple[str, str]]  # (x, y), formatted
    markers: bool  # sparse data: dots, so a single sample or a flat line stays visible

    @property
    def coords(self) -> str:
        return " ".join(f"{x},{y}" for x, y in self.points)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: float
    tip: str


@dataclass(frozen=True)
class BarSeries:
    label: str
    color: str
    bars: list[Bar]


@dataclass(frozen=True)
class Chart:
    name: str
    title: str
    empty: str | None = None  # why nothing is drawn
    grid: list[tuple[float, str]] = field(default_factory=list)  # (y, axis label)
    lines: list[Line] = field(default_factory=list)
    bar_series: list[BarSeries] = field(default_factory=list)
    x_labels: list[tuple[float, str, str]] = field(default_factory=list)  # (x, text-anchor, text)
    legend: list[tuple[float, str, str]] = field(default_factory=list)  # (x, color, label)


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    for magnitude in range(-3, 12):
        for step in (1, 2, 2.5, 5):
            top = step * 10**magnitude
            if top >= value:
                return top
    return value


def _fmt(value: float) -> str:
    return f"{value:.0f}" if value >= 100 or value == int(value) else f"{value:.3g}"


def _grid(y_max: float, unit: str, prefix: str) -> list[tuple[float, str]]:
    plot_h = H - TOP - BOTTOM
    return [(TOP + plot_h * i / 4, f"{prefix}{_fmt(y_max * (4 - i) / 4)}{unit}") for i in range(5)]


def _legend(labels: Sequence[str]) -> list[tuple[float, str, str]]:
    items: list[tuple[float, str, str]] = []
    x: float = LEFT
    for i, label in enumerate(labels):
        items.append((x, PALETTE[i % len(PALETTE)], label))
        x += 22 + 7 * len(label)
    return items


def empty(name: str, title: str, why: str = "no data in this window yet") -> Chart:
    return Chart(name, title, empty=why)


def line_chart(
    name: str,
    title: str,
    series: Mapping[str, Sequence[Sequence[float]]],
    *,
    t0: float,
    t1: float,
    unit: str = "",
) -> Chart:
    """Series of (time, value) points over [t0, t1]."""
    series = {label: pts for label, pts in series.items() if pts}
    if not series:
        return empty(name, title)
    y_max = _nice_max(max(v for pts in series.values() for _, v in pts))
    span = max(t1 - t0, 1.0)
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    lines = []
    for i, (label, pts) in enumerate(series.items()):
        xy = [
            (f"{LEFT + plot_w * (t - t0) / span:.1f}", f"{TOP + plot_h * (1 - v / y_max):.1f}")
            for t, v in pts
        ]
        lines.append(Line(label, PALETTE[i % len(PALETTE)], xy, len(pts) <= MARKERS_UP_TO))
    stamps = [
        (LEFT + plot_w * frac, anchor, time.strftime("%m-%d %H:%M", time.gmtime(t0 + span * frac)) + " UTC")
        for frac, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end"))
    ]
    return Chart(
        name, title, grid=_grid(y_max, unit, ""), lines=lines, x_labels=stamps, legend=_legend(list(series))
    )


def bar_chart(
    name: str,
    title: str,
    labels: Sequence[str],
    groups: Mapping[str, Sequence[float]],
    *,
    unit: str = "",
    prefix: str = "",
    label_every: int = 1,
) -> Chart:
    """Grouped bars: one group per label, one bar per series in ``groups`` (series name → value per label)."""
    groups = {k: list(v) for k, v in groups.items()}
    values = [v for vals in groups.values() for v in vals]
    if not labels or not values or max(values) <= 0:
        return empty(name, title)
    y_max = _nice_max(max(values))
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    slot = plot_w / len(labels)
    bar_w = max(1.0, slot * 0.8 / len(groups))
    series = [
        BarSeries(
            series_name,
            PALETTE[gi % len(PALETTE)],
            [
                Bar(
                    LEFT + slot * li + slot * 0.1 + bar_w * gi,
                    TOP + plot_h - plot_h * value / y_max,
                    bar_w,
                    plot_h * value / y_max,
                    value,
                    f"{labels[li]}: {prefix}{value:g}{unit}",
                )
                for li, value in enumerate(vals)
            ],
        )
        for gi, (series_name, vals) in enumerate(groups.items())
    ]
    ticks = [
        (LEFT + slot * (li + 0.5), "middle", label[:14])
        for li, label in enumerate(labels)
        if li % label_every == 0
    ]
    return Chart(
        name,
        title,
        grid=_grid(y_max, unit, prefix),
        bar_series=series,
        x_labels=ticks,
        legend=_legend(list(groups)),
    )
