"""SVG charts for artifacts: well-formed, one line per series, gaps where data is missing."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET

from medianest_delivery.charts import Series, canary_chart_markdown, line_chart_svg

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str | bytes) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - SVG this project generated, not outside input


def test_chart_is_valid_svg_with_a_line_per_series() -> None:
    """The chart parses as SVG with one coloured polyline per series, x labels, legend and a y axis topped by the largest value."""
    svg = line_chart_svg(
        "p95", "seconds", [Series("canary", [0.1, 0.2, 0.4]), Series("stable", [0.1, 0.1, 0.1])], ["10%", "30%", "50%"]
    )
    root = parse(svg)
    lines = root.findall(f"{SVG}polyline")
    assert [line.get("stroke") for line in lines] == ["#d9480f", "#1c7ed6"]
    assert len(lines[0].get("points", "").split()) == 3
    texts = [t.text for t in root.findall(f"{SVG}text")]
    assert "400 ms" in texts  # the y axis tops out at the largest value
    assert {"10%", "30%", "50%", "canary", "stable"} <= set(texts)


def test_missing_values_break_the_line() -> None:
    """A None value breaks a series' line: only runs of two or more points become polylines."""
    svg = line_chart_svg("errors", "ratio", [Series("canary", [0.1, None, 0.3, 0.2])], ["a", "b", "c", "d"])
    lines = parse(svg).findall(f"{SVG}polyline")
    assert [len(line.get("points", "").split()) for line in lines] == [2]  # 0.3-0.2; 0.1 stands alone as a dot


def test_canary_markdown_embeds_two_charts_and_a_row_per_analysis() -> None:
    """The markdown embeds two base64 SVG charts that parse, and a table row per analysis (a dash for a missing value)."""
    points = [
        {
            "step": 1,
            "weight": 10,
            "analysis": 1,
            "phase": "passed",
            "canary_error_rate": 0.0,
            "stable_error_rate": 0.01,
            "canary_p95": 0.05,
            "stable_p95": 0.04,
        },
        {
            "step": 2,
            "weight": 30,
            "analysis": 1,
            "phase": "failed",
            "canary_error_rate": 0.4,
            "stable_error_rate": 0.0,
            "canary_p95": None,
            "stable_p95": 0.04,
        },
    ]
    markdown = canary_chart_markdown("backend", points)
    images = re.findall(r"!\[[^\]]*\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert len(images) == 2
    for image in images:
        parse(base64.b64decode(image))
    assert "| 2 | 30% | 1 | 40% | 0% | – | 40 ms | failed |" in markdown
