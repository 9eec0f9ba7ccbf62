"""Stage timings from task-run intervals: pure arithmetic on (name, start, end)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

Interval = tuple[dt.datetime, dt.datetime]


@dataclass(frozen=True)
class StageTimings:
    """Wall seconds per stage, and the stages that were all cache hits."""

    seconds: dict[str, float] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)


def covered_seconds(intervals: Iterable[Interval]) -> float:
    """Length of the union of intervals: time during which at least one ran.

    >>> t = dt.datetime(2026, 1, 1)
    >>> s = dt.timedelta(seconds=1)
    >>> covered_seconds([(t, t + 2 * s), (t + s, t + 3 * s), (t + 5 * s, t + 6 * s)])
    4.0
    """
    total = 0.0
    current: Interval | None = None
    for start, end in sorted(intervals):
        if current is None:
            current = (start, end)
        elif start > current[1]:
            total += (current[1] - current[0]).total_seconds()
            current = (start, end)
        else:
            current = (current[0], max(current[1], end))
    if current is not None:
        total += (current[1] - current[0]).total_seconds()
    return total


def stage_spans(task_runs: Iterable[tuple[str, dt.datetime, dt.datetime]]) -> dict[str, float]:
    """Wall time per stage: a stage is the task-run name before ':' ("build: backend" -> "build").

    A stage whose tasks ran concurrently counts its wall span once, not the sum.
    """
    grouped: dict[str, list[Interval]] = {}
    for name, start, end in task_runs:
        stage = name.split(":", 1)[0].strip()
        grouped.setdefault(stage, []).append((start, end))
    ordered = sorted(grouped.items(), key=lambda item: min(s for s, _ in item[1]))
    return {stage: round(covered_seconds(spans), 3) for stage, spans in ordered}


def cached_stages(task_runs: Iterable[tuple[str, bool]]) -> list[str]:
    """Stages whose every task run was a cache hit, in first-seen order.

    >>> cached_stages([("sign: a", True), ("sign: b", True), ("build: a", True), ("build: b", False)])
    ['sign']
    """
    hits: dict[str, bool] = {}
    for name, cached in task_runs:
        stage = name.split(":", 1)[0].strip()
        hits[stage] = hits.get(stage, True) and cached
    return [stage for stage, all_cached in hits.items() if all_cached]
