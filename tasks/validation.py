"""Staging validation: smoke and contract tests, migrations, the performance check; history records."""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.logging import get_run_logger

from blocks.delivery import ReleaseHistoryDatabase
from blocks.runtime import environment_database_server
from medianest_delivery.appconfig import load_app_config
from medianest_delivery.errors import ConfigError, GateFailedError
from medianest_delivery.proc import run_command
from medianest_delivery.release.gates import PERF_REGRESSION_LIMIT, latency_regressed
from medianest_delivery.rollout.history import ReleaseEventKind
from medianest_delivery.rollout.loadgen import LoadGenerator
from medianest_delivery.rollout.migrations import (
    apply_migrations,
    create_database,
    discover_migrations,
    validate_on_scratch_copy,
)
from medianest_delivery.rollout.previews import plan_for
from medianest_delivery.settings import StackSettings


def router_url(app_config: str, environment: str, component: str) -> str:
    index = load_app_config(app_config).component_index(component)
    return plan_for(environment, StackSettings().routers_dir).router_url(index)


def database_dsn(app_config: str, environment: str) -> str:
    config = load_app_config(app_config)
    if config.database is None:
        raise ConfigError(f"app {config.name} declares no database")
    return config.database_url(environment, environment_database_server(environment))


@task(name="migrate-database", task_run_name="migrate: {environment}", retries=2, retry_delay_seconds=2)
def migrate_database(app_config: str, environment: str) -> dict[str, Any]:
    """Create the environment's database if needed and apply pending migrations."""
    config = load_app_config(app_config)
    if config.database is None:
        return {"applied": [], "backward_compatible": True}
    dsn = database_dsn(app_config, environment)
    create_database(dsn)
    migrations = discover_migrations(config.path(config.database.migrations))
    applied = apply_migrations(dsn, migrations)
    incompatible = [m.version for m in migrations if m.version in applied and not m.backward_compatible]
    return {"applied": applied, "backward_compatible": not incompatible, "incompatible": incompatible}


@task(name="validate-migrations", task_run_name="migrations: scratch copy of {environment}")
def validate_migrations(app_config: str, environment: str) -> list[str]:
    """Apply pending migrations to a scratch copy of the environment's database and run the app's checks."""
    config = load_app_config(app_config)
    if config.database is None:
        return []
    dsn = database_dsn(app_config, environment)
    create_database(dsn)
    migrations = discover_migrations(config.path(config.database.migrations))
    return validate_on_scratch_copy(dsn, migrations, config.database.checks)


@task(name="smoke-test", task_run_name="smoke: {environment}/{component}", retries=2, retry_delay_seconds=1)
def smoke_test(app_config: str, environment: str, component: str) -> dict[str, int]:
    """GET each critical path through the router; anything but 2xx fails."""
    config = load_app_config(app_config)
    base = router_url(app_config, environment, component)
    results: dict[str, int] = {}
    with httpx.Client(timeout=5) as client:
        for path in config.component(component).smoke:
            try:
                results[path] = client.get(f"{base}{path}").status_code
            except httpx.HTTPError:
                results[path] = 0
    failed = {p: s for p, s in results.items() if not 200 <= s < 300}
    if failed:
        raise GateFailedError(f"smoke tests of {environment}/{component} failed: {failed}")
    return results


@task(name="contract-test", task_run_name="contract: {environment}/{component}")
def contract_test(app_config: str, environment: str, component: str, max_examples: int = 15) -> str:
    """schemathesis against the component's own OpenAPI document, through the router."""
    config = load_app_config(app_config)
    openapi = config.component(component).openapi
    if openapi is None:
        return "no OpenAPI document declared"
    base = router_url(app_config, environment, component)
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        completed = run_command(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "run",
                f"{base}{openapi}",
                "--url",
                base,
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--max-examples",
                str(max_examples),
                "--seed",
                "1",
                "--no-color",
                "--report",
                "junit",
                "--report-junit-path",
                str(junit),
            ],
            timeout=600,
        )
    get_run_logger().info("schemathesis:\n%s", "\n".join(completed.stdout.splitlines()[-8:]))
    return completed.stdout.splitlines()[-1] if completed.stdout else ""


@task(name="performance-check", task_run_name="performance: {environment}/{component}")
def performance_check(
    app_config: str,
    environment: str,
    component: str,
    version: str,
    path: str,
    requests: int,
    rate: float,
    history: ReleaseHistoryDatabase,
) -> dict[str, Any]:
    """p95 under a fixed bounded load, compared with the previous release's recorded figure.

    The load runs in three rounds and the median round's p95 counts: one
    round disturbed by a noisy neighbour does not fail (or pass) a release.
    """
    config = load_app_config(app_config)
    url = router_url(app_config, environment, component) + path
    rounds = []
    for _ in range(3):
        per_round = max(20, requests // 3)
        report = LoadGenerator(url, rate=rate, max_requests=per_round, max_seconds=per_round / rate + 30).start().wait()
        latencies = sorted(o.latency for o in report.outcomes if not o.failed)
        if report.failed or len(latencies) < per_round * 0.99:
            raise GateFailedError(f"performance check: {report.failed}/{report.total} requests failed at {url}")
        rounds.append(statistics.quantiles(latencies, n=20)[-1])
    p95 = statistics.median(rounds)
    store = history.get_client()
    previous = store.previous_baseline(environment, config.name, version)
    result: dict[str, Any] = {"p95_seconds": p95, "rounds": rounds, "previous": previous}
    if previous is not None and latency_regressed(p95, previous[1]):
        raise GateFailedError(
            f"p95 {p95 * 1000:.1f} ms is more than {PERF_REGRESSION_LIMIT:.0%} worse than "
            f"{previous[0]}'s {previous[1] * 1000:.1f} ms"
        )
    store.save_baseline(environment, config.name, version, p95)
    return result


@task(name="record-release-event", task_run_name="history: {event} {environment}")
def record_release_event(
    history: ReleaseHistoryDatabase,
    environment: str,
    manifest: dict[str, Any],
    event: ReleaseEventKind,
    strategy: str | None = None,
    reason: str | None = None,
    flow_run_id: str | None = None,
) -> None:
    store = history.get_client()
    store.record(environment, manifest, event, strategy=strategy, reason=reason, flow_run_id=flow_run_id)


@task(name="record-measurements", task_run_name="history: measurements {component}")
def record_measurements(
    history: ReleaseHistoryDatabase, component: str, rows: list[dict[str, Any]], artifact_key: str
) -> None:
    """Every measurement of every step, in PostgreSQL and as a table artifact."""
    store = history.get_client()
    store.record_measurements(rows)
    create_table_artifact(
        key=artifact_key,
        table=[{k: v for k, v in r.items() if k not in ("flow_run_id",)} for r in rows]
        or [{"metric": "-", "phase": "no analysis"}],
        description=f"canary analysis of {component}: every measurement of every step with its query",
    )
