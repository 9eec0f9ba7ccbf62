"""Middle-tier fixtures: a preview environment whose outside systems are fakes behind the real interfaces."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from prefect import flow
from prefect_docker import DockerHost

import tasks.rollout
from blocks.delivery import MetricsProvider
from flows.strategies import RolloutContext, deploy_directly
from medianest_delivery.appconfig import DEFAULT_APP_CONFIG
from medianest_delivery.errors import MetricsUnavailableError
from medianest_delivery.rollout.evidence import Series
from medianest_delivery.rollout.judge import CanaryThresholds
from tasks.rollout import controller
from tests.fakes import FakePrometheus, FakeRouter, FakeRuntime

IMAGE_V1 = "127.0.0.1:5000/fake/backend@sha256:" + "1" * 64
IMAGE_V2 = "127.0.0.1:5000/fake/backend@sha256:" + "2" * 64
T = TypeVar("T")


@flow(name="middle-tier", validate_parameters=False)
def in_a_flow(work: Callable[[], T]) -> T:
    """The strategies log through the flow run's logger, as they do inside `deliver`."""
    return work()


@dataclass
class Fakes:
    runtime: FakeRuntime
    router: FakeRouter
    prometheus: FakePrometheus
    ctx: RolloutContext

    def stable_slot(self) -> str:
        return controller(self.ctx.environment, self.ctx.app_config, self.ctx.docker_host).stable_slot("backend")


class DownPrometheus(FakePrometheus):
    def query(self, expr: str, at: float | None = None) -> list:  # type: ignore[type-arg]
        raise MetricsUnavailableError("prometheus at http://127.0.0.1:1 unreachable: connection refused")

    def range_series(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        raise MetricsUnavailableError("prometheus at http://127.0.0.1:1 unreachable: connection refused")


@pytest.fixture
def fakes(prefect_harness: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Fakes]:
    """A preview environment of its own whose v1 was deployed directly (stable, 100%) through the real tasks."""
    monkeypatch.setenv("MEDIANEST_STATE_DIR", str(tmp_path))
    runtime, router, prometheus = FakeRuntime(), FakeRouter(), FakePrometheus()
    monkeypatch.setattr(tasks.rollout, "runtime_for", lambda environment, docker_host: runtime)
    monkeypatch.setattr(tasks.rollout, "router_for", lambda settings, environment: router)
    monkeypatch.setattr(MetricsProvider, "get_client", lambda self: prometheus)
    ctx = RolloutContext(
        environment=f"preview-mt{uuid.uuid4().hex[:6]}",
        app_config=DEFAULT_APP_CONFIG,
        version="2.0.0",
        replicas=2,
        extra_env={},
        # A 1% error limit: its proof takes ~75 requests, so each step decides at its first analysis (0.2 s of
        # the fakes' traffic) and the tests can count analyses; the default 0.1% would need ~750.
        thresholds=CanaryThresholds(max_error_rate=0.01),
        analysis_interval=0.2,
        health_deadline=10,
        backward_compatible=True,
        docker_host=DockerHost(base_url="unix:///nonexistent/docker.sock"),  # the fakes never call it
        metrics=MetricsProvider(url="http://127.0.0.1:1"),
        flow_run_id="middle-tier",
    )
    in_a_flow(lambda: deploy_directly(RolloutContext(**{**vars(ctx), "version": "1.0.0"}), "backend", IMAGE_V1))
    yield Fakes(runtime, router, prometheus, ctx)
    for name in list(runtime.replicas):
        runtime.kill(name)
