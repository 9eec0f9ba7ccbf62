"""Flows `feature-ci` and `preview-cleanup`: a feature branch gets gates, tests and a preview environment."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact
from prefect_docker import DockerHost

from blocks.loading import load_or_default
from flows.build_and_publish import build_and_publish
from flows.deliver import deliver
from medianest_delivery.appconfig import DEFAULT_APP_CONFIG, load_app_config
from medianest_delivery.rollout.previews import plan_for, preview_name
from medianest_delivery.settings import StackSettings
from tasks.release import release_app_config
from tasks.rollout import tear_down_preview


@flow(name="feature-ci", log_prints=True)
def feature_ci(
    branch: str,
    repository: str | None = None,
    git_ref: str | None = None,
    app_config: str | None = None,
    teardown: bool = False,
    registry_block: str | None = None,
    signing_key_block: str | None = None,
    docker_host_block: str | None = None,
    trusted_keys_block: str | None = None,
    release_policy_block: str | None = None,
) -> dict[str, Any]:
    """Quality gate, security scans and tests (build-and-publish), then a preview environment of the branch.

    With ``repository`` the branch's head (or ``git_ref``, the commit CI was
    triggered by) is fetched into the worker's source cache and that commit is
    built, previewed and recorded; a branch or commit the repository does not
    have is an error that names it. Without it, the worker's own checkout
    (``app_config``, default the sample app) must be at the branch.
    ``teardown=True`` removes the branch's preview (containers, router, database) instead.
    """
    environment = preview_name(branch)
    settings = StackSettings()
    docker_host = load_or_default(DockerHost, docker_host_block, DockerHost(base_url=settings.docker_host))
    if teardown:
        tear_down_preview(environment, app_config or DEFAULT_APP_CONFIG, docker_host)
        return {"environment": environment, "torn_down": True}
    manifest = build_and_publish(
        app_config=app_config,
        git_ref=git_ref or branch,
        repository=repository,
        # CI hands the head commit's SHA: the release records the branch it is on (proven), not the bare SHA.
        triggered_by_ref=f"refs/heads/{branch}" if repository and git_ref else None,
        version_suffix="-" + environment.removeprefix("preview-"),
        registry_block=registry_block,
        signing_key_block=signing_key_block,
        docker_host_block=docker_host_block,
        release_policy_block=release_policy_block,
    )
    deployed_config = release_app_config(manifest, None if repository else app_config, str(settings.sources_dir))
    config = load_app_config(deployed_config)
    deliver(
        release_manifest=manifest,
        strategy="blue-green",
        environment=environment,
        staging_environment=None,
        auto_approve=True,
        replicas=1,
        monitoring_seconds=0,
        app_config=deployed_config,
        registry_block=registry_block,
        docker_host_block=docker_host_block,
        trusted_keys_block=trusted_keys_block,
        release_policy_block=release_policy_block,
    )
    plan = plan_for(environment, settings.routers_dir)
    urls = {c.name: plan.router_url(i) for i, c in enumerate(config.components)}
    entry = urls.get(config.components[-1].name, "")
    create_link_artifact(key=environment, link=entry, description=f"preview of `{branch}`")
    get_run_logger().info("preview of %s: %s", branch, urls)
    return {"environment": environment, "urls": urls, "version": manifest.version, "git_sha": manifest.git_sha}


@flow(name="preview-cleanup", log_prints=True)
def preview_cleanup(app_config: str = DEFAULT_APP_CONFIG, docker_host_block: str | None = None) -> list[str]:
    """Tear down every preview environment on this host."""
    settings = StackSettings()
    docker_host = load_or_default(DockerHost, docker_host_block, DockerHost(base_url=settings.docker_host))
    names = sorted(d.name for d in settings.routers_dir.glob("preview-*") if d.is_dir())
    for name in names:
        tear_down_preview(name, app_config, docker_host)
    return names
