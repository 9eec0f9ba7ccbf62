"""Evidence over a step: per-series counter increases (resets, new and dead replicas) and latency counts."""

from __future__ import annotations

import math

import pytest

from medianest_delivery.errors import MetricsUnavailableError
from medianest_delivery.rollout.analysis import AnalysisScope, latency_histogram, slow_requests
from medianest_delivery.rollout.evidence import (
    BinomialSPRT,
    LatencyHistogram,
    Series,
    counter_increase,
    summed_increase,
    threshold_bucket,
    warmup_ends,
)


def ramp(instance: str, start: float, values: list[float], **labels: str) -> Series:
    return Series({"instance": instance, **labels}, [(start + i, v) for i, v in enumerate(values)])


def test_a_replica_restarted_mid_step_keeps_its_errors() -> None:
    """Replica a fails 4 requests, restarts (counter back to 0) and fails 4 more: 8 errors, not 0.

    Subtracting the raw sum at the step's start from the sum at its end (the
    previous analysis) gave 44 - 40 = 4 for a and hid the restart entirely in
    the sum with b: here it would read (4 + 0) - (40 + 0) < 0, clamped to 0.
    """
    a = ramp("a", 0, [40, 42, 44, 1, 4])
    b = ramp("b", 0, [0, 0, 0, 0, 0])
    raw = (a.points[-1][1] + b.points[-1][1]) - (a.points[0][1] + b.points[0][1])
    assert raw < 0
    assert summed_increase([a, b], start=0, step=1) == 8


def test_new_series_count_from_zero_and_dead_ones_keep_their_counts() -> None:
    """A label set born inside the step (first 500s) counts in full; a replica that died keeps what it served."""
    born = ramp("a", 3, [2, 5], status="500")
    dead = ramp("b", 0, [10, 15, 20])  # no points after t=2: the replica is gone
    assert counter_increase(born.points, existed_at_start=False) == 5
    assert summed_increase([born, dead], start=0, step=1) == 5 + 10


def test_warmup_covers_only_replicas_that_began_serving_in_the_window() -> None:
    new = ramp("new", 10, [1, 3, 6, 10, 15])
    old = ramp("old", 0, [100, 101])
    ends = warmup_ends([new, old], start=0, step=1, warmup_seconds=3)
    assert ends == {"new": 13}
    # The new replica's increments before t=13 are left out: 15 - 6 = 9 counted from t=13 on.
    assert summed_increase([new], start=0, step=1, not_before=ends) == 9
    assert warmup_ends([new], start=0, step=1, warmup_seconds=0) == {}


def test_threshold_bucket_never_hides_a_slow_request() -> None:
    assert threshold_bucket([0.1, 0.2, math.inf], 0.2) == 0.2
    assert threshold_bucket([0.1, 0.3, math.inf], 0.2) == 0.1  # lower: more counts as slow, never fewer
    assert threshold_bucket([0.5, math.inf], 0.2) is None


def test_sprt_rejects_bad_settings_and_impossible_counts() -> None:
    with pytest.raises(ValueError, match="alpha"):
        BinomialSPRT(0.05, 0.2, alpha=0.7, beta=0.05)
    with pytest.raises(ValueError, match="3 bad out of 2"):
        BinomialSPRT(0.05, 0.2, 0.01, 0.05).log_likelihood_ratio(2, 3)
    assert BinomialSPRT(0.05, 0.2, 0.01, 0.05).trials_to_accept() == 18


class HistogramOnly:
    """A stand-in for Prometheus answering one range query with fixed bucket series (a unit-test boundary)."""

    def __init__(self, series: list[Series]) -> None:
        self.series = series

    def range_series(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        assert expr.startswith("http_request_duration_seconds_bucket{")
        return self.series


SCOPE = AnalysisScope("preview-x", "backend", "b", "a")


def test_slow_requests_read_from_buckets_leave_out_cold_starts() -> None:
    """A replica born in the window: its first 3 s (all slow) are left out, later requests counted and judged."""
    # Cumulative counts at t = 10..16: 5 requests per second; the first 3 s' 15 requests were slow.
    total = [5, 10, 15, 20, 25, 30, 35]
    fast = [0, 0, 0, 5, 10, 14, 19]  # one slow request after the warm-up
    series = [ramp("r1", 10, total, le="+Inf"), ramp("r1", 10, fast, le="0.2"), ramp("r1", 10, fast, le="0.1")]
    histogram, excluded = latency_histogram(HistogramOnly(series), SCOPE, "b", 0, 16, 3.0)  # type: ignore[arg-type]
    assert histogram == LatencyHistogram({0.1: 19, 0.2: 19}, 20)
    slow = slow_requests(histogram, excluded, 0.2)
    assert (slow.requests, slow.slow, slow.bucket_seconds, slow.excluded_warmup) == (20, 1, 0.2, 15)
    cold, none_left_out = latency_histogram(HistogramOnly(series), SCOPE, "b", 0, 16, 0.0)  # type: ignore[arg-type]
    without_warmup = slow_requests(cold, none_left_out, 0.2)
    assert (without_warmup.requests, without_warmup.slow) == (35, 16)


def test_a_histogram_without_a_bucket_under_the_limit_is_named() -> None:
    series = [ramp("r1", 0, [1, 2], le="+Inf"), ramp("r1", 0, [1, 2], le="0.5")]
    with pytest.raises(MetricsUnavailableError, match="no bucket at or below 200 ms"):
        slow_requests(*latency_histogram(HistogramOnly(series), SCOPE, "b", 0, 1, 3.0), 0.2)  # type: ignore[arg-type]
