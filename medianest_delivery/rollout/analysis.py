"""Canary analysis against Prometheus: the PromQL (pure) and one observation (I/O).

Every failed query becomes an entry in ``StepObservation.errors`` with the
resolved query kept beside it, so a person can see why each decision was made.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from medianest_delivery.errors import MetricsUnavailableError
from medianest_delivery.rollout.judge import Measurement, Phase, SliceCounts, StepObservation
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
    extra = 'status=~"5.."' if errors_only else ""
    return f"sum(http_requests_total{scope.selector(slot, extra)})"


def router_query(scope: AnalysisScope, errors_only: bool) -> str:
    """Responses of the component's HAProxy frontend (HAProxy's exporter), 5xx only or all."""
    selector = scope.router_selector('code="5xx"' if errors_only else "")
    return f"sum(haproxy_frontend_http_responses_total{selector})"


def p95_query(scope: AnalysisScope, window_seconds: int) -> str:
    return (
        "histogram_quantile(0.95, sum by (le) "
        f"(increase(http_request_duration_seconds_bucket{scope.selector(scope.canary_slot)}[{window_seconds}s])))"
    )


def latency_series_query(scope: AnalysisScope, slot: str) -> str:
    """Mean latency per 3 s window, sampled every second: the series Mann-Whitney compares."""
    selector = scope.selector(slot)
    return (
        f"sum(rate(http_request_duration_seconds_sum{selector}[3s]))"
        f" / sum(rate(http_request_duration_seconds_count{selector}[3s]))"
    )


def alerts_query(environment: str) -> str:
    return f'ALERTS{{alertstate="firing", severity="critical", env="{environment}"}}'


def _scalar(client: PrometheusClient, expr: str, at: float | None) -> float:
    samples = client.query(expr, at)
    return samples[0].value if samples else 0.0  # no series yet = nothing counted


def _counts(client: PrometheusClient, scope: AnalysisScope, slot: str, since: float, now: float) -> SliceCounts:
    return _delta(client, requests_query(scope, slot, False), requests_query(scope, slot, True), since, now)


def _delta(client: PrometheusClient, total_expr: str, errors_expr: str, since: float, now: float) -> SliceCounts:
    """Requests and errors between `since` and `now` from two counter sums."""
    total = _scalar(client, total_expr, now) - _scalar(client, total_expr, since)
    errors = _scalar(client, errors_expr, now) - _scalar(client, errors_expr, since)
    return SliceCounts(max(0, round(total)), max(0, round(errors)))


def observe_step(
    client: PrometheusClient, scope: AnalysisScope, since: float, now: float | None = None
) -> StepObservation:
    """Measure canary and stable between ``since`` and ``now`` (unix seconds). Never raises on query failure."""
    now = time.time() if now is None else now
    window = max(2, math.ceil(now - since))
    queries = {
        "error-rate": f"{requests_query(scope, scope.canary_slot, True)} / {requests_query(scope, scope.canary_slot, False)} (delta over {window}s)",
        "p95-latency": p95_query(scope, window),
        "latency-vs-stable": f"{latency_series_query(scope, scope.canary_slot)} vs stable slot {scope.stable_slot}",
        "critical-alerts": alerts_query(scope.environment),
    }
    errors: dict[str, str] = {}
    canary = stable = None
    p95 = None
    canary_series = stable_series = None
    alerts = None
    try:
        canary = _counts(client, scope, scope.canary_slot, since, now)
        stable = _counts(client, scope, scope.stable_slot, since, now)
    except MetricsUnavailableError as exc:
        errors["error-rate"] = errors["error-vs-stable"] = str(exc)
    try:
        samples = client.query(p95_query(scope, window), now)
        p95 = samples[0].value if samples else None
        if p95 is not None and math.isnan(p95) and canary is not None and canary.requests == 0:
            p95 = None  # histogram_quantile over zero requests: no traffic, not missing data
        if p95 is None and (canary is None or canary.requests > 0):
            errors["p95-latency"] = "no latency samples although the canary served requests"
    except MetricsUnavailableError as exc:
        errors["p95-latency"] = str(exc)
    try:
        canary_series = _flatten(client.query_range(latency_series_query(scope, scope.canary_slot), since, now, 1))
        stable_series = _flatten(client.query_range(latency_series_query(scope, scope.stable_slot), since, now, 1))
    except MetricsUnavailableError as exc:
        errors["latency-vs-stable"] = str(exc)
    try:
        alerts = sorted({s.labels.get("alertname", "?") for s in client.query(alerts_query(scope.environment), now)})
    except MetricsUnavailableError as exc:
        errors["critical-alerts"] = str(exc)
    router = None
    if scope.monitoring:
        queries["router-errors"] = f"{router_query(scope, True)} / {router_query(scope, False)} (delta over {window}s)"
        try:
            router = _delta(client, router_query(scope, False), router_query(scope, True), since, now)
        except MetricsUnavailableError as exc:
            errors["router-errors"] = str(exc)
    return StepObservation(
        canary, stable, p95, canary_series, stable_series, alerts, queries, errors, router, scope.monitoring
    )


def _flatten(series: dict[str, list[float]]) -> list[float]:
    values: list[float] = []
    for points in series.values():
        values.extend(points)
    return values


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
