"""Persist the release manifest and show it in the Prefect UI."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from medianest_delivery.appconfig import DEFAULT_APP_CONFIG
from medianest_delivery.errors import SourceFetchError
from medianest_delivery.release.manifest import ReleaseManifest, ReleaseStore
from medianest_delivery.release.source import SourceInfo, describe_source
from medianest_delivery.release.timings import StageTimings, cached_stages, stage_spans
from medianest_delivery.release.workspace import Checkout, SourceWorkspace
from medianest_delivery.renderers import release_markdown
from tasks.policies import retry_on


@task(name="publish-release-manifest", task_run_name="release manifest")
def publish_release_manifest(manifest: ReleaseManifest, releases_dir: str) -> str:
    """Save the manifest in the release store (see `ReleaseStore` for the layout) and show it as artifacts."""
    path = ReleaseStore(releases_dir).save(manifest)
    create_markdown_artifact(
        key=f"release-{manifest.app}", markdown=release_markdown(manifest, str(path)), description="release manifest"
    )
    create_table_artifact(
        key=f"release-images-{manifest.app}",
        table=[
            {
                "component": i.component,
                "reference": i.reference,
                "tags": ", ".join(i.tags),
                "verified": i.verified,
                "cyclonedx": i.sbom_files.get("cyclonedx", ""),
                "spdx": i.sbom_files.get("spdx", ""),
            }
            for i in manifest.images
        ],
        description=f"images of {manifest.app} {manifest.version}",
    )
    return str(path)


@task(
    name="fetch-source",
    task_run_name="fetch: {repository} at {ref}",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_on(SourceFetchError),  # an unreachable repository, never a ref that names nothing
    cache_policy=NO_CACHE,  # a branch moves: every run resolves it again
)
def fetch_source(repository: str, ref: str | None, sources_dir: str) -> Checkout:
    """Fetch the repository into the worker's mirror, resolve ``ref`` to a commit, give it a clean worktree."""
    checkout = SourceWorkspace(Path(sources_dir)).checkout(repository, ref)
    get_run_logger().info("%s %s is %s, checked out in %s", repository, checkout.full_ref, checkout.sha, checkout.root)
    return checkout


@task(name="confirm-ref", task_run_name="source: {ref} contains {sha:.12}")
def confirm_ref(repository: str, sha: str, ref: str, sources_dir: str) -> str:
    """The full name of the branch or tag CI ran on, once the built commit is proven to be on it."""
    return SourceWorkspace(Path(sources_dir)).ref_containing(repository, sha, ref)


def release_app_config(manifest: ReleaseManifest, app_config: str | None, sources_dir: str) -> str:
    """The app config a deploy of ``manifest`` reads: the one given, else the one of the commit it was built from.

    A release built from a repository carries where it came from; its own
    delivery.yaml (migrations, smoke paths, release policy) is read from that
    commit's worktree in the source cache, fetched again if the cache lost it.
    """
    if app_config is not None:
        return app_config
    if manifest.source_repository is None:
        return DEFAULT_APP_CONFIG
    checkout = fetch_source(manifest.source_repository, manifest.git_sha, sources_dir)
    return str(checkout.root / (manifest.app_config_path or "delivery.yaml"))


@task(name="resolve-source", task_run_name="source")
def resolve_source(root: str, git_ref: str | None) -> SourceInfo:
    """Git SHA, commit time and a content digest of the app's source tree."""
    return describe_source(Path(root), git_ref)


@task(name="collect-stage-timings", task_run_name="release: stage timings")
def collect_stage_timings(flow_run_id: str, task_run_ids: list[str], wait_seconds: float = 30.0) -> StageTimings:
    """Wall time per stage of this flow run, from the task runs the server recorded.

    The server records task runs from events, a moment after they finish; the
    last stages (often cache hits that finish in milliseconds) may not be there
    yet, so this waits until every task run in `task_run_ids` is recorded as
    finished. Cache hits count too, marked as cached.
    """
    wanted = set(task_run_ids)
    deadline = time.monotonic() + wait_seconds
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(flow_run_id)]))
            )
            done = [r for r in runs if r.start_time and r.end_time and r.state and r.state.is_final()]
            missing = wanted - {str(r.id) for r in done}
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    if missing:
        get_run_logger().warning("%d task runs were not recorded within %.0f s", len(missing), wait_seconds)
    return StageTimings(
        seconds=stage_spans((r.name, r.start_time, r.end_time) for r in done if r.start_time and r.end_time),
        cached=cached_stages((r.name, r.state is not None and r.state.name == "Cached") for r in done),
    )
