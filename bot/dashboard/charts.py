"""Charts as inline SVG drawn on the server: nothing for the browser to fetch, nothing to run.

Each chart is ``<svg class="chart" data-chart=NAME>``; a series is a ``<polyline data-series=… data-points=N>`` or a
group of ``<rect class="bar">``, so a test (or a curious admin) can read what was drawn.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from html import escape

W, H = 560, 220
LEFT, RIGHT, TOP, BOTTOM = 62, 12, 14, 34
MARKERS_UP_TO = 120
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")


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


def _frame(
    name: str, title: str, y_max: float, unit: str, body: list[str], legend: Sequence[str], prefix: str = ""
) -> str:
    parts = [
        (
            f'<svg class="chart" data-chart="{escape(name)}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
            f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        ),
        f'<rect x="0" y="0" width="{W}" height="{H}" fill="#ffffff"/>',
    ]
    for i in range(5):  # grid lines and y labels
        y = TOP + (H - TOP - BOTTOM) * i / 4
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="10" fill="#6b7280">'
            f"{escape(prefix)}{escape(_fmt(y_max * (4 - i) / 4))}{escape(unit)}</text>"
        )
    parts += body
    x = LEFT
    for i, label in enumerate(legend):
        parts.append(
            f'<rect x="{x}" y="{H - 12}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
        )
        parts.append(f'<text x="{x + 14}" y="{H - 3}" font-size="11" fill="#374151">{escape(label)}</text>')
        x += 22 + 7 * len(label)
    parts.append("</svg>")
    return "".join(parts)


def empty(name: str, title: str, why: str = "no data in this window yet") -> str:
    return (
        f'<svg class="chart empty" data-chart="{escape(name)}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(title)}"><rect width="{W}" height="{H}" '
        f'fill="#f9fafb"/><text x="{W / 2}" y="{H / 2}" text-anchor="middle" font-size="13" fill="#6b7280">'
        f"{escape(why)}</text></svg>"
    )


def line_chart(
    name: str,
    title: str,
    series: Mapping[str, Sequence[Sequence[float]]],
    *,
    t0: float,
    t1: float,
    unit: str = "",
) -> str:
    """Series of (time, value) points over [t0, t1]."""
    series = {label: pts for label, pts in series.items() if pts}
    if not series:
        return empty(name, title)
    y_max = _nice_max(max(v for pts in series.values() for _, v in pts))
    span = max(t1 - t0, 1.0)
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    body = []
    for i, (label, pts) in enumerate(series.items()):
        coords = " ".join(
            f"{LEFT + plot_w * (t - t0) / span:.1f},{TOP + plot_h * (1 - v / y_max):.1f}" for t, v in pts
        )
        color = PALETTE[i % len(PALETTE)]
        body.append(
            f'<polyline class="series" data-series="{escape(label)}" data-points="{len(pts)}" '
            f'points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>'
        )
        if len(pts) <= MARKERS_UP_TO:  # sparse data: dots, so a single sample or a flat line stays visible
            for xy in coords.split():
                x, y = xy.split(",")
                body.append(f'<circle class="pt" cx="{x}" cy="{y}" r="2.5" fill="{color}"/>')
    for frac, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
        stamp = time.strftime("%m-%d %H:%M", time.gmtime(t0 + span * frac))
        body.append(
            f'<text x="{LEFT + plot_w * frac:.1f}" y="{H - 20}" text-anchor="{anchor}" font-size="10" '
            f'fill="#6b7280">{stamp} UTC</text>'
        )
    return _frame(name, title, y_max, unit, body, list(series))


def bar_chart(
    name: str,
    title: str,
    labels: Sequence[str],
    groups: Mapping[str, Sequence[float]],
    *,
    unit: str = "",
    prefix: str = "",
    label_every: int = 1,
) -> str:
    """Grouped bars: one group per label, one bar per series in ``groups`` (series name → value per label)."""
    groups = {k: list(v) for k, v in groups.items()}
    values = [v for vals in groups.values() for v in vals]
    if not labels or not values or max(values) <= 0:
        return empty(name, title)
    y_max = _nice_max(max(values))
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    slot = plot_w / len(labels)
    bar_w = max(1.0, slot * 0.8 / len(groups))
    body = []
    for gi, (series_name, vals) in enumerate(groups.items()):
        color = PALETTE[gi % len(PALETTE)]
        body.append(f'<g class="bars" data-series="{escape(series_name)}" data-points="{len(vals)}">')
        for li, value in enumerate(vals):
            height = plot_h * value / y_max
            x = LEFT + slot * li + slot * 0.1 + bar_w * gi
            body.append(
                f'<rect class="bar" x="{x:.1f}" y="{TOP + plot_h - height:.1f}" width="{bar_w:.1f}" '
                f'height="{height:.1f}" fill="{color}" data-value="{value:g}"><title>{escape(labels[li])}: '
                f"{escape(prefix)}{value:g}{escape(unit)}</title></rect>"
            )
        body.append("</g>")
    for li, label in enumerate(labels):
        if li % label_every == 0:
            body.append(
                f'<text x="{LEFT + slot * (li + 0.5):.1f}" y="{H - 20}" text-anchor="middle" font-size="10" '
                f'fill="#6b7280">{escape(label[:14])}</text>'
            )
    return _frame(name, title, y_max, unit, body, list(groups), prefix)
