"""Prometheus metrics every MediaNest service exposes on /metrics."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)

# Buckets dense around the 200 ms canary threshold and the 1 s alert threshold.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0)


@dataclass
class ServiceMetrics:
    registry: CollectorRegistry
    requests: Counter
    duration: Histogram

    def observe(self, version: str, route: str, method: str, status: int, seconds: float) -> None:
        labels = {"version": version, "route": route, "method": method, "status": str(status)}
        self.requests.labels(**labels).inc()
        self.duration.labels(**labels).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def build_metrics(service: str) -> ServiceMetrics:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # process_start_time_seconds: restarts show up in alerts
    labels = ("version", "route", "method", "status")
    requests = Counter(
        "http_requests", f"HTTP requests served by {service}", labels, registry=registry
    )
    duration = Histogram(
        "http_request_duration_seconds",
        f"HTTP request duration in {service}",
        labels,
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    return ServiceMetrics(registry, requests, duration)
