"""Flow `dora-report`: DORA's four keys (and rework rate) from the release and flow-run history.

read release history ─ read deliver runs ─ compute window + weekly trend ─ table and trend artifacts
─ push to the Pushgateway (Prometheus scrapes it; Grafana dashboard in deployments/grafana)
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from blocks.delivery import ReleaseHistoryDatabase
from blocks.loading import load_or_default
from medianest_delivery.dora.metrics import Targets, compute_dora, deployments_from_events
from medianest_delivery.errors import ConfigError
from medianest_delivery.renderers import dora_report_markdown, report_rows
from medianest_delivery.settings import StackSettings
from tasks.dora import push_dora_metrics, read_flow_run_history, read_release_history


@flow(name="dora-report", log_prints=True)
def dora_report(
    environment: str = "production",
    app: str = "medianest",
    window_days: float = 30,
    trend_weeks: int = 8,
    history_block: str | None = None,
    pushgateway_url: str | None = None,
    push: bool = True,
    now: str | None = None,
) -> dict[str, Any]:
    """DORA metrics over the last `window_days`, a weekly trend, pushed to the Pushgateway."""
    if window_days <= 0 or trend_weeks < 1:
        raise ConfigError("window_days must be positive and trend_weeks at least 1")
    settings = StackSettings()
    history = load_or_default(ReleaseHistoryDatabase, history_block, ReleaseHistoryDatabase())
    end = dt.datetime.fromisoformat(now) if now else dt.datetime.now(dt.UTC)
    start = end - dt.timedelta(days=window_days)
    records = read_release_history(history, environment, app)
    runs = read_flow_run_history(start)
    deployments = deployments_from_events(records)
    targets = Targets()
    report = compute_dora(deployments, start, end, targets)
    weeks = [
        compute_dora(deployments, end - dt.timedelta(weeks=w + 1), end - dt.timedelta(weeks=w), targets)
        for w in reversed(range(trend_weeks))
    ]
    rows = report_rows(report)
    create_table_artifact(
        key=f"dora-{app}-{environment}", table=rows, description=f"DORA metrics, last {window_days:g} days"
    )
    create_markdown_artifact(
        key=f"dora-trend-{app}-{environment}",
        description="DORA report with weekly trend",
        markdown=dora_report_markdown(app, environment, report, weeks, runs),
    )
    if push:
        push_dora_metrics(report, pushgateway_url or settings.pushgateway_url, app, environment)
    get_run_logger().info(
        "DORA %s/%s: %s", app, environment, "; ".join(f"{r['metric']} {r['value']} ({r['band']})" for r in rows)
    )
    return {"deployments": report.deployments, "failures": report.failures, "metrics": rows, "deliver_runs": runs}
