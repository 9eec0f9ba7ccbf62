"""Flow `rollback`: put an earlier release back into an environment, from the release history."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from blocks.delivery import ReleaseHistoryDatabase
from blocks.loading import load_or_default
from flows.deliver import deliver
from medianest_delivery.release.manifest import ReleaseManifest
from tasks.history import find_release


@flow(name="rollback", log_prints=True)
def rollback_release(
    environment: str = "production",
    version: str | None = None,
    app: str = "medianest",
    app_config: str | None = None,
    history_block: str | None = None,
    trusted_keys_block: str | None = None,
    docker_host_block: str | None = None,
    metrics_block: str | None = None,
    registry_block: str | None = None,
    release_policy_block: str | None = None,
) -> dict[str, Any]:
    """Blue-green switch back to ``version`` (default: the release promoted before the current one).

    The earlier release is verified again (signatures, and the environment's release policy) before it runs.
    No monitoring window: the release was judged when it was promoted, and an
    emergency rollback must not wait for (or be undone by the lack of) traffic.
    """
    history = load_or_default(ReleaseHistoryDatabase, history_block, ReleaseHistoryDatabase())
    manifest = ReleaseManifest.model_validate(find_release(history, environment, app, version))
    get_run_logger().info("rolling %s back to %s (%s)", environment, manifest.version, manifest.git_sha[:12])
    return deliver(
        release_manifest=manifest,
        strategy="blue-green",
        environment=environment,
        staging_environment=None,
        auto_approve=True,
        monitoring_seconds=0,
        app_config=app_config,
        history_block=history_block,
        trusted_keys_block=trusted_keys_block,
        docker_host_block=docker_host_block,
        metrics_block=metrics_block,
        registry_block=registry_block,
        release_policy_block=release_policy_block,
    )
