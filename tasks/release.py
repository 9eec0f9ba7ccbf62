"""Persist the release manifest and show it in the Prefect UI."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from medianest_delivery.release.manifest import ReleaseManifest


def release_markdown(manifest: ReleaseManifest, path: str) -> str:
    lines = [
        f"# Release {manifest.app} {manifest.version}",
        "",
        f"- commit `{manifest.git_sha}` ({manifest.git_commit_time}){' — dirty working tree' if manifest.source_dirty else ''}",
        f"- security gate: **{manifest.scan.outcome}** ({manifest.scan.blocking} blocking, {manifest.scan.suppressed} ignored)",
        f"- manifest: `{path}`",
        "",
        "| component | image (by digest) | signed | SBOM tag |",
        "|---|---|---|---|",
    ]
    for image in manifest.images:
        signed = f"{image.signature.signer}, key {image.signature.key_id}" if image.signature else "no"
        sbom = image.signature.sbom_tag if image.signature else "-"
        lines.append(f"| {image.component} | `{image.reference}` | {signed} | `{sbom}` |")
    if manifest.scan.notes:
        lines += ["", "**Notes**", *[f"- {n}" for n in manifest.scan.notes]]
    lines += ["", "| stage | seconds |", "|---|---|"]
    lines += [
        f"| {stage} | {seconds:.2f}{' (cached)' if stage in manifest.cached_stages else ''} |"
        for stage, seconds in manifest.stage_seconds.items()
    ]
    return "\n".join(lines)


@task(name="publish-release-manifest", task_run_name="release manifest")
def publish_release_manifest(manifest: ReleaseManifest, releases_dir: str) -> str:
    """Write ``<releases_dir>/<app>/<version>-<sha12>.json`` (and ``latest.json``) plus artifacts."""
    directory = Path(releases_dir) / manifest.app
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{manifest.version}-{manifest.git_sha[:12]}.json"
    text = manifest.to_json()
    path.write_text(text)
    (directory / "latest.json").write_text(text)
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
