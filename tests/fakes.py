"""Fakes behind the same interfaces as the real parts, for the middle test tier.

FakeRuntime serves real HTTP on 127.0.0.1 for each replica (so health checks
are the real ones) but starts no container; FakeRouter keeps the router state
in memory and records every weight change; FakePrometheus answers the
analysis queries from counters that grow with time, per slot.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from medianest_delivery.rollout.evidence import Series
from medianest_delivery.rollout.metrics import Sample
from medianest_delivery.rollout.router import RouterState
from medianest_delivery.rollout.runtime import ReplicaInfo, ReplicaSpec


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


class FakeRuntime:
    """A Runtime whose replicas are tiny HTTP servers answering 200 on every path."""

    def __init__(self) -> None:
        self.replicas: dict[str, tuple[ReplicaSpec, ThreadingHTTPServer]] = {}
        self.started: list[str] = []

    def run_slot(self, specs: list[ReplicaSpec]) -> list[str]:
        return [self.run(spec) for spec in specs]

    def run(self, spec: ReplicaSpec) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", spec.port), _Ok)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.replicas[spec.name] = (spec, server)
        self.started.append(spec.name)
        return spec.name

    def remove(self, environment: str, component: str | None = None, slot: str | None = None) -> list[str]:
        removed = [
            name
            for name, (spec, _) in self.replicas.items()
            if spec.environment == environment
            and (component is None or spec.component == component)
            and (slot is None or spec.slot == slot)
        ]
        for name in removed:
            self.kill(name)
        return removed

    def list(self, environment: str) -> list[ReplicaInfo]:
        return [
            ReplicaInfo(name, s.environment, s.component, s.slot, s.replica, s.image, s.port, s.version, True, 0)
            for name, (s, _) in self.replicas.items()
            if s.environment == environment
        ]

    def kill(self, name: str) -> None:
        _, server = self.replicas.pop(name)
        server.shutdown()
        server.server_close()

    def logs(self, name: str, tail: int = 50) -> str:
        return f"{name}: fake replica"


class FakeRouter:
    """A Router that keeps its state in memory and records each applied weight split."""

    def __init__(self) -> None:
        self.state: RouterState | None = None
        self.running = False
        self.applied: list[dict[str, dict[str, int]]] = []
        self.drained: list[tuple[str, str]] = []

    def load_state(self) -> RouterState | None:
        return None if self.state is None else RouterState.from_json(self.state.to_json())

    def save_state(self, state: RouterState) -> None:
        self.state = RouterState.from_json(state.to_json())

    def start(self, state: RouterState) -> None:
        self.running = True

    def stop(self) -> bool:
        was, self.running = self.running, False
        return was

    def apply(self, state: RouterState, components: list[str] | None = None) -> None:
        self.save_state(state)
        self.applied.append({name: dict(b.weights) for name, b in state.backends.items()})

    def wait_idle(self, component: str, slot: str, timeout_seconds: float) -> int:
        self.drained.append((component, slot))
        return 0

    def remove_files(self) -> None:
        self.state = None

    def weights(self, component: str) -> dict[str, int]:
        assert self.state is not None
        return dict(self.state.backends[component].weights)


@dataclass
class SlotTraffic:
    """Requests per second a slot serves, the share that fail, and its latency."""

    rate: float = 2000.0
    error_ratio: float = 0.0
    latency_seconds: float = 0.010


@dataclass
class FakePrometheus:
    """Answers observe_step's queries: counters grow with wall time from `started`, per slot."""

    slots: dict[str, SlotTraffic] = field(default_factory=dict)
    # 503s per second HAProxy answers by itself (no healthy server): the router sees them, the app does not.
    router_own_errors_per_second: float = 0.0
    started: float = field(default_factory=time.time)
    queries: list[str] = field(default_factory=list)

    def _slot(self, expr: str) -> SlotTraffic:
        match = re.search(r'slot="([ab])"', expr)
        return self.slots.get(match.group(1) if match else "", SlotTraffic(rate=0.0))

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        self.queries.append(expr)
        now = time.time() if at is None else at
        traffic = self._slot(expr)
        if expr.startswith("sum(haproxy_frontend_http_responses_total"):
            elapsed = max(0.0, now - self.started)
            served = sum(t.rate for t in self.slots.values()) * elapsed
            failed = sum(t.rate * t.error_ratio for t in self.slots.values()) * elapsed
            own = self.router_own_errors_per_second * elapsed
            return [Sample({}, failed + own if 'code="5xx"' in expr else served + own)]
        if expr.startswith("sum(http_requests_total"):
            requests = traffic.rate * max(0.0, now - self.started)
            errors_only = 'status=~"5.."' in expr
            return [Sample({}, requests * traffic.error_ratio if errors_only else requests)]
        if expr.startswith("histogram_quantile"):
            return [Sample({}, traffic.latency_seconds * 1.5)]
        return []  # ALERTS: none firing

    def range_series(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """Counter series (one replica) sampled every step: requests, histogram buckets, router responses."""
        self.queries.append(expr)
        grid = [start + i * step for i in range(int((end - start) / step) + 1)]
        if grid[-1] < end:
            grid.append(end)  # the fake's counters are continuous: the last look sees everything until `end`
        times = [t for t in grid if t >= self.started]

        def series(labels: dict[str, str], per_second: float) -> Series:
            return Series({"instance": "fake:1", **labels}, [(t, per_second * (t - self.started)) for t in times])

        if expr.startswith("haproxy_frontend_http_responses_total"):
            served = sum(t.rate for t in self.slots.values())
            failed = sum(t.rate * t.error_ratio for t in self.slots.values())
            return [
                series({"code": "2xx"}, served - failed),
                series({"code": "5xx"}, failed + self.router_own_errors_per_second),
            ]
        traffic = self._slot(expr)
        if traffic.rate == 0:
            return []
        if expr.startswith("http_requests_total"):
            return [
                series({"status": "200"}, traffic.rate * (1 - traffic.error_ratio)),
                series({"status": "500"}, traffic.rate * traffic.error_ratio),
            ]
        if expr.startswith("http_request_duration_seconds_bucket"):
            bounds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, float("inf")]
            return [
                series(
                    {"le": str(b) if b != float("inf") else "+Inf"},
                    traffic.rate if traffic.latency_seconds <= b else 0.0,
                )
                for b in bounds
            ]
        return []
