"""Flow `deliver`: stages 3 and 4, from a signed release manifest to production.

verify signatures and the release policy ─ staging: validate migrations ─ migrate ─ deploy ─ smoke ─ contract ─ performance
  ─ approval (pause for input, or auto_approve) ─ production: reconcile ─ migrate
  ─ per component in dependency order: canary (10/30/50/100 with analysis) or blue-green
  ─ monitoring window ─ decommission previous slots
any failure after production traffic moved: automatic rollback of every component moved so far
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Iterator
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.context import get_run_context
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_docker import DockerHost

from blocks.delivery import MetricsProvider, ReleaseHistoryDatabase
from blocks.loading import load_or_default
from blocks.policy import release_policy_for
from blocks.registry import OciRegistry
from blocks.signing import trusted_signers_or_local
from flows.build_and_publish import build_and_publish
from flows.strategies import (
    RolloutContext,
    deploy_directly,
    roll_out,
)
from medianest_delivery.appconfig import load_app_config
from medianest_delivery.charts import canary_chart_markdown
from medianest_delivery.errors import DeliveryError, LockBusyError, RolloutFailedError
from medianest_delivery.release.manifest import ReleaseManifest, resolve_release
from medianest_delivery.release.policy import ReleasePolicy
from medianest_delivery.release.refs import tag_from_version
from medianest_delivery.release.trust import check_registry, verify_manifest
from medianest_delivery.release.violations import Rule
from medianest_delivery.renderers import policy_report_markdown
from medianest_delivery.rollout.history import ReleaseEventKind
from medianest_delivery.rollout.judge import CanaryThresholds
from medianest_delivery.rollout.outcome import RolloutOutcome
from medianest_delivery.rollout.topology import environment_plan, is_preview, release_order
from medianest_delivery.settings import StackSettings
from tasks.build import local_stack_base_images
from tasks.events import RELEASE_FROZEN, RELEASE_PROMOTED, RELEASE_ROLLED_BACK, emit_release_event
from tasks.locks import exclusive
from tasks.release import release_app_config
from tasks.rollout import (
    prepare_rollout_lock,
    reconcile_environment,
)
from tasks.signing import verify_image
from tasks.validation import (
    contract_test,
    migrate_database,
    performance_check,
    record_measurements,
    record_release_event,
    smoke_test,
    validate_migrations,
)


class Approval(RunInput):
    """What the approver enters in the Prefect UI to release to production."""

    approved: bool = True
    approver: str
    comment: str = ""


def verify_release(
    manifest: ReleaseManifest,
    registry_block: str | None,
    trusted_keys_block: str | None,
    policy: ReleasePolicy,
    environment: str,
    docker_host_block: str | None = None,
) -> None:
    """Refuse anything a configured trusted key did not sign, or the environment's release policy does not
    accept, before any container starts.

    The registry and the keys come from configuration: the manifest must name the
    configured registry, its own signature must verify with a trusted key valid
    now, and every image is then verified (signature, attestations, immutable tag)
    with that key and judged by the policy (provenance, base image, SBOMs, scan).
    The key and registry written in the manifest are never trusted.
    """
    settings = StackSettings()
    registry = load_or_default(OciRegistry, registry_block, OciRegistry(host=settings.registry_host))
    check_registry(manifest, registry.host)
    signer = verify_manifest(
        manifest, trusted_signers_or_local(trusted_keys_block).get_client(), dt.datetime.now(dt.UTC)
    )
    get_run_logger().info("release %s signed by trusted key %s", manifest.version, signer.name or signer.key_id)
    local_bases = (
        local_stack_base_images(
            load_or_default(DockerHost, docker_host_block, DockerHost(base_url=settings.docker_host)),
            settings.base_image,
            str(settings.built_base_images_file),
        )
        if policy.base_images.local_stack
        else []
    )
    at_registry = registry.model_copy(update={"namespace": ""})
    version_tag = tag_from_version(manifest.version)  # immutable; the commit tag may move
    futures = {
        image.component: verify_image.submit(
            image.repository.removeprefix(f"{registry.host}/"),
            image.digest,
            [version_tag],
            signer.public_key_pem,
            at_registry,
            policy,
            environment,
            manifest.git_sha,
            local_bases,
        )
        for image in manifest.images
    }
    results = {component: future.result() for component, future in futures.items()}
    create_markdown_artifact(
        key=f"release-policy-{environment}",
        markdown=policy_report_markdown(manifest.app, manifest.version, environment, results, [str(r) for r in Rule]),
        description=f"release policy for {environment}: {manifest.app} {manifest.version}",
    )


# How long staging validation waits for another release's validation to finish.
STAGING_LOCK_TIMEOUT_SECONDS = 1800.0


@contextlib.contextmanager
def _stage_three_stops_recorded(
    release_manifest: ReleaseManifest | str, staging_environment: str, history_block: str | None
) -> Iterator[None]:
    """The history says why staging stopped a release (a `failed` event), beside the failed run's own state.

    Recording must never hide the reason itself: a history that cannot be written is logged, not raised.
    A busy staging (another release holds it) never ran this one there: nothing to record.
    """
    try:
        yield
    except LockBusyError:
        raise
    except Exception as stopped:
        reason = f"stage 3 stopped the release: {type(stopped).__name__}: {stopped}"
        try:
            manifest = resolve_release(release_manifest)
            history = load_or_default(ReleaseHistoryDatabase, history_block, ReleaseHistoryDatabase())
            run = get_run_context().flow_run  # type: ignore[union-attr]
            record_release_event(
                history,
                staging_environment,
                manifest.model_dump(mode="json", by_alias=True),
                ReleaseEventKind.FAILED,
                None,
                reason[:4000],
                str(run.id) if run else None,
            )
        except Exception:  # noqa: BLE001 - the stop's own reason is what the run must raise
            get_run_logger().exception("could not record in the release history why stage 3 stopped the release")
        raise


@flow(name="validate-in-staging", log_prints=True)
def validate_in_staging(
    release_manifest: ReleaseManifest | str,
    staging_environment: str = "staging",
    app_config: str | None = None,
    performance_requests: int = 200,
    performance_rate: float = 50.0,
    contract_examples: int = 10,
    health_deadline_seconds: float = 60.0,
    registry_block: str | None = None,
    docker_host_block: str | None = None,
    history_block: str | None = None,
    trusted_keys_block: str | None = None,
    release_policy_block: str | None = None,
) -> dict[str, Any]:
    """Stage 3: verify, migrations on a scratch copy, migrate, deploy 2 replicas, smoke, contract, performance.

    Verification is not optional: nothing unsigned, and nothing the release policy
    refuses for staging, starts in staging either.
    """
    with _stage_three_stops_recorded(release_manifest, staging_environment, history_block):
        settings = StackSettings()
        manifest = resolve_release(release_manifest)
        app_config = release_app_config(manifest, app_config, str(settings.sources_dir))
        config = load_app_config(app_config)
        verify_release(
            manifest,
            registry_block,
            trusted_keys_block,
            release_policy_for(config, release_policy_block),
            staging_environment,
            docker_host_block,
        )
        docker_host = load_or_default(DockerHost, docker_host_block, DockerHost(base_url=settings.docker_host))
        history = load_or_default(ReleaseHistoryDatabase, history_block, ReleaseHistoryDatabase())
        order = release_order(config.components)
        images = {image.component: image.reference for image in manifest.images}
        # One rollout per environment, staging included: a concurrent run's reconcile would undo this one's slots.
        with exclusive(
            f"rollout-{staging_environment}",
            timeout_seconds=STAGING_LOCK_TIMEOUT_SECONDS,
            busy=f"{staging_environment} is busy: another release is being validated there; retry later",
        ):
            migrated = validate_migrations(app_config, staging_environment)
            migrate_database(app_config, staging_environment)
            reconcile_environment(staging_environment, app_config, docker_host)
            staging = RolloutContext(
                staging_environment,
                app_config,
                manifest.version,
                2,
                {},
                CanaryThresholds(),
                2.0,
                health_deadline_seconds,
                True,
                docker_host,
                MetricsProvider(url=settings.prometheus_url),
                str(get_run_context().flow_run.id),  # type: ignore[union-attr]
            )
            for component in order:
                if component.name in images:
                    deploy_directly(staging, component.name, images[component.name])
            checks: dict[str, Any] = {"migrations_validated": migrated}
            for component in order:
                checks[f"smoke {component.name}"] = smoke_test(app_config, staging_environment, component.name)
                checks[f"contract {component.name}"] = contract_test(
                    app_config, staging_environment, component.name, contract_examples
                )
            first = order[0]
            if first.smoke:
                checks["performance"] = performance_check(
                    app_config,
                    staging_environment,
                    first.name,
                    manifest.version,
                    next((p for p in first.smoke if p.startswith("/api")), first.smoke[-1]),
                    performance_requests,
                    performance_rate,
                    history,
                )
        return checks


@flow(name="deliver", task_runner=ThreadPoolTaskRunner(max_workers=4), log_prints=True)
def deliver(
    release_manifest: ReleaseManifest | str | None = None,
    git_ref: str | None = None,
    repository: str | None = None,
    strategy: Literal["canary", "blue-green"] = "canary",
    environment: str = "production",
    staging_environment: str | None = "staging",
    auto_approve: bool = False,
    approval_timeout_seconds: int = 3600,
    canary_steps: list[int] | None = None,
    replicas: int = 2,
    analysis_interval_seconds: float = 2.0,
    monitoring_seconds: float = 10.0,
    health_deadline_seconds: float = 60.0,
    thresholds: dict[str, Any] | None = None,
    fault_injection: dict[str, str] | None = None,
    performance_requests: int = 200,
    performance_rate: float = 50.0,
    contract_examples: int = 10,
    app_config: str | None = None,
    registry_block: str | None = None,
    docker_host_block: str | None = None,
    metrics_block: str | None = None,
    history_block: str | None = None,
    trusted_keys_block: str | None = None,
    release_policy_block: str | None = None,
    supersede: bool = False,
    environment_lock_timeout_seconds: float = 1800.0,
    triggered_by_ref: str | None = None,
) -> dict[str, Any]:
    """Carry a signed release through staging, an approval and a progressive production rollout.

    Without a manifest, ``git_ref`` (and ``repository``, a git URL: CI passes the
    commit it was triggered by, and ``triggered_by_ref`` the branch it ran on)
    is built first by `build-and-publish`. A release
    built from a repository is deployed with its own commit's delivery.yaml
    unless ``app_config`` names one.

    ``fault_injection`` adds environment variables to the new release's
    production containers only (the sample app's error and latency knobs): a
    release that passes staging and goes bad under production conditions, for
    drills, tests and the demo.
    """
    logger = get_run_logger()
    settings = StackSettings()
    if release_manifest is None:
        if git_ref is None:
            raise DeliveryError("deliver needs a release_manifest, or a git_ref to build and publish first")
        release_manifest = build_and_publish(
            app_config=app_config,
            git_ref=git_ref,
            repository=repository,
            registry_block=registry_block,
            docker_host_block=docker_host_block,
            release_policy_block=release_policy_block,
            triggered_by_ref=triggered_by_ref,
        )
    manifest = resolve_release(release_manifest)
    # With a repository, app_config was the path inside it: the built commit's own file is the one to read.
    app_config = release_app_config(manifest, None if repository else app_config, str(settings.sources_dir))
    config = load_app_config(app_config)
    if manifest.app != config.name:
        raise DeliveryError(f"release is for app {manifest.app!r} but the app config describes {config.name!r}")
    docker_host = load_or_default(DockerHost, docker_host_block, DockerHost(base_url=settings.docker_host))
    metrics = load_or_default(MetricsProvider, metrics_block, MetricsProvider(url=settings.prometheus_url))
    history = load_or_default(ReleaseHistoryDatabase, history_block, ReleaseHistoryDatabase())
    run_id = str(get_run_context().flow_run.id)  # type: ignore[union-attr]
    steps = canary_steps or [10, 30, 50, 100]
    if sorted(steps) != steps or steps[-1] != 100 or steps[0] <= 0:
        raise DeliveryError(f"canary steps {steps} must increase and end at 100")
    for name in (environment, staging_environment):
        if name and not is_preview(name):
            environment_plan(name)  # raises for an unknown environment before anything runs
    unknown = set(thresholds or {}) - set(CanaryThresholds.__dataclass_fields__)
    if unknown:
        known = ", ".join(CanaryThresholds.__dataclass_fields__)
        raise DeliveryError(f"unknown canary thresholds {sorted(unknown)}; known: {known}")
    limits = CanaryThresholds(**(thresholds or {}))
    order = release_order(config.components)
    images = {image.component: image.reference for image in manifest.images}
    manifest_data = manifest.model_dump(mode="json", by_alias=True)
    policy = release_policy_for(config, release_policy_block)  # a malformed policy fails before any work

    # 1. the target environment's own policy, first: a release production will refuse never reaches staging.
    verify_release(manifest, registry_block, trusted_keys_block, policy, environment, docker_host_block)
    # 2-6. staging, which verifies against staging's policy before anything starts there.
    if staging_environment:
        validate_in_staging(
            manifest,
            staging_environment,
            app_config,
            performance_requests,
            performance_rate,
            contract_examples,
            health_deadline_seconds,
            registry_block,
            docker_host_block,
            history_block,
            trusted_keys_block,
            release_policy_block,
        )

    # 7. approval.
    if not auto_approve:
        answer = pause_flow_run(
            wait_for_input=Approval.with_initial_data(
                description=f"Release **{manifest.app} {manifest.version}** (`{manifest.git_sha[:12]}`) to "
                f"**{environment}** by {strategy}?",
                approver="",
            ),
            timeout=approval_timeout_seconds,
        )
        if not answer.approved:
            record_release_event(
                history,
                environment,
                manifest_data,
                ReleaseEventKind.FAILED,
                strategy,
                f"rejected by {answer.approver}: {answer.comment}",
                run_id,
            )
            raise DeliveryError(f"release rejected by {answer.approver}: {answer.comment}")
        approval = f"approved by {answer.approver}: {answer.comment}"
    else:
        approval = "auto-approved"
    record_release_event(history, environment, manifest_data, ReleaseEventKind.APPROVED, strategy, approval, run_id)

    # 8. production, one rollout per environment at a time.
    lock = prepare_rollout_lock(environment, run_id, supersede)
    with exclusive(
        lock,
        timeout_seconds=environment_lock_timeout_seconds,
        busy=f"{environment} is busy: another rollout holds it; retry later or pass supersede=true",
    ):
        reconcile_environment(environment, app_config, docker_host)
        migration = migrate_database(app_config, environment)
        production = RolloutContext(
            environment,
            app_config,
            manifest.version,
            replicas,
            dict(fault_injection or {}),
            limits,
            analysis_interval_seconds,
            health_deadline_seconds,
            migration["backward_compatible"],
            docker_host,
            metrics,
            run_id,
        )
        record_release_event(
            history, environment, manifest_data, ReleaseEventKind.DEPLOY_STARTED, strategy, None, run_id
        )
        result = roll_out(
            production,
            [c.name for c in order if c.name in images],
            images,
            strategy,
            steps,
            monitoring_seconds,
        )
        outcomes, failure = result.outcomes, result.failure
        if failure is not None:
            failure.decided_at = failure.decided_at or time.time()
            record_release_event(
                history,
                environment,
                manifest_data,
                ReleaseEventKind(failure.action.value),
                strategy,
                f"{failure.component}: {failure.reason}",
                run_id,
            )
            emit_release_event(
                RELEASE_FROZEN if failure.action is RolloutOutcome.FROZEN else RELEASE_ROLLED_BACK,
                environment,
                manifest.app,
                manifest.version,
                {"component": failure.component, "reason": failure.reason, "strategy": strategy, "flow_run_id": run_id},
            )
        else:
            record_release_event(
                history, environment, manifest_data, ReleaseEventKind.PROMOTED, strategy, approval, run_id
            )
            emit_release_event(
                RELEASE_PROMOTED,
                environment,
                manifest.app,
                manifest.version,
                {"strategy": strategy, "approval": approval, "flow_run_id": run_id},
            )
        for row in production.measurements:
            row["app"] = manifest.app
        record_measurements(history, "all", production.measurements, f"canary-analysis-{environment}")

    summary = {
        "flow_run_id": run_id,
        "app": manifest.app,
        "version": manifest.version,
        "environment": environment,
        "strategy": strategy,
        "approval": approval,
        "outcome": (RolloutOutcome.PROMOTED if failure is None else failure.action).value,
        "reason": failure.reason if failure else "",
        "fault": result.fault,
        "components": [{**vars(o), "action": o.action.value} for o in outcomes],
        "measurements": len(production.measurements),
    }
    create_markdown_artifact(
        key=f"rollout-{environment}",
        markdown="\n".join(
            [f"# {manifest.app} {manifest.version} → {environment} ({strategy}): **{summary['outcome']}**", ""]
            + ([f"Reason: {summary['reason']}", ""] if summary["reason"] else [])
            + ["| component | outcome | weights | reason |", "|---|---|---|---|"]
            + [f"| {o.component} | {o.action} | {o.weights} | {o.reason} |" for o in outcomes]
        ),
    )
    charted = sorted({p["component"] for p in production.chart_points})
    if charted:
        create_markdown_artifact(
            key=f"canary-chart-{environment}",
            description=f"canary against stable: {manifest.app} {manifest.version}",
            markdown=f"# Canary analysis: {manifest.app} {manifest.version} → {environment}\n\n"
            + "\n\n".join(
                canary_chart_markdown(c, [p for p in production.chart_points if p["component"] == c]) for c in charted
            ),
        )
    if failure is not None:
        logger.error("rollout of %s %s: %s (%s)", manifest.app, manifest.version, failure.action, failure.reason)
        raise RolloutFailedError(f"{failure.action}: {failure.component}: {failure.reason}", summary)
    return summary
