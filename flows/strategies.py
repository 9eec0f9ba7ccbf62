"""Rollout strategies for one component: canary with analysis, and blue-green.

Both put the release in the non-stable slot, move traffic, judge it, and end
in one of three outcomes: promoted, rolled back, or frozen (a failed canary
whose release carried a migration that cannot be undone: it stays on stable
and keeps the schema).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from prefect.logging import get_run_logger
from prefect_docker import DockerHost

from blocks.delivery import MetricsProvider
from medianest_delivery.rollout.analysis import StepAssessment
from medianest_delivery.rollout.canary_loop import LoopVerdict, analyse_until_decided
from medianest_delivery.rollout.judge import Action, CanaryThresholds
from medianest_delivery.rollout.outcome import ComponentOutcome, RolloutOutcome
from tasks.rollout import (
    accept_verdicts,
    assess_canary,
    controller,
    decommission,
    deploy_slot,
    promote,
    reconcile_environment,
    rollback,
    set_traffic,
)


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


def _analyse_until_decided(
    ctx: RolloutContext,
    component: str,
    canary_slot: str,
    step: int,
    weight: int,
    since: float,
    max_seconds: float | None,
    monitoring: bool = False,
    proof_required: bool = False,
) -> LoopVerdict:
    """The analysis loop of one step, each analysis an `assess-canary-step` task run, every measurement recorded."""

    def assess(analysis: int) -> StepAssessment:
        result = assess_canary(
            ctx.environment,
            component,
            canary_slot,
            since,
            step,
            analysis,
            ctx.thresholds,
            ctx.metrics,
            monitoring,
            proof_required,
        )
        ctx.measurements += [
            {
                "environment": ctx.environment,
                "app": "",
                "version": ctx.version,
                "component": component,
                "step": step,
                "weight": weight,
                "analysis": analysis,
                **asdict(m),
                "phase": m.phase.value,
                "flow_run_id": ctx.flow_run_id,
            }
            for m in result.measurements
        ]
        ctx.chart_points.append(
            {
                "component": component,
                "step": step,
                "weight": weight,
                "analysis": analysis,
                "phase": result.phase.value,
                **asdict(result.chart),
            }
        )
        return result

    return analyse_until_decided(
        assess,
        ctx.thresholds,
        backward_compatible=ctx.backward_compatible,
        interval_seconds=ctx.analysis_interval,
        max_seconds=max_seconds,
    )


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
    outcome = ComponentOutcome(component, RolloutOutcome.PROMOTED)
    canary_slot = deploy_candidate(ctx, component, image)
    # The error rate must be proven below the limit before all traffic moves: at the last analysed step.
    last_analysed = max((n for n, w in enumerate(steps, start=1) if w < 100), default=0)
    for step, weight in enumerate(steps, start=1):
        moved = set_traffic(ctx.environment, ctx.app_config, component, weight, ctx.replicas, ctx.docker_host)
        outcome.weights.append(weight)
        if outcome.first_traffic_at is None:
            outcome.first_traffic_at = moved["at"]
        if weight >= 100:
            break  # full traffic: the monitoring window judges it after promotion
        verdict = _analyse_until_decided(
            ctx, component, canary_slot, step, weight, moved["at"], None, proof_required=step == last_analysed
        )
        if verdict.action is not Action.NEXT_STEP:
            outcome.action = RolloutOutcome.FROZEN if verdict.action is Action.FREEZE else RolloutOutcome.ROLLED_BACK
            outcome.reason = f"step {step} at {weight}%: " + "; ".join(verdict.reasons)
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
    return ComponentOutcome(
        component, RolloutOutcome.PROMOTED, first_traffic_at=moved["at"], weights=[100], promoted=True
    )


def monitor_promoted(ctx: RolloutContext, component: str, window_seconds: float) -> tuple[bool, str]:
    """Judge the promoted slot on absolute criteria for ``window_seconds``, clients' view included; (healthy, reason).

    Healthy needs evidence: at least one analysis in the window must pass (the
    latency test accepts, no error test rejects), and the router's answers count (a release
    whose replicas died after their health check makes HAProxy answer 503 while
    the app's own metrics show nothing). A window that ends with no data is not
    healthy. `window_seconds <= 0` skips the window (previews, rollbacks to an
    already judged release).
    """
    if window_seconds <= 0:
        return True, ""
    stable_slot = controller(ctx.environment, ctx.app_config, ctx.docker_host).stable_slot(component)
    started = time.time()
    verdict = _analyse_until_decided(ctx, component, stable_slot, 0, 100, started, window_seconds, monitoring=True)
    if verdict.action in (Action.ROLLBACK, Action.FREEZE):
        return False, "monitoring window: " + "; ".join(verdict.reasons)
    if verdict.passed == 0:
        return False, (
            f"monitoring window: no evidence, none of {verdict.analyses} analyses in {window_seconds:.0f}s passed "
            "(too few requests for the latency test, or no metrics)"
        )
    return True, ""


@dataclass
class RolloutResult:
    """How the production rollout ended: each component's outcome, and the one that decided a failure."""

    outcomes: list[ComponentOutcome]
    failure: ComponentOutcome | None = None
    fault: str = ""  # the exception that interrupted the rollout, when one did


def has_stable(ctx: RolloutContext, component: str) -> bool:
    backend = controller(ctx.environment, ctx.app_config, ctx.docker_host).state().backends[component]
    return backend.active_replicas[backend.stable_slot] > 0


def roll_out(
    ctx: RolloutContext,
    components: list[str],
    images: dict[str, str],
    strategy: str,
    steps: list[int],
    monitoring_seconds: float,
) -> RolloutResult:
    """Every component in order by the strategy, the monitoring window, then decommission or rollback.

    Whatever raises once traffic may have moved (Docker, the HAProxy socket, a
    garbled metrics answer, the statistics), the environment is brought back to
    its last judged release by `reconcile` before the fault is reported: a
    candidate with traffic is taken out, a promoted release without a verdict is
    switched back. The rollout ends as rolled back, with the fault as its reason.
    """
    outcomes: list[ComponentOutcome] = []
    judged = False  # every verdict passed: from here on the new release is the judged one
    try:
        failure = _roll_out_components(ctx, components, images, strategy, steps, outcomes)
        if failure is None:
            failure = _monitor(ctx, outcomes, monitoring_seconds)
        if failure is not None:
            _roll_back_moved(ctx, outcomes, failure)
            return RolloutResult(outcomes, failure)
        accept_verdicts(ctx.environment, ctx.app_config, [o.component for o in outcomes], ctx.docker_host)
        judged = True
        for outcome in outcomes:
            decommission(ctx.environment, ctx.app_config, outcome.component, ctx.docker_host)
        return RolloutResult(outcomes)
    except Exception as exc:  # noqa: BLE001 - any fault after traffic moved ends on the judged release
        fault = f"{type(exc).__name__}: {exc}"
        logger = get_run_logger()
        logger.error("rollout interrupted by %s; returning %s to its judged release", fault, ctx.environment)
        recovery = _recover(ctx)
        if judged:  # the release passed; only removing the previous slot failed (reconcile finishes it)
            logger.warning("%s promoted, but decommissioning failed: %s; %s", ctx.environment, fault, recovery)
            return RolloutResult(outcomes, None, fault)
        current = outcomes[-1].component if outcomes else (components[0] if components else "")
        reason = f"fault: {fault}" + (f" ({recovery})" if recovery else "")
        failure = ComponentOutcome(current, RolloutOutcome.ROLLED_BACK, reason, decided_at=time.time())
        return RolloutResult(outcomes, failure, fault)


def _recover(ctx: RolloutContext) -> str:
    """Reconcile after a fault; what it did, or why it could not (the persisted state lets the next run finish)."""
    try:
        actions = reconcile_environment(ctx.environment, ctx.app_config, ctx.docker_host)
    except Exception as exc:  # noqa: BLE001 - the fault being handled is the one to report
        return f"recovery failed: {type(exc).__name__}: {exc}; the next run's reconcile finishes it"
    return "recovered: " + "; ".join(actions) if actions else ""


def _roll_out_components(
    ctx: RolloutContext,
    components: list[str],
    images: dict[str, str],
    strategy: str,
    steps: list[int],
    outcomes: list[ComponentOutcome],
) -> ComponentOutcome | None:
    for component in components:
        if not has_stable(ctx, component):
            deploy_directly(ctx, component, images[component])
            outcomes.append(
                ComponentOutcome(component, RolloutOutcome.PROMOTED, "first release", weights=[100], first_release=True)
            )
            continue
        if strategy == "canary":
            outcome = rollout_canary(ctx, component, images[component], steps)
        else:
            outcome = rollout_blue_green(ctx, component, images[component])
        outcomes.append(outcome)
        if outcome.action is not RolloutOutcome.PROMOTED:
            return outcome
    return None


def _monitor(ctx: RolloutContext, outcomes: list[ComponentOutcome], window_seconds: float) -> ComponentOutcome | None:
    for outcome in outcomes:
        healthy, reason = monitor_promoted(ctx, outcome.component, window_seconds)
        if not healthy and not outcome.first_release:
            outcome.action, outcome.reason = RolloutOutcome.ROLLED_BACK, reason
            return outcome
    return None


def _roll_back_moved(ctx: RolloutContext, outcomes: list[ComponentOutcome], failure: ComponentOutcome) -> None:
    """Automatic rollback of everything this rollout moved, newest first."""
    for outcome in reversed(outcomes):
        if outcome.first_release:
            continue
        if outcome.promoted or outcome is failure:
            rollback(ctx.environment, ctx.app_config, outcome.component, outcome.promoted, ctx.docker_host)
    failure.decided_at = failure.decided_at or time.time()
