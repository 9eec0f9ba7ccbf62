"""Small SVG line charts for artifacts (pure): canary against stable, per analysis.

SVG keeps the chart a few kilobytes and needs no plotting library; artifacts
embed it as a data: URI image, which the Prefect UI renders inline.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from html import escape

COLOURS = {"canary": "#d9480f", "stable": "#1c7ed6"}


@dataclass(frozen=True)
class Series:
    name: str
    points: list[float | None]  # one per analysis; None = no data (a gap)


def line_chart_svg(
    title: str, unit: str, series: list[Series], labels: list[str], width: int = 640, height: int = 260
) -> str:
    """A line chart with a y axis from 0 to the largest value, x ticks from `labels`."""
    left, right, top, bottom = 60, 110, 30, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for s in series for v in s.points if v is not None]
    ymax = max(values) if values and max(values) > 0 else 1.0
    count = max((len(s.points) for s in series), default=0)

    def x(i: int) -> float:
        return left + (plot_w * i / (count - 1) if count > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h - plot_h * v / ymax

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#555"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#555"/>',
    ]
    for fraction in (0, 0.5, 1):
        value = ymax * fraction
        parts.append(f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{_fmt(value, unit)}</text>')
        parts.append(f'<line x1="{left}" y1="{y(value):.1f}" x2="{left + plot_w}" y2="{y(value):.1f}" stroke="#ddd"/>')
    step = max(1, count // 12)
    for i, label in enumerate(labels[:count]):
        if i % step == 0:
            parts.append(f'<text x="{x(i):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{escape(label)}</text>')
    for index, one in enumerate(series):
        colour = COLOURS.get(one.name, "#495057")
        segments: list[list[str]] = [[]]
        for i, v in enumerate(one.points):
            if v is None:
                segments.append([])
            else:
                segments[-1].append(f"{x(i):.1f},{y(v):.1f}")
        for segment in segments:
            if len(segment) > 1:
                parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(segment)}"/>')
            for point in segment:
                px, py = point.split(",")
                parts.append(f'<circle cx="{px}" cy="{py}" r="2.5" fill="{colour}"/>')
        legend_y = top + 14 + 18 * index
        parts.append(f'<rect x="{left + plot_w + 14}" y="{legend_y - 9}" width="12" height="3" fill="{colour}"/>')
        parts.append(f'<text x="{left + plot_w + 32}" y="{legend_y - 4}">{escape(one.name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _fmt(value: float, unit: str) -> str:
    if unit == "ratio":
        return f"{value:.0%}" if value >= 0.1 or value == 0 else f"{value:.1%}"
    if unit == "seconds":
        return f"{value * 1000:.0f} ms"
    return f"{value:g}"


def data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def canary_chart_markdown(component: str, points: list[dict[str, object]]) -> str:
    """Error rate and p95 of canary against stable, per analysis, as two charts and a table."""

    def values(key: str) -> list[float | None]:
        return [float(v) if isinstance(v, int | float) else None for v in (p.get(key) for p in points)]

    labels = [f"{p['weight']}%" for p in points]
    errors = line_chart_svg(
        f"{component}: error rate per analysis",
        "ratio",
        [Series("canary", values("canary_error_rate")), Series("stable", values("stable_error_rate"))],
        labels,
    )
    latency = line_chart_svg(
        f"{component}: p95 latency per analysis",
        "seconds",
        [Series("canary", values("canary_p95")), Series("stable", values("stable_p95"))],
        labels,
    )

    def cell(value: object, unit: str) -> str:
        return "–" if not isinstance(value, int | float) else _fmt(float(value), unit)

    rows = [
        f"| {p['step']} | {p['weight']}% | {p['analysis']} | {cell(p.get('canary_error_rate'), 'ratio')} | "
        f"{cell(p.get('stable_error_rate'), 'ratio')} | {cell(p.get('canary_p95'), 'seconds')} | "
        f"{cell(p.get('stable_p95'), 'seconds')} | {p['phase']} |"
        for p in points
    ]
    return "\n".join(
        [
            f"## {component}: canary against stable",
            "",
            f"![{component} error rate, canary against stable]({data_uri(errors)})",
            "",
            f"![{component} p95 latency, canary against stable]({data_uri(latency)})",
            "",
            "| step | weight | analysis | canary errors | stable errors | canary p95 | stable p95 | verdict |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
