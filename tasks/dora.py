"""Tasks of dora-report: read the release and flow-run history, push the figures."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.delivery import ReleaseHistoryDatabase
from medianest_delivery.dora.metrics import DoraReport, ReleaseRecord
from medianest_delivery.errors import HistoryUnavailableError
from tasks.policies import retry_on

BAND_VALUE = {"elite": 4, "high": 3, "medium": 2, "low": 1, "no data": 0}


@task(
    name="read-release-history",
    task_run_name="release history of {app} in {environment}",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_on(HistoryUnavailableError),
    cache_policy=NO_CACHE,
)
def read_release_history(history: ReleaseHistoryDatabase, environment: str, app: str) -> list[ReleaseRecord]:
    return [
        ReleaseRecord(e.at, e.version, e.commit_time, e.event, e.flow_run_id)
        for e in history.get_client().events(environment, app)
    ]


@task(name="read-flow-run-history", task_run_name="deliver runs since {since}", cache_policy=NO_CACHE)
def read_flow_run_history(since: dt.datetime) -> dict[str, int]:
    """Final states of `deliver` runs in the window (failures before production show up here only)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterStartTime,
    )

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["deliver"])),
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since)),
        )
    return dict(Counter(run.state.type.value.lower() if run.state else "unknown" for run in runs))


@task(
    name="push-dora-metrics",
    task_run_name="push to {gateway}",
    retries=2,
    retry_delay_seconds=[2, 10],
    cache_policy=NO_CACHE,
)
def push_dora_metrics(report: DoraReport, gateway: str, app: str, environment: str) -> int:
    """One gauge per metric (value and band as 4..1) to the Pushgateway, grouped by app and environment."""
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    registry = CollectorRegistry()
    value = Gauge("dora_metric_value", "DORA metric over the report window", ["metric", "unit"], registry=registry)
    band = Gauge(
        "dora_metric_band", "DORA band: 4 elite, 3 high, 2 medium, 1 low, 0 no data", ["metric"], registry=registry
    )
    meets = Gauge("dora_metric_meets_target", "1 when the strategy's target is met", ["metric"], registry=registry)
    count = Gauge("dora_deployments", "Deployments in the window", registry=registry)
    failures = Gauge("dora_failed_deployments", "Failed deployments in the window", registry=registry)
    window = Gauge("dora_window_days", "Length of the report window", registry=registry)
    for metric in report.metrics:
        key = metric.name.replace(" ", "_")
        if metric.value is not None:
            value.labels(key, metric.unit.replace(" ", "_")).set(metric.value)
        band.labels(key).set(BAND_VALUE[metric.band.value])
        if metric.meets_target is not None:
            meets.labels(key).set(1 if metric.meets_target else 0)
    count.set(report.deployments)
    failures.set(report.failures)
    window.set((report.window_end - report.window_start).total_seconds() / 86400)
    push_to_gateway(
        gateway.removeprefix("http://"),
        job="dora-report",
        registry=registry,
        grouping_key={"app": app, "environment": environment},
        timeout=5,
    )
    return len(report.metrics)
