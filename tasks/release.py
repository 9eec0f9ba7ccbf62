"""Persist the release manifest and show it in the Prefect UI."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from medianest_delivery.release.manifest import ReleaseManifest, ReleaseStore
from medianest_delivery.release.source import SourceInfo, describe_source
from medianest_delivery.release.timings import StageTimings, cached_stages, stage_spans
from medianest_delivery.renderers import release_markdown


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
