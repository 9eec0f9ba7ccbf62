"""Rollout strategies for one component: canary with analysis, and blue-green.

Both put the release in the non-stable slot, move traffic, judge it, and end
in one of three outcomes: promoted, rolled back, or frozen (a failed canary
whose release carried a migration that cannot be undone: it stays on stable
and keeps the schema).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from prefect.logging import get_run_logger
from prefect_docker import DockerHost

from blocks.delivery import MetricsProvider
from medianest_delivery.rollout.judge import Action, CanaryThresholds, Phase, decide_action
from tasks.rollout import assess_canary, controller, decommission, deploy_slot, promote, set_traffic


@dataclass
class RolloutContext:
    environment: str
    app_config: str
    version: str
    replicas: int
    extra_env: dict[str, str]
    thresholds: CanaryThresholds
    analysis_interval: float
    health_deadline: float
    backward_compatible: bool
    docker_host: DockerHost
    metrics: MetricsProvider
    flow_run_id: str
    measurements: list[dict[str, Any]] = field(default_factory=list)
    chart_points: list[dict[str, Any]] = field(default_factory=list)  # canary vs stable per analysis


@dataclass
class ComponentOutcome:
    component: str
    action: str  # promoted | rolled-back | frozen
    reason: str = ""
    first_traffic_at: float | None = None
    decided_at: float | None = None
    weights: list[int] = field(default_factory=list)
    promoted: bool = False  # roles flipped: the previous slot still runs until decommissioned
    first_release: bool = False  # nothing ran before: nothing to roll back to


def _analyse_until_decided(
    ctx: RolloutContext,
    component: str,
    canary_slot: str,
    step: int,
    weight: int,
    since: float,
    max_seconds: float | None,
) -> tuple[Action, list[str]]:
    """Analyses every interval until pass/fail/limit; errors hold, then roll back."""
    errors_in_a_row = waits = analysis = 0
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    while True:
        time.sleep(ctx.analysis_interval)
        analysis += 1
        result = assess_canary(
            ctx.environment, component, canary_slot, since, step, analysis, vars(ctx.thresholds), ctx.metrics
        )
        for m in result["measurements"]:
            ctx.measurements.append(
                {
                    "environment": ctx.environment,
                    "app": "",
                    "version": ctx.version,
                    "component": component,
                    "step": step,
                    "weight": weight,
                    "analysis": analysis,
                    "metric": m["metric"],
                    "phase": m["phase"],
                    "value": m["value"],
                    "threshold": m["threshold"],
                    "query": m["query"],
                    "message": m["message"],
                    "flow_run_id": ctx.flow_run_id,
                }
            )
        ctx.chart_points.append(
            {
                "component": component,
                "step": step,
                "weight": weight,
                "analysis": analysis,
                "phase": result["phase"],
                **result.get("chart", {}),
            }
        )
        phase = Phase(result["phase"])
        errors_in_a_row = errors_in_a_row + 1 if phase is Phase.ERROR else 0
        waits = waits + 1 if phase is Phase.INCONCLUSIVE else waits
        action = decide_action(phase, errors_in_a_row, waits, ctx.thresholds, not ctx.backward_compatible)
        if action is not Action.WAIT:
            return action, result["reasons"] or [f"{phase.value} after {analysis} analyses"]
        if deadline is not None and time.monotonic() > deadline:
            return Action.NEXT_STEP, []  # monitoring window over with nothing wrong


def deploy_candidate(ctx: RolloutContext, component: str, image: str) -> str:
    """Start the release in the slot that is not stable (no traffic yet); returns that slot."""
    slot = controller(ctx.environment, ctx.app_config, ctx.docker_host).candidate_slot(component)
    deploy_slot(
        ctx.environment,
        ctx.app_config,
        component,
        slot,
        image,
        ctx.version,
        ctx.replicas,
        ctx.extra_env,
        ctx.health_deadline,
        ctx.docker_host,
    )
    return slot


def deploy_directly(ctx: RolloutContext, component: str, image: str) -> None:
    """Staging and first releases: start the new slot, switch all traffic, drop the old slot."""
    deploy_candidate(ctx, component, image)
    set_traffic(ctx.environment, ctx.app_config, component, 100, ctx.replicas, ctx.docker_host)
    promote(ctx.environment, ctx.app_config, component, ctx.docker_host)
    decommission(ctx.environment, ctx.app_config, component, ctx.docker_host)


def rollout_canary(ctx: RolloutContext, component: str, image: str, steps: list[int]) -> ComponentOutcome:
    """Deploy beside stable, then 10/30/50/100% with analysis at each step."""
    logger = get_run_logger()
    outcome = ComponentOutcome(component, "promoted")
    canary_slot = deploy_candidate(ctx, component, image)
    for step, weight in enumerate(steps, start=1):
        moved = set_traffic(ctx.environment, ctx.app_config, component, weight, ctx.replicas, ctx.docker_host)
        outcome.weights.append(weight)
        if outcome.first_traffic_at is None:
            outcome.first_traffic_at = moved["at"]
        if weight >= 100:
            break  # full traffic: the monitoring window judges it after promotion
        action, reasons = _analyse_until_decided(ctx, component, canary_slot, step, weight, moved["at"], None)
        if action is not Action.NEXT_STEP:
            outcome.action = "frozen" if action is Action.FREEZE else "rolled-back"
            outcome.reason = f"step {step} at {weight}%: " + "; ".join(reasons)
            outcome.decided_at = time.time()
            logger.error("%s canary %s: %s", component, outcome.action, outcome.reason)
            return outcome
    promote(ctx.environment, ctx.app_config, component, ctx.docker_host)
    outcome.promoted = True
    return outcome


def rollout_blue_green(ctx: RolloutContext, component: str, image: str) -> ComponentOutcome:
    """Start green beside blue, check its health, switch all traffic at once; blue stays for instant rollback."""
    deploy_candidate(ctx, component, image)
    moved = set_traffic(ctx.environment, ctx.app_config, component, 100, ctx.replicas, ctx.docker_host)
    promote(ctx.environment, ctx.app_config, component, ctx.docker_host)
    return ComponentOutcome(component, "promoted", first_traffic_at=moved["at"], weights=[100], promoted=True)


def monitor_promoted(ctx: RolloutContext, component: str, window_seconds: float) -> tuple[bool, str]:
    """Judge the promoted slot on absolute criteria for ``window_seconds``; (healthy, reason)."""
    stable_slot = controller(ctx.environment, ctx.app_config, ctx.docker_host).stable_slot(component)
    absolute = CanaryThresholds(**{**vars(ctx.thresholds), "max_inconclusive": 10_000})
    monitor_ctx = RolloutContext(**{**vars(ctx), "thresholds": absolute, "measurements": ctx.measurements})
    started = time.time()
    action, reasons = _analyse_until_decided(monitor_ctx, component, stable_slot, 0, 100, started, window_seconds)
    if action in (Action.ROLLBACK, Action.FREEZE):
        blocking = [r for r in reasons if not r.startswith(("error-vs-stable", "latency-vs-stable"))]
        if blocking:
            return False, "monitoring window: " + "; ".join(blocking)
    return True, ""
