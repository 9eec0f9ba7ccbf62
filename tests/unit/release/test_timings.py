"""Stage timings: wall spans per stage and which stages were served from Prefect's cache."""

from __future__ import annotations

import datetime as dt

import pytest

from medianest_delivery.release.timings import cached_stages, covered_seconds, stage_spans

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("name", "intervals", "expected"),
    [
        ("empty", [], 0.0),
        ("overlap counts once", [(at(0), at(2)), (at(1), at(3))], 3.0),
        ("gap is not covered", [(at(0), at(1)), (at(5), at(6))], 2.0),
        ("nested", [(at(0), at(10)), (at(2), at(3))], 10.0),
    ],
)
def test_covered_seconds(name: str, intervals: list[tuple[dt.datetime, dt.datetime]], expected: float) -> None:
    """The union of intervals, not their sum: concurrent tasks count once."""
    assert covered_seconds(intervals) == expected, name


def test_stage_spans_group_by_prefix_in_start_order() -> None:
    """'build: backend' and 'build: frontend' are one stage; stages come in the order they started."""
    runs = [
        ("sign: backend", at(10), at(11)),
        ("build: backend", at(0), at(4)),
        ("build: frontend", at(1), at(5)),
    ]
    assert stage_spans(runs) == {"build": 5.0, "sign": 1.0}


@pytest.mark.parametrize(
    ("name", "runs", "expected"),
    [
        ("all hits", [("sbom: a", True), ("sbom: b", True)], ["sbom"]),
        ("one miss spoils the stage", [("build: a", True), ("build: b", False)], []),
        ("stages kept apart", [("quality: lint", True), ("verify: a", False)], ["quality"]),
        ("nothing ran", [], []),
    ],
)
def test_cached_stages(name: str, runs: list[tuple[str, bool]], expected: list[str]) -> None:
    """A stage is marked cached only when every one of its task runs was a cache hit."""
    assert cached_stages(runs) == expected, name
