"""The end of `medianest-delivery demo`: DORA figures of what the demo just did, and where to look."""

from __future__ import annotations

import datetime as dt

from rich.console import Console
from rich.table import Table

from medianest_delivery.settings import StackSettings


def run_dora_demo(console: Console, settings: StackSettings, since: dt.datetime) -> None:
    from flows.dora import dora_report

    window_days = max((dt.datetime.now(dt.UTC) - since).total_seconds() / 86400, 1 / 1440) + 1 / 1440
    state = dora_report(
        environment="production", app="medianest", window_days=window_days, trend_weeks=1, return_state=True
    )
    result = state.result()
    ui = f"http://127.0.0.1:{settings.prefect_port}"
    table = Table(title=f"DORA metrics of this demo ({result['deployments']} deployments, {result['failures']} failed)")
    for column in ("metric", "value", "band", "target", "meets target"):
        table.add_column(column)
    for row in result["metrics"]:
        table.add_row(row["metric"], row["value"], row["band"], row["target"], row["meets target"])
    console.print(table)
    console.print(
        "Frequency is per day over the demo's own window, so it reads high; lead time counts from the commit the demo built."
    )
    links = Table(title="where to look", show_header=False)
    links.add_column("what")
    links.add_column("where", overflow="fold")
    links.add_row("Prefect UI", ui)
    links.add_row("dora-report run", f"{ui}/runs/flow-run/{state.state_details.flow_run_id}")
    links.add_row("all flow runs", f"{ui}/runs")
    links.add_row("artifacts (release, canary charts, backups, DORA)", f"{ui}/artifacts")
    links.add_row("Pushgateway (DORA gauges)", f"{settings.pushgateway_url}/metrics")
    links.add_row("Prometheus", settings.prometheus_url)
    links.add_row("Grafana dashboard to import", "deployments/grafana/dora-dashboard.json")
    console.print(links)
