"""dora-report on a seeded release history in PostgreSQL, pushing to the real Pushgateway."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from pydantic import SecretStr

from blocks.delivery import ReleaseHistoryDatabase
from flows.dora import dora_report
from medianest_delivery.localstack.stack import stack_up
from medianest_delivery.rollout.history import ensure_database
from medianest_delivery.rollout.migrations import drop_database
from medianest_delivery.settings import StackSettings
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.integration
NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def history(prefect_harness: None) -> Iterator[str]:
    """A release history with, in the last 7 days: 1.0.0 promoted (lead 1 h), 1.1.0 rolled back after
    10 min of traffic, 1.2.0 promoted (lead 3 h)."""
    dsn = f"postgresql://postgres@127.0.0.1:5432/dora_it_{uuid.uuid4().hex[:8]}"
    ensure_database(dsn)
    day = NOW - dt.timedelta(days=2)
    rows = [
        ("1.0.0", day.replace(hour=8), "deploy-started", day.replace(hour=8, minute=55), "r1"),
        ("1.0.0", day.replace(hour=8), "promoted", day.replace(hour=9), "r1"),
        ("1.1.0", day.replace(hour=9), "deploy-started", day.replace(hour=10, minute=50), "r2"),
        ("1.1.0", day.replace(hour=9), "rolled-back", day.replace(hour=11), "r2"),
        ("1.2.0", day.replace(hour=9), "deploy-started", day.replace(hour=11, minute=50), "r3"),
        ("1.2.0", day.replace(hour=9), "promoted", day.replace(hour=12), "r3"),
    ]
    with psycopg.connect(dsn) as conn:
        for version, committed, event, at, run in rows:
            conn.execute(
                "INSERT INTO release_events (at, environment, app, version, git_sha, commit_time, event, flow_run_id)"
                " VALUES (%s, 'production', 'medianest', %s, 'abc', %s, %s, %s)",
                (at, version, committed, event, run),
            )
    name = f"dora-it-{uuid.uuid4().hex[:6]}"
    ReleaseHistoryDatabase(dsn=SecretStr(dsn)).save(name)
    yield name
    drop_database(dsn)


def test_report_figures_artifacts_and_pushgateway(history: str) -> None:
    settings = StackSettings()
    stack_up(settings, {"pushgateway"})
    result = dora_report(
        app="medianest",
        window_days=7,
        trend_weeks=4,
        history_block=history,
        now=NOW.isoformat(),
        pushgateway_url=settings.pushgateway_url,
    )
    by_name = {row["metric"]: row for row in result["metrics"]}
    assert (result["deployments"], result["failures"]) == (3, 1)
    assert by_name["deployment frequency"]["value"] == "0.43/day"
    assert by_name["deployment frequency"]["band"] == "high"
    assert by_name["lead time for changes"]["value"] == "2.0 h"  # median of 1 h and 3 h
    assert by_name["lead time for changes"]["meets target"] == "yes"  # 2 h is within the 2 h target
    assert by_name["change failure rate"]["value"] == "33%"
    assert by_name["change failure rate"]["band"] == "low"
    assert by_name["time to restore service"]["value"] == "10 min"
    assert by_name["time to restore service"]["band"] == "elite"

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        latest = {a.key: a for a in client.read_latest_artifacts()}
    assert "dora-medianest-production" in latest
    trend = str(latest["dora-trend-medianest-production"].data)
    assert trend.count("data:image/svg+xml;base64,") == 5  # one weekly chart per metric

    metrics = httpx.get(f"{settings.pushgateway_url}/metrics", timeout=5).text
    group = 'app="medianest",environment="production",instance="",job="dora-report"'
    assert f"dora_deployments{{{group}}} 3" in metrics
    assert f"dora_failed_deployments{{{group}}} 1" in metrics
    assert f'dora_metric_band{{{group},metric="time_to_restore_service"}} 4' in metrics
    assert f'dora_metric_value{{{group},metric="time_to_restore_service",unit="seconds"}} 600' in metrics


def test_grafana_dashboard_queries_the_pushed_metric_names() -> None:
    dashboard = json.loads((REPO_ROOT / "deployments" / "grafana" / "dora-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    names = {re.match(r"[a-z_]+", e).group(0) for e in exprs}  # type: ignore[union-attr]
    assert names == {
        "dora_metric_value",
        "dora_metric_band",
        "dora_deployments",
        "dora_failed_deployments",
        "dora_metric_meets_target",
    }
    metric_labels = set(re.findall(r'metric="([a-z_]+)"', " ".join(exprs)))
    assert metric_labels == {
        "deployment_frequency",
        "lead_time_for_changes",
        "change_failure_rate",
        "time_to_restore_service",
        "deployment_rework_rate",
    }
