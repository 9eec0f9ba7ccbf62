"""Stage timings from task-run intervals: pure arithmetic on (name, start, end)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

Interval = tuple[dt.datetime, dt.datetime]


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
