"""Evidence that accumulates over a canary step: counter increases per series, and a sequential test.

Pure functions over what Prometheus returned for the step's whole interval.

Counters are summed per series, never as one raw sum: a replica that restarts
resets its counters (the sum would drop and hide its errors), and a replica or
a label set (``status="500"``) that first appears inside the step started from
zero, so its first value counts in full. A series that stops (a dead replica)
keeps what it counted until it stopped.

The absolute latency criterion (p95 below a limit) is judged as a question
about requests: is the share of requests slower than the limit above 5%? A
sequential probability ratio test (Wald) answers it from the step's cumulative
counts at every look, with known error rates however often it looks.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Point = tuple[float, float]  # (unix seconds, value)


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[Point]


def counter_increase(points: Sequence[Point], existed_at_start: bool, not_before: float | None = None) -> float:
    """What a counter series counted over its points, resets included.

    ``existed_at_start``: the series had a value when the interval began, so its
    first point is the baseline; otherwise it was created inside the interval
    and started from zero. A drop in value is a reset (a restarted process):
    the new value is what it counted since. ``not_before`` drops increments seen
    at points earlier than that time (a replica's warm-up).

    >>> counter_increase([(0, 10), (1, 15), (2, 3), (3, 7)], existed_at_start=True)
    12.0
    >>> counter_increase([(5, 4), (6, 6)], existed_at_start=False)
    6.0
    """
    total = 0.0
    previous = None if existed_at_start else 0.0
    for at, value in points:
        if previous is not None and (not_before is None or at >= not_before):
            total += value - previous if value >= previous else value
        previous = value
    return total


def existed_at(series: Series, start: float, step: float) -> bool:
    """Whether the series had a value at the interval's first evaluation (within one step of ``start``)."""
    return bool(series.points) and series.points[0][0] <= start + step / 2


def summed_increase(
    series: Iterable[Series], start: float, step: float, not_before: dict[str, float] | None = None
) -> float:
    """The increase of all series together, each counted on its own (see `counter_increase`)."""
    total = 0.0
    for s in series:
        cutoff = (not_before or {}).get(s.labels.get("instance", ""))
        total += counter_increase(s.points, existed_at(s, start, step), cutoff)
    return total


def warmup_ends(series: Iterable[Series], start: float, step: float, warmup_seconds: float) -> dict[str, float]:
    """When each replica that began serving inside the interval leaves its warm-up.

    A replica (the ``instance`` label) whose request series all first appear
    inside the interval served its first request then: its first
    ``warmup_seconds`` of traffic are its cold start. A replica that already had
    series at the start is warm.

    >>> new = Series({"instance": "a"}, [(10.0, 1.0), (11.0, 5.0)])
    >>> old = Series({"instance": "b"}, [(0.0, 9.0), (11.0, 12.0)])
    >>> warmup_ends([new, old], start=0.0, step=1.0, warmup_seconds=3.0)
    {'a': 13.0}
    """
    first_seen: dict[str, float] = {}
    warm: set[str] = set()
    for s in series:
        instance = s.labels.get("instance", "")
        if not s.points:
            continue
        if existed_at(s, start, step):
            warm.add(instance)
        first_seen[instance] = min(first_seen.get(instance, math.inf), s.points[0][0])
    return {i: at + warmup_seconds for i, at in first_seen.items() if i not in warm and warmup_seconds > 0}


@dataclass(frozen=True)
class SlowRequests:
    """Requests judged for latency in a step and how many took longer than the limit's bucket."""

    requests: int
    slow: int
    bucket_seconds: float  # the histogram bucket boundary the limit was read at
    excluded_warmup: int = 0  # requests left out as replicas' cold starts


@dataclass(frozen=True)
class LatencyHistogram:
    """One slot's requests in a step, counted at each finite bucket boundary (at or below it), and in all."""

    at_or_below: dict[float, int]
    total: int

    def slower_than(self, boundary: float) -> int:
        return max(0, self.total - self.at_or_below.get(boundary, 0))

    def share_slower_than(self, seconds: float) -> float:
        """The share of requests slower than ``seconds``, linear between bucket boundaries (as
        histogram_quantile reads a bucket), from 0 s where every request is slower.

        >>> LatencyHistogram({0.01: 20, 0.02: 60}, 100).share_slower_than(0.015)
        0.6
        """
        if self.total <= 0:
            return 0.0
        lower, below = 0.0, 0
        for boundary in sorted(b for b in self.at_or_below if math.isfinite(b)):
            count = self.at_or_below[boundary]
            if seconds <= boundary:
                inside = (seconds - lower) / (boundary - lower) if boundary > lower else 1.0
                return 1 - (below + (count - below) * inside) / self.total
            lower, below = boundary, count
        return 1 - below / self.total


def comparison_boundary(stable: LatencyHistogram, canary: LatencyHistogram) -> float | None:
    """The boundary both histograms have where stable's requests split closest to half slower, half not.

    Comparing how often each side is slower than stable's median carries the
    most information per request; a shift of the canary's distribution shows
    as more of its requests on the slow side.

    >>> stable = LatencyHistogram({0.005: 10, 0.01: 60, 0.025: 95}, 100)
    >>> comparison_boundary(stable, stable)
    0.01
    """
    shared = [b for b in stable.at_or_below if b in canary.at_or_below and math.isfinite(b)]
    if stable.total <= 0 or not shared:
        return None
    return min(shared, key=lambda b: (abs(stable.at_or_below[b] / stable.total - 0.5), b))


def threshold_bucket(boundaries: Iterable[float], limit_seconds: float) -> float | None:
    """The largest finite bucket boundary at or below the limit: requests above it count as slow.

    Reading the limit at a lower boundary can only count more requests as slow
    (never hides a slow one). None when every bucket is above the limit.

    >>> threshold_bucket([0.1, 0.15, 0.2, 0.3, math.inf], 0.2)
    0.2
    >>> threshold_bucket([0.1, 0.25], 0.2)
    0.1
    """
    below = [b for b in boundaries if b <= limit_seconds and math.isfinite(b)]
    return max(below) if below else None


class SequentialDecision(enum.StrEnum):
    ACCEPT = "accept"  # the good hypothesis: within the limit
    REJECT = "reject"  # the bad hypothesis: over the limit
    CONTINUE = "continue"


@dataclass(frozen=True)
class BinomialSPRT:
    """Wald's SPRT for the share of "bad" trials (slow requests, failed requests).

    H0: share = ``good_share`` (at the limit, acceptable); H1: share =
    ``bad_share``. ``alpha`` is the chance of rejecting a release whose share
    is at most ``good_share`` (a false rollback), ``beta`` the chance of
    accepting one whose share is at least ``bad_share`` (a missed regression).
    The cumulative log-likelihood ratio may be checked after every request or
    every few seconds: Wald's bounds hold for any looking schedule.

    >>> test = BinomialSPRT(good_share=0.05, bad_share=0.20, alpha=0.01, beta=0.05)
    >>> test.decide(trials=20, bad=0).value, test.decide(trials=4, bad=4).value, test.decide(trials=20, bad=2).value
    ('accept', 'reject', 'continue')
    """

    good_share: float
    bad_share: float
    alpha: float
    beta: float

    def __post_init__(self) -> None:
        if not 0 < self.good_share < self.bad_share < 1:
            raise ValueError(f"need 0 < good share {self.good_share} < bad share {self.bad_share} < 1")
        if not (0 < self.alpha < 0.5 and 0 < self.beta < 0.5):
            raise ValueError(f"error rates alpha={self.alpha}, beta={self.beta} must be in (0, 0.5)")

    @property
    def upper(self) -> float:
        return math.log((1 - self.beta) / self.alpha)

    @property
    def lower(self) -> float:
        return math.log(self.beta / (1 - self.alpha))

    def log_likelihood_ratio(self, trials: int, bad: int) -> float:
        if not 0 <= bad <= trials:
            raise ValueError(f"{bad} bad out of {trials} trials")
        good = trials - bad
        return bad * math.log(self.bad_share / self.good_share) + good * math.log(
            (1 - self.bad_share) / (1 - self.good_share)
        )

    def decide(self, trials: int, bad: int) -> SequentialDecision:
        llr = self.log_likelihood_ratio(trials, bad)
        if llr >= self.upper:
            return SequentialDecision.REJECT
        if llr <= self.lower:
            return SequentialDecision.ACCEPT
        return SequentialDecision.CONTINUE

    def trials_to_accept(self) -> int:
        """Requests with no bad one the test needs before it accepts: the least evidence a pass takes."""
        return self.more_trials_to_accept(0, 0)

    def more_trials_to_accept(self, trials: int, bad: int) -> int:
        """Good trials still needed, from here, before the test accepts (0 once it has).

        >>> BinomialSPRT(0.001, 0.005, 0.01, 0.05).more_trials_to_accept(0, 0)
        745
        >>> BinomialSPRT(0.001, 0.005, 0.01, 0.05).more_trials_to_accept(500, 1)
        647
        """
        per_good = math.log((1 - self.bad_share) / (1 - self.good_share))
        return max(0, math.ceil((self.lower - self.log_likelihood_ratio(trials, bad)) / per_good))
