"""Rollout tasks: deploy a slot, move traffic, assess a canary step, promote, roll back, reconcile."""

from __future__ import annotations

import math
import time
from typing import Any

from prefect import task
from prefect.logging import get_run_logger
from prefect_docker import DockerHost

from blocks.delivery import MetricsProvider
from blocks.runtime import environment_database_server, environment_runtime
from medianest_delivery.appconfig import load_app_config
from medianest_delivery.errors import MetricsUnavailableError, StackError
from medianest_delivery.rollout.analysis import AnalysisScope, ChartPoint, StepAssessment, observe_step, p95_query
from medianest_delivery.rollout.app_role import app_role_name, drop_environment_database
from medianest_delivery.rollout.environment import EnvironmentController, SlotRelease
from medianest_delivery.rollout.judge import CanaryThresholds, SliceCounts, assess_canary_step
from medianest_delivery.rollout.metrics import PrometheusClient
from medianest_delivery.rollout.router import HAProxyRouter, Router
from medianest_delivery.rollout.runtime import Runtime
from medianest_delivery.rollout.topology import SLOTS, other_slot
from medianest_delivery.settings import StackSettings
from tasks.app_database import app_database_password, forget_app_database_password
from tasks.locks import ensure_lock


def runtime_for(environment: str, docker_host: DockerHost) -> Runtime:
    """The environment's runtime: its `EnvironmentTarget`'s, or the default (staging on the local Swarm, the rest
    on ``docker_host``, the flow's engine). The seam the middle-tier tests replace with a fake."""
    return environment_runtime(environment, docker_host)


def router_for(settings: StackSettings, environment: str) -> Router:
    """The environment's router (HAProxy; a fake in the middle-tier tests)."""
    return HAProxyRouter(settings.routers_dir, environment)


def controller(environment: str, app_config: str, docker_host: DockerHost) -> EnvironmentController:
    settings = StackSettings()
    return EnvironmentController(
        environment,
        load_app_config(app_config),
        runtime_for(environment, docker_host),
        settings,
        router_for(settings, environment),
        app_password=app_database_password,
        database_server=environment_database_server(environment),
    )


@task(name="reconcile-environment", task_run_name="reconcile: {environment}")
def reconcile_environment(environment: str, app_config: str, docker_host: DockerHost) -> list[str]:
    """Bring router and replicas back to the recorded state after a crash or restart (see `reconcile`)."""
    actions = controller(environment, app_config, docker_host).reconcile()
    for action in actions:
        get_run_logger().warning(action)
    return actions


@task(name="deploy-slot", task_run_name="deploy: {environment}/{component} slot {slot}")
def deploy_slot(
    environment: str,
    app_config: str,
    component: str,
    slot: str,
    image: str,
    version: str,
    replicas: int,
    extra_env: dict[str, str],
    health_deadline_seconds: float,
    docker_host: DockerHost,
) -> list[str]:
    """Start the release's replicas (not yet routed) and wait for /health and /ready."""
    env = controller(environment, app_config, docker_host)
    env.ensure_router()
    state = env.state()
    state.backends[component].slot_releases[slot] = {"image": image, "version": version, "extra_env": extra_env}
    env.router.save_state(state)
    specs = env.start_slot(SlotRelease(component, slot, image, version, replicas), extra_env)
    failures = env.wait_healthy(specs, health_deadline_seconds)
    if failures:
        logs = "\n".join(env.runtime.logs(s.name, 10) for s in specs)
        env.runtime.remove(environment, component, slot)
        env.write_app_targets()
        raise StackError(
            f"{environment}/{component} {version} not healthy within {health_deadline_seconds:.0f}s: {failures}\n{logs}"
        )
    return [s.url for s in specs]


@task(name="set-traffic", task_run_name="traffic: {environment}/{component} {percent}% to candidate")
def set_traffic(
    environment: str, app_config: str, component: str, percent: int, replicas: int, docker_host: DockerHost
) -> dict[str, Any]:
    env = controller(environment, app_config, docker_host)
    state = env.set_weights(component, percent, replicas)
    backend = state.backends[component]
    return {"weights": dict(backend.weights), "stable_slot": backend.stable_slot, "at": time.time()}


@task(name="promote", task_run_name="promote: {environment}/{component}")
def promote(environment: str, app_config: str, component: str, docker_host: DockerHost) -> str:
    """The candidate slot becomes stable; the previous stable slot is decommissioned."""
    return controller(environment, app_config, docker_host).promote(component)


@task(name="rollback", task_run_name="rollback: {environment}/{component}")
def rollback(environment: str, app_config: str, component: str, promoted: bool, docker_host: DockerHost) -> None:
    """Back to the previous release: abort the candidate, or switch back if it was already promoted."""
    env = controller(environment, app_config, docker_host)
    if promoted:
        env.revert(component)
    else:
        env.abort_candidate(component)


@task(name="accept-verdicts", task_run_name="verdict: {environment} accepts {components}")
def accept_verdicts(environment: str, app_config: str, components: list[str], docker_host: DockerHost) -> None:
    """Every verdict passed: the promoted releases become the judged ones (the rollback target from now on)."""
    controller(environment, app_config, docker_host).accept_verdicts(components)


@task(name="decommission", task_run_name="decommission: {environment}/{component} previous slot")
def decommission(environment: str, app_config: str, component: str, docker_host: DockerHost) -> None:
    controller(environment, app_config, docker_host).decommission(component)


@task(name="assess-canary-step", task_run_name="analysis: {environment}/{component} step {step} #{analysis}")
def assess_canary(
    environment: str,
    component: str,
    canary_slot: str,
    since: float,
    step: int,
    analysis: int,
    thresholds: CanaryThresholds,
    metrics: MetricsProvider,
    monitoring: bool = False,
    proof_required: bool = False,
) -> StepAssessment:
    """One analysis: query Prometheus, judge, return every measurement with its resolved query."""
    scope = AnalysisScope(environment, component, canary_slot, other_slot(canary_slot), monitoring)
    client = metrics.get_client()
    observation = observe_step(client, scope, since, thresholds=thresholds, proof_required=proof_required)
    decision = assess_canary_step(observation, thresholds)
    logger = get_run_logger()
    for m in decision.measurements:
        logger.info("%s %s: %s (%s) %s", component, m.metric, m.phase.value, m.threshold, m.message)
    if decision.outlook is not None:
        logger.info("%s step %s: %s", component, step, decision.outlook.describe())
    return StepAssessment(
        phase=decision.phase,
        reasons=decision.reasons,
        measurements=decision.measurements,
        canary_requests=observation.canary.requests if observation.canary else None,
        outlook=decision.outlook,
        chart=ChartPoint(
            canary_error_rate=_rate(observation.canary),
            stable_error_rate=_rate(observation.stable),
            canary_p95=observation.canary_p95_seconds,
            stable_p95=stable_p95(client, scope, since),
        ),
    )


def _rate(counts: SliceCounts | None) -> float | None:
    return counts.error_rate if counts is not None and counts.requests else None


def stable_p95(client: PrometheusClient, scope: AnalysisScope, since: float) -> float | None:
    """The stable slot's p95 over the same window (for the chart only: the verdict does not use it)."""
    mirrored = AnalysisScope(scope.environment, scope.component, scope.stable_slot, scope.canary_slot)
    try:
        samples = client.query(p95_query(mirrored, max(2, math.ceil(time.time() - since))))
    except MetricsUnavailableError:
        return None
    value = samples[0].value if samples else None
    return None if value is None or math.isnan(value) else value


@task(name="claim-environment", task_run_name="claim: {environment}")
def prepare_rollout_lock(environment: str, flow_run_id: str, supersede: bool) -> str:
    """Make sure the environment's concurrency limit (1) exists; optionally cancel rollouts in progress.

    Without ``supersede`` a newer release queues behind the running one; with it
    the running rollouts of this environment are cancelled first (their next
    run reconciles whatever they left).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelling

    name = ensure_lock(f"rollout-{environment}")
    with get_client(sync_client=True) as client:
        if supersede:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["deliver"])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PAUSED]))
                ),
            )
            for run in runs:
                if str(run.id) != flow_run_id and run.parameters.get("environment") == environment:
                    client.set_flow_run_state(
                        run.id, Cancelling(message=f"superseded by flow run {flow_run_id}"), force=True
                    )
                    get_run_logger().warning("superseded rollout %s (%s)", run.name, run.id)
    return name


@task(name="tear-down-preview", task_run_name="tear down {environment}")
def tear_down_preview(environment: str, app_config: str, docker_host: DockerHost) -> None:
    """Remove a preview environment: replicas, router, its database, app role and the role's password."""
    env = controller(environment, app_config, docker_host)
    env.tear_down()
    drop_environment_database(env.database_url())
    for slot in SLOTS:
        forget_app_database_password(app_role_name(env.database_url(), slot))
