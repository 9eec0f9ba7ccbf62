"""Canary analysis against Prometheus: the PromQL (pure) and one observation (I/O).

Every failed query becomes an entry in ``StepObservation.errors`` with the
resolved query kept beside it, so a person can see why each decision was made.
Counts are read as series over the step's whole interval and summed per series
(`evidence.summed_increase`): restarted, replaced or dead replicas keep their
requests and errors.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from medianest_delivery.errors import MetricsUnavailableError
from medianest_delivery.rollout.evidence import (
    LatencyHistogram,
    Series,
    SlowRequests,
    summed_increase,
    threshold_bucket,
    warmup_ends,
)
from medianest_delivery.rollout.judge import (
    CanaryThresholds,
    Measurement,
    Phase,
    SliceCounts,
    StepObservation,
    VerdictOutlook,
)
from medianest_delivery.rollout.metrics import PrometheusClient

# Probes and scrapes are not user traffic.
USER_ROUTES = 'route!~"/health|/ready|/metrics"'


@dataclass(frozen=True)
class AnalysisScope:
    environment: str
    component: str
    canary_slot: str
    stable_slot: str
    # A monitoring window judges the promoted release alone (the other slot has no traffic to compare
    # with): absolute criteria, plus what the router answered clients.
    monitoring: bool = False

    def router_selector(self, extra: str = "") -> str:
        parts = [f'env="{self.environment}"', f'proxy="fe_{self.component}"']
        return "{" + ", ".join([*parts, extra] if extra else parts) + "}"

    def selector(self, slot: str, extra: str = "") -> str:
        parts = [f'env="{self.environment}"', f'component="{self.component}"', f'slot="{slot}"', USER_ROUTES]
        if extra:
            parts.append(extra)
        return "{" + ", ".join(parts) + "}"


def requests_query(scope: AnalysisScope, slot: str, errors_only: bool) -> str:
    """The slot's request counters, one series per replica and label set (5xx only or all)."""
    extra = 'status=~"5.."' if errors_only else ""
    return f"http_requests_total{scope.selector(slot, extra)}"


def router_query(scope: AnalysisScope, errors_only: bool) -> str:
    """Response counters of the component's HAProxy frontend (HAProxy's exporter), 5xx only or all."""
    selector = scope.router_selector('code="5xx"' if errors_only else "")
    return f"haproxy_frontend_http_responses_total{selector}"


def buckets_query(scope: AnalysisScope, slot: str | None = None) -> str:
    """A slot's (the canary's) request-duration histogram buckets, one series per replica, label set and bucket."""
    return f"http_request_duration_seconds_bucket{scope.selector(slot or scope.canary_slot)}"


def p95_query(scope: AnalysisScope, window_seconds: int) -> str:
    return (
        "histogram_quantile(0.95, sum by (le) "
        f"(increase(http_request_duration_seconds_bucket{scope.selector(scope.canary_slot)}[{window_seconds}s])))"
    )


def alerts_query(environment: str) -> str:
    return f'ALERTS{{alertstate="firing", severity="critical", env="{environment}"}}'


def _range_step(since: float, now: float) -> float:
    """One point per scrape (1 s), coarser only where Prometheus' 11,000 points per series would not do."""
    return float(max(1, math.ceil((now - since) / 10_000)))


def _counts(
    client: PrometheusClient, expr: str, errors: Callable[[Series], bool], since: float, now: float
) -> SliceCounts:
    """Requests and errors between ``since`` and ``now``, each series counted on its own."""
    step = _range_step(since, now)
    series = client.range_series(expr, since, now, step)
    total = summed_increase(series, since, step)
    failed = summed_increase([s for s in series if errors(s)], since, step)
    return SliceCounts(max(0, round(total)), max(0, round(failed)))


def _is_5xx(series: Series) -> bool:
    return series.labels.get("status", "").startswith("5")


def _is_router_5xx(series: Series) -> bool:
    return series.labels.get("code") == "5xx"


def latency_histogram(
    client: PrometheusClient,
    scope: AnalysisScope,
    slot: str,
    since: float,
    now: float,
    warmup_seconds: float,
) -> tuple[LatencyHistogram, int]:
    """A slot's request histogram since ``since``, each series counted on its own, replicas' warm-ups left out;
    with the number of requests left out."""
    step = _range_step(since, now)
    by_bucket: dict[float, list[Series]] = {}
    for s in client.range_series(buckets_query(scope, slot), since, now, step):
        try:
            by_bucket.setdefault(float(s.labels.get("le", "nan")), []).append(s)
        except ValueError:
            continue
    totals = by_bucket.pop(math.inf, [])
    if not totals:
        return LatencyHistogram({}, 0), 0
    warm_from = warmup_ends(totals, since, step, warmup_seconds)
    judged = max(0, round(summed_increase(totals, since, step, warm_from)))
    everything = max(0, round(summed_increase(totals, since, step)))
    counts = {
        boundary: min(judged, max(0, round(summed_increase(series, since, step, warm_from))))
        for boundary, series in by_bucket.items()
        if math.isfinite(boundary)
    }
    return LatencyHistogram(counts, judged), max(0, everything - judged)


def slow_requests(histogram: LatencyHistogram, excluded_warmup: int, limit_seconds: float) -> SlowRequests:
    """The canary's requests and those slower than the limit's bucket.

    Raises MetricsUnavailableError when the histogram has no bucket at or
    below the limit (the limit cannot be judged from it).
    """
    if histogram.total == 0 and not histogram.at_or_below:
        return SlowRequests(0, 0, limit_seconds, excluded_warmup)
    bucket = threshold_bucket(histogram.at_or_below, limit_seconds)
    if bucket is None:
        raise MetricsUnavailableError(
            f"the request histogram has no bucket at or below {limit_seconds * 1000:g} ms:"
            f" buckets {sorted(histogram.at_or_below)}"
        )
    return SlowRequests(histogram.total, histogram.slower_than(bucket), bucket, excluded_warmup)


def observe_step(
    client: PrometheusClient,
    scope: AnalysisScope,
    since: float,
    now: float | None = None,
    thresholds: CanaryThresholds | None = None,
    proof_required: bool = False,
) -> StepObservation:
    """Measure canary and stable between ``since`` and ``now`` (unix seconds). Never raises on query failure.

    ``proof_required``: the step's error rate must be proven, not merely not rejected (the last step).
    """
    now = time.time() if now is None else now
    limits = thresholds or CanaryThresholds()
    window = max(2, math.ceil(now - since))
    queries = {
        "error-rate": f"{requests_query(scope, scope.canary_slot, True)} / {requests_query(scope, scope.canary_slot, False)} (increase per series over {window}s)",
        "p95-latency": f"{buckets_query(scope)} (increase per series over {window}s, le <= {limits.max_p95_seconds}); estimate: {p95_query(scope, window)}",
        "latency-vs-stable": f"{buckets_query(scope)} vs {buckets_query(scope, scope.stable_slot)} (increase per series over {window}s, each side slower than stable's median bucket)",
        "critical-alerts": alerts_query(scope.environment),
    }
    errors: dict[str, str] = {}
    canary = stable = None
    p95 = None
    slow = None
    canary_latency = stable_latency = None
    alerts = None
    try:
        canary = _counts(client, requests_query(scope, scope.canary_slot, False), _is_5xx, since, now)
        stable = _counts(client, requests_query(scope, scope.stable_slot, False), _is_5xx, since, now)
    except MetricsUnavailableError as exc:
        errors["error-rate"] = errors["error-vs-stable"] = str(exc)
    try:
        canary_latency, excluded = latency_histogram(
            client, scope, scope.canary_slot, since, now, limits.warmup_seconds
        )
        slow = slow_requests(canary_latency, excluded, limits.max_p95_seconds)
        if slow.requests == 0 and slow.excluded_warmup == 0 and canary is not None and canary.requests > 0:
            errors["p95-latency"] = "no latency samples although the canary served requests"
        samples = client.query(p95_query(scope, window), now)
        p95 = samples[0].value if samples else None  # the estimate shown beside the verdict
    except MetricsUnavailableError as exc:
        errors["p95-latency"] = errors["latency-vs-stable"] = str(exc)
        canary_latency = None
    if not scope.monitoring:
        try:
            stable_latency, _ = latency_histogram(client, scope, scope.stable_slot, since, now, limits.warmup_seconds)
        except MetricsUnavailableError as exc:
            errors["latency-vs-stable"] = str(exc)
    try:
        alerts = sorted({s.labels.get("alertname", "?") for s in client.query(alerts_query(scope.environment), now)})
    except MetricsUnavailableError as exc:
        errors["critical-alerts"] = str(exc)
    router = None
    if scope.monitoring:
        queries["router-errors"] = (
            f"{router_query(scope, True)} / {router_query(scope, False)} (increase per series over {window}s)"
        )
        try:
            router = _counts(client, router_query(scope, False), _is_router_5xx, since, now)
        except MetricsUnavailableError as exc:
            errors["router-errors"] = str(exc)
    return StepObservation(
        canary,
        stable,
        p95,
        canary_latency,
        stable_latency,
        alerts,
        queries,
        errors,
        router,
        scope.monitoring,
        slow_requests=slow,
        proof_required=proof_required,
        seconds_since_step_start=max(0.0, now - since),
    )


@dataclass(frozen=True)
class ChartPoint:
    """Canary against stable at one analysis: what the canary chart artifact draws."""

    canary_error_rate: float | None
    stable_error_rate: float | None
    canary_p95: float | None
    stable_p95: float | None


@dataclass(frozen=True)
class StepAssessment:
    """One analysis of one canary step: the judge's phase, its reasons and every measurement."""

    phase: Phase
    reasons: list[str]
    measurements: list[Measurement]
    canary_requests: int | None
    chart: ChartPoint
    outlook: VerdictOutlook | None = None  # an undecided step: how far from a verdict
