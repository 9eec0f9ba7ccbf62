"""Flow `build-and-publish`: stages 1 and 2 of MediaNest's delivery strategy.

    resolve source ─┬─ quality commands ─ coverage gate ─┐
                    ├─ trivy fs + bandit ─ source gate ──┼─ push ─┬─ image scan ─ image gate ─┐
                    └─ docker builds (concurrent) ───────┘        └─ SBOM ─ attach ───────────┴─ sign + attest ─ verify ─ manifest

Nothing unvetted is signed: an image that fails a gate may sit in the registry
but has no signature, and every deploy verifies signatures first.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.context import get_run_context
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_docker import DockerHost

from blocks.registry import OciRegistry
from blocks.signing import SigningKey
from medianest_delivery.appconfig import AppConfig, load_app_config
from medianest_delivery.refs import require_tag, tag_from_version
from medianest_delivery.release import ReleaseImage, ReleaseManifest, ScanSummary
from medianest_delivery.settings import StackSettings
from medianest_delivery.source import SourceInfo, describe_source, tree_digest
from tasks.build import build_image, inspect_base_image, oci_labels, push_image
from tasks.quality import gate_coverage, run_quality_command
from tasks.release import publish_release_manifest
from tasks.sbom import file_digests, generate_sbom
from tasks.scan import gate_security, scan_image, scan_source_sast, scan_source_trivy
from tasks.signing import attach_sbom, fingerprint, load_public_key_pem, sign_image, verify_image

DEFAULT_APP_CONFIG = str(Path(__file__).resolve().parent.parent / "examples" / "medianest" / "delivery.yaml")
BUILDER_ID = "https://github.com/medianest/delivery/flows/build-and-publish@v1"


@task(name="resolve-source")
def resolve_source(root: str, git_ref: str | None) -> SourceInfo:
    """Git SHA, commit time and a content digest of the app's source tree."""
    return describe_source(Path(root), git_ref)


class StageClock:
    """Wall time per stage, for the manifest and the benchmark."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 3)


def merge_scan_summaries(summaries: list[ScanSummary]) -> ScanSummary:
    """One summary for the manifest: worst outcome, summed counts, all notes."""
    by_scanner: dict[str, dict[str, int]] = {}
    for summary in summaries:
        for scanner, counts in summary.by_scanner.items():
            merged = by_scanner.setdefault(scanner, {})
            for severity, count in counts.items():
                merged[severity] = merged.get(severity, 0) + count
    return ScanSummary(
        outcome="fail" if any(s.outcome == "fail" for s in summaries) else "pass",
        by_scanner=by_scanner,
        blocking=sum(s.blocking for s in summaries),
        suppressed=sum(s.suppressed for s in summaries),
        expired_ignores=sorted({e for s in summaries for e in s.expired_ignores}),
        notes=sorted({n for s in summaries for n in s.notes}),
        sarif_file=next((s.sarif_file for s in summaries if s.sarif_file), None),
    )


def _load_blocks(
    settings: StackSettings, registry_block: str | None, signing_key_block: str | None, docker_host_block: str | None
) -> tuple[OciRegistry, SigningKey, DockerHost]:
    registry = OciRegistry.load(registry_block) if registry_block else OciRegistry(host=settings.registry_host)
    signing_key = SigningKey.load(signing_key_block) if signing_key_block else SigningKey()
    docker_host = DockerHost.load(docker_host_block) if docker_host_block else DockerHost(base_url=settings.docker_host)
    return registry, signing_key, docker_host  # type: ignore[return-value]


def _submit_quality(config: AppConfig, source: SourceInfo) -> list[PrefectFuture[Any]]:
    """Commands run in order (tests before the coverage report), beside the other stages."""
    futures: list[PrefectFuture[Any]] = []
    for command in config.quality.commands:
        futures.append(
            run_quality_command.submit(
                command.name,
                command.resolved_argv(),
                source.root,
                source.tree_digest,
                command.timeout_seconds,
                wait_for=futures[-1:],
            )
        )
    if config.quality.coverage_report is not None:
        report = str(config.path(config.quality.coverage_report))
        futures.append(
            gate_coverage.submit(report, config.quality.coverage_min, source.tree_digest, wait_for=futures[-1:])
        )
    return futures


def _quality_result(futures: list[PrefectFuture[Any]], config: AppConfig) -> float | None:
    """Raise the first failure in command order (later ones never ran), else the coverage."""
    results = [future.result() for future in futures]
    return results[-1] if config.quality.coverage_report is not None else None


@flow(name="build-and-publish", task_runner=ThreadPoolTaskRunner(max_workers=8), log_prints=True)
def build_and_publish(
    app_config: str = DEFAULT_APP_CONFIG,
    git_ref: str | None = None,
    version: str | None = None,
    components: list[str] | None = None,
    registry_block: str | None = None,
    signing_key_block: str | None = None,
    docker_host_block: str | None = None,
    releases_dir: str | None = None,
    enforce_gates: bool = True,
) -> ReleaseManifest:
    """Quality gate, security scans, concurrent builds, push by digest, SBOMs, signing, verification.

    Returns the release manifest that `deliver` takes as input.
    """
    logger = get_run_logger()
    settings = StackSettings()
    clock = StageClock()
    config = load_app_config(app_config)
    selected = config.select(components)
    release_version = version or config.version
    version_tag = tag_from_version(release_version)
    registry, signing_key, docker_host = _load_blocks(settings, registry_block, signing_key_block, docker_host_block)
    trivy_cache = str(settings.state_dir / "trivy-cache")

    with clock.stage("source"):
        source = resolve_source(str(config.root), git_ref)
    sha_tag = require_tag(
        source.git_sha if not source.dirty else f"{source.git_sha[:12]}-dirty-{source.tree_digest[7:19]}"
    )
    out_dir = Path(releases_dir or settings.releases_dir) / config.name / f"{release_version}-{source.git_sha[:12]}"
    if source.dirty:
        logger.warning("working tree is dirty: images are tagged %s, not the bare commit", sha_tag)

    with clock.stage("quality, scans and builds"):
        base_image_id = inspect_base_image.submit(docker_host, settings.base_image)
        quality = _submit_quality(config, source)
        fs_scan = scan_source_trivy.submit(source.root, source.tree_digest, trivy_cache)
        sast = scan_source_sast.submit(source.root, config.security.sast_paths, source.tree_digest)
        builds = {
            c.name: build_image.submit(
                c.name,
                str(config.path(c.context)),
                c.dockerfile,
                tree_digest(config.path(c.context)),
                settings.base_image,
                base_image_id,
                oci_labels(
                    revision=source.git_sha,
                    source=config.source or f"file://{config.root}",
                    created=source.commit_time,
                    version=release_version,
                    title=f"{config.name}-{c.name}",
                ),
                docker_host,
            )
            for c in selected
        }
        coverage = _quality_result(quality, config)
        source_gate = gate_security(
            [fs_scan.result(), sast.result()],
            config.security.fail_on,
            config.security.forbidden_licenses,
            str(config.path(config.security.ignore_file)) if config.security.ignore_file else None,
            str(out_dir / "source.sarif"),
            enforce_gates,
        )
        built = {name: future.result() for name, future in builds.items()}

    with clock.stage("push"):
        pushes = {
            name: push_image.submit(
                name, b["image_id"], registry.image_name(name), [sha_tag, version_tag], registry, docker_host
            )
            for name, b in built.items()
        }
        digests = {name: future.result() for name, future in pushes.items()}

    with clock.stage("image scans and SBOMs"):
        references = {name: f"{registry.image_name(name)}@{digest}" for name, digest in digests.items()}
        image_scans = {n: scan_image.submit(n, ref, trivy_cache, registry.insecure) for n, ref in references.items()}
        sboms = {
            n: generate_sbom.submit(n, ref, str(out_dir / "sbom"), trivy_cache, registry.insecure)
            for n, ref in references.items()
        }
        image_gate = gate_security(
            [f.result() for f in image_scans.values()],
            config.security.fail_on,
            config.security.forbidden_licenses,
            str(config.path(config.security.ignore_file)) if config.security.ignore_file else None,
            str(out_dir / "images.sarif"),
            enforce_gates,
        )
        sbom_files = {n: f.result() for n, f in sboms.items()}

    with clock.stage("sign and attest"):
        public_key = load_public_key_pem(signing_key)
        key_fingerprint = fingerprint(public_key)
        run_id = str(get_run_context().flow_run.id)  # type: ignore[union-attr]
        now = dt.datetime.now(dt.UTC).isoformat()
        attached = {
            n: attach_sbom.submit(
                n, registry.repository(n), digests[n], sbom_files[n], file_digests(sbom_files[n]), registry
            )
            for n in digests
        }
        signatures = {
            n: sign_image.submit(
                n,
                registry.repository(n),
                digests[n],
                {
                    "source_uri": config.source or f"file://{config.root}",
                    "git_sha": source.git_sha,
                    "dockerfile": config.component(n).dockerfile,
                    "component": n,
                    "version": release_version,
                    "base_image_digest": base_image_id.result(),
                    "builder_id": BUILDER_ID,
                    "invocation_id": run_id,
                    "started_on": now,
                    "finished_on": dt.datetime.now(dt.UTC).isoformat(),
                },
                sbom_files[n],
                file_digests(sbom_files[n]),
                key_fingerprint,
                registry,
                signing_key,
                wait_for=[attached[n]],
            )
            for n in digests
        }
        signed = {n: f.result() for n, f in signatures.items()}

    with clock.stage("verify"):
        verifications = {
            n: verify_image.submit(registry.repository(n), digests[n], [sha_tag, version_tag], public_key, registry)
            for n in digests
        }
        verified = {n: f.result() for n, f in verifications.items()}

    manifest = ReleaseManifest(
        app=config.name,
        version=release_version,
        git_sha=source.git_sha,
        git_commit_time=source.commit_time,
        git_ref=git_ref,
        source_dirty=source.dirty,
        created=dt.datetime.now(dt.UTC).isoformat(),
        flow_run_id=run_id,
        registry=registry.host,
        public_key_pem=public_key,
        images=[
            ReleaseImage(
                component=n,
                repository=registry.image_name(n),
                digest=digests[n],
                tags=[sha_tag, version_tag],
                sbom_files=sbom_files[n],
                signature=signed[n],
                verified=bool(verified[n]),
            )
            for n in digests
        ],
        quality={"coverage_percent": coverage, "commands": [c.name for c in config.quality.commands]},
        scan=merge_scan_summaries([source_gate, image_gate]),
        stage_seconds=clock.seconds,
    )
    path = publish_release_manifest(manifest, str(Path(releases_dir or settings.releases_dir)))
    logger.info("release manifest written to %s", path)
    return manifest
