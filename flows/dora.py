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
from medianest_delivery.charts import Series, data_uri, line_chart_svg
from medianest_delivery.dora.metrics import DoraReport, Targets, compute_dora, deployments_from_events
from medianest_delivery.errors import ConfigError
from medianest_delivery.settings import StackSettings
from tasks.dora import push_dora_metrics, read_flow_run_history, read_release_history

SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float | None]) -> str:
    """A text chart that renders anywhere Markdown does; '·' marks weeks with no data."""
    known = [v for v in values if v is not None]
    if not known:
        return "·" * len(values)
    low, high = min(known), max(known)
    span = (high - low) or 1.0
    return "".join("·" if v is None else SPARK[round((v - low) / span * (len(SPARK) - 1))] for v in values)


def trend_charts(weeks: list[DoraReport]) -> str:
    """One small SVG line chart per metric, week by week (oldest first)."""
    labels = [f"W-{len(weeks) - 1 - i}" if i < len(weeks) - 1 else "this week" for i in range(len(weeks))]
    images = []
    for index, metric in enumerate(weeks[-1].metrics):
        unit = {"per day": "per day"}.get(metric.unit, metric.unit)
        svg = line_chart_svg(
            f"{metric.name} ({unit})",
            unit,
            [Series("weekly", [w.metrics[index].value for w in weeks])],
            labels,
            width=480,
            height=200,
        )
        images.append(f"![{metric.name} by week]({data_uri(svg)})")
    return "\n\n".join(images)


def report_rows(report: DoraReport) -> list[dict[str, str]]:
    return [
        {
            "metric": m.name,
            "value": m.display(),
            "band": m.band.value,
            "target": _target(m.name, m.target),
            "meets target": "n/a" if m.meets_target is None else ("yes" if m.meets_target else "no"),
        }
        for m in report.metrics
    ]


def _target(name: str, target: float) -> str:
    if name == "deployment frequency":
        return f"≥ {target:g}/day"
    if name in ("lead time for changes", "time to restore service"):
        return f"< {target / 60:g} min"
    return f"< {target:.0%}"


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
    trend = "\n".join(
        f"| {m.name} | `{sparkline([w.metrics[i].value for w in weeks])}` | {weeks[-1].metrics[i].display()} |"
        for i, m in enumerate(report.metrics)
    )
    table = "\n".join(
        f"| {r['metric']} | {r['value']} | {r['band']} | {r['target']} | {r['meets target']} |" for r in rows
    )
    runs_line = ", ".join(f"{n} {state}" for state, n in sorted(runs.items())) or "none"
    create_markdown_artifact(
        key=f"dora-trend-{app}-{environment}",
        description="DORA report with weekly trend",
        markdown=(
            f"# DORA: {app} in {environment}\n\n"
            f"{start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC: {report.deployments} deployments, "
            f"{report.failures} failed. deliver runs in the window: {runs_line}.\n\n"
            "| metric | value | band | target | meets target |\n|---|---|---|---|---|\n"
            f"{table}\n\n## Weekly trend (oldest → newest, {trend_weeks} weeks)\n\n"
            f"| metric | trend | last week |\n|---|---|---|\n{trend}\n\n{trend_charts(weeks)}\n"
        ),
    )
    if push:
        push_dora_metrics(report, pushgateway_url or settings.pushgateway_url, app, environment)
    get_run_logger().info(
        "DORA %s/%s: %s", app, environment, "; ".join(f"{r['metric']} {r['value']} ({r['band']})" for r in rows)
    )
    return {"deployments": report.deployments, "failures": report.failures, "metrics": rows, "deliver_runs": runs}
